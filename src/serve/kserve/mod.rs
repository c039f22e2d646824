//! KServe's Open Inference Protocol (v2) over the served models, with
//! Triton's binary tensor extension, so `tritonclient` and KServe's own
//! clients work unchanged.
//!
//! Each model takes one input, `text` (`BYTES`, shape `[n]` or `[n, 1]`), and
//! answers `label` (`BYTES`, `[n]`) and `probabilities` (`FP32`,
//! `[n, labels]`, the calibrated softmax). With `"parameters": {"samples": T}`
//! (and optionally `seed`, `mode`, `top_layers`, as on the uncertainty route)
//! it runs MC dropout: `probabilities` are the means over the samples, and
//! `predictive_entropy`, `mutual_information` (`FP32`, `[n]`) and `std`
//! (`FP32`, `[n, labels]`) join them. Errors are `{"error": message}` (with
//! candor's `type` beside it), 400 for a request the protocol calls invalid.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::api::ModeName;
use super::classify::{check_samples, logits_for, rand_seed, samples_for, SampleJob};
use super::error::ApiError;
use super::extract::RawBody;
use super::models::ServedModel;
use super::record::{log_deterministic, log_predictions, Answered, RequestContext};
use super::AppState;
use crate::model::softmax;
use crate::uncertainty::{summarize, McSummary, SamplingMode};
use tensors::{input_texts, requested_outputs, respond, split_body, Data, Tensor};

mod tensors;

/// The header that splits a body into its JSON part and binary tensors.
pub(super) const HEADER_LENGTH: &str = "inference-header-content-length";
/// The one input a model takes.
pub(super) const INPUT: &str = "text";
/// Outputs every answer can carry, and those only sampling gives.
pub(super) const OUTPUTS: [&str; 2] = ["label", "probabilities"];
pub(super) const SAMPLED_OUTPUTS: [&str; 3] = ["predictive_entropy", "mutual_information", "std"];

/// An error in the protocol's shape; what candor answers 422 is 400 here.
pub struct V2Error(ApiError);

impl From<ApiError> for V2Error {
    fn from(e: ApiError) -> Self {
        V2Error(e)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let (status, kind) = self.0.status_and_kind();
        let status = match status {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        if let ApiError::Internal(detail) = &self.0 {
            tracing::error!(%detail, "internal error");
        }
        let body = json!({"error": self.0.to_string(), "type": kind});
        (status, Json(body)).into_response()
    }
}

pub(super) fn invalid(message: impl Into<String>) -> V2Error {
    V2Error(ApiError::Validation(message.into()))
}

/// `GET /v2`: the server's name, version and protocol extensions.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "candor",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: every model is warm.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    readiness(
        state.models.is_ready(),
        json!({"ready": state.models.is_ready()}),
    )
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, V2Error> {
    let model = state.models.get(Some(&name))?;
    let ready = model.engine.is_ready();
    Ok(readiness(ready, json!({"name": name, "ready": ready})))
}

