//! `candor eval` and `candor calibrate`: measuring a model's predictions and
//! uncertainty on labelled data, and fitting what its answers rely on.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{load, AbstainArgs, FieldArgs};
use crate::data;
use crate::model::{Classifier, Representation};
use crate::uncertainty::calibration::{self, CalibrationSettings};
use crate::uncertainty::evaluate;
use crate::uncertainty::neighbours::NeighbourSettings;

/// Options of `candor calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Model directory (its calibration.json is rewritten).
    #[arg(long, env = "CANDOR_MODEL")]
    pub model: PathBuf,
    /// Labelled calibration data the model has never been trained, early-stopped
    /// or temperature-scaled on (`candor split` writes a model's own calibration split).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// The model's training data, to fit the distances that score how
    /// unlike the training data a text is (`candor split` writes train.jsonl).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// MC-dropout samples T behind the `full`, `head` and `top` scores (0: deterministic only).
    #[arg(long, default_value_t = 30)]
    pub mc_samples: usize,
    /// Seed of the dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Top encoder layers sampled by the `top` mode's scores, and that
    /// mode's default on the server.
    #[arg(long, default_value_t = 1)]
    pub top_layers: usize,
    #[command(flatten)]
    pub neighbours: NeighbourArgs,
    #[command(flatten)]
    pub abstain: AbstainArgs,
}

/// How the nearest-neighbour distance is built (needs --reference).
#[derive(Debug, Args)]
pub struct NeighbourArgs {
    /// Score distance by Mahalanobis distance to the class means only, without
    /// storing the training texts' vectors.
    #[arg(long)]
    pub no_neighbours: bool,
    /// The hidden states the neighbours compare: LAYER or LAYER:POOLING
    /// (0 is the embeddings; pooling `mean` or `cls`), e.g. `3` or `4:cls`.
    /// Default: the mean of the last layer.
    #[arg(long)]
    pub neighbour_layer: Option<Representation>,
    /// Which neighbour's cosine distance is the score.
    #[arg(long, default_value_t = 10)]
    pub neighbours_k: usize,
    /// Most megabytes the stored training vectors (f16) may take; beyond it
    /// the training texts are subsampled evenly.
    #[arg(long, default_value_t = 8.0)]
    pub neighbours_max_mb: f64,
}

impl NeighbourArgs {
    /// The library's view of these options (`None`: no neighbours).
    pub fn settings(&self) -> anyhow::Result<Option<NeighbourSettings>> {
        if self.no_neighbours {
            return Ok(None);
        }
        anyhow::ensure!(self.neighbours_k >= 1, "--neighbours-k must be at least 1");
        anyhow::ensure!(
            self.neighbours_max_mb > 0.0,
            "--neighbours-max-mb must be above 0"
        );
        Ok(Some(NeighbourSettings {
            representation: self.neighbour_layer,
            k: self.neighbours_k,
            max_bytes: (self.neighbours_max_mb * 1e6) as usize,
        }))
    }
}

