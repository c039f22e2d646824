//! Offline training: data → tokenizer → BERT with dropout → AdamW with
//! warm-up/decay and clipping → early stopping on validation loss →
//! temperature scaling → a model directory with metrics, pictures and a card.

pub mod artifacts;
pub mod ema;
pub mod loss;
pub mod optimizer;
pub mod pretrain;
pub mod schedule;
pub mod temperature;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};

use crate::charts::EpochPoint;
use crate::data::{self, Example, FieldNames, SplitFractions, Splits};
use crate::model::{
    self, ArchitectureSizes, BertClassifier, BertConfig, DropoutMode, DropoutRates, Kernels,
    TextEncoder, TokenBatch,
};
use crate::rng::{mix, SeededRng};
use crate::uncertainty::calibration::AbstentionPolicy;
use ema::Ema;
use optimizer::{AdamW, AdamWSettings};
use schedule::LinearSchedule;

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
    fn describe(self) -> &'static str {
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

/// Reads and splits the data as the settings say.
pub fn load_splits(source: &DataSource, seed: u64) -> anyhow::Result<Splits> {
    let aux = source.aux_label_field.as_deref();
    let main = data::read_examples_with_aux(&source.train, &source.fields, aux)?;
    let read = |file: &Option<PathBuf>| -> anyhow::Result<Option<Vec<Example>>> {
        Ok(match file {
            Some(path) => Some(data::read_examples(path, &source.fields)?),
            None => None,
        })
    };
    let (val, calibration, test) = (
        read(&source.val)?,
        read(&source.calibration)?,
        read(&source.test)?,
    );
    // A split given as a file takes nothing from the main file.
    let fraction = |file: &Option<Vec<Example>>, f: f64| if file.is_some() { 0.0 } else { f };
    let fractions = SplitFractions {
        val: fraction(&val, source.split.val),
        calibration: fraction(&calibration, source.split.calibration),
        test: fraction(&test, source.split.test),
    };
    let mut splits = data::split(main, fractions, seed)?;
    splits.val = val.unwrap_or(splits.val);
    splits.calibration = calibration.unwrap_or(splits.calibration);
    splits.test = test.unwrap_or(splits.test);
    for extra in &source.extra {
        let added = fold_in(
            &mut splits,
            data::read_examples_with_aux(extra, &source.fields, aux)?,
        );
        eprintln!(
            "{}: {} examples added, {} relabelled training examples, {} skipped because the text is held out for validation or test",
            extra.display(),
            added.added,
            added.relabelled,
            added.held_out
        );
    }
    if splits.val.is_empty() {
        bail!("the validation split is empty: give more data, a larger --val-fraction or a --val file");
    }
    Ok(splits)
}

/// What folding extra examples into the training split did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldedIn {
    /// New training examples.
    pub added: usize,
    /// Training examples whose label an extra example replaced.
    pub relabelled: usize,
    /// Extra examples dropped because their text is in the validation or test split.
    pub held_out: usize,
}

/// Adds extra labelled examples (such as exported corrections) to the
/// training split. A correction of a text already in the training split
/// replaces its label rather than adding a contradicting copy, and a text
/// held out for validation or test is never trained on, so the held-out
/// figures stay honest.
pub fn fold_in(splits: &mut Splits, extra: Vec<Example>) -> FoldedIn {
    let held_out: std::collections::HashSet<&str> = splits
        .val
        .iter()
        .chain(&splits.calibration)
        .chain(&splits.test)
        .map(|e| e.text.as_str())
        .collect();
    let mut outcome = FoldedIn::default();
    let mut keep = Vec::new();
    for example in extra {
        if held_out.contains(example.text.as_str()) {
            outcome.held_out += 1;
        } else {
            keep.push(example);
        }
    }
    let mut by_text: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, e) in splits.train.iter().enumerate() {
        by_text.entry(e.text.clone()).or_default().push(i);
    }
    for example in keep {
        match by_text.get(&example.text) {
            Some(indices) => {
                for &i in indices {
                    if splits.train[i].label != example.label {
                        splits.train[i].label = example.label.clone();
                        outcome.relabelled += 1;
                    }
                }
            }
            None => {
                by_text.insert(example.text.clone(), vec![splits.train.len()]);
                splits.train.push(example);
                outcome.added += 1;
            }
        }
    }
    outcome
}

