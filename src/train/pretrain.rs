//! Masked-language-model pre-training on the training texts and, optionally, more unlabelled text.
//!
//! A transformer trained from scratch on a few thousand labelled sentences
//! must learn what words mean and how they combine from the labels alone, and
//! memorises instead. Before fine-tuning, candor can first train the encoder
//! as BERT was pre-trained: hide 15% of the word pieces (80% become `[MASK]`,
//! 10% a random piece, 10% stay) and predict them, on the training split's own
//! texts, plus any unlabelled texts given with `--pretrain-data`. The labels
//! are not used, and validation and test texts are never seen (texts of
//! `--pretrain-data` that also occur in those splits are dropped).
//! The MLM head (transform + output bias, decoder tied to the word embeddings)
//! is thrown away afterwards: the model directory stays a plain
//! `BertForSequenceClassification`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use indicatif::ProgressBar;

use super::length_bucketed_batches;
use super::optimizer::{AdamW, AdamWSettings};
use super::schedule::LinearSchedule;
use crate::model::{BertClassifier, BertConfig, DropoutMode, TokenBatch};
use crate::rng::{mix, SeededRng, Stream};

/// How pre-training runs.
#[derive(Debug, Clone, Copy)]
pub struct PretrainSettings {
    /// Passes over the training texts.
    pub epochs: usize,
    /// Texts per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Seed of masking, batch order and dropout.
    pub seed: u64,
    /// Id of `[MASK]`.
    pub mask_id: u32,
    /// Id of `[PAD]`.
    pub pad_id: u32,
    /// Logs instead of a progress bar.
    pub quiet: bool,
}

/// Ids below this are the special tokens `[PAD] [UNK] [CLS] [SEP] [MASK]`, never predicted.
const FIRST_WORD_ID: u32 = 5;

/// The prediction head: dense + GELU + LayerNorm, then scores against every word embedding.
struct MlmHead {
    dense_w: Var,
    dense_b: Var,
    norm_w: Var,
    norm_b: Var,
    bias: Var,
    eps: f64,
}