/// Options of `candor eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model directory.
    #[arg(long, env = "CANDOR_MODEL")]
    pub model: PathBuf,
    /// Labelled data to evaluate on.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// Unrelated texts to tell apart from --data (out-of-distribution detection); repeatable.
    #[arg(long)]
    pub ood: Vec<PathBuf>,
    /// The model's training examples (e.g. `candor split`'s train.jsonl): with --ood, also
    /// measures OOD detection by distance to the training data (Mahalanobis to the
    /// class means, and the k-th nearest training text in every layer and pooling).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Most texts used from each --ood file (an evenly spaced selection).
    #[arg(long, default_value_t = 2000)]
    pub max_ood: usize,
    /// MC-dropout samples per input (0 skips MC dropout).
    #[arg(long, default_value_t = 30)]
    pub mc_samples: usize,
    /// Sample counts T for the accuracy and calibration against T table (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,30,100")]
    pub sweep: Vec<usize>,
    /// Seed of the MC-dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Numbers of top encoder layers k measured as `top` predictors (MC
    /// dropout in the top k layers and the head), comma-separated; empty: none.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub top_layers: Vec<usize>,
    /// Which training neighbour's cosine distance the kNN rows use.
    #[arg(long, default_value_t = 10)]
    pub neighbours_k: usize,
    /// Write the pictures (reliability, risk–coverage, OOD histograms) into this folder.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    use crate::uncertainty::report::{self, OodSet, ReportSettings};
    let classifier = load(&args.model)?;
    let examples = data::read_examples(&args.data, &args.fields.names())?;
    let ood = args
        .ood
        .iter()
        .map(|path| {
            let texts = data::read_texts(path, &args.fields.text_field)?;
            Ok(OodSet {
                name: path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                texts: evenly_spaced(texts, args.max_ood),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sweep = if args.mc_samples > 0 {
        args.sweep.iter().copied().filter(|&t| t > 0).collect()
    } else {
        Vec::new()
    };
    let reference = match (&args.reference, args.ood.is_empty()) {
        (Some(path), false) => data::read_examples(path, &args.fields.names())?,
        _ => Vec::new(),
    };
    let layers = classifier.network.layer_count();
    if let Some(&bad) = args.top_layers.iter().find(|&&k| k == 0 || k > layers) {
        anyhow::bail!("--top-layers must each be from 1 to the model's {layers} layers, got {bad}");
    }
    let top_layers = args.top_layers.clone();
    let settings = ReportSettings {
        samples: args.mc_samples,
        seed: args.seed,
        sweep,
        reference,
        top_layers,
        neighbours_k: args.neighbours_k.max(1),
        calibration: calibration::Calibration::load(&args.model)?,
    };
    let (report, predictions) =
        report::uncertainty_report(&classifier, &examples, &ood, &settings)?;
    if let Some(dir) = &args.plots {
        let targets = evaluate::targets(&classifier, &examples)?;
        report::draw_pictures(dir, &report, &predictions, &targets, &ood)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            report::render_tables(
                &report,
                &args.data.display().to_string(),
                classifier.config.candor.temperature
            )
        );
    }
    Ok(())
}

pub(super) fn run_calibrate(args: &CalibrateArgs) -> anyhow::Result<()> {
    let policy = args.abstain.policy()?;
    if let Some(policy) = &policy {
        policy
            .check()
            .map_err(|e| anyhow::anyhow!("abstention policy: {e}"))?;
    }
    let classifier = Classifier::load(&args.model)?;
    let examples = data::read_examples(&args.data, &args.fields.names())?;
    let reference = match &args.reference {
        Some(path) => Some(data::read_examples(path, &args.fields.names())?),
        None => None,
    };
    let settings = CalibrationSettings {
        mc_samples: args.mc_samples,
        seed: args.seed,
        top_layers: args.top_layers,
        neighbours: args.neighbours.settings()?,
    };
    anyhow::ensure!(
        (1..=classifier.network.layer_count()).contains(&args.top_layers),
        "--top-layers must be from 1 to the model's {} layers, got {}",
        classifier.network.layer_count(),
        args.top_layers
    );
    let mut fitted = calibration::fit(&classifier, &examples, reference.as_deref(), &settings)
        .with_context(|| format!("calibrating on {}", args.data.display()))?;
    fitted.abstention = policy;
    fitted.save(&args.model)?;
    let at_alpha = fitted
        .deterministic
        .conformal_threshold(0.1)
        .unwrap_or(f64::INFINITY);
    eprintln!(
        "wrote {} ({} examples, T = {}; at alpha 0.1 a label is in the set when its probability is at least {:.4})",
        args.model.join(calibration::CALIBRATION_FILE).display(),
        fitted.examples,
        fitted.mc_samples,
        1.0 - at_alpha
    );
    Ok(())
}

/// At most `n` items, evenly spaced over the whole list (not its head, which
/// may be sorted).
fn evenly_spaced(items: Vec<String>, n: usize) -> Vec<String> {
    if items.len() <= n {
        return items;
    }
    let step = items.len() as f64 / n as f64;
    (0..n)
        .map(|i| items[(i as f64 * step) as usize].clone())
        .collect()
}
