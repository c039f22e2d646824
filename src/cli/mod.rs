//! The `candor` command line: clap structs, each option also readable from a
//! `CANDOR_*` environment variable, and the dispatch to the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::FieldNames;
use crate::model::{Classifier, Precision};
use crate::train;
use crate::uncertainty;
use crate::uncertainty::calibration::AbstentionPolicy;

mod cascade;
mod compress;
mod data;
mod database;
mod evaluate;
#[cfg(test)]
mod reference;
mod serve;
mod training;
pub use compress::CompressArgs;
pub use data::{PredictArgs, SplitArgs};
pub use database::{DatabaseArgs, DbCommand, ExportArgs, FeedbackCommand, HealthcheckArgs};
pub use evaluate::{CalibrateArgs, EvalArgs};
pub use serve::ServeArgs;
pub use training::TrainArgs;

/// Text classification that knows when it does not know.
#[derive(Debug, Parser)]
#[command(name = "candor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Compute threads of the model (the rayon pool of candle and of candor's
    /// dense kernel). Default: every core for training (the same bits at any
    /// count, measured faster at both model sizes) and for serving or
    /// evaluating a model of hidden size 256 or more (measured faster at
    /// MiniLM size); one for smaller models, whose second thread lost to HTTP
    /// and tokenization under load.
    #[arg(long, env = "CANDOR_THREADS", global = true)]
    pub threads: Option<usize>,
    /// Arithmetic of the model's dense layers when serving, evaluating,
    /// calibrating and predicting: f32; bf16 (products of bfloat16-rounded
    /// weights and inputs summed in f32; needs AVX-512 BF16); or int8
    /// (dynamic quantisation: weights per output, inputs per row, integer
    /// sums; needs AVX-512 VNNI). The reduced ones are faster and change the
    /// probabilities slightly: see docs/performance.md.
    #[arg(long, env = "CANDOR_PRECISION", default_value_t = Precision::F32, global = true)]
    pub precision: Precision,
    /// Log line format.
    #[arg(long, env = "CANDOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a classifier from labelled data and write a model directory.
    Train(Box<TrainArgs>),
    /// Evaluate a model on labelled data: deterministic, temperature-scaled and MC dropout,
    /// with calibration, selective prediction and out-of-distribution detection.
    Eval(EvalArgs),
    /// Score a model's calibration split again and rewrite its calibration.json
    /// (conformal sets, abstention thresholds and the default abstention policy).
    Calibrate(CalibrateArgs),
    /// Write the train/validation/calibration/test split `candor train` makes of a file (same seed, same split).
    Split(SplitArgs),
    /// Classify texts given on the command line (or one per line on stdin with `-`).
    Predict(PredictArgs),
    /// Make a fine-tuned model smaller in the same format: prune its
    /// vocabulary to some texts' word pieces, keep fewer layers, store f16.
    Compress(CompressArgs),
    /// Serve predictions and MC-dropout uncertainty over HTTP.
    Serve(ServeArgs),
    /// Exit 0 when a running server answers /readyz with 200, 1 otherwise
    /// (a container HEALTHCHECK that needs no curl).
    Healthcheck(HealthcheckArgs),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// Human feedback kept in the database.
    #[command(subcommand)]
    Feedback(FeedbackCommand),
}

/// Hidden size from which a model gets every core by default.
const WIDE_MODEL: usize = 256;

impl Cli {
    /// The compute threads to use: `--threads`, or by the model's size.
    pub fn compute_threads(&self) -> usize {
        if let Some(threads) = self.threads {
            return threads.max(1);
        }
        let every_core = || std::thread::available_parallelism().map_or(1, |n| n.get());
        let models: Vec<&std::path::Path> = match &self.command {
            Command::Train(_) => return every_core(),
            Command::Serve(a) => a.model.iter().map(|m| m.dir.as_path()).collect(),
            Command::Eval(a) => vec![&a.model],
            Command::Calibrate(a) => vec![&a.model],
            Command::Predict(a) => vec![&a.model],
            _ => vec![],
        };
        // Served models share one pool of compute threads.
        let wide = models.iter().any(|dir| {
            crate::model::read_config(dir).is_ok_and(|config| config.hidden_size >= WIDE_MODEL)
        });
        if wide {
            every_core()
        } else {
            1
        }
    }
}

