//! The `candor` command line: clap structs, each option also readable from a
//! `CANDOR_*` environment variable, and the dispatch to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::data::{FieldNames, SplitFractions};
use crate::model::{softmax, ArchitectureSizes, Classifier, DropoutRates, Precision};
use crate::store::{redact, Store};
use crate::train::{
    self, DataSource, Distillation, ModelSettings, Optimisation, Selection, TrainSettings,
};
use crate::uncertainty::calibration::AbstentionPolicy;
use crate::uncertainty::{self, McSummary};

mod cascade;
mod compress;
mod evaluate;
#[cfg(test)]
mod reference;
mod serve;
pub use compress::CompressArgs;
pub use evaluate::{CalibrateArgs, EvalArgs};
pub use serve::ServeArgs;

/// Text classification that knows when it does not know.
#[derive(Debug, Parser)]
#[command(name = "candor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Compute threads of the model (the rayon pool of candle and of candor's
    /// dense kernel). Default: every core for a model of hidden size 256 or
    /// more (measured faster at MiniLM size); one for smaller models, whose
    /// second thread lost to HTTP and tokenization under load, and for
    /// training, where a second thread was measured slower.
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
        let models: Vec<&std::path::Path> = match &self.command {
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
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        }
    }
}

/// Options of `candor healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of the server to ask (its --addr; 0.0.0.0 is asked on 127.0.0.1).
    #[arg(long, env = "CANDOR_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub timeout_ms: u64,
}

/// `candor db …`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the migrations not yet applied (a no-op when all are).
    Migrate(DatabaseArgs),
}

/// `candor feedback …`.
#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Write the corrections as JSONL `{"text", "label"}` rows to stdout, for `candor train --extra`.
    Export(ExportArgs),
}

/// Which database to use.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://FILE` (created if missing; one instance only) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (shared by replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://candor.db",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Options of `candor feedback export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only feedback on this model's predictions (its directory name).
    #[arg(long)]
    pub model: Option<String>,
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