/// Trains a classifier and writes its model directory.
pub fn train(settings: &TrainSettings) -> anyhow::Result<TrainOutcome> {
    let opt = settings.optimisation;
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
    let distil = opt.distillation;
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
    if distil.copies > 0 && settings.teachers.is_empty() {
        bail!("--distill-copies needs at least one --teacher");
    }
    if !settings.pretrain_data.is_empty() && settings.pretrain_epochs == 0 {
        bail!("--pretrain-data needs --pretrain-epochs above 0");
    }
    if let Some(policy) = &settings.abstention {
        policy
            .check()
            .map_err(|e| anyhow::anyhow!("abstention policy: {e}"))?;
    }
    let splits = load_splits(&settings.data, opt.seed)?;
    if settings.abstention.is_some() && splits.calibration.is_empty() {
        bail!("an abstention policy needs a calibration split: give a --calibration-fraction above 0 or a --calibration file");
    }
    let labels = data::label_names(&splits.train)
        .with_context(|| format!("training data from {}", settings.data.train.display()))?;
    check_labels_known(&labels, &splits.val, "validation")?;
    check_labels_known(&labels, &splits.calibration, "calibration")?;
    check_labels_known(&labels, &splits.test, "test")?;
    let device = Device::Cpu;
    let (encoder, config, initial) = prepare_model(settings, &labels, &splits.train, &device)?;
    let varmap = initial_parameters(&config, initial, opt.seed, &device)?;
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let training_net = BertClassifier::load(vb.clone(), &config, Kernels::Differentiable)?;
    let eval_net = BertClassifier::load(vb, &config, Kernels::Fast)?;

    let mut train_set = EncodedSet::new(&encoder, &splits.train, &labels)?;
    let aux_head = match &settings.data.aux_label_field {
        Some(field) => {
            let aux_labels = train_set.attach_aux_labels(&splits.train);
            if aux_labels.len() < 2 {
                bail!(
                    "the auxiliary label field {field:?} has {} distinct values in the training split; it needs at least 2",
                    aux_labels.len()
                );
            }
            eprintln!(
                "auxiliary task: {} labels of {field:?} on {} of {} training examples",
                aux_labels.len(),
                train_set.aux_targets.iter().flatten().count(),
                train_set.len()
            );
            Some(AuxHead::new(&config, aux_labels.len(), opt.seed, &device)?)
        }
        None => None,
    };
    if !settings.teachers.is_empty() {
        // Masked copies widen what the teachers pass on: on the training
        // texts themselves they are nearly certain, on the copies less so.
        let copies = masked_copies(&splits.train, distil.copies, distil.mask_prob, opt.seed);
        let taught: Vec<Example> = splits.train.iter().chain(&copies).cloned().collect();
        train_set.soft_targets =
            teacher_probabilities(&settings.teachers, &taught, &labels, distil.temperature)?;
        let copied = EncodedSet::new(&encoder, &copies, &labels)?;
        train_set.rows.extend(copied.rows);
        train_set.targets.extend(copied.targets);
        if !train_set.aux_targets.is_empty() {
            let originals = train_set.aux_targets.clone();
            for i in 0..copies.len() {
                train_set.aux_targets.push(originals[i / distil.copies]);
            }
        }
    }
    let val_set = EncodedSet::new(&encoder, &splits.val, &labels)?;
    if settings.pretrain_epochs > 0 {
        let mask_id = encoder
            .mask_id()
            .context("pre-training needs a [MASK] token")?;
        let pretraining = pretrain::PretrainSettings {
            epochs: settings.pretrain_epochs,
            batch_size: opt.batch_size,
            learning_rate: opt.learning_rate,
            seed: opt.seed,
            mask_id,
            pad_id: encoder.pad_id(),
            quiet: settings.quiet,
        };
        let texts = pretraining_texts(settings, &splits)?;
        let rows = if texts.is_empty() {
            train_set.rows.clone()
        } else {
            let mut rows = train_set.rows.clone();
            rows.extend(encoder.encode_all(&texts)?);
            rows
        };
        pretrain::pretrain(&training_net, &varmap, &config, &rows, pretraining)?;
    }
    let mut run = Run::new(
        &varmap,
        &training_net,
        &eval_net,
        &encoder,
        aux_head,
        settings,
    )?;
    let fitted = run.fit(&train_set, &val_set)?;

    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    encoder.save(&settings.out.join(model::TOKENIZER_FILE))?;
    model::write_weights(&settings.out, &tensors_of(&varmap)?)?;
    model::write_config(&settings.out, &config)?;

    let outcome = artifacts::finish(&settings.out, settings, &splits, fitted)?;
    Ok(outcome)
}

