//! Request and response bodies; the field names are the public contract.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::uncertainty::calibration::{AbstentionPolicy, AbstentionRule};
use crate::uncertainty::SamplingMode;

use super::schema;

/// One text or a list of texts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "\"inputs\" must be a string or a list of strings"
)]
pub enum Inputs {
    /// A single text.
    One(String),
    /// Several texts, answered in order.
    Many(Vec<String>),
}

impl Inputs {
    /// The texts, in order.
    pub fn into_texts(self) -> Vec<String> {
        match self {
            Inputs::One(t) => vec![t],
            Inputs::Many(ts) => ts,
        }
    }

    /// True for a single string (some compatible routes answer it unwrapped).
    pub fn is_single(&self) -> bool {
        matches!(self, Inputs::One(_))
    }
}

/// `POST /v1/classify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// The model to answer with, by name (default: the server's default
    /// model; `GET /v1/models` lists them).
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
    /// Return only the k best labels in `scores` (default: all; more than
    /// the model has is all).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub top_k: Option<usize>,
    /// Plain softmax of the logits instead of the temperature-calibrated one.
    #[serde(default)]
    pub raw_scores: bool,
    /// Cut over-long texts to the model's maximum length (default true); false rejects them.
    #[serde(default = "yes")]
    pub truncate: bool,
    /// Return a conformal `prediction_set` holding the true label with
    /// probability at least 1 − alpha, e.g. 0.1 (needs the model's calibration.json).
    #[serde(default)]
    #[schema(schema_with = schema::alpha)]
    pub alpha: Option<f64>,
    /// Abstention: `true` for the model's default policy (used when absent,
    /// if the model has one), `false` for none, or a policy.
    #[serde(default)]
    #[schema(schema_with = schema::abstain_deterministic)]
    pub abstain: Option<AbstainOption>,
}

/// The `abstain` field of a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "\"abstain\" must be true, false or a policy like {\"score\": \"predictive_entropy\", \"coverage\": 0.9}"
)]
pub enum AbstainOption {
    /// `true`: the model's default policy; `false`: never abstain.
    Default(bool),
    /// A policy for this request.
    Policy(AbstentionPolicy),
}

/// `POST /v1/classify/uncertainty`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UncertaintyRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// The model to answer with, by name (default: the server's default
    /// model; `GET /v1/models` lists them).
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
    /// MC-dropout samples T (default 30, at most the server's --max-samples, 100 by default).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub samples: Option<usize>,
    /// Seed of the dropout masks; the same input and seed give bit-identical output. Random when absent (and returned).
    #[serde(default)]
    #[schema(schema_with = schema::seed)]
    pub seed: Option<u64>,
    /// Return only the k best labels in `scores` (more than the model has is all).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub top_k: Option<usize>,
    /// Cut over-long texts (default true).
    #[serde(default = "yes")]
    pub truncate: bool,
    /// `full` (default): dropout at every site; `head`: on the classifier
    /// input only, about the cost of one pass; `top`: in the top
    /// `top_layers` encoder layers and the classifier input, the layers
    /// below computed once.
    #[serde(default)]
    #[schema(inline, example = "full")]
    pub mode: ModeName,
    /// With `mode: top`, how many of the top encoder layers to sample (at
    /// least 1; more than the model has samples them all; default: the
    /// number the model's calibration was fitted with, else 1).
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 4294967295_u64, example = 1)]
    pub top_layers: Option<serde_json::Value>,
    /// Return a conformal `prediction_set` at this miscoverage, calibrated for this mode.
    #[serde(default)]
    #[schema(schema_with = schema::alpha)]
    pub alpha: Option<f64>,
    /// Abstention: `true` for the model's default policy (used when absent,
    /// if the model has one), `false` for none, or a policy.
    #[serde(default)]
    #[schema(schema_with = schema::abstain_sampled)]
    pub abstain: Option<AbstainOption>,
    /// Also return each label's T sampled probabilities (`scores[].samples`).
    #[serde(default)]
    pub return_samples: bool,
}

/// Where an uncertainty request applies dropout, as requests name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// Every dropout site.
    #[default]
    Full,
    /// The classifier input only.
    Head,
    /// The top layers and the classifier input.
    Top,
}

impl<'de> Deserialize<'de> for ModeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match value.as_str() {
            Some("full") => Ok(ModeName::Full),
            Some("head") => Ok(ModeName::Head),
            Some("top") => Ok(ModeName::Top),
            _ => Err(serde::de::Error::custom(format!(
                "mode must be \"full\", \"head\" or \"top\", got {value}"
            ))),
        }
    }
}

