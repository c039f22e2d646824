//! What the store reads and writes: models, predictions, feedback and the
//! figures over them.

use std::time::SystemTime;

use uuid::Uuid;

/// A model as registered when a server starts.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    /// Display name (the model directory's name).
    pub name: String,
    /// Hex sha256 of `model.safetensors`: what identifies the model.
    pub weights_sha256: String,
    /// Labels in class order.
    pub labels: Vec<String>,
    /// The model's `metrics.json`, when it has one.
    pub metrics: Option<serde_json::Value>,
}

/// The MC-dropout figures of a prediction made with sampling.
#[derive(Debug, Clone)]
pub struct SampledFigures {
    /// Samples T.
    pub samples: usize,
    /// `full`, `head` or `top-K` (K top layers sampled).
    pub mode: String,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Mean entropy of the samples (aleatoric).
    pub expected_entropy: f64,
    /// Predictive − expected entropy (epistemic, BALD).
    pub mutual_information: f64,
    /// Share of samples disagreeing with the modal label.
    pub variation_ratio: f64,
}

/// One prediction to log.
#[derive(Debug, Clone)]
pub struct PredictionRecord {
    /// The id returned to the client.
    pub id: Uuid,
    /// When it was answered.
    pub created_at: SystemTime,
    /// The route that answered (`classify`, `uncertainty`, `predict`, `inference_api`).
    pub endpoint: &'static str,
    /// The input, unless the server keeps hashes only; at most
    /// `--max-stored-text-chars` characters of it.
    pub text: Option<String>,
    /// True when `text` is only the start of the input.
    pub text_truncated: bool,
    /// Hex sha256 of the input.
    pub text_sha256: String,
    /// Predicted label.
    pub label: String,
    /// Its probability.
    pub score: f64,
    /// Probabilities in class order (means over the samples under MC dropout).
    pub probabilities: Vec<f32>,
    /// Entropy of `probabilities` (nats).
    pub predictive_entropy: f64,
    /// Best minus second-best probability.
    pub margin: f64,
    /// Present when MC dropout was used.
    pub sampled: Option<SampledFigures>,
    /// Time from receiving the request to answering it, in milliseconds.
    pub latency_ms: f64,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// Whether the answer abstained, when an abstention policy applied.
    pub abstained: Option<bool>,
}

impl PredictionRecord {
    /// Roughly the memory the record holds: itself and what its strings and
    /// vectors point to. What bounds the log's backlog in bytes.
    pub fn approximate_bytes(&self) -> usize {
        let strings = [
            self.text.as_deref(),
            Some(&self.text_sha256),
            Some(&self.label),
            self.request_id.as_deref(),
            self.sampled.as_ref().map(|s| s.mode.as_str()),
        ];
        std::mem::size_of::<Self>()
            + strings.iter().flatten().map(|s| s.len()).sum::<usize>()
            + std::mem::size_of_val(self.probabilities.as_slice())
    }
}

/// What feedback refers to: the prediction and its model's labels.
#[derive(Debug, Clone)]
pub struct PredictionTarget {
    /// The label the model predicted.
    pub predicted: String,
    /// Every label the model knows.
    pub labels: Vec<String>,
}

/// A human's correct label for a prediction.
#[derive(Debug, Clone)]
pub struct FeedbackRecord {
    /// The prediction it is about.
    pub prediction_id: Uuid,
    /// The correct label.
    pub label: String,
    /// Who or what gave it (free text).
    pub source: Option<String>,
    /// When it was given.
    pub created_at: SystemTime,
}

/// Feedback figures for one correct label.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LabelStats {
    /// The label people gave.
    pub label: String,
    /// Feedback rows with this label.
    pub feedback: i64,
    /// How many of those the model had predicted.
    pub correct: i64,
    /// `correct / feedback` (the model's recall on this label), null without feedback.
    pub accuracy: Option<f64>,
}

/// What `GET /v1/stats` answers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Stats {
    /// The model name the figures are about.
    pub model: String,
    /// Logged predictions.
    pub predictions: i64,
    /// Of those, made with MC dropout.
    pub sampled_predictions: i64,
    /// Predictions with feedback.
    pub feedback: i64,
    /// Share of feedback agreeing with the prediction, null without feedback.
    pub accuracy: Option<f64>,
    /// Per correct label, in the model's class order.
    pub per_label: Vec<LabelStats>,
    /// Mean predictive entropy over the logged predictions (nats).
    pub mean_predictive_entropy: Option<f64>,
    /// Mean mutual information over the MC-dropout predictions (nats).
    pub mean_mutual_information: Option<f64>,
}

/// A `{"text", "label"}` row of exported corrections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Correction {
    /// The input.
    pub text: String,
    /// The label a person gave.
    pub label: String,
    /// True when `text` is only the start of the input (`--max-stored-text-chars`); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub text_truncated: bool,
}

/// Corrections and how many feedback rows had no stored text.
#[derive(Debug, Clone)]
pub struct Corrections {
    /// Distinct `(text, label)` pairs, oldest feedback first.
    pub rows: Vec<Correction>,
    /// Feedback on predictions logged with `--store-text=false`.
    pub without_text: usize,
}