impl MlmHead {
    fn new(config: &BertConfig, rng: &mut SeededRng, device: &Device) -> candle_core::Result<Self> {
        let h = config.hidden_size;
        let std = config.initializer_range;
        let values: Vec<f32> = (0..h * h).map(|_| (rng.normal() * std) as f32).collect();
        Ok(Self {
            dense_w: Var::from_tensor(&Tensor::from_vec(values, (h, h), device)?)?,
            dense_b: Var::zeros(h, DType::F32, device)?,
            norm_w: Var::ones(h, DType::F32, device)?,
            norm_b: Var::zeros(h, DType::F32, device)?,
            bias: Var::zeros(config.vocab_size, DType::F32, device)?,
            eps: config.layer_norm_eps,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![
            self.dense_w.clone(),
            self.dense_b.clone(),
            self.norm_w.clone(),
            self.norm_b.clone(),
            self.bias.clone(),
        ]
    }

    /// Vocabulary scores `(positions, vocab)` for hidden states `(positions, hidden)`.
    fn forward(&self, hidden: &Tensor, word_embeddings: &Tensor) -> candle_core::Result<Tensor> {
        let x = hidden
            .matmul(&self.dense_w.t()?)?
            .broadcast_add(&self.dense_b)?;
        let x = crate::model::gelu::gelu_erf(&x)?;
        let x = crate::model::layer_norm::layer_norm(&x, &self.norm_w, &self.norm_b, self.eps)?;
        x.matmul(&word_embeddings.t()?)?.broadcast_add(&self.bias)
    }
}

/// One row with some pieces hidden.
struct Corrupted {
    /// The ids the encoder sees.
    ids: Vec<u32>,
    /// (position, original id) of every hidden piece.
    targets: Vec<(usize, u32)>,
}

/// Hides about 15% of a row's word pieces, BERT-style.
fn corrupt(row: &[u32], mask_id: u32, vocab: u32, key: u64) -> Corrupted {
    let mut rng = SeededRng::new(Stream::PretrainMask.of(key));
    let mut ids = row.to_vec();
    let candidates: Vec<usize> = (1..row.len().saturating_sub(1))
        .filter(|&i| row[i] >= FIRST_WORD_ID)
        .collect();
    let mut chosen: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|_| rng.next_f64() < 0.15)
        .collect();
    if chosen.is_empty() && !candidates.is_empty() {
        chosen.push(candidates[rng.below(candidates.len())]);
    }
    let targets = chosen.iter().map(|&i| (i, row[i])).collect();
    for &i in &chosen {
        let roll = rng.next_f64();
        if roll < 0.8 {
            ids[i] = mask_id;
        } else if roll < 0.9 {
            ids[i] = FIRST_WORD_ID + rng.below((vocab - FIRST_WORD_ID) as usize) as u32;
        }
    }
    Corrupted { ids, targets }
}

/// Pre-trains the encoder of `net` (whose parameters live in `varmap`) on `rows`.
/// Returns the mean MLM loss of each epoch.
pub fn pretrain(
    net: &BertClassifier,
    varmap: &VarMap,
    config: &BertConfig,
    rows: &[Vec<u32>],
    settings: PretrainSettings,
) -> anyhow::Result<Vec<f64>> {
    let device = Device::Cpu;
    let mut rng = SeededRng::new(Stream::PretrainBatches.of(settings.seed));
    let head = MlmHead::new(config, &mut rng, &device)?;
    let mut params = encoder_parameters(varmap)?;
    params.extend(head.vars().into_iter().map(|v| (v, false)));
    let steps_per_epoch = rows.len().div_ceil(settings.batch_size.max(1));
    let total = steps_per_epoch * settings.epochs;
    let mut run = Pretraining {
        net,
        head,
        optimizer: AdamW::new(params, AdamWSettings::default()),
        schedule: LinearSchedule {
            peak: settings.learning_rate,
            warmup_steps: total / 10,
            total_steps: total,
        },
        settings,
        vocab: config.vocab_size as u32,
        device,
        step: 0,
    };
    let mut losses = Vec::new();
    for epoch in 1..=settings.epochs {
        let started = Instant::now();
        let total_loss = run.epoch(rows, steps_per_epoch, &mut rng)?;
        let mean = total_loss / steps_per_epoch.max(1) as f64;
        let texts_per_second = rows.len() as f64 / started.elapsed().as_secs_f64();
        report_epoch(epoch, mean, texts_per_second, settings.quiet);
        losses.push(mean);
    }
    Ok(losses)
}

/// The encoder's parameters in name order (the pooler is not pre-trained),
/// each with whether it takes weight decay (not biases nor LayerNorms).
fn encoder_parameters(varmap: &VarMap) -> anyhow::Result<Vec<(Var, bool)>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
    let mut named: Vec<(&String, &Var)> = vars
        .iter()
        .filter(|(n, _)| n.starts_with("bert.") && !n.contains("pooler"))
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    Ok(named
        .into_iter()
        .map(|(n, v)| (v.clone(), !n.ends_with(".bias") && !n.contains("LayerNorm")))
        .collect())
}

