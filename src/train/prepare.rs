//! Preparing the data: splits, extra examples folded in, masked copies,
//! pre-training texts, tokenized sets and length-bucketed batches.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::*;
use crate::data::{self, Example, SplitFractions, Splits};
use crate::model::TextEncoder;
use crate::rng::{mix, SeededRng, Stream};

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

/// `copies` versions of each example in which every whitespace-separated
/// word is replaced by `[MASK]` with probability `p`, example by example
/// (all copies of the first example, then of the second, ...).
pub(super) fn masked_copies(
    examples: &[Example],
    copies: usize,
    p: f64,
    seed: u64,
) -> Vec<Example> {
    let mut out = Vec::with_capacity(examples.len() * copies);
    for (i, example) in examples.iter().enumerate() {
        for k in 0..copies {
            let mut rng =
                SeededRng::new(mix(Stream::MaskedCopies.of(seed), (i * copies + k) as u64));
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

/// The texts of `--pretrain-data` that are neither training texts (already
/// pre-trained on) nor validation or test texts (which must stay unseen),
/// each once, in file order.
pub(super) fn pretraining_texts(
    settings: &TrainSettings,
    splits: &Splits,
) -> anyhow::Result<Vec<String>> {
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

pub(super) fn check_labels_known(
    labels: &[String],
    examples: &[Example],
    split: &str,
) -> anyhow::Result<()> {
    if let Some(e) = examples.iter().find(|e| !labels.contains(&e.label)) {
        bail!(
            "the {split} split has label '{}', which the training split lacks (labels: {})",
            e.label,
            labels.join(", ")
        );
    }
    Ok(())
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
    pub(super) fn attach_aux_labels(&mut self, examples: &[Example]) -> Vec<String> {
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

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Replaces each word piece between `[CLS]` and `[SEP]` by `mask` with probability `p`.
pub(super) fn mask_tokens(row: &[u32], mask: u32, p: f64, key: u64) -> Vec<u32> {
    let mut rng = SeededRng::new(Stream::TokenMask.of(key));
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
