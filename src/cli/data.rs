//! `candor split` and `candor predict`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::{load, FieldArgs, FractionArgs};
use crate::model::{softmax, Precision};
use crate::train::{self, DataSource};
use crate::uncertainty::{self, McSummary};

/// Options of `candor split`.
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Labelled data: JSONL, CSV or TSV with a header.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub fields: FieldArgs,
    #[command(flatten)]
    pub fractions: FractionArgs,
    /// Seed of the split (`candor train`'s default is 42).
    #[arg(long, env = "CANDOR_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Folder to write train.jsonl, val.jsonl, calibration.jsonl and test.jsonl into.
    #[arg(long)]
    pub out: PathBuf,
}

/// Options of `candor predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model directory.
    #[arg(long, env = "CANDOR_MODEL")]
    pub model: PathBuf,
    /// Texts to classify; `-` reads one text per line from stdin.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// Also run MC dropout with this many samples and report uncertainty.
    #[arg(long, default_value_t = 0)]
    pub mc_samples: usize,
    /// Seed of the MC-dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub(super) fn run_split(args: &SplitArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let source = DataSource {
        train: args.data.clone(),
        val: None,
        test: None,
        calibration: None,
        extra: Vec::new(),
        fields: args.fields.names(),
        split: args.fractions.fractions(),
        aux_label_field: None,
    };
    let splits = train::load_splits(&source, args.seed)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, examples) in [
        ("train", &splits.train),
        ("val", &splits.val),
        ("calibration", &splits.calibration),
        ("test", &splits.test),
    ] {
        let path = args.out.join(format!("{name}.jsonl"));
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for e in examples {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({"text": e.text, "label": e.label}),
            )?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        eprintln!("{}: {} examples", path.display(), examples.len());
    }
    Ok(())
}

/// One line of `candor predict` output.
#[derive(Debug, Serialize)]
struct PredictionLine<'a> {
    text: &'a str,
    label: &'a str,
    score: f32,
    scores: Vec<(&'a str, f32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncertainty: Option<McSummary>,
}

pub(super) fn run_predict(args: &PredictArgs, precision: Precision) -> anyhow::Result<()> {
    let classifier = load(&args.model, precision)?;
    let texts: Vec<String> = if args.texts == ["-"] {
        std::io::stdin()
            .lines()
            .collect::<Result<_, _>>()
            .context("reading stdin")?
    } else {
        args.texts.clone()
    };
    let rows = classifier.encoder.encode_all(&texts)?;
    let logits = classifier.logits_for_all(&rows, 64)?;
    let mc = if args.mc_samples > 0 {
        let samples = uncertainty::sample_probabilities(
            &classifier,
            &rows,
            args.mc_samples,
            args.seed,
            uncertainty::evaluate::MC_BUDGET,
            uncertainty::SamplingMode::Full,
        )?;
        samples
            .iter()
            .map(|s| Some(uncertainty::summarize(s)))
            .collect()
    } else {
        vec![None; texts.len()]
    };
    for ((text, logits), summary) in texts.iter().zip(&logits).zip(mc) {
        let probs = match &summary {
            Some(s) => s.mean.clone(),
            None => softmax(logits, classifier.config.candor.temperature),
        };
        let mut scores: Vec<(&str, f32)> = classifier
            .labels
            .iter()
            .map(String::as_str)
            .zip(probs)
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        let line = PredictionLine {
            text,
            label: scores[0].0,
            score: scores[0].1,
            scores,
            uncertainty: summary,
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}
