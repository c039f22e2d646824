//! The training loop: batches, the optimiser, early stopping on validation
//! loss and the best weights seen.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};

use super::ema::Ema;
use super::optimizer::{AdamW, AdamWSettings};
use super::prepare::mask_tokens;
use super::schedule::LinearSchedule;
use super::*;
use crate::charts::EpochPoint;
use crate::model::{self, BertClassifier, BertConfig, DropoutMode, TextEncoder, TokenBatch};
use crate::rng::{mix, SeededRng, Stream};

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
pub(super) struct AuxHead {
    weight: Var,
    bias: Var,
}

impl AuxHead {
    pub(super) fn new(
        config: &BertConfig,
        labels: usize,
        seed: u64,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let mut rng = SeededRng::new(Stream::AuxiliaryHead.of(seed));
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
pub(super) fn layer_lr_scale(name: &str, layers: usize, decay: f64) -> f64 {
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

/// Where the optimisation stands: its schedule and what it has done.
struct Progress {
    /// The learning rate of each step.
    schedule: LinearSchedule,
    /// Batches per epoch.
    steps_per_epoch: usize,
    /// Steps taken, over all epochs.
    step: usize,
    /// Examples optimised on, over all epochs.
    examples: usize,
    /// Seconds spent optimising (measuring excluded).
    seconds: f64,
}

impl Progress {
    /// Nothing done yet over `examples` training examples: warm-up over
    /// the first `warmup_fraction` of the steps, then linear decay.
    fn new(opt: &Optimisation, examples: usize) -> Self {
        let steps_per_epoch = examples.div_ceil(opt.batch_size);
        let total_steps = steps_per_epoch * opt.epochs;
        Self {
            schedule: LinearSchedule {
                peak: opt.learning_rate,
                warmup_steps: (total_steps as f64 * opt.warmup_fraction).round() as usize,
                total_steps,
            },
            steps_per_epoch,
            step: 0,
            examples: 0,
            seconds: 0.0,
        }
    }
}

/// The best epoch so far: its validation figures and weights.
struct Best {
    /// Validation loss.
    loss: f64,
    /// Validation accuracy.
    accuracy: f64,
    /// 1-based epoch (0: none yet).
    epoch: usize,
    /// The weights after it (`None`: none yet).
    weights: Option<HashMap<String, Tensor>>,
}

impl Best {
    /// Before the first epoch.
    fn none() -> Self {
        Self {
            loss: f64::INFINITY,
            accuracy: -1.0,
            epoch: 0,
            weights: None,
        }
    }

    /// `point`'s epoch, with the weights it ended with.
    fn at(point: &EpochPoint, weights: HashMap<String, Tensor>) -> Self {
        Self {
            loss: point.val_loss,
            accuracy: point.val_accuracy,
            epoch: point.epoch,
            weights: Some(weights),
        }
    }

    /// Whether `point` improves on it under `select_by`: a validation loss
    /// lower by more than 1e-4, or a higher validation accuracy.
    fn is_beaten_by(&self, point: &EpochPoint, select_by: Selection) -> bool {
        match select_by {
            Selection::Loss => point.val_loss < self.loss - 1e-4,
            Selection::Accuracy => point.val_accuracy > self.accuracy,
        }
    }
}

/// One training run's moving parts.
pub(super) struct Run<'a> {
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
    pub(super) fn new(
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

    /// Trains epoch by epoch, measuring each, until the epochs run out or
    /// the validation score stops improving; leaves the best weights in place.
    pub(super) fn fit(&mut self, train: &EncodedSet, val: &EncodedSet) -> anyhow::Result<Fitted> {
        let opt = self.settings.optimisation;
        let mut progress = Progress::new(&opt, train.len());
        let mut rng = SeededRng::new(Stream::Batches.of(opt.seed));
        let mut history = Vec::new();
        let mut best = Best::none();
        for epoch in 1..=opt.epochs {
            self.train_epoch(epoch, train, &mut rng, &mut progress)?;
            // With averaging, the averaged weights are measured (and kept when
            // best); the optimiser's own weights come back for the next epoch.
            let current = self.swap_in_averaged()?;
            let point = self.measure_epoch(epoch, train, val)?;
            let improved = best.is_beaten_by(&point, opt.select_by);
            let examples_per_second = progress.examples as f64 / progress.seconds;
            self.report_epoch(&point, examples_per_second, improved);
            if improved {
                best = Best::at(&point, tensors_of(self.varmap)?);
            }
            history.push(point);
            if let Some(current) = &current {
                self.restore(current)?;
            }
            if !improved && epoch - best.epoch >= opt.patience {
                tracing::info!(
                    epoch,
                    best_epoch = best.epoch,
                    "early stopping: the validation {} stopped improving",
                    opt.select_by.describe()
                );
                break;
            }
        }
        if let Some(weights) = &best.weights {
            self.restore(weights)?;
        }
        Ok(Fitted {
            history,
            best_epoch: best.epoch,
            examples_per_second: progress.examples as f64 / progress.seconds.max(1e-9),
        })
    }

    /// One pass over the training set in length-bucketed batches.
    fn train_epoch(
        &mut self,
        epoch: usize,
        train: &EncodedSet,
        rng: &mut SeededRng,
        progress: &mut Progress,
    ) -> anyhow::Result<()> {
        let opt = self.settings.optimisation;
        let bar = self.progress_bar(epoch, progress.steps_per_epoch);
        let started = Instant::now();
        let batches = length_bucketed_batches(&train.rows, opt.batch_size, rng);
        let mut running = 0f64;
        for (i, batch) in batches.iter().enumerate() {
            let lr = progress.schedule.rate(progress.step);
            let loss = self.step(train, batch, lr, mix(opt.seed, progress.step as u64))?;
            running += loss;
            progress.step += 1;
            progress.examples += batch.len();
            bar.inc(1);
            bar.set_message(format!("loss {:.4} lr {lr:.2e}", running / (i + 1) as f64));
        }
        progress.seconds += started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok(())
    }

    /// With averaging, puts the averaged weights in place and returns the
    /// optimiser's own, to restore after measuring; `None` without.
    fn swap_in_averaged(&self) -> anyhow::Result<Option<HashMap<String, Tensor>>> {
        let Some(ema) = &self.ema else {
            return Ok(None);
        };
        let averaged = ema.averaged()?;
        let current = tensors_of(self.varmap)?;
        self.restore(&averaged)?;
        Ok(Some(current))
    }

    /// Loss and accuracy on both sets after `epoch`.
    fn measure_epoch(
        &self,
        epoch: usize,
        train: &EncodedSet,
        val: &EncodedSet,
    ) -> anyhow::Result<EpochPoint> {
        let (train_loss, train_accuracy) = self.measure(train)?;
        let (val_loss, val_accuracy) = self.measure(val)?;
        Ok(EpochPoint {
            epoch,
            train_loss,
            val_loss,
            train_accuracy,
            val_accuracy,
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
            all_keys.extend(keys.iter().map(|&k| Stream::SecondPass.of(k)));
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