impl ModeName {
    /// The sampling mode of a model of `layers` layers: `top_layers` is only
    /// for `top`, where it defaults to `default_top`.
    pub fn resolve(
        self,
        top_layers: Option<&serde_json::Value>,
        layers: usize,
        default_top: usize,
    ) -> Result<SamplingMode, String> {
        let all = layers.max(1);
        match (self, top_layers) {
            (ModeName::Full, None) => Ok(SamplingMode::Full),
            (ModeName::Head, None) => Ok(SamplingMode::Head),
            (ModeName::Top, None) => Ok(SamplingMode::Top(default_top.clamp(1, all))),
            // More layers than the model has is all of them, as top_k is.
            (ModeName::Top, Some(value)) => match value.as_u64() {
                Some(k) if (1..=u32::MAX as u64).contains(&k) => {
                    Ok(SamplingMode::Top((k as usize).min(all)))
                }
                _ => Err(format!(
                    "top_layers must be a whole number from 1 to {}, got {value}",
                    u32::MAX
                )),
            },
            (_, Some(_)) => Err(
                "top_layers applies to mode \"top\" only; send \"mode\": \"top\" with it, or leave it out"
                    .to_string(),
            ),
        }
    }
}

/// What the decision tools say about one prediction.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    /// Labels of the conformal set, most probable first (when `alpha` was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_set: Option<Vec<String>>,
    /// Whether to withhold this answer (when an abstention policy applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain: Option<bool>,
    /// Why, when abstaining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain_reason: Option<String>,
    /// Mahalanobis distance of the input's mean last hidden state to the
    /// nearest training class (when the model's calibration has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_distance: Option<f64>,
    /// Share of the calibration texts closer to the training data than this
    /// input: near 1 means unlike anything the model was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_percentile: Option<f64>,
}

/// The decision rules a response applied.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DecisionRules {
    /// The miscoverage of the prediction sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// The abstention rule applied (a coverage policy resolved to its threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstention: Option<AbstentionRule>,
}

fn yes() -> bool {
    true
}

/// A label and its probability.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LabelScore {
    /// Label name.
    pub label: String,
    /// Probability.
    pub score: f32,
}

/// One input's prediction.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    /// Id of this prediction (a UUID): send it to `/v1/feedback` to correct it.
    pub id: String,
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// Labels with probabilities, high to low.
    pub scores: Vec<LabelScore>,
    /// When a cascade answered: the model of the cascade that did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Prediction set and abstention, when asked for.
    #[serde(flatten)]
    pub decision: Decision,
}

/// `POST /v1/classify` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClassifyResponse {
    /// Name of the model (or cascade) that answered.
    pub model: String,
    /// The decision rules applied, if any.
    #[serde(flatten)]
    pub rules: DecisionRules,
    /// One prediction per input, in input order.
    pub predictions: Vec<Prediction>,
}

/// A label's mean probability over the samples and its spread.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LabelMoments {
    /// Label name.
    pub label: String,
    /// Mean probability over the T samples.
    pub mean: f32,
    /// Standard deviation over the samples (T−1 denominator).
    pub std: f32,
    /// The probability in each of the T samples, in sample order (with
    /// `"return_samples": true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<f32>>,
}

/// One input's MC-dropout prediction and uncertainty.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UncertainPrediction {
    /// Id of this prediction (a UUID): send it to `/v1/feedback` to correct it.
    pub id: String,
    /// Argmax of the mean probabilities.
    pub label: String,
    /// Its mean probability.
    pub score: f32,
    /// Labels with mean and std, by mean high to low.
    pub scores: Vec<LabelMoments>,
    /// Entropy of the mean distribution (nats): total uncertainty.
    pub predictive_entropy: f64,
    /// Mean entropy of the samples (nats): aleatoric uncertainty.
    pub expected_entropy: f64,
    /// Predictive − expected entropy, ≥ 0 (nats): epistemic uncertainty (BALD).
    pub mutual_information: f64,
    /// Share of samples whose argmax differs from the modal label.
    pub variation_ratio: f64,
    /// Mean probability of the best label minus the runner-up's.
    pub margin: f64,
    /// Samples T.
    pub samples: usize,
    /// Seed used.
    pub seed: u64,
    /// Prediction set and abstention, when asked for.
    #[serde(flatten)]
    pub decision: Decision,
}