/// Prints (or, quiet, logs) one epoch's loss and speed.
fn report_epoch(epoch: usize, mean_loss: f64, texts_per_second: f64, quiet: bool) {
    let line = format!(
        "pre-training epoch {epoch:>2}: masked-LM loss {mean_loss:.4} | {texts_per_second:.0} texts/s"
    );
    if quiet {
        tracing::info!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// Pre-training's moving parts.
struct Pretraining<'a> {
    /// The network whose encoder learns.
    net: &'a BertClassifier,
    /// The prediction head, thrown away afterwards.
    head: MlmHead,
    /// Over the encoder's and the head's parameters.
    optimizer: AdamW,
    /// Warm-up over the first tenth of the steps, then linear decay.
    schedule: LinearSchedule,
    /// Seed, batch size, the special ids and quietness.
    settings: PretrainSettings,
    /// Vocabulary size (random replacements are drawn below it).
    vocab: u32,
    /// Where the tensors live (the CPU).
    device: Device,
    /// Steps taken so far, over all epochs.
    step: usize,
}

/// One batch with some pieces hidden, laid out for the loss.
struct MaskedBatch {
    /// One dropout key per row.
    keys: Vec<u64>,
    /// The rows as the encoder sees them.
    corrupted: Vec<Corrupted>,
    /// The longest row's length.
    width: usize,
    /// Index of every hidden piece in the flattened `(rows × width)` positions.
    positions: Vec<u32>,
    /// The original id of each hidden piece.
    targets: Vec<u32>,
}

impl Pretraining<'_> {
    /// One pass over `rows` in length-bucketed batches; returns the sum of the batch losses.
    fn epoch(
        &mut self,
        rows: &[Vec<u32>],
        steps: usize,
        rng: &mut SeededRng,
    ) -> anyhow::Result<f64> {
        let bar = if self.settings.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(steps as u64)
        };
        let mut total_loss = 0f64;
        for batch in length_bucketed_batches(rows, self.settings.batch_size, rng) {
            let masked = self.mask(rows, &batch);
            if masked.positions.is_empty() {
                continue;
            }
            let loss = self.loss(&masked)?;
            self.optimizer
                .step(&loss.backward()?, self.schedule.rate(self.step), 1.0)?;
            total_loss += loss.to_scalar::<f32>()? as f64;
            self.step += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(total_loss)
    }

    /// Hides pieces of each row of `batch`, under keys of this step and row.
    fn mask(&self, rows: &[Vec<u32>], batch: &[usize]) -> MaskedBatch {
        let step_key = mix(
            self.settings.seed ^ Stream::PretrainStep.key(),
            self.step as u64,
        );
        let keys: Vec<u64> = batch.iter().map(|&i| mix(step_key, i as u64)).collect();
        let corrupted: Vec<Corrupted> = batch
            .iter()
            .zip(&keys)
            .map(|(&i, &k)| corrupt(&rows[i], self.settings.mask_id, self.vocab, k))
            .collect();
        let width = corrupted.iter().map(|c| c.ids.len()).max().unwrap_or(1);
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (r, c) in corrupted.iter().enumerate() {
            for &(p, original) in &c.targets {
                positions.push((r * width + p) as u32);
                targets.push(original);
            }
        }
        MaskedBatch {
            keys,
            corrupted,
            width,
            positions,
            targets,
        }
    }

    /// Cross-entropy of the head's predictions of the hidden pieces.
    fn loss(&self, masked: &MaskedBatch) -> anyhow::Result<Tensor> {
        let device = &self.device;
        let refs: Vec<&[u32]> = masked.corrupted.iter().map(|c| c.ids.as_slice()).collect();
        let tokens = TokenBatch::from_rows(&refs, self.settings.pad_id, device)?;
        let hidden = self.net.encode(&tokens, DropoutMode::On(&masked.keys))?;
        let h = hidden.dim(D::Minus1)?;
        let picked = hidden
            .reshape((refs.len() * masked.width, h))?
            .index_select(&Tensor::new(masked.positions.as_slice(), device)?, 0)?;
        let scores = self.head.forward(&picked, self.net.word_embeddings())?;
        let targets = Tensor::new(masked.targets.as_slice(), device)?;
        Ok(candle_nn::loss::cross_entropy(&scores, &targets)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_hides_word_pieces_but_never_specials_and_records_the_originals() {
        let row: Vec<u32> = std::iter::once(2)
            .chain(5..45)
            .chain(std::iter::once(3))
            .collect();
        let Corrupted { ids, targets } = corrupt(&row, 4, 100, 9);
        assert!(!targets.is_empty());
        assert_eq!(ids[0], 2);
        assert_eq!(*ids.last().unwrap(), 3);
        for (p, original) in &targets {
            assert_eq!(row[*p], *original);
            assert!(*p > 0 && *p < row.len() - 1);
        }
        let changed = ids.iter().zip(&row).filter(|(a, b)| a != b).count();
        assert!(changed <= targets.len());
    }

    #[test]
    fn a_row_with_one_word_still_gets_a_target() {
        assert_eq!(corrupt(&[2, 17, 3], 4, 100, 1).targets, vec![(1, 17)]);
    }
}
