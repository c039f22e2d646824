//! `candor eval` and `candor calibrate`: measuring a model's predictions and
//! uncertainty on labelled data, and fitting what its answers rely on.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{load, AbstainArgs, FieldArgs};
use crate::data;
use crate::model::{Classifier, ModelDir, Precision, Representation};
use crate::uncertainty::calibration::{self, CalibrationSettings};
use crate::uncertainty::neighbours::NeighbourSettings;
use crate::uncertainty::report::{self, OodSet, ReportSettings};
use crate::uncertainty::{distance_report, evaluate};

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
    /// Fit only when this model, answering first in a cascade, passes a text
    /// on to the model in this directory (same labels): the lowest threshold
    /// on its calibrated top probability that keeps the cascade's accuracy on
    /// --data within --cascade-margin of the next model's. Added to the
    /// existing calibration.json; the rest of it is kept.
    #[arg(long)]
    pub cascade_to: Option<PathBuf>,
    /// Accuracy points the cascade may lose against the next model alone.
    #[arg(long, default_value_t = 0.5)]
    pub cascade_margin: f64,
}

/// Which distance to the training data answers carry (needs --reference):
/// the Mahalanobis distance to the class means unless --neighbour-layer or
/// --ood asks for the nearest neighbours.
#[derive(Debug, Args)]
pub struct NeighbourArgs {
    /// Store the training texts' vectors and score by the cosine distance to
    /// the k-th nearest, in these hidden states: LAYER or LAYER:POOLING (0 is
    /// the embeddings; pooling `mean` or `cls`), e.g. `2` or `4:cls`.
    #[arg(long, conflicts_with = "ood")]
    pub neighbour_layer: Option<Representation>,
    /// Unrelated texts (repeatable): measure how well each distance (Mahalanobis,
    /// and kNN in every layer and pooling) tells them from the calibration
    /// texts, and keep the best by mean AUROC.
    #[arg(long)]
    pub ood: Vec<PathBuf>,
    /// Most texts used from each --ood file (an evenly spaced selection).
    #[arg(long, default_value_t = 2000)]
    pub max_ood: usize,
    /// Which neighbour's cosine distance is the score.
    #[arg(long, default_value_t = 10)]
    pub neighbours_k: usize,
    /// Most megabytes the stored training vectors (f16) may take; beyond it
    /// the training texts are subsampled evenly.
    #[arg(long, default_value_t = 8.0)]
    pub neighbours_max_mb: f64,
}

impl NeighbourArgs {
    /// k and the size limit, with no representation chosen yet.
    fn base(&self) -> anyhow::Result<NeighbourSettings> {
        anyhow::ensure!(self.neighbours_k >= 1, "--neighbours-k must be at least 1");
        anyhow::ensure!(
            self.neighbours_max_mb > 0.0,
            "--neighbours-max-mb must be above 0"
        );
        Ok(NeighbourSettings {
            representation: None,
            k: self.neighbours_k,
            max_bytes: (self.neighbours_max_mb * 1e6) as usize,
        })
    }