/// `POST /v1/classify/uncertainty` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UncertaintyResponse {
    /// Name of the model that answered.
    pub model: String,
    /// Samples T per input.
    pub samples: usize,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Where dropout was applied (`full`, `head` or `top`).
    #[schema(value_type = String, example = "full")]
    pub mode: ModeName,
    /// With `mode: top`, the top encoder layers sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_layers: Option<usize>,
    /// The decision rules applied, if any.
    #[serde(flatten)]
    pub rules: DecisionRules,
    /// One per input, in input order.
    pub predictions: Vec<UncertainPrediction>,
}

/// `POST /predict`, as text-embeddings-inference.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeiPredictRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// The raw logits, no softmax (as text-embeddings-inference), instead
    /// of the calibrated probabilities.
    #[serde(default)]
    pub raw_scores: bool,
    /// Cut over-long texts (default true).
    #[serde(default = "yes")]
    pub truncate: bool,
    /// Which end of an over-long text is cut, as text-embeddings-inference
    /// (and the tokenizers library) name it: `Right` (default) keeps the
    /// start, `Left` keeps the end.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
}

/// text-embeddings-inference's `truncation_direction`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum TruncationDirection {
    /// Cut the start: keep the last tokens.
    Left,
    /// Cut the end: keep the first tokens.
    #[default]
    Right,
}

impl TeiPredictRequest {
    /// How to read an over-long text.
    pub fn truncation(&self) -> crate::model::Truncation {
        use crate::model::Truncation;
        match (self.truncate, self.truncation_direction) {
            (false, _) => Truncation::Refuse,
            (true, TruncationDirection::Right) => Truncation::KeepStart,
            (true, TruncationDirection::Left) => Truncation::KeepEnd,
        }
    }
}

/// `POST /predict` answer: the labels of one text, or of each text of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TeiPredictAnswer {
    /// For `"inputs": "text"`: labels with scores, high to low.
    One(Vec<LabelScore>),
    /// For a list of texts: one such list per text, in order.
    Many(Vec<Vec<LabelScore>>),
}

/// `POST /`, as the Hugging Face Inference API.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HfRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// Optional parameters (an object, or null).
    #[serde(default)]
    #[schema(value_type = Option<HfParameters>)]
    pub parameters: Option<serde_json::Value>,
    /// The Inference API's `options` (`wait_for_model`, `use_cache`): accepted
    /// and ignored, since the model is always loaded and nothing is cached.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Parameters of the Hugging Face text-classification task.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HfParameters {
    /// Number of labels to return (more than the model has is all).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub top_k: Option<usize>,
    /// `softmax` (default, calibrated), `sigmoid` or `none` (raw logits).
    #[serde(default)]
    pub function_to_apply: Option<FunctionToApply>,
}

/// What the transformers pipeline applies to the logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionToApply {
    /// The softmax with the model's fitted temperature.
    #[default]
    Softmax,
    /// Each logit's sigmoid.
    Sigmoid,
    /// The logits.
    None,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// The model requests without a `model` field get.
    pub default: String,
    /// Every model served, the default first.
    pub models: Vec<ModelSummary>,
    /// The cascades served (`--cascade`).
    pub cascades: Vec<CascadeSummary>,
}

/// One cascade in `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CascadeSummary {
    /// The name requests use.
    pub name: String,
    /// Its models, in the order they are asked.
    pub models: Vec<String>,
    /// For each model but the last: the calibrated top probability from
    /// which it answers (null: it passes every text on).
    pub thresholds: Vec<Option<f64>>,
}

/// One model in `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelSummary {
    /// The name requests use.
    pub name: String,
    /// The directory it was loaded from.
    pub directory: String,
    /// Labels in class order.
    pub labels: Vec<String>,
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Bytes of model.safetensors.
    pub weights_bytes: u64,
    /// Hex sha256 of model.safetensors.
    pub weights_sha256: String,
    /// Arithmetic of the dense layers.
    pub precision: String,
    /// When this copy was loaded (RFC 3339, UTC).
    pub loaded_at: String,
    /// Whether its engine has warmed up and runs.
    pub ready: bool,
}

/// `POST /v1/admin/reload` (the body may be empty: every model).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// Reload only this model (default: every model).
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
}

/// `POST /v1/admin/reload` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReloadAnswer {
    /// The models switched to their new copies.
    pub reloaded: Vec<crate::serve::models::Reloaded>,
}

