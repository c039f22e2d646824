//! What a training run is told: the data, the model, the optimisation,
//! distillation and what to keep.

use std::path::PathBuf;

use anyhow::bail;

use crate::charts::EpochPoint;
use crate::data::{FieldNames, SplitFractions};
use crate::model::{ArchitectureSizes, DropoutRates};
use crate::uncertainty::calibration::AbstentionPolicy;

/// Where the labelled examples come from.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// The main labelled file; split into train/validation/calibration/test
    /// unless those are given.
    pub train: PathBuf,
    /// An explicit validation file.
    pub val: Option<PathBuf>,
    /// An explicit calibration file.
    pub calibration: Option<PathBuf>,
    /// An explicit test file.
    pub test: Option<PathBuf>,
    /// Further labelled files (e.g. exported corrections) added to the training split only.
    pub extra: Vec<PathBuf>,
    /// Field names of text and label.
    pub fields: FieldNames,
    /// Validation, calibration and test fractions when splitting.
    pub split: SplitFractions,
    /// A field of the main and extra files holding a second label for the
    /// auxiliary task (see [`Optimisation::aux_weight`]).
    pub aux_label_field: Option<String>,
}

/// The model to build when not starting from a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct ModelSettings {
    /// Layers, widths, heads and positions.
    pub sizes: ArchitectureSizes,
    /// Dropout rates at BERT's sites.
    pub dropout: DropoutRates,
    /// Target WordPiece vocabulary size.
    pub vocab_size: usize,
    /// Longest tokenized input, `[CLS]` and `[SEP]` included.
    pub max_length: usize,
}

/// How the weights are optimised.
#[derive(Debug, Clone, Copy)]
pub struct Optimisation {
    /// Maximum number of passes over the training split.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak AdamW learning rate.
    pub learning_rate: f64,
    /// Fraction of all steps spent warming up.
    pub warmup_fraction: f64,
    /// Decoupled weight decay, applied to weight matrices and embeddings (not biases or LayerNorm).
    pub weight_decay: f64,
    /// Gradients are rescaled so their global L2 norm is at most this.
    pub max_grad_norm: f64,
    /// Stop after this many epochs without a better validation score.
    pub patience: usize,
    /// Which validation score picks the kept epoch and drives early stopping.
    pub select_by: Selection,
    /// Probability of replacing each word piece of a training example with
    /// `[MASK]` at each step: noise on the input that, like dropout, keeps a
    /// small model from memorising its training texts.
    pub token_mask_prob: f64,
    /// Label smoothing of the training loss (0: plain cross-entropy); the
    /// validation loss that selects epochs stays the plain NLL.
    pub label_smoothing: f64,
    /// Weight α of the R-Drop consistency term (0: off). When above 0 each
    /// batch runs twice under independent dropout masks and the loss is the
    /// mean cross-entropy of both plus α times their symmetric KL divergence.
    pub rdrop: f64,
    /// Weight of the auxiliary task's cross-entropy when the data has an
    /// auxiliary label: a second linear head on the pooled vector, used only
    /// while training and then discarded, learns the auxiliary label too.
    pub aux_weight: f64,
    /// Layer-wise learning-rate decay (1: off): the classifier and pooler
    /// train at the learning rate, encoder layer i of L at `d^(L − i)` times
    /// it and the embeddings at `d^(L + 1)` times it, so fine-tuning moves
    /// the lower, more general layers of a pretrained encoder least.
    pub layer_lr_decay: f64,
    /// Per-step decay of an exponential moving average of the weights
    /// (`None`: no averaging). When set, the averaged weights are the ones
    /// measured each epoch, selected, early-stopped on and saved.
    pub ema_decay: Option<f64>,
    /// How teachers' soft targets enter the loss (used only with teachers).
    pub distillation: Distillation,
    /// Seeds splitting, initial weights, batch order and dropout masks.
    pub seed: u64,
}

/// Knowledge distillation: the training loss mixes the labels with the
/// averaged predictions of teacher models on the same texts (Hinton et al.,
/// 2015). Distilling an ensemble of models trained from scratch on the same
/// split is still training from scratch: no pretrained weights and no data
/// beyond the training split.
#[derive(Debug, Clone, Copy)]
pub struct Distillation {
    /// Weight of the soft targets; the labels' cross-entropy gets `1 − weight`.
    pub weight: f64,
    /// Softmax temperature of teachers and student in the soft term, whose
    /// loss is scaled by its square so its gradients keep their size.
    pub temperature: f64,
    /// Masked copies of each training text added to the training set with
    /// the original's label and the teachers' predictions on the copy.
    pub copies: usize,
    /// Probability of replacing each word of a copy by `[MASK]`.
    pub mask_prob: f64,
}