/// `copies` versions of each example in which every whitespace-separated
/// word is replaced by `[MASK]` with probability `p`, example by example
/// (all copies of the first example, then of the second, ...).
fn masked_copies(examples: &[Example], copies: usize, p: f64, seed: u64) -> Vec<Example> {
    let mut out = Vec::with_capacity(examples.len() * copies);
    for (i, example) in examples.iter().enumerate() {
        for k in 0..copies {
            let mut rng = SeededRng::new(mix(mix(seed, 0xC0B1), (i * copies + k) as u64));
            let words: Vec<&str> = example
                .text
                .split_whitespace()
                .map(|w| if rng.next_f64() < p { "[MASK]" } else { w })
                .collect();
            out.push(Example {
                text: words.join(" "),
                ..example.clone()
            });
        }
    }
    out
}

/// The teachers' averaged probabilities (at `temperature`) for each of
/// `examples`, in the class order of `labels`. Each teacher reads the texts
/// with its own tokenizer and must know exactly the training labels.
fn teacher_probabilities(
    teachers: &[PathBuf],
    examples: &[Example],
    labels: &[String],
    temperature: f64,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let mut sum = vec![vec![0f32; labels.len()]; texts.len()];
    for dir in teachers {
        let teacher = model::Classifier::load(dir)
            .with_context(|| format!("loading teacher {}", dir.display()))?;
        let mut theirs = teacher.labels.clone();
        theirs.sort();
        let mut ours = labels.to_vec();
        ours.sort();
        if theirs != ours {
            bail!(
                "teacher {} predicts the labels {:?}, the training data has {:?}",
                dir.display(),
                teacher.labels,
                labels
            );
        }
        // Column of each of our classes among the teacher's.
        let columns: Vec<usize> = labels
            .iter()
            .map(|l| teacher.labels.iter().position(|t| t == l).unwrap_or(0))
            .collect();
        let rows = teacher.encoder.encode_all(&texts)?;
        let logits = teacher.logits_for_all(&rows, 64)?;
        for (acc, row) in sum.iter_mut().zip(&logits) {
            let probs = model::softmax(row, temperature);
            for (a, &c) in acc.iter_mut().zip(&columns) {
                *a += probs[c];
            }
        }
        eprintln!(
            "teacher {}: soft targets for {} training texts",
            dir.display(),
            texts.len()
        );
    }
    let n = teachers.len() as f32;
    for row in &mut sum {
        row.iter_mut().for_each(|p| *p /= n);
    }
    Ok(sum)
}

/// The texts of `--pretrain-data` that are neither training texts (already
/// pre-trained on) nor validation or test texts (which must stay unseen),
/// each once, in file order.
fn pretraining_texts(settings: &TrainSettings, splits: &Splits) -> anyhow::Result<Vec<String>> {
    let mut all = Vec::new();
    for path in &settings.pretrain_data {
        all.extend(data::read_texts(path, &settings.data.fields.text)?);
    }
    let mut seen: std::collections::HashSet<&str> = splits
        .train
        .iter()
        .chain(&splits.val)
        .chain(&splits.calibration)
        .chain(&splits.test)
        .map(|e| e.text.as_str())
        .collect();
    let mut texts = Vec::new();
    for text in &all {
        if seen.insert(text.as_str()) {
            texts.push(text.clone());
        }
    }
    if !settings.pretrain_data.is_empty() {
        tracing::info!(
            read = all.len(),
            kept = texts.len(),
            "unlabelled texts added to pre-training"
        );
    }
    Ok(texts)
}

fn check_labels_known(labels: &[String], examples: &[Example], split: &str) -> anyhow::Result<()> {
    if let Some(e) = examples.iter().find(|e| !labels.contains(&e.label)) {
        bail!(
            "the {split} split has label '{}', which the training split lacks (labels: {})",
            e.label,
            labels.join(", ")
        );
    }
    Ok(())
}

