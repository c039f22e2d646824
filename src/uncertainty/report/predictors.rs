//! Running the report's predictors: the deterministic model with and without
//! its temperature, and MC dropout in each sampling mode, each over the
//! labelled texts and every OOD set.

use std::time::Instant;

use super::measures::{sweep_points, SweepPoint};
use super::{OodSet, ReportSettings};
use crate::data::Example;
use crate::model::{softmax, Classifier};
use crate::uncertainty::evaluate::{EvalError, MC_BUDGET};
use crate::uncertainty::metrics::argmax;
use crate::uncertainty::{sample_probabilities, summarize, McSummary, Predictor, SamplingMode};

/// Rows per deterministic forward pass.
const BATCH: usize = 64;

/// One predictor's per-example summaries on the labelled data and each OOD set.
pub struct Predictions {
    /// The predictor.
    pub predictor: Predictor,
    /// Whether it samples dropout (so mutual information means something).
    pub sampled: bool,
    /// One summary per labelled example.
    pub labelled: Vec<McSummary>,
    /// One summary per text, per OOD set.
    pub ood: Vec<Vec<McSummary>>,
    /// Wall-clock seconds to predict the labelled data.
    pub seconds: f64,
}

impl Predictions {
    /// The mean probabilities on the labelled data, one vector per example.
    pub(super) fn means(&self) -> Vec<Vec<f32>> {
        self.labelled.iter().map(|s| s.mean.clone()).collect()
    }

    /// Whether the mean prediction on each labelled example is its target.
    pub(super) fn correct(&self, targets: &[usize]) -> Vec<bool> {
        self.labelled
            .iter()
            .zip(targets)
            .map(|(s, &t)| argmax(&s.mean) == t)
            .collect()
    }
}

/// The token ids of the labelled texts and of each OOD set's texts.
pub(super) struct Encoded {
    /// One row per labelled example.
    pub labelled: Vec<Vec<u32>>,
    /// One row per text, per OOD set.
    pub ood: Vec<Vec<Vec<u32>>>,
}

impl Encoded {
    /// Encodes the labelled examples and every OOD set with the model's tokenizer.
    pub(super) fn new(
        classifier: &Classifier,
        examples: &[Example],
        ood: &[OodSet],
    ) -> Result<Self, EvalError> {
        let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
        let labelled = classifier.encoder.encode_all(&texts)?;
        let ood = ood
            .iter()
            .map(|set| classifier.encoder.encode_all(&set.texts))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Encoded { labelled, ood })
    }
}

/// The `deterministic` and `temperature` predictors: one forward pass, read
/// at temperature 1 and at the model's fitted temperature.
pub(super) fn deterministic_predictions(
    classifier: &Classifier,
    texts: &Encoded,
) -> Result<Vec<Predictions>, EvalError> {
    let started = Instant::now();
    let logits = classifier.logits_for_all(&texts.labelled, BATCH)?;
    let seconds = started.elapsed().as_secs_f64();
    let ood_logits = texts
        .ood
        .iter()
        .map(|rows| classifier.logits_for_all(rows, BATCH))
        .collect::<Result<Vec<_>, _>>()?;
    let temperature = classifier.config.candor.temperature;
    let read_at = |predictor: Predictor, t: f64| Predictions {
        predictor,
        sampled: false,
        labelled: softmax_summaries(&logits, t),
        ood: ood_logits.iter().map(|l| softmax_summaries(l, t)).collect(),
        seconds,
    };
    Ok(vec![
        read_at(Predictor::Deterministic, 1.0),
        read_at(Predictor::TemperatureScaled, temperature),
    ])
}

/// One single-sample summary per row of logits, softmaxed at `temperature`.
fn softmax_summaries(logits: &[Vec<f32>], temperature: f64) -> Vec<McSummary> {
    logits
        .iter()
        .map(|l| summarize(&[softmax(l, temperature)]))
        .collect()
}

/// `full` MC dropout's accuracy and calibration at each T of the sweep, read
/// off the prefixes of one run as long as the longest T (or the report's T).
pub(super) fn sweep(
    classifier: &Classifier,
    rows: &[Vec<u32>],
    targets: &[usize],
    settings: &ReportSettings,
) -> Result<Vec<SweepPoint>, EvalError> {
    let longest = settings
        .sweep
        .iter()
        .copied()
        .chain([settings.samples])
        .max()
        .unwrap_or(0);
    let long = sample_probabilities(
        classifier,
        rows,
        longest,
        settings.seed,
        MC_BUDGET,
        SamplingMode::Full,
    )?;
    Ok(sweep_points(
        &long,
        &settings.sweep,
        targets,
        &classifier.labels,
    ))
}

/// The MC-dropout predictors, in report order, each timed on the labelled data.
pub(super) fn sampled_predictions(
    classifier: &Classifier,
    texts: &Encoded,
    settings: &ReportSettings,
) -> Result<Vec<Predictions>, EvalError> {
    sampling_modes(&settings.top_layers)
        .map(|mode| sampled_prediction(classifier, texts, settings, mode))
        .collect()
}

/// `full`, `head`, then `top` for each number of top layers asked.
fn sampling_modes(top_layers: &[usize]) -> impl Iterator<Item = SamplingMode> + '_ {
    [SamplingMode::Full, SamplingMode::Head]
        .into_iter()
        .chain(top_layers.iter().map(|&k| SamplingMode::Top(k)))
}

/// MC dropout in `mode` with the report's T samples.
fn sampled_prediction(
    classifier: &Classifier,
    texts: &Encoded,
    settings: &ReportSettings,
    mode: SamplingMode,
) -> Result<Predictions, EvalError> {
    let started = Instant::now();
    let labelled = mc_summaries(classifier, &texts.labelled, settings, mode)?;
    let seconds = started.elapsed().as_secs_f64();
    let ood = texts
        .ood
        .iter()
        .map(|rows| mc_summaries(classifier, rows, settings, mode))
        .collect::<Result<Vec<_>, EvalError>>()?;
    Ok(Predictions {
        predictor: Predictor::McDropout(mode),
        sampled: true,
        labelled,
        ood,
        seconds,
    })
}

/// One summary of T dropout samples per row.
fn mc_summaries(
    classifier: &Classifier,
    rows: &[Vec<u32>],
    settings: &ReportSettings,
    mode: SamplingMode,
) -> Result<Vec<McSummary>, EvalError> {
    let samples = sample_probabilities(
        classifier,
        rows,
        settings.samples,
        settings.seed,
        MC_BUDGET,
        mode,
    )?;
    Ok(samples.iter().map(|s| summarize(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampled_predictors_are_full_head_then_each_top_depth() {
        let names: Vec<String> = sampling_modes(&[2, 1])
            .map(|mode| Predictor::McDropout(mode).to_string())
            .collect();
        assert_eq!(names, ["mc_full", "mc_head", "mc_top2", "mc_top1"]);
    }
}