/// Options of `candor train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled data: JSONL, CSV or TSV with a header.
    #[arg(long, env = "CANDOR_DATA")]
    pub data: PathBuf,
    /// Explicit validation file (otherwise split from --data).
    #[arg(long, env = "CANDOR_VAL")]
    pub val: Option<PathBuf>,
    /// Explicit test file (otherwise split from --data).
    #[arg(long, env = "CANDOR_TEST")]
    pub test: Option<PathBuf>,
    /// Explicit calibration file for conformal sets and abstention
    /// thresholds (otherwise split from --data).
    #[arg(long, env = "CANDOR_CALIBRATION")]
    pub calibration: Option<PathBuf>,
    /// Extra labelled files added to the training split only (e.g. exported corrections); repeatable.
    #[arg(long)]
    pub extra: Vec<PathBuf>,
    /// Output model directory.
    #[arg(long, env = "CANDOR_OUT")]
    pub out: PathBuf,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// Start from a Hugging Face BERT checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, env = "CANDOR_INIT_FROM")]
    pub init_from: Option<PathBuf>,
    /// Epochs of masked-language-model pre-training on the training texts before fine-tuning (0: none).
    #[arg(long, default_value_t = 0)]
    pub pretrain_epochs: usize,
    /// Further files whose texts (labels ignored) join the training texts for
    /// masked-LM pre-training; texts of the validation and test splits are
    /// left out. Repeatable; needs --pretrain-epochs.
    #[arg(long)]
    pub pretrain_data: Vec<PathBuf>,
    /// Fraction of --data held out for validation (early stopping, temperature).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Fraction of --data held out for calibration (conformal sets, abstention thresholds).
    #[arg(long, default_value_t = 0.1)]
    pub calibration_fraction: f64,
    /// Fraction of --data held out for testing.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Encoder layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Attention heads (must divide --hidden).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Feed-forward size.
    #[arg(long, default_value_t = 512)]
    pub intermediate: usize,
    /// Position-embedding rows (at least --max-length).
    #[arg(long, default_value_t = 128)]
    pub max_positions: usize,
    /// WordPiece vocabulary size.
    #[arg(long, default_value_t = 5000)]
    pub vocab_size: usize,
    /// Longest tokenized input; longer texts are truncated.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Dropout on embeddings, attention output and feed-forward output (BERT's hidden_dropout_prob).
    #[arg(long, default_value_t = 0.2)]
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities (attention_probs_dropout_prob).
    #[arg(long, default_value_t = 0.1)]
    pub attention_dropout: f64,
    /// Dropout on the classifier input (classifier_dropout).
    #[arg(long, default_value_t = 0.2)]
    pub classifier_dropout: f64,
    /// Maximum epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub learning_rate: f64,
    /// Fraction of steps spent on linear warm-up.
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    /// AdamW weight decay (not applied to biases and LayerNorm).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Gradient-norm clipping threshold.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Early-stopping patience in epochs.
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Validation score that picks the kept epoch and drives early stopping.
    #[arg(long, value_enum, default_value_t = Selection::Loss)]
    pub select_by: Selection,
    /// Probability of replacing each training word piece with [MASK] (input noise against memorising).
    #[arg(long, default_value_t = 0.15)]
    pub token_mask: f64,
    /// Label smoothing of the training loss, e.g. 0.1 (0: plain cross-entropy).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// R-Drop: run each batch twice under different dropout masks and add this
    /// weight times the symmetric KL divergence of the two predictions, e.g. 1
    /// (0: off; doubles the cost of a step).
    #[arg(long, default_value_t = 0.0)]
    pub rdrop: f64,
    /// A field holding a second, finer label (e.g. trec6's `fine_label`) to
    /// learn as an auxiliary task while training; the model still predicts
    /// only --label-field. Rows without it take no part in that task.
    #[arg(long)]
    pub aux_label_field: Option<String>,
    /// Weight of the auxiliary task's cross-entropy in the training loss.
    #[arg(long, default_value_t = 0.5)]
    pub aux_weight: f64,
    /// Layer-wise learning-rate decay, e.g. 0.9 when fine-tuning: each encoder
    /// layer below the top trains at this fraction of the rate of the one
    /// above, the embeddings below the lowest (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub layer_lr_decay: f64,
    /// Keep an exponential moving average of the weights with this per-step
    /// decay (e.g. 0.999) and measure, select and save the averaged weights.
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// A trained candor model directory whose predictions on the training
    /// texts join the loss as soft targets (knowledge distillation).
    /// Repeatable: several teachers' probabilities are averaged, which
    /// distils an ensemble into one model.
    #[arg(long)]
    pub teacher: Vec<PathBuf>,
    /// Weight of the teachers' soft targets in the training loss; the labels
    /// keep the rest (1: the teachers only).
    #[arg(long, default_value_t = 0.5)]
    pub distill_weight: f64,
    /// Softmax temperature of teachers and student in the distillation term
    /// (above 1 the teachers' smaller probabilities weigh more).
    #[arg(long, default_value_t = 1.0)]
    pub distill_temperature: f64,
    /// Masked copies of each training text to add, labelled by the teachers
    /// as well as with the original's label (0: none); the teachers are
    /// nearly certain on the texts they trained on, less so on the copies.
    #[arg(long, default_value_t = 0)]
    pub distill_copies: usize,
    /// Probability of replacing each word of a copy by [MASK].
    #[arg(long, default_value_t = 0.15)]
    pub distill_mask: f64,
    /// Seed of splits, initial weights, batch order and dropout.
    #[arg(long, env = "CANDOR_SEED", default_value_t = 42)]
    pub seed: u64,
    /// MC-dropout samples for the metrics written beside the model (0 to skip).
    #[arg(long, default_value_t = 30)]
    pub mc_samples: usize,
    #[command(flatten)]
    pub abstain: AbstainArgs,
    /// Log lines instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
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