/// The tokenizer, configuration and any pretrained weights to start from.
fn prepare_model(
    settings: &TrainSettings,
    labels: &[String],
    train: &[Example],
    device: &Device,
) -> anyhow::Result<(TextEncoder, BertConfig, HashMap<String, Tensor>)> {
    let m = settings.model;
    if let Some(dir) = &settings.init_from {
        let mut config: BertConfig = {
            let path = dir.join(model::CONFIG_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        };
        // A checkpoint fine-tuned on these labels (a compressed model to
        // distil into) keeps its classifier; any other starts a fresh one.
        let same_labels = config.labels().is_ok_and(|l| l == labels);
        config.set_labels(labels);
        config.hidden_dropout_prob = m.dropout.hidden;
        config.attention_probs_dropout_prob = m.dropout.attention;
        config.classifier_dropout = Some(m.dropout.classifier);
        config.candor.max_length = m.max_length.min(config.max_position_embeddings);
        config.candor.temperature = 1.0;
        config.validate()?;
        let encoder =
            TextEncoder::load(&dir.join(model::TOKENIZER_FILE), config.candor.max_length)?;
        let (mut weights, _) = model::read_weights(dir, device)?;
        if !same_labels {
            weights.retain(|name, _| !name.starts_with("classifier."));
        }
        return Ok((encoder, config, weights));
    }
    let texts: Vec<String> = train.iter().map(|e| e.text.clone()).collect();
    let encoder = TextEncoder::train(&texts, m.vocab_size, m.max_length)?;
    let sizes = ArchitectureSizes {
        max_positions: m.sizes.max_positions.max(m.max_length),
        ..m.sizes
    };
    let mut config = BertConfig::new(encoder.vocab_size(), sizes, m.dropout, labels);
    config.candor.max_length = m.max_length;
    config.validate()?;
    Ok((encoder, config, HashMap::new()))
}

/// Creates every parameter: from `initial` where it has the tensor, else
/// BERT's initialisation (normal(0, initializer_range) weights, zero biases,
/// unit LayerNorm scales) from the seeded generator.
pub fn initial_parameters(
    config: &BertConfig,
    mut initial: HashMap<String, Tensor>,
    seed: u64,
    device: &Device,
) -> anyhow::Result<VarMap> {
    let varmap = VarMap::new();
    // Building the network through a VarMap-backed builder registers every parameter.
    BertClassifier::load(
        VarBuilder::from_varmap(&varmap, DType::F32, device),
        config,
        Kernels::Fast,
    )?;
    let mut rng = SeededRng::new(mix(seed, 0x1417));
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut fresh = Vec::new();
    for name in names {
        let var = &vars[name];
        let value = match initial.remove(name.as_str()) {
            Some(t) if t.shape() == var.shape() => t,
            Some(t) => bail!(
                "checkpoint tensor {name} has shape {:?}, the model needs {:?}",
                t.dims(),
                var.dims()
            ),
            None => {
                fresh.push(name.clone());
                fresh_tensor(name, var.dims(), config.initializer_range, &mut rng, device)?
            }
        };
        var.set(&value)?;
    }
    if !initial.is_empty() {
        let mut unused: Vec<_> = initial.keys().cloned().collect();
        unused.sort();
        tracing::warn!(tensors = ?unused, "checkpoint tensors the model does not use");
    }
    tracing::debug!(tensors = ?fresh, "freshly initialised");
    drop(vars);
    Ok(varmap)
}

fn fresh_tensor(
    name: &str,
    dims: &[usize],
    std: f64,
    rng: &mut SeededRng,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if name.ends_with("LayerNorm.weight") {
        return Tensor::ones(dims, DType::F32, device);
    }
    if name.ends_with(".bias") {
        return Tensor::zeros(dims, DType::F32, device);
    }
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Tensor::from_vec(values, dims, device)
}

/// A copy of every parameter, by name.
fn tensors_of(varmap: &VarMap) -> anyhow::Result<HashMap<String, Tensor>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
    let mut out = HashMap::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        out.insert(name.clone(), var.as_tensor().copy()?);
    }
    Ok(out)
}

/// Tokenized examples with their class indices.
pub struct EncodedSet {
    /// Token ids per example.
    pub rows: Vec<Vec<u32>>,
    /// Class index per example.
    pub targets: Vec<u32>,
    /// Auxiliary class index per example, where it has an auxiliary label
    /// (empty unless [`EncodedSet::attach_aux_labels`] ran).
    pub aux_targets: Vec<Option<u32>>,
    /// Teachers' averaged class probabilities per example (empty: no
    /// distillation).
    pub soft_targets: Vec<Vec<f32>>,
    /// The first `originals` rows are the examples the set was made from;
    /// any after them are augmented copies, trained on but not measured.
    pub originals: usize,
}

impl EncodedSet {
    /// Tokenizes `examples` against the label order `labels`.
    pub fn new(
        encoder: &TextEncoder,
        examples: &[Example],
        labels: &[String],
    ) -> anyhow::Result<Self> {
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        let targets = examples
            .iter()
            .map(|e| labels.iter().position(|l| *l == e.label).map(|i| i as u32))
            .collect::<Option<Vec<_>>>()
            .context("an example has a label outside the label set")?;
        Ok(Self {
            rows: encoder.encode_all(&texts)?,
            targets,
            aux_targets: Vec::new(),
            soft_targets: Vec::new(),
            originals: examples.len(),
        })
    }