fn readiness(ready: bool, body: Value) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /v2/models/{name}`: the input and outputs, and the labels.
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, V2Error> {
    let model = state.models.get(Some(&name))?;
    let labels = model.labels().len();
    let tensor = |name: &str, datatype: &str, shape: Value| json!({"name": name, "datatype": datatype, "shape": shape});
    Ok(Json(json!({
        "name": model.name,
        "versions": ["1"],
        "platform": "candor",
        "inputs": [tensor(INPUT, "BYTES", json!([-1]))],
        "outputs": [
            tensor("label", "BYTES", json!([-1])),
            tensor("probabilities", "FP32", json!([-1, labels])),
            tensor("predictive_entropy", "FP32", json!([-1])),
            tensor("mutual_information", "FP32", json!([-1])),
            tensor("std", "FP32", json!([-1, labels])),
        ],
        "parameters": {
            "labels": model.labels().join(","),
            "weights_sha256": model.info.weights_sha256,
        },
    })))
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Path(name): Path<String>,
    RawBody(headers, body): RawBody,
) -> Result<Response, V2Error> {
    let model = state.models.get(Some(&name))?;
    let (request, binary) = split_body(&headers, &body)?;
    let texts = input_texts(&request, binary)?;
    let wanted = requested_outputs(&request)?;
    let sampling = Sampling::of(&state, &model, &request.parameters)?;
    let (tensors, ids) = match sampling {
        None => classify(&state, &model, &context, texts).await?,
        Some(sampling) => sample(&state, &model, &context, texts, sampling).await?,
    };
    let tensors: Vec<(Tensor, bool)> = tensors
        .into_iter()
        .filter_map(|t| wanted.binary_of(t.name).map(|binary| (t, binary)))
        .collect();
    if let Some(missing) = wanted.missing(&tensors) {
        return Err(invalid(format!(
            "output '{missing}' needs sampling: add \"parameters\": {{\"samples\": 30}}"
        )));
    }
    let mut parameters = Map::new();
    parameters.insert("prediction_ids".into(), Value::String(ids.join(",")));
    Ok(respond(&model, request.id, parameters, tensors))
}

/// MC dropout as a request's parameters ask for it.
struct Sampling {
    samples: usize,
    seed: u64,
    mode: SamplingMode,
}

impl Sampling {
    /// `None` unless the parameters name `samples`.
    fn of(
        state: &AppState,
        model: &ServedModel,
        parameters: &Map<String, Value>,
    ) -> Result<Option<Self>, V2Error> {
        let Some(samples) = parameters.get("samples") else {
            for name in ["seed", "mode", "top_layers"] {
                if parameters.contains_key(name) {
                    return Err(invalid(format!(
                        "the parameter {name} applies to sampling: add \"samples\" with it"
                    )));
                }
            }
            return Ok(None);
        };
        let whole = |name: &str, value: &Value| {
            value
                .as_u64()
                .ok_or_else(|| invalid(format!("{name} must be a whole number, got {value}")))
        };
        let samples = check_samples(state, Some(whole("samples", samples)? as usize))?;
        let seed = match parameters.get("seed") {
            Some(seed) => whole("seed", seed)?,
            None => rand_seed(),
        };
        let mode: ModeName = match parameters.get("mode") {
            Some(mode) => {
                serde_json::from_value(mode.clone()).map_err(|e| invalid(e.to_string()))?
            }
            None => ModeName::Full,
        };
        let mode = model
            .sampling_mode(mode, parameters.get("top_layers"))
            .map_err(invalid)?;
        Ok(Some(Self {
            samples,
            seed,
            mode,
        }))
    }
}

/// The deterministic answer: labels and calibrated probabilities.
async fn classify(
    state: &AppState,
    model: &ServedModel,
    context: &RequestContext,
    texts: Vec<String>,
) -> Result<(Vec<Tensor>, Vec<String>), V2Error> {
    let logits = logits_for(state, model, texts.clone(), true).await?;
    let probabilities: Vec<Vec<f32>> = logits
        .iter()
        .map(|l| softmax(l, model.temperature()))
        .collect();
    let ids = log_deterministic(
        state,
        model,
        context,
        "v2_infer",
        &texts,
        &probabilities,
        &[],
    );
    Ok((base_tensors(model, &probabilities), ids))
}

/// The MC-dropout answer: mean probabilities and the uncertainty figures.
async fn sample(
    state: &AppState,
    model: &ServedModel,
    context: &RequestContext,
    texts: Vec<String>,
    sampling: Sampling,
) -> Result<(Vec<Tensor>, Vec<String>), V2Error> {
    let Sampling {
        samples,
        seed,
        mode,
    } = sampling;
    let job = SampleJob {
        samples,
        seed,
        mode,
        features: false,
    };
    let per_input = samples_for(state, model, texts.clone(), true, job)
        .await?
        .probabilities;
    let summaries: Vec<McSummary> = per_input.iter().map(|s| summarize(s)).collect();
    let answered: Vec<Answered> = texts
        .iter()
        .zip(&summaries)
        .map(|(text, s)| Answered::sampled(text, s, mode, seed, None))
        .collect();
    let ids = log_predictions(state, model, context, "v2_infer", &answered)
        .iter()
        .map(|id| id.to_string())
        .collect();
    let means: Vec<Vec<f32>> = summaries.iter().map(|s| s.mean.clone()).collect();
    let mut tensors = base_tensors(model, &means);
    let n = summaries.len();
    let per_text = |figure: fn(&McSummary) -> f64| {
        Data::Fp32(summaries.iter().map(|s| figure(s) as f32).collect())
    };
    tensors.extend([
        Tensor {
            name: "predictive_entropy",
            shape: vec![n],
            data: per_text(|s| s.predictive_entropy),
        },
        Tensor {
            name: "mutual_information",
            shape: vec![n],
            data: per_text(|s| s.mutual_information),
        },
        Tensor {
            name: "std",
            shape: vec![n, model.labels().len()],
            data: Data::Fp32(summaries.iter().flat_map(|s| s.std.clone()).collect()),
        },
    ]);
    Ok((tensors, ids))
}

/// `label` and `probabilities` of per-text probabilities in class order.
fn base_tensors(model: &ServedModel, probabilities: &[Vec<f32>]) -> Vec<Tensor> {
    let labels = model.labels();
    let best = |p: &Vec<f32>| {
        let i = (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0);
        labels[i].clone()
    };
    vec![
        Tensor {
            name: "label",
            shape: vec![probabilities.len()],
            data: Data::Bytes(probabilities.iter().map(best).collect()),
        },
        Tensor {
            name: "probabilities",
            shape: vec![probabilities.len(), labels.len()],
            data: Data::Fp32(probabilities.concat()),
        },
    ]
}
