//! Bodies of the model routes: `/v1/model`, `/v1/models`, reload and readiness.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AbstentionPolicy;

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