    /// Indexes the auxiliary labels of `examples` (the ones this set was
    /// encoded from), in sorted order; returns that label list.
    fn attach_aux_labels(&mut self, examples: &[Example]) -> Vec<String> {
        let mut names: Vec<String> = examples
            .iter()
            .filter_map(|e| e.aux_label.clone())
            .collect();
        names.sort();
        names.dedup();
        self.aux_targets = examples
            .iter()
            .map(|e| {
                e.aux_label
                    .as_ref()
                    .and_then(|l| names.binary_search(l).ok())
                    .map(|i| i as u32)
            })
            .collect();
        names
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The best weights seen and the record of the run.
pub struct Fitted {
    /// One point per epoch.
    pub history: Vec<EpochPoint>,
    /// 1-based epoch of the kept weights.
    pub best_epoch: usize,
    /// Optimisation throughput.
    pub examples_per_second: f64,
}

/// The auxiliary task's head: a linear map of the pooled vector to the
/// auxiliary labels. It lives outside the model's parameters, so it is
/// neither averaged nor saved.
struct AuxHead {
    weight: Var,
    bias: Var,
}

impl AuxHead {
    fn new(config: &BertConfig, labels: usize, seed: u64, device: &Device) -> anyhow::Result<Self> {
        let mut rng = SeededRng::new(mix(seed, 0xA0C5));
        let h = config.hidden_size;
        let values: Vec<f32> = (0..labels * h)
            .map(|_| (rng.normal() * config.initializer_range) as f32)
            .collect();
        Ok(Self {
            weight: Var::from_tensor(&Tensor::from_vec(values, (labels, h), device)?)?,
            bias: Var::zeros(labels, DType::F32, device)?,
        })
    }

    /// Mean cross-entropy of the auxiliary labels over the rows of `pooled`
    /// that have one (`None` when none of them has).
    fn loss(&self, pooled: &Tensor, targets: &[Option<u32>]) -> anyhow::Result<Option<Tensor>> {
        let (rows, labels): (Vec<u32>, Vec<u32>) = targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i as u32, t)))
            .unzip();
        if rows.is_empty() {
            return Ok(None);
        }
        let device = pooled.device();
        let x = pooled.index_select(&Tensor::new(rows.as_slice(), device)?, 0)?;
        let logits = x
            .matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?;
        let labels = Tensor::new(labels.as_slice(), device)?;
        Ok(Some(candle_nn::loss::cross_entropy(&logits, &labels)?))
    }
}

/// The learning-rate scale of parameter `name` under layer-wise decay `decay`
/// in a model of `layers` encoder layers (see [`Optimisation::layer_lr_decay`]).
fn layer_lr_scale(name: &str, layers: usize, decay: f64) -> f64 {
    let depth = if name.starts_with("bert.embeddings.") {
        layers + 1
    } else if let Some(rest) = name.strip_prefix("bert.encoder.layer.") {
        let index: usize = rest
            .split('.')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        layers.saturating_sub(index)
    } else {
        0
    };
    decay.powi(depth as i32)
}

/// One training run's moving parts.
struct Run<'a> {
    varmap: &'a VarMap,
    training_net: &'a BertClassifier,
    eval_net: &'a BertClassifier,
    pad_id: u32,
    mask_id: Option<u32>,
    settings: &'a TrainSettings,
    optimizer: AdamW,
    ema: Option<Ema>,
    aux_head: Option<AuxHead>,
    device: Device,
}

impl<'a> Run<'a> {
    fn new(
        varmap: &'a VarMap,
        training_net: &'a BertClassifier,
        eval_net: &'a BertClassifier,
        encoder: &TextEncoder,
        aux_head: Option<AuxHead>,
        settings: &'a TrainSettings,
    ) -> anyhow::Result<Self> {
        let opt = settings.optimisation;
        let named: Vec<(String, Var)> = {
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
            let mut named: Vec<(String, Var)> =
                vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named
        };
        // As in BERT, biases and LayerNorm parameters take no weight decay.
        let layers = training_net.layer_count();
        let mut params: Vec<(Var, bool, f64)> = named
            .iter()
            .map(|(name, var)| {
                (
                    var.clone(),
                    !name.ends_with(".bias") && !name.contains("LayerNorm"),
                    layer_lr_scale(name, layers, opt.layer_lr_decay),
                )
            })
            .collect();
        if let Some(head) = &aux_head {
            params.push((head.weight.clone(), true, 1.0));
            params.push((head.bias.clone(), false, 1.0));
        }
        let ema = match opt.ema_decay {
            Some(decay) => Some(Ema::new(named, decay)?),
            None => None,
        };
        let settings_adamw = AdamWSettings {
            weight_decay: opt.weight_decay,
            ..AdamWSettings::default()
        };
        Ok(Self {
            varmap,
            training_net,
            eval_net,
            pad_id: encoder.pad_id(),
            mask_id: encoder.mask_id(),
            settings,
            optimizer: AdamW::with_scales(params, settings_adamw),
            ema,
            aux_head,
            device: Device::Cpu,
        })
    }

