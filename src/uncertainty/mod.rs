//! Monte-Carlo dropout: drawing samples and summarising them, and the metrics
//! that say how good the resulting probabilities are.
//!
//! The summary follows Gal & Ghahramani (2016) and BALD (Houlsby et al., 2011):
//! the predictive distribution is the mean of the per-sample softmax
//! probabilities (never of logits); entropies are in nats with 0·log 0 = 0;
//! mutual information = predictive entropy − expected entropy, clamped at 0.

pub mod abstention;
pub mod calibration;
pub mod cascade;
pub mod conformal;
pub mod distance_report;
pub mod evaluate;
pub mod feature_distance;
pub mod metrics;
pub mod neighbours;
pub mod predictor;
pub mod report;
pub mod selective;
#[cfg(test)]
mod test_support;

use serde::{Deserialize, Serialize};

pub use predictor::Predictor;

use crate::model::{softmax, Classifier, DropoutMode, LowerPass, ModelError};
use crate::rng::mix;

/// What T stochastic forward passes say about one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McSummary {
    /// Mean probability per class over the samples.
    pub mean: Vec<f32>,
    /// Standard deviation per class over the samples (T−1 denominator; 0 when T = 1).
    pub std: Vec<f32>,
    /// Entropy of the mean distribution: total uncertainty.
    pub predictive_entropy: f64,
    /// Mean entropy of the samples: aleatoric (data) uncertainty.
    pub expected_entropy: f64,
    /// Predictive − expected entropy, clamped at 0: epistemic (model) uncertainty (BALD).
    pub mutual_information: f64,
    /// Fraction of samples whose argmax is not the modal class.
    pub variation_ratio: f64,
    /// Mean probability of the top class minus that of the runner-up.
    pub margin: f64,
    /// Number of samples T.
    pub samples: usize,
}

/// Entropy in nats, with 0·log 0 = 0.
pub fn entropy(p: &[f32]) -> f64 {
    p.iter()
        .map(|&q| q as f64)
        .filter(|&q| q > 0.0)
        .map(|q| -q * q.ln())
        .sum()
}

/// Best minus second-best probability (the best alone when there is one class).
pub fn margin(probabilities: impl IntoIterator<Item = f64>) -> f64 {
    let (mut best, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for p in probabilities {
        if p > best {
            second = best;
            best = p;
        } else if p > second {
            second = p;
        }
    }
    if best == f64::NEG_INFINITY {
        0.0
    } else {
        best - second.max(0.0)
    }
}

/// Summarises per-sample probability vectors (each of the same length, at least one).
pub fn summarize(samples: &[Vec<f32>]) -> McSummary {
    let t = samples.len();
    let classes = samples.first().map_or(0, Vec::len);
    let mut mean = vec![0f64; classes];
    for s in samples {
        for (m, &p) in mean.iter_mut().zip(s) {
            *m += p as f64 / t as f64;
        }
    }
    let std = (0..classes)
        .map(|k| {
            if t < 2 {
                return 0.0;
            }
            let var = samples
                .iter()
                .map(|s| (s[k] as f64 - mean[k]).powi(2))
                .sum::<f64>()
                / (t - 1) as f64;
            var.sqrt() as f32
        })
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let predictive_entropy = entropy(&mean32);
    let expected_entropy = samples.iter().map(|s| entropy(s)).sum::<f64>() / t.max(1) as f64;
    let mut votes = vec![0usize; classes];
    for s in samples {
        if classes > 0 {
            votes[metrics::argmax(s)] += 1;
        }
    }
    let modal = votes.iter().max().copied().unwrap_or(0);
    McSummary {
        predictive_entropy,
        expected_entropy,
        mutual_information: (predictive_entropy - expected_entropy).max(0.0),
        variation_ratio: 1.0 - modal as f64 / t.max(1) as f64,
        margin: margin(mean.iter().copied()),
        mean: mean32,
        std,
        samples: t,
    }
}

/// The dropout key of sample `t` under `seed`.
///
/// It depends on nothing else (not the input's position in a request or a
/// batch), so the same text with the same seed always draws the same masks.
pub fn sample_key(seed: u64, t: usize) -> u64 {
    mix(seed, t as u64)
}

/// Where MC dropout is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplingMode {
    /// Every dropout site of the network: the full Bayesian approximation.
    #[default]
    Full,
    /// The classifier input only: the encoder runs once, so T samples cost about one pass.
    Head,
    /// The top k encoder layers and the classifier input: the layers below
    /// run once per input, the top k once per sample.
    Top(usize),
}