/// The validation score that picks the best epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Selection {
    /// Lowest validation loss (NLL): favours calibrated probabilities.
    Loss,
    /// Highest validation accuracy: favours the label.
    Accuracy,
}

impl Selection {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Selection::Loss => "loss",
            Selection::Accuracy => "accuracy",
        }
    }
}

/// Everything `candor train` needs.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The data.
    pub data: DataSource,
    /// The model directory to write.
    pub out: PathBuf,
    /// Architecture, used when `init_from` is absent.
    pub model: ModelSettings,
    /// Optimiser settings.
    pub optimisation: Optimisation,
    /// A Hugging Face BERT checkpoint to fine-tune instead of starting from scratch.
    pub init_from: Option<PathBuf>,
    /// Trained candor models whose averaged predictions on the training
    /// texts are soft targets (see [`Distillation`]); empty: none.
    pub teachers: Vec<PathBuf>,
    /// Epochs of masked-language-model pre-training on the training texts before fine-tuning (0: none).
    pub pretrain_epochs: usize,
    /// Further files whose texts join the training texts for pre-training
    /// (labels ignored). Texts that also occur in the validation or test split
    /// are left out, so pre-training never sees held-out text.
    pub pretrain_data: Vec<PathBuf>,
    /// MC-dropout samples used for the metrics written beside the model
    /// (and for the MC scores in `calibration.json`).
    pub mc_samples: usize,
    /// The default abstention policy stored with the model.
    pub abstention: Option<AbstentionPolicy>,
    /// Logs instead of a progress bar.
    pub quiet: bool,
    /// The command line, recorded in the model card.
    pub command: String,
}

/// Per-epoch record plus what the run achieved.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// One point per epoch run.
    pub history: Vec<EpochPoint>,
    /// The epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Training examples processed per second (optimisation steps only).
    pub examples_per_second: f64,
    /// The fitted temperature.
    pub temperature: f64,
}

impl TrainSettings {
    /// Refuses settings no training could use, naming the option.
    pub fn check(&self) -> anyhow::Result<()> {
        check_optimisation(&self.optimisation)?;
        check_distillation(&self.optimisation.distillation)?;
        if self.optimisation.distillation.copies > 0 && self.teachers.is_empty() {
            bail!("--distill-copies needs at least one --teacher");
        }
        if !self.pretrain_data.is_empty() && self.pretrain_epochs == 0 {
            bail!("--pretrain-data needs --pretrain-epochs above 0");
        }
        if let Some(policy) = &self.abstention {
            policy
                .check()
                .map_err(|e| anyhow::anyhow!("abstention policy: {e}"))?;
        }
        Ok(())
    }
}

fn check_optimisation(opt: &Optimisation) -> anyhow::Result<()> {
    if let Some(decay) = opt.ema_decay {
        if !(0.0..1.0).contains(&decay) {
            bail!("the EMA decay must be in [0, 1), not {decay}");
        }
    }
    if !(0.0..1.0).contains(&opt.label_smoothing) {
        bail!(
            "label smoothing must be in [0, 1), not {}",
            opt.label_smoothing
        );
    }
    if !(opt.aux_weight >= 0.0 && opt.aux_weight.is_finite()) {
        bail!(
            "the auxiliary weight must be 0 or more, not {}",
            opt.aux_weight
        );
    }
    if !(opt.layer_lr_decay > 0.0 && opt.layer_lr_decay <= 1.0) {
        bail!(
            "the layer-wise learning-rate decay must be in (0, 1], not {}",
            opt.layer_lr_decay
        );
    }
    if !(opt.rdrop >= 0.0 && opt.rdrop.is_finite()) {
        bail!("the R-Drop weight must be 0 or more, not {}", opt.rdrop);
    }
    Ok(())
}

fn check_distillation(distil: &Distillation) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&distil.weight) {
        bail!(
            "the distillation weight must be in [0, 1], not {}",
            distil.weight
        );
    }
    if !(distil.temperature > 0.0 && distil.temperature.is_finite()) {
        bail!(
            "the distillation temperature must be above 0, not {}",
            distil.temperature
        );
    }
    if !(0.0..1.0).contains(&distil.mask_prob) {
        bail!(
            "the distillation mask probability must be in [0, 1), not {}",
            distil.mask_prob
        );
    }
    Ok(())
}