/// `GET /v1/model` and `GET /v1/models/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// Model name (its directory name).
    pub name: String,
    /// Labels in class order.
    pub labels: Vec<String>,
    /// Encoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Attention heads.
    pub attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest input in tokens.
    pub max_length: usize,
    /// Dropout rates: hidden, attention, classifier.
    pub dropout: [f64; 3],
    /// Fitted temperature.
    pub temperature: f64,
    /// Hex sha256 of model.safetensors.
    pub weights_sha256: String,
    /// Arithmetic of the dense layers: `f32`, or `bf16` (`--precision`).
    #[serde(default)]
    pub precision: String,
    /// Contents of metrics.json when the model has one.
    #[schema(value_type = Object)]
    pub training_metrics: Option<serde_json::Value>,
    /// What the model's calibration.json supports (null without one: no
    /// `alpha`, no coverage policies, no distance).
    pub calibration: Option<CalibrationInfo>,
    /// The sampling modes of the uncertainty endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingInfo>,
    /// What one request may ask of this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RequestLimits>,
}

/// The per-request limits in force, so a client can size its requests.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestLimits {
    /// Most inputs per request.
    pub max_inputs: usize,
    /// Largest body in bytes.
    pub max_body_bytes: usize,
    /// Characters of one input read (longer ones are cut, or refused without truncation).
    pub max_input_chars: usize,
    /// Most MC-dropout samples per request.
    pub max_samples: usize,
    /// Most token passes one request may cost (tokens × samples in full mode).
    pub max_request_cost: usize,
    /// Milliseconds a request may take before it is answered 503.
    pub request_timeout_ms: u64,
}

/// The decision tools a model's calibration supports.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CalibrationInfo {
    /// Calibration examples scored.
    pub examples: usize,
    /// MC-dropout samples T behind the sampled scores.
    pub mc_samples: usize,
    /// Sampling modes with calibration scores (`alpha` and coverage policies
    /// on the uncertainty endpoint need the request's mode here).
    pub modes: Vec<String>,
    /// Whether answers carry `feature_distance` and `distance_percentile`.
    pub feature_distance: bool,
    /// How that distance is measured: `knn` (cosine distance to the k-th
    /// nearest training text) or `mahalanobis` (to the nearest class mean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<DistanceInfo>,
    /// The top layers the `top` mode's scores sample (its default `top_layers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_layers: Option<usize>,
    /// The default abstention policy, if any.
    pub abstention: Option<AbstentionPolicy>,
}

/// How answers' `feature_distance` is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DistanceInfo {
    /// `knn` or `mahalanobis`.
    pub score: String,
    /// The hidden states compared, e.g. `layer 3 mean`.
    pub representation: String,
    /// With `knn`: which neighbour's distance, and how many training texts are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// With `knn`: training texts stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<usize>,
}

/// What the uncertainty endpoint's `mode` can be for this model.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamplingInfo {
    /// `full`, `head` and `top`.
    pub modes: Vec<String>,
    /// The largest `top_layers` (the model's layers).
    pub max_top_layers: usize,
    /// `top_layers` when a `top` request names none.
    pub default_top_layers: usize,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// True when the model is loaded and warm.
    pub ready: bool,
    /// Jobs waiting for the engine.
    pub queue_depth: usize,
    /// `ok`, `unavailable` (predictions are still answered and queued for
    /// the database) or `off` (`--no-database`).
    pub database: String,
    /// Predictions answered but not yet written to the database.
    pub log_backlog: i64,
    /// Why the database is unavailable, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_error: Option<String>,
}

/// `POST /v1/feedback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `id` of a prediction this server logged.
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub prediction_id: String,
    /// The correct label (one of the model's labels).
    #[schema(min_length = 1, pattern = r"^[^\u0000]*$")]
    pub label: String,
    /// Who or what gave the label, e.g. a reviewer's name (at most 200 characters).
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000]*$")]
    pub source: Option<String>,
}

/// `POST /v1/feedback` answer (201): what is now stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedbackReceipt {
    /// The prediction corrected.
    pub prediction_id: String,
    /// The correct label stored.
    pub label: String,
    /// The label the model had predicted.
    pub predicted_label: String,
    /// Whether the model was right.
    pub correct: bool,
    /// Source, as given.
    pub source: Option<String>,
}

/// `GET /v1/review-queue` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewQueue {
    /// Model name the queue is for.
    pub model: String,
    /// Predictions without feedback, most uncertain first.
    pub items: Vec<crate::store::ReviewItem>,
    /// Send as `?after=` for the next page; null on the last page.
    pub next: Option<String>,
}