    fn fit(&mut self, train: &EncodedSet, val: &EncodedSet) -> anyhow::Result<Fitted> {
        let opt = self.settings.optimisation;
        let steps_per_epoch = train.len().div_ceil(opt.batch_size);
        let total_steps = steps_per_epoch * opt.epochs;
        let schedule = LinearSchedule {
            peak: opt.learning_rate,
            warmup_steps: (total_steps as f64 * opt.warmup_fraction).round() as usize,
            total_steps,
        };
        let mut rng = SeededRng::new(mix(opt.seed, 0xBA7C));
        let mut history = Vec::new();
        let (mut best_loss, mut best_accuracy, mut best_epoch, mut best) =
            (f64::INFINITY, -1.0, 0, None);
        let (mut step, mut examples, mut seconds) = (0usize, 0usize, 0f64);
        for epoch in 1..=opt.epochs {
            let bar = self.progress_bar(epoch, steps_per_epoch);
            let started = Instant::now();
            let batches = length_bucketed_batches(&train.rows, opt.batch_size, &mut rng);
            let mut running = 0f64;
            for (i, batch) in batches.iter().enumerate() {
                let lr = schedule.rate(step);
                let loss = self.step(train, batch, lr, mix(opt.seed, step as u64))?;
                running += loss;
                step += 1;
                examples += batch.len();
                bar.inc(1);
                bar.set_message(format!("loss {:.4} lr {lr:.2e}", running / (i + 1) as f64));
            }
            seconds += started.elapsed().as_secs_f64();
            bar.finish_and_clear();
            // With averaging, the averaged weights are measured (and kept when
            // best); the optimiser's own weights come back for the next epoch.
            let averaged = match &self.ema {
                Some(ema) => Some(ema.averaged()?),
                None => None,
            };
            let current = match &averaged {
                Some(avg) => {
                    let current = tensors_of(self.varmap)?;
                    self.restore(avg)?;
                    Some(current)
                }
                None => None,
            };
            let (train_loss, train_accuracy) = self.measure(train)?;
            let (val_loss, val_accuracy) = self.measure(val)?;
            let point = EpochPoint {
                epoch,
                train_loss,
                val_loss,
                train_accuracy,
                val_accuracy,
            };
            let improved = match opt.select_by {
                Selection::Loss => val_loss < best_loss - 1e-4,
                Selection::Accuracy => val_accuracy > best_accuracy,
            };
            self.report_epoch(&point, examples as f64 / seconds, improved);
            history.push(point);
            if improved {
                (best_loss, best_accuracy, best_epoch) = (val_loss, val_accuracy, epoch);
                best = Some(tensors_of(self.varmap)?);
            }
            if let Some(current) = &current {
                self.restore(current)?;
            }
            if !improved && epoch - best_epoch >= opt.patience {
                tracing::info!(
                    epoch,
                    best_epoch,
                    "early stopping: the validation {} stopped improving",
                    opt.select_by.describe()
                );
                break;
            }
        }
        if let Some(best) = best {
            self.restore(&best)?;
        }
        Ok(Fitted {
            history,
            best_epoch,
            examples_per_second: examples as f64 / seconds.max(1e-9),
        })
    }