    /// The nearest-neighbour settings to calibrate with (`None`: Mahalanobis
    /// only), choosing by measurement on --ood when given.
    fn choose(
        &self,
        classifier: &Classifier,
        calibration: &[data::Example],
        reference: Option<&[data::Example]>,
        text_field: &str,
    ) -> anyhow::Result<Option<NeighbourSettings>> {
        let base = self.base()?;
        if let Some(layer) = self.neighbour_layer {
            anyhow::ensure!(reference.is_some(), "--neighbour-layer needs --reference");
            layer
                .check(classifier.network.layer_count())
                .map_err(|e| anyhow::anyhow!("--neighbour-layer: {e}"))?;
            return Ok(Some(NeighbourSettings {
                representation: Some(layer),
                ..base
            }));
        }
        if self.ood.is_empty() {
            return Ok(None);
        }
        let reference = reference.ok_or_else(|| anyhow::anyhow!("--ood needs --reference"))?;
        let named = read_ood(&self.ood, text_field, self.max_ood)?
            .into_iter()
            .map(|set| Ok((set.name, classifier.encoder.encode_all(&set.texts)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let texts: Vec<String> = calibration.iter().map(|e| e.text.clone()).collect();
        let rows = classifier.encoder.encode_all(&texts)?;
        let measured = distance_report::distance_rows(classifier, reference, &rows, &named, &base)?;
        eprint!("{}", distance_report::render(&measured, base.k));
        let best = distance_report::best_distance(&measured)
            .ok_or_else(|| anyhow::anyhow!("no distance could be measured"))?;
        eprintln!(
            "keeping {} on the {} (mean AUROC {:.4})",
            best.score, best.representation, best.auroc
        );
        Ok((best.score == "knn").then_some(NeighbourSettings {
            representation: Some(best.representation),
            ..base
        }))
    }
}

/// The --ood files as named sets of at most `max` evenly spaced texts.
fn read_ood(paths: &[PathBuf], text_field: &str, max: usize) -> anyhow::Result<Vec<OodSet>> {
    paths
        .iter()
        .map(|path| {
            let texts = data::read_texts(path, text_field)?;
            Ok(OodSet {
                name: path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                texts: evenly_spaced(texts, max),
            })
        })
        .collect()
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
    /// dropout in the top k layers and the head), comma-separated. Default:
    /// 1 and 2, those below the model's layer count.
    #[arg(long, value_delimiter = ',')]
    pub top_layers: Option<Vec<usize>>,
    /// Which training neighbour's cosine distance the kNN rows use.
    #[arg(long, default_value_t = 10)]
    pub neighbours_k: usize,
    /// Most megabytes of training vectors (f16) the kNN rows search, as
    /// `candor calibrate --neighbours-max-mb` would store them.
    #[arg(long, default_value_t = 8.0)]
    pub neighbours_max_mb: f64,
    /// Write the pictures (reliability, risk–coverage, OOD histograms) into this folder.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file (the tables still print).
    #[arg(long, conflicts_with = "json")]
    pub json_out: Option<PathBuf>,
}

pub(super) fn run_eval(args: &EvalArgs, precision: Precision) -> anyhow::Result<()> {
    let classifier = load(&args.model, precision)?;
    let examples = data::read_examples(&args.data, &args.fields.names())?;
    let ood = read_ood(&args.ood, &args.fields.text_field, args.max_ood)?;
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
    let top_layers = match &args.top_layers {
        None => [1, 2].into_iter().filter(|&k| k < layers).collect(),
        Some(asked) => {
            if let Some(&bad) = asked.iter().find(|&&k| k == 0 || k > layers) {
                anyhow::bail!(
                    "--top-layers must each be from 1 to the model's {layers} layers, got {bad}"
                );
            }
            asked.clone()
        }
    };
    let settings = ReportSettings {
        samples: args.mc_samples,
        seed: args.seed,
        sweep,
        reference,
        top_layers,
        neighbours: NeighbourSettings {
            representation: None,
            k: args.neighbours_k.max(1),
            max_bytes: (args.neighbours_max_mb.max(0.0) * 1e6) as usize,
        },
        calibration: calibration::Calibration::load(&args.model)?,
    };
    let (report, predictions) =
        report::uncertainty_report(&classifier, &examples, &ood, &settings)?;
    if let Some(dir) = &args.plots {
        let targets = evaluate::targets(&classifier, &examples)?;
        report::draw_pictures(dir, &report, &predictions, &targets, &ood)?;
    }
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
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

pub(super) fn run_calibrate(args: &CalibrateArgs, precision: Precision) -> anyhow::Result<()> {
    if let Some(next) = &args.cascade_to {
        return super::cascade::run_cascade_fit(args, next, precision);
    }
    let policy = args.abstain.policy()?;
    if let Some(policy) = &policy {
        policy
            .check()
            .map_err(|e| anyhow::anyhow!("abstention policy: {e}"))?;
    }
    let classifier = load(&args.model, precision)?;
    let examples = data::read_examples(&args.data, &args.fields.names())?;
    let reference = match &args.reference {
        Some(path) => Some(data::read_examples(path, &args.fields.names())?),
        None => None,
    };
    let settings = CalibrationSettings {
        mc_samples: args.mc_samples,
        seed: args.seed,
        top_layers: args.top_layers,
        neighbours: args.neighbours.choose(
            &classifier,
            &examples,
            reference.as_deref(),
            &args.fields.text_field,
        )?,
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
        ModelDir::new(&args.model).calibration().display(),
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
