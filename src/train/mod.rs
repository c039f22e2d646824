//! Offline training: data → tokenizer → BERT with dropout → AdamW with
//! warm-up/decay and clipping → early stopping on validation loss →
//! temperature scaling → a model directory with metrics, pictures and a card.

pub mod artifacts;
mod distill;
pub mod ema;
mod init;
pub mod loss;
pub mod optimizer;
mod prepare;
pub mod pretrain;
mod run;
pub mod schedule;
mod settings;
pub mod temperature;

pub use init::initial_parameters;
pub use prepare::{fold_in, length_bucketed_batches, load_splits, EncodedSet, FoldedIn};
pub use run::Fitted;
pub use settings::{
    DataSource, Distillation, ModelSettings, Optimisation, Selection, TrainOutcome, TrainSettings,
};

use distill::teacher_probabilities;
use init::{prepare_model, tensors_of};
use prepare::{check_labels_known, masked_copies, pretraining_texts};
use run::{AuxHead, Run};

use std::path::Path;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::data::{self, Example, Splits};
use crate::model::dir::{CONFIG_FILE, METRICS_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::model::{self, BertClassifier, Kernels, ModelDir, TextEncoder};

/// Trains a classifier and writes its model directory.
pub fn train(settings: &TrainSettings) -> anyhow::Result<TrainOutcome> {
    settings.check()?;
    let opt = settings.optimisation;
    let splits = load_splits(&settings.data, opt.seed)?;
    let labels = checked_labels(settings, &splits)?;
    let device = Device::Cpu;
    let (encoder, config, initial) = prepare_model(settings, &labels, &splits.train, &device)?;
    let varmap = initial_parameters(&config, initial, opt.seed, &device)?;
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let training_net = BertClassifier::load(vb.clone(), &config, Kernels::Differentiable)?;
    let eval_net = BertClassifier::load(vb, &config, Kernels::Fast)?;

    let mut train_set = EncodedSet::new(&encoder, &splits.train, &labels)?;
    let aux_head = auxiliary_head(settings, &mut train_set, &splits.train, &config, &device)?;
    if !settings.teachers.is_empty() {
        add_teachers(settings, &mut train_set, &encoder, &splits.train, &labels)?;
    }
    let val_set = EncodedSet::new(&encoder, &splits.val, &labels)?;
    if settings.pretrain_epochs > 0 {
        let parts = (&training_net, &varmap, &config, &encoder);
        pretrain_first(settings, parts, &train_set, &splits)?;
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
    write_model(&settings.out, &encoder, &varmap, &config)?;
    artifacts::finish(&settings.out, settings, &splits, fitted)
}

/// The training split's labels, which every other split must use, and a
/// calibration split when an abstention policy needs one.
fn checked_labels(settings: &TrainSettings, splits: &Splits) -> anyhow::Result<Vec<String>> {
    if settings.abstention.is_some() && splits.calibration.is_empty() {
        bail!("an abstention policy needs a calibration split: give a --calibration-fraction above 0 or a --calibration file");
    }
    let labels = data::label_names(&splits.train)
        .with_context(|| format!("training data from {}", settings.data.train.display()))?;
    check_labels_known(&labels, &splits.val, "validation")?;
    check_labels_known(&labels, &splits.calibration, "calibration")?;
    check_labels_known(&labels, &splits.test, "test")?;
    Ok(labels)
}

/// The auxiliary task's head, when `--aux-label-field` names one, with its
/// targets attached to the training set.
fn auxiliary_head(
    settings: &TrainSettings,
    train_set: &mut EncodedSet,
    train: &[Example],
    config: &model::BertConfig,
    device: &Device,
) -> anyhow::Result<Option<AuxHead>> {
    let Some(field) = &settings.data.aux_label_field else {
        return Ok(None);
    };
    let aux_labels = train_set.attach_aux_labels(train);
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
    let seed = settings.optimisation.seed;
    Ok(Some(AuxHead::new(config, aux_labels.len(), seed, device)?))
}

/// The teachers' soft targets for the training texts and their masked
/// copies, which join the training set.
fn add_teachers(
    settings: &TrainSettings,
    train_set: &mut EncodedSet,
    encoder: &TextEncoder,
    train: &[Example],
    labels: &[String],
) -> anyhow::Result<()> {
    let (distil, seed) = (
        settings.optimisation.distillation,
        settings.optimisation.seed,
    );
    // Masked copies widen what the teachers pass on: on the training
    // texts themselves they are nearly certain, on the copies less so.
    let copies = masked_copies(train, distil.copies, distil.mask_prob, seed);
    let taught: Vec<Example> = train.iter().chain(&copies).cloned().collect();
    train_set.soft_targets =
        teacher_probabilities(&settings.teachers, &taught, labels, distil.temperature)?;
    let copied = EncodedSet::new(encoder, &copies, labels)?;
    train_set.rows.extend(copied.rows);
    train_set.targets.extend(copied.targets);
    if !train_set.aux_targets.is_empty() {
        let originals = train_set.aux_targets.clone();
        for i in 0..copies.len() {
            train_set.aux_targets.push(originals[i / distil.copies]);
        }
    }
    Ok(())
}

/// Masked-language-model pre-training on the training texts (and
/// `--pretrain-data`) before the classifier is trained.
fn pretrain_first(
    settings: &TrainSettings,
    (net, varmap, config, encoder): (
        &BertClassifier,
        &candle_nn::VarMap,
        &model::BertConfig,
        &TextEncoder,
    ),
    train_set: &EncodedSet,
    splits: &Splits,
) -> anyhow::Result<()> {
    let opt = settings.optimisation;
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
    let mut rows = train_set.rows.clone();
    rows.extend(encoder.encode_all(&pretraining_texts(settings, splits)?)?);
    pretrain::pretrain(net, varmap, config, &rows, pretraining)?;
    Ok(())
}

/// Writes the tokenizer, weights and config into `out`.
fn write_model(
    out: &Path,
    encoder: &TextEncoder,
    varmap: &candle_nn::VarMap,
    config: &model::BertConfig,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    encoder.save(&ModelDir::new(out).tokenizer())?;
    model::write_weights(out, &tensors_of(varmap)?)?;
    model::write_config(out, config)?;
    Ok(())
}

/// Paths of the model directory's files, for messages.
pub fn describe(dir: &Path) -> String {
    format!(
        "{} ({CONFIG_FILE}, {WEIGHTS_FILE}, {TOKENIZER_FILE}, {METRICS_FILE})",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::run::layer_lr_scale;
    use super::*;
    use crate::data::Splits;

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
