//! Evaluating a classifier on labelled examples: the deterministic model, the
//! same with its fitted temperature, and Monte-Carlo dropout, side by side.

use serde::{Deserialize, Serialize};

use super::feature_distance::FeatureDistance;
use super::metrics::{classification_report, ClassificationReport};
use super::{sample_probabilities, summarize, PassBudget, Predictor, SamplingMode};
use crate::data::Example;
use crate::model::{softmax, Classifier, ModelError, Representation, TokenizerError};

/// Rows per forward pass when evaluating.
const EVAL_BATCH: usize = 64;
/// Rows and padded tokens per forward pass when sampling (the server's defaults).
pub const MC_BUDGET: PassBudget = PassBudget {
    rows: 32,
    tokens: 4096,
};

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An example's label is not one the model knows.
    #[error(
        "example {index} has label '{label}', which the model does not know (it knows: {known})"
    )]
    UnknownLabel {
        /// 0-based position of the example.
        index: usize,
        /// The unknown label.
        label: String,
        /// The model's labels, comma-separated.
        known: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The reference (training) data cannot be used.
    #[error("reference data: {0}")]
    Reference(String),
}

/// The three predictors evaluated here, in the order they are reported.
pub const PREDICTORS: [Predictor; 3] = [
    Predictor::Deterministic,
    Predictor::TemperatureScaled,
    Predictor::McDropout(SamplingMode::Full),
];

/// Probabilities of the three predictors on the same examples.
#[derive(Debug, Clone)]
pub struct PredictorOutputs {
    /// Softmax of the raw logits.
    pub deterministic: Vec<Vec<f32>>,
    /// Softmax of the logits divided by the fitted temperature.
    pub calibrated: Vec<Vec<f32>>,
    /// Mean MC-dropout probabilities, when sampled.
    pub mc_dropout: Option<Vec<Vec<f32>>>,
    /// The raw logits (for fitting a temperature).
    pub logits: Vec<Vec<f32>>,
}

impl PredictorOutputs {
    /// The probabilities of `predictor`: `None` for MC dropout when not
    /// sampled, and for every predictor but those of [`PREDICTORS`].
    pub fn of(&self, predictor: Predictor) -> Option<&[Vec<f32>]> {
        match predictor {
            Predictor::Deterministic => Some(&self.deterministic),
            Predictor::TemperatureScaled => Some(&self.calibrated),
            Predictor::McDropout(SamplingMode::Full) => self.mc_dropout.as_deref(),
            Predictor::McDropout(_) => None,
        }
    }
}

/// Metrics of the three predictors on one set of examples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Plain softmax.
    pub deterministic: ClassificationReport,
    /// Softmax with the fitted temperature.
    pub temperature_scaled: ClassificationReport,
    /// MC dropout, mean of per-sample softmax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mc_dropout: Option<ClassificationReport>,
    /// Samples per input for MC dropout (0 when not sampled).
    pub mc_samples: usize,
}

impl EvalReport {
    /// The metrics of `predictor`: `None` for MC dropout when not sampled,
    /// and for every predictor but those of [`PREDICTORS`].
    pub fn of(&self, predictor: Predictor) -> Option<&ClassificationReport> {
        match predictor {
            Predictor::Deterministic => Some(&self.deterministic),
            Predictor::TemperatureScaled => Some(&self.temperature_scaled),
            Predictor::McDropout(SamplingMode::Full) => self.mc_dropout.as_ref(),
            Predictor::McDropout(_) => None,
        }
    }
}

/// Class indices of examples' labels under the model's label order.
pub fn targets(classifier: &Classifier, examples: &[Example]) -> Result<Vec<usize>, EvalError> {
    examples
        .iter()
        .enumerate()
        .map(|(index, e)| {
            classifier
                .labels
                .iter()
                .position(|l| *l == e.label)
                .ok_or_else(|| EvalError::UnknownLabel {
                    index,
                    label: e.label.clone(),
                    known: classifier.labels.join(", "),
                })
        })
        .collect()
}

/// Runs the predictors over texts; `mc_samples` = 0 skips MC dropout.
pub fn predict_all(
    classifier: &Classifier,
    texts: &[String],
    mc_samples: usize,
    seed: u64,
) -> Result<PredictorOutputs, EvalError> {
    let rows = classifier.encoder.encode_all(texts)?;
    let logits = classifier.logits_for_all(&rows, EVAL_BATCH)?;
    let t = classifier.config.candor.temperature;
    let mc_dropout = if mc_samples > 0 {
        let samples = sample_probabilities(
            classifier,
            &rows,
            mc_samples,
            seed,
            MC_BUDGET,
            SamplingMode::Full,
        )?;
        Some(samples.iter().map(|s| summarize(s).mean).collect())
    } else {
        None
    };
    Ok(PredictorOutputs {
        deterministic: logits.iter().map(|l| softmax(l, 1.0)).collect(),
        calibrated: logits.iter().map(|l| softmax(l, t)).collect(),
        mc_dropout,
        logits,
    })
}

/// Evaluates the three predictors on labelled examples.
pub fn evaluate(
    classifier: &Classifier,
    examples: &[Example],
    mc_samples: usize,
    seed: u64,
) -> Result<EvalReport, EvalError> {
    let targets = targets(classifier, examples)?;
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let outputs = predict_all(classifier, &texts, mc_samples, seed)?;
    Ok(report(&outputs, &targets, &classifier.labels, mc_samples))
}

/// Fits the feature distance on the mean last hidden states of `reference`
/// (the model's training examples).
pub fn fit_feature_distance(
    classifier: &Classifier,
    reference: &[Example],
) -> Result<FeatureDistance, EvalError> {
    let reference_targets = targets(classifier, reference)?;
    let texts: Vec<String> = reference.iter().map(|e| e.text.clone()).collect();
    let rows = classifier.encoder.encode_all(&texts)?;
    let features = last_mean_for_all(classifier, &rows)?;
    FeatureDistance::fit(&features, &reference_targets)
        .map_err(|e| EvalError::Reference(e.to_string()))
}

/// The feature distance of each tokenized row.
pub fn feature_distances(
    classifier: &Classifier,
    fitted: &FeatureDistance,
    rows: &[Vec<u32>],
) -> Result<Vec<f64>, EvalError> {
    Ok(last_mean_for_all(classifier, rows)?
        .iter()
        .map(|f| fitted.distance(f))
        .collect())
}

/// The mean of each row's last hidden states, where the Mahalanobis distance looks.
fn last_mean_for_all(
    classifier: &Classifier,
    rows: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>, EvalError> {
    let last = Representation::last_mean(classifier.network.layer_count());
    Ok(classifier
        .representations_for_all(rows, EVAL_BATCH, &[last])?
        .pop()
        .unwrap_or_default())
}

/// Metrics of predictor outputs against their targets.
pub fn report(
    outputs: &PredictorOutputs,
    targets: &[usize],
    labels: &[String],
    mc_samples: usize,
) -> EvalReport {
    EvalReport {
        deterministic: classification_report(&outputs.deterministic, targets, labels),
        temperature_scaled: classification_report(&outputs.calibrated, targets, labels),
        mc_dropout: outputs
            .mc_dropout
            .as_ref()
            .map(|p| classification_report(p, targets, labels)),
        mc_samples,
    }
}