impl SamplingMode {
    /// The name used in requests and responses (`top` without its k).
    pub fn as_str(self) -> &'static str {
        match self {
            SamplingMode::Full => "full",
            SamplingMode::Head => "head",
            SamplingMode::Top(_) => "top",
        }
    }

    /// The name with its k, as reports show it: `full`, `head`, `top-2`.
    pub fn label(self) -> String {
        match self {
            SamplingMode::Top(k) => format!("top-{k}"),
            other => other.as_str().to_string(),
        }
    }
}

impl Serialize for SamplingMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The most rows and padded tokens one forward pass may hold.
#[derive(Debug, Clone, Copy)]
pub struct PassBudget {
    /// Rows per pass.
    pub rows: usize,
    /// Rows × length per pass.
    pub tokens: usize,
}

impl PassBudget {
    /// Samples of an input of `length` tokens that fit in one pass (at least 1).
    pub fn samples_per_pass(&self, length: usize) -> usize {
        self.rows.min(self.tokens / length.max(1)).max(1)
    }
}

/// The per-sample softmax probabilities `[sample][class]` of one input.
///
/// Its samples are replicated into the batch — passes of as many samples as
/// the budget allows, never one pass per sample — and the passes depend only
/// on the input, T and the budget, never on other inputs: floating-point sums
/// depend on the shape of a batch, so this is what keeps the same input with
/// the same seed bit-identical wherever it is computed.
pub fn sample_input(
    classifier: &Classifier,
    row: &[u32],
    samples: usize,
    seed: u64,
    budget: PassBudget,
    mode: SamplingMode,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let mut sampling = InputSampling::new(row, samples, seed, budget, mode, false);
    while !sampling.is_done() {
        sampling.step(classifier)?;
    }
    Ok(sampling.finish().0)
}

/// The forward passes behind one input's samples, run one at a time: the
/// engine interleaves them with other requests' work. Running every step
/// gives exactly [`sample_input`]'s answer (and, with features, the
/// input's mean last hidden state), since the passes and their order are the same.
#[derive(Debug)]
pub struct InputSampling {
    row: Vec<u32>,
    keys: Vec<u64>,
    per_pass: usize,
    mode: SamplingMode,
    features: bool,
    logits: Vec<Vec<f32>>,
    mean: Option<Vec<f32>>,
    /// The deterministic layers below the sampled ones (`head` and `top` modes).
    lower: Option<LowerPass>,
    /// Samples computed so far.
    done: usize,
}

impl InputSampling {
    /// The passes for `samples` samples of `row` (and its mean last hidden
    /// state, with `features`).
    pub fn new(
        row: &[u32],
        samples: usize,
        seed: u64,
        budget: PassBudget,
        mode: SamplingMode,
        features: bool,
    ) -> Self {
        Self {
            row: row.to_vec(),
            keys: (0..samples).map(|t| sample_key(seed, t)).collect(),
            per_pass: budget.samples_per_pass(row.len()),
            mode,
            features,
            logits: Vec::with_capacity(samples),
            mean: None,
            lower: None,
            done: 0,
        }
    }

    /// True once every pass has run.
    pub fn is_done(&self) -> bool {
        self.done == self.keys.len() && (!self.features || self.mean.is_some())
    }

