//! `candor train`'s options and the settings they make.

use std::path::PathBuf;

use clap::Args;

use super::{AbstainArgs, FieldArgs, FractionArgs};
use crate::model::{ArchitectureSizes, DropoutRates};
use crate::train::{
    DataSource, Distillation, ModelSettings, Optimisation, Selection, TrainSettings,
};

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
    #[command(flatten)]
    pub fractions: FractionArgs,
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
                split: self.fractions.fractions(),
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