/// How much of a data file each held-out split takes (`candor train` and
/// `candor split` make the same split from the same fractions and seed).
#[derive(Debug, Clone, Args)]
pub struct FractionArgs {
    /// Fraction held out for validation (early stopping, temperature).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Fraction held out for calibration (conformal sets, abstention thresholds).
    #[arg(long, default_value_t = 0.1)]
    pub calibration_fraction: f64,
    /// Fraction held out for testing.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
}

impl FractionArgs {
    pub(super) fn fractions(&self) -> crate::data::SplitFractions {
        crate::data::SplitFractions {
            val: self.val_fraction,
            calibration: self.calibration_fraction,
            test: self.test_fraction,
        }
    }
}

/// Which fields of a data file hold the text and the label.
#[derive(Debug, Clone, Args)]
pub struct FieldArgs {
    /// Field (JSONL key or CSV/TSV column) holding the text.
    #[arg(long, env = "CANDOR_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
    /// Field holding the label (a string or an integer).
    #[arg(long, env = "CANDOR_LABEL_FIELD", default_value = "label")]
    pub label_field: String,
}

impl FieldArgs {
    pub(super) fn names(&self) -> FieldNames {
        FieldNames {
            text: self.text_field.clone(),
            label: self.label_field.clone(),
        }
    }
}

/// A default abstention policy to store with a model (in calibration.json).
#[derive(Debug, Args)]
pub struct AbstainArgs {
    /// Score of the default abstention policy: max_probability,
    /// predictive_entropy, mutual_information or margin. Needs
    /// --abstain-coverage or --abstain-threshold.
    #[arg(long)]
    pub abstain_on: Option<uncertainty::selective::Score>,
    /// Abstain on the least confident (1 − C) share of predictions, as
    /// measured on the calibration split, e.g. 0.9.
    #[arg(long)]
    pub abstain_coverage: Option<f64>,
    /// Abstain when the score is beyond this value (above it for entropy and
    /// mutual information, below it for max probability and margin).
    #[arg(long)]
    pub abstain_threshold: Option<f64>,
}

impl AbstainArgs {
    /// The policy these options describe, if any.
    pub fn policy(&self) -> anyhow::Result<Option<AbstentionPolicy>> {
        match self.abstain_on {
            Some(score) => Ok(Some(AbstentionPolicy {
                score,
                threshold: self.abstain_threshold,
                coverage: self.abstain_coverage,
            })),
            None if self.abstain_coverage.is_some() || self.abstain_threshold.is_some() => {
                anyhow::bail!("--abstain-coverage and --abstain-threshold need --abstain-on SCORE")
            }
            None => Ok(None),
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            let settings = args.settings()?;
            let outcome = train::train(&settings)?;
            eprintln!(
                "wrote {} (best epoch {}, temperature {:.3}, {:.0} examples/s)",
                train::describe(&settings.out),
                outcome.best_epoch,
                outcome.temperature,
                outcome.examples_per_second
            );
            Ok(())
        }
        Command::Eval(args) => evaluate::run_eval(&args, cli.precision),
        Command::Calibrate(args) => evaluate::run_calibrate(&args, cli.precision),
        Command::Split(args) => data::run_split(&args),
        Command::Compress(args) => compress::run_compress(&args),
        Command::Predict(args) => data::run_predict(&args, cli.precision),
        Command::Serve(args) => serve::run_serve(&args, cli.precision),
        Command::Healthcheck(args) => block_on(database::healthcheck(&args)),
        Command::Db(DbCommand::Migrate(args)) => block_on(database::migrate(&args)),
        Command::Feedback(FeedbackCommand::Export(args)) => block_on(database::export(&args)),
    }
}

/// Runs a short database command on a small runtime.
fn block_on(task: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(task)
}

fn load(model: &std::path::Path, precision: Precision) -> anyhow::Result<Classifier> {
    Classifier::load_with(model, precision)
        .with_context(|| format!("loading model {}", model.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn threads_for(args: &[&str]) -> usize {
        Cli::try_parse_from(args).unwrap().compute_threads()
    }

    #[test]
    fn training_takes_every_core_and_a_small_model_one_unless_told() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let train = ["candor", "train", "--data", "d.jsonl", "--out", "m"];
        assert_eq!(threads_for(&train), cores);
        let tiny = env!("CARGO_MANIFEST_DIR").to_string() + "/models/sentiment-tiny";
        assert_eq!(
            threads_for(&["candor", "predict", "--model", &tiny, "x"]),
            1
        );
        let told = [
            "candor",
            "--threads",
            "3",
            "train",
            "--data",
            "d",
            "--out",
            "m",
        ];
        assert_eq!(threads_for(&told), 3);
    }
}