    /// One optimisation step; returns the batch loss.
    fn step(
        &mut self,
        set: &EncodedSet,
        batch: &[usize],
        lr: f64,
        step_key: u64,
    ) -> anyhow::Result<f64> {
        let keys: Vec<u64> = batch.iter().map(|&i| mix(step_key, i as u64)).collect();
        let p = self.settings.optimisation.token_mask_prob;
        let masked: Vec<Vec<u32>> = batch
            .iter()
            .zip(&keys)
            .map(|(&i, &key)| match self.mask_id {
                Some(mask) if p > 0.0 => mask_tokens(&set.rows[i], mask, p, key),
                _ => set.rows[i].clone(),
            })
            .collect();
        let opt = self.settings.optimisation;
        let targets: Vec<u32> = batch.iter().map(|&i| set.targets[i]).collect();
        let targets = Tensor::new(targets.as_slice(), &self.device)?;
        // R-Drop runs the same (masked) inputs twice in one forward pass, the
        // second copy under dropout masks of its own keys.
        let mut rows: Vec<&[u32]> = masked.iter().map(Vec::as_slice).collect();
        let mut all_keys = keys.clone();
        if opt.rdrop > 0.0 {
            rows.extend(masked.iter().map(Vec::as_slice));
            all_keys.extend(keys.iter().map(|&k| mix(k, 0x2D)));
        }
        let tokens = TokenBatch::from_rows(&rows, self.pad_id, &self.device)?;
        let mode = DropoutMode::On(&all_keys);
        let pooled = self.training_net.pooled(&tokens, mode)?;
        let logits = self.training_net.classify(&pooled, mode)?;
        let n = batch.len();
        let soft = if set.soft_targets.is_empty() {
            None
        } else {
            let flat: Vec<f32> = batch
                .iter()
                .flat_map(|&i| set.soft_targets[i].iter().copied())
                .collect();
            let classes = set.soft_targets[batch[0]].len();
            Some(Tensor::from_vec(flat, (n, classes), &self.device)?)
        };
        // The loss of one pass: the labels' cross-entropy, mixed with the
        // teachers' soft targets when distilling.
        let pass_loss = |logits: &Tensor| -> anyhow::Result<Tensor> {
            let ce = loss::smoothed_cross_entropy(logits, &targets, opt.label_smoothing)?;
            Ok(match &soft {
                Some(soft) => {
                    let d = opt.distillation;
                    let distilled = loss::soft_cross_entropy(logits, soft, d.temperature)?;
                    (ce.affine(1.0 - d.weight, 0.0)? + distilled.affine(d.weight, 0.0)?)?
                }
                None => ce,
            })
        };
        let first = logits.narrow(0, 0, n)?;
        let mut loss = pass_loss(&first)?;
        if opt.rdrop > 0.0 {
            let second = logits.narrow(0, n, n)?;
            let ce = pass_loss(&second)?;
            let agreement = loss::symmetric_kl(&first, &second)?.affine(opt.rdrop, 0.0)?;
            loss = ((loss + ce)?.affine(0.5, 0.0)? + agreement)?;
        }
        if let Some(aux) = self.aux_loss(set, batch, &pooled.narrow(0, 0, n)?)? {
            loss = (loss + aux.affine(opt.aux_weight, 0.0)?)?;
        }
        let grads = loss.backward()?;
        self.optimizer.step(&grads, lr, opt.max_grad_norm)?;
        if let Some(ema) = &mut self.ema {
            ema.update()?;
        }
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    /// The auxiliary task's loss on a batch given its pooled vectors.
    fn aux_loss(
        &self,
        set: &EncodedSet,
        batch: &[usize],
        pooled: &Tensor,
    ) -> anyhow::Result<Option<Tensor>> {
        let Some(head) = &self.aux_head else {
            return Ok(None);
        };
        let targets: Vec<Option<u32>> = batch.iter().map(|&i| set.aux_targets[i]).collect();
        head.loss(pooled, &targets)
    }

    /// Loss and accuracy of the deterministic model (dropout off) on a set.
    fn measure(&self, set: &EncodedSet) -> anyhow::Result<(f64, f64)> {
        let (mut loss, mut correct) = (0f64, 0usize);
        let order = model::by_length(&set.rows[..set.originals]);
        for chunk in order.chunks(128) {
            let rows: Vec<&[u32]> = chunk.iter().map(|&i| set.rows[i].as_slice()).collect();
            let tokens = TokenBatch::from_rows(&rows, self.pad_id, &self.device)?;
            let logits = self.eval_net.forward(&tokens, DropoutMode::Off)?.detach();
            let targets: Vec<u32> = chunk.iter().map(|&i| set.targets[i]).collect();
            let targets_t = Tensor::new(targets.as_slice(), &self.device)?;
            let batch_loss =
                candle_nn::loss::cross_entropy(&logits, &targets_t)?.to_scalar::<f32>()?;
            loss += batch_loss as f64 * chunk.len() as f64;
            let predicted = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += predicted
                .iter()
                .zip(&targets)
                .filter(|(p, t)| p == t)
                .count();
        }
        let n = set.originals.max(1) as f64;
        Ok((loss / n, correct as f64 / n))
    }

    fn restore(&self, best: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        let vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
        for (name, var) in vars.iter() {
            if let Some(t) = best.get(name) {
                var.set(t)?;
            }
        }
        Ok(())
    }

    fn progress_bar(&self, epoch: usize, steps: usize) -> ProgressBar {
        if self.settings.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(steps as u64);
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{epoch}/{}", self.settings.optimisation.epochs));
        bar
    }

    fn report_epoch(&self, p: &EpochPoint, examples_per_second: f64, improved: bool) {
        let line = format!(
            "epoch {:>2}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% | {:.0} examples/s{}",
            p.epoch,
            p.train_loss,
            p.train_accuracy * 100.0,
            p.val_loss,
            p.val_accuracy * 100.0,
            examples_per_second,
            if improved { " (best so far)" } else { "" }
        );
        if self.settings.quiet {
            tracing::info!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// Replaces each word piece between `[CLS]` and `[SEP]` by `mask` with probability `p`.
fn mask_tokens(row: &[u32], mask: u32, p: f64, key: u64) -> Vec<u32> {
    let mut rng = SeededRng::new(mix(key, 0x3A5C));
    let last = row.len().saturating_sub(1);
    row.iter()
        .enumerate()
        .map(|(i, &t)| {
            if i > 0 && i < last && rng.next_f64() < p {
                mask
            } else {
                t
            }
        })
        .collect()
}

/// Batches of similar length: shuffle, sort pools of 50 batches by length,
/// cut into batches, shuffle the batch order. Padding stays small while every
/// epoch still sees a different order.
pub fn length_bucketed_batches(
    rows: &[Vec<u32>],
    batch_size: usize,
    rng: &mut SeededRng,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    rng.shuffle(&mut order);
    let mut batches = Vec::new();
    for pool in order.chunks(batch_size * 50) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| rows[i].len());
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

/// Paths of the model directory's files, for messages.
pub fn describe(dir: &Path) -> String {
    format!(
        "{} (config.json, model.safetensors, tokenizer.json, metrics.json)",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(text: &str, label: &str) -> Example {
        Example {
            text: text.into(),
            label: label.into(),
            aux_label: None,
        }
    }

    #[test]
    fn masked_copies_keep_labels_and_word_count_mask_about_p_and_repeat_per_seed() {
        let text = "one two three four five six seven eight nine ten";
        let examples = vec![example(text, "a"), example("short text", "b")];
        let copies = masked_copies(&examples, 50, 0.3, 7);
        assert_eq!(copies.len(), 100);
        assert!(copies[..50].iter().all(|c| c.label == "a"));
        assert!(copies[50..].iter().all(|c| c.label == "b"));
        let words: Vec<&str> = copies[..50]
            .iter()
            .flat_map(|c| c.text.split(' '))
            .collect();
        assert_eq!(words.len(), 500);
        let masked = words.iter().filter(|w| **w == "[MASK]").count() as f64 / 500.0;
        assert!((0.22..0.38).contains(&masked), "masked share {masked}");
        assert_eq!(copies, masked_copies(&examples, 50, 0.3, 7));
        assert_ne!(copies, masked_copies(&examples, 50, 0.3, 8));
    }

    #[test]
    fn layer_wise_decay_scales_lower_layers_more_and_leaves_the_head_alone() {
        let scale = |name| layer_lr_scale(name, 2, 0.5);
        assert_eq!(scale("classifier.weight"), 1.0);
        assert_eq!(scale("bert.pooler.dense.weight"), 1.0);
        assert_eq!(scale("bert.encoder.layer.1.output.dense.weight"), 0.5);
        assert_eq!(
            scale("bert.encoder.layer.0.attention.self.query.bias"),
            0.25
        );
        assert_eq!(scale("bert.embeddings.word_embeddings.weight"), 0.125);
        assert_eq!(
            layer_lr_scale("bert.embeddings.word_embeddings.weight", 2, 1.0),
            1.0
        );
    }

    #[test]
    fn corrections_relabel_training_texts_add_new_ones_and_never_touch_held_out_ones() {
        let mut splits = Splits {
            train: vec![example("a", "pos"), example("b", "neg")],
            val: vec![example("v", "pos")],
            calibration: vec![example("c", "pos")],
            test: vec![example("t", "neg")],
        };
        let outcome = fold_in(
            &mut splits,
            vec![
                example("a", "neg"),
                example("b", "neg"),
                example("new", "pos"),
                example("new", "pos"),
                example("v", "neg"),
                example("c", "neg"),
                example("t", "pos"),
            ],
        );
        assert_eq!(
            outcome,
            FoldedIn {
                added: 1,
                relabelled: 1,
                held_out: 3
            }
        );
        let train: Vec<(&str, &str)> = splits
            .train
            .iter()
            .map(|e| (e.text.as_str(), e.label.as_str()))
            .collect();
        assert_eq!(train, [("a", "neg"), ("b", "neg"), ("new", "pos")]);
        assert_eq!(splits.val[0].label, "pos");
        assert_eq!(splits.test[0].label, "neg");
    }
}