impl TrainArgs {
    /// The library's view of these options.
    pub fn settings(&self) -> anyhow::Result<TrainSettings> {
        Ok(TrainSettings {
            data: DataSource {
                train: self.data.clone(),
                val: self.val.clone(),
                test: self.test.clone(),
                calibration: self.calibration.clone(),
                extra: self.extra.clone(),
                fields: self.fields.names(),
                split: SplitFractions {
                    val: self.val_fraction,
                    calibration: self.calibration_fraction,
                    test: self.test_fraction,
                },
                aux_label_field: self.aux_label_field.clone(),
            },
            out: self.out.clone(),
            model: ModelSettings {
                sizes: ArchitectureSizes {
                    layers: self.layers,
                    hidden: self.hidden,
                    heads: self.heads,
                    intermediate: self.intermediate,
                    max_positions: self.max_positions,
                },
                dropout: DropoutRates {
                    hidden: self.hidden_dropout,
                    attention: self.attention_dropout,
                    classifier: self.classifier_dropout,
                },
                vocab_size: self.vocab_size,
                max_length: self.max_length,
            },
            optimisation: Optimisation {
                epochs: self.epochs,
                batch_size: self.batch_size,
                learning_rate: self.learning_rate,
                warmup_fraction: self.warmup,
                weight_decay: self.weight_decay,
                max_grad_norm: self.max_grad_norm,
                patience: self.patience,
                select_by: self.select_by,
                token_mask_prob: self.token_mask,
                label_smoothing: self.label_smoothing,
                rdrop: self.rdrop,
                aux_weight: self.aux_weight,
                layer_lr_decay: self.layer_lr_decay,
                ema_decay: self.ema_decay,
                distillation: Distillation {
                    weight: self.distill_weight,
                    temperature: self.distill_temperature,
                    copies: self.distill_copies,
                    mask_prob: self.distill_mask,
                },
                seed: self.seed,
            },
            teachers: self.teacher.clone(),
            init_from: self.init_from.clone(),
            pretrain_epochs: self.pretrain_epochs,
            pretrain_data: self.pretrain_data.clone(),
            mc_samples: self.mc_samples,
            abstention: self.abstain.policy()?,
            quiet: self.quiet,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        })
    }
}

/// Options of `candor split`.
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Labelled data: JSONL, CSV or TSV with a header.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// Fraction held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Fraction held out for calibration.
    #[arg(long, default_value_t = 0.1)]
    pub calibration_fraction: f64,
    /// Fraction held out for testing.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
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
        Command::Split(args) => run_split(&args),
        Command::Compress(args) => compress::run_compress(&args),
        Command::Predict(args) => run_predict(&args, cli.precision),
        Command::Serve(args) => serve::run_serve(&args, cli.precision),
        Command::Healthcheck(args) => block_on(healthcheck(&args)),
        Command::Db(DbCommand::Migrate(args)) => block_on(migrate(&args)),
        Command::Feedback(FeedbackCommand::Export(args)) => block_on(export(&args)),
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

/// `GET /readyz` over a plain TCP connection: one request, the status line read.
async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = args.addr.replace("0.0.0.0", "127.0.0.1");
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await?;
        anyhow::Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let answer = tokio::time::timeout(std::time::Duration::from_millis(args.timeout_ms), ask)
        .await
        .with_context(|| format!("{addr} did not answer within {} ms", args.timeout_ms))?
        .with_context(|| format!("asking {addr}/readyz"))?;
    let status = answer.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        anyhow::bail!("{addr}/readyz answered '{status}'")
    }
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<Store> {
    let url = &args.database_url;
    Store::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let store = open(args).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", redact(&args.database_url)))?;
    store.close().await;
    eprintln!("{} is up to date", redact(&args.database_url));
    Ok(())
}

async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let store = open(&args.database).await?;
    store.migrate().await.context("migrating the database")?;
    let corrections = store.corrections(args.model.as_deref()).await?;
    store.close().await;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for row in &corrections.rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!("exported {} corrections", corrections.rows.len());
    if corrections.without_text > 0 {
        eprintln!(
            "skipped {} feedback rows on predictions logged without their text (--store-text=false)",
            corrections.without_text
        );
    }
    Ok(())
}

fn load(model: &std::path::Path, precision: Precision) -> anyhow::Result<Classifier> {
    Classifier::load_with(model, precision)
        .with_context(|| format!("loading model {}", model.display()))
}

fn run_split(args: &SplitArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let source = DataSource {
        train: args.data.clone(),
        val: None,
        test: None,
        calibration: None,
        extra: Vec::new(),
        fields: args.fields.names(),
        split: SplitFractions {
            val: args.val_fraction,
            calibration: args.calibration_fraction,
            test: args.test_fraction,
        },
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

fn run_predict(args: &PredictArgs, precision: Precision) -> anyhow::Result<()> {
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