    /// Runs the next pass; returns the rows it computed.
    pub fn step(&mut self, classifier: &Classifier) -> Result<usize, ModelError> {
        let row = self.row.as_slice();
        let top = match self.mode {
            SamplingMode::Full => None,
            SamplingMode::Head => Some(0),
            SamplingMode::Top(k) => Some(k),
        };
        if let (Some(top), None) = (top, &self.lower) {
            // The layers below the sampled ones, once for every sample.
            let pass = classifier.lower_pass(row, top)?;
            self.mean = Some(if self.features {
                pass.feature.clone()
            } else {
                Vec::new()
            });
            self.lower = Some(pass);
            return Ok(1);
        }
        if self.done < self.keys.len() {
            let end = (self.done + self.per_pass).min(self.keys.len());
            let pass = &self.keys[self.done..end];
            match &self.lower {
                Some(lower) => self
                    .logits
                    .extend(classifier.top_sample_logits(lower, pass)?),
                None => {
                    let batch: Vec<&[u32]> = vec![row; pass.len()];
                    self.logits
                        .extend(classifier.logits(&batch, DropoutMode::On(pass))?);
                }
            }
            self.done = end;
            return Ok(pass.len());
        }
        let mut features = classifier.logits_and_features(&[row])?.features;
        self.mean = Some(features.pop().unwrap_or_default());
        Ok(1)
    }

    /// The per-sample probabilities and the mean last hidden state (empty
    /// without `features`).
    pub fn finish(self) -> (Vec<Vec<f32>>, Vec<f32>) {
        let probabilities = self.logits.iter().map(|l| softmax(l, 1.0)).collect();
        (probabilities, self.mean.unwrap_or_default())
    }
}

/// [`sample_input`] for each row: `[row][sample][class]`.
pub fn sample_probabilities(
    classifier: &Classifier,
    rows: &[Vec<u32>],
    samples: usize,
    seed: u64,
    budget: PassBudget,
    mode: SamplingMode,
) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
    rows.iter()
        .map(|row| sample_input(classifier, row, samples, seed, budget, mode))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn agreeing_confident_samples_have_no_uncertainty() {
        let s = summarize(&[vec![1.0, 0.0], vec![1.0, 0.0], vec![1.0, 0.0]]);
        assert_eq!(s.mean, vec![1.0, 0.0]);
        assert_eq!(s.std, vec![0.0, 0.0]);
        assert!(close(s.predictive_entropy, 0.0));
        assert!(close(s.mutual_information, 0.0));
        assert!(close(s.variation_ratio, 0.0));
        assert!(close(s.margin, 1.0));
    }

    #[test]
    fn confident_samples_that_disagree_are_all_epistemic() {
        let s = summarize(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert!(close(s.predictive_entropy, 2f64.ln()));
        assert!(close(s.expected_entropy, 0.0));
        assert!(close(s.mutual_information, 2f64.ln()));
        assert!(close(s.variation_ratio, 0.5));
        // std with T−1: values 1 and 0 around 0.5 → sqrt(0.5).
        assert!(close(s.std[0] as f64, 0.5f64.sqrt()));
    }

    #[test]
    fn agreeing_unsure_samples_are_all_aleatoric() {
        let s = summarize(&[vec![0.5, 0.5], vec![0.5, 0.5]]);
        assert!(close(s.predictive_entropy, 2f64.ln()));
        assert!(close(s.expected_entropy, 2f64.ln()));
        assert!(close(s.mutual_information, 0.0));
        assert!(close(s.margin, 0.0));
    }

    #[test]
    fn a_single_sample_has_zero_spread() {
        let s = summarize(&[vec![0.2, 0.3, 0.5]]);
        assert_eq!(s.std, vec![0.0, 0.0, 0.0]);
        assert_eq!(s.samples, 1);
        assert!(close(s.margin, 0.2));
    }

    #[test]
    fn sample_keys_depend_only_on_seed_and_index() {
        assert_eq!(sample_key(5, 3), sample_key(5, 3));
        assert_ne!(sample_key(5, 3), sample_key(5, 4));
        assert_ne!(sample_key(5, 3), sample_key(6, 3));
    }
}
