//! Hugging Face compatible routes: `POST /predict` as text-embeddings-inference
//! and `POST /` as the Hugging Face Inference API, so existing clients
//! (`huggingface_hub.InferenceClient`) work unchanged.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::{HfRequest, LabelScore, TeiPredictRequest};
use super::classify::{logits_for, ranked};
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::AppState;
use crate::model::softmax;

/// text-embeddings-inference's `/predict`: all labels, high to low; a list of lists for a batch.
#[utoipa::path(post, path = "/predict", request_body = TeiPredictRequest,
    responses((status = 200, body = Vec<LabelScore>), (status = 422, body = ErrorBody)))]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<TeiPredictRequest>,
) -> Result<Response, ApiError> {
    let single = req.inputs.is_single();
    let temperature = if req.raw_scores {
        1.0
    } else {
        state.classifier.config.candor.temperature
    };
    let logits = logits_for(&state, req.inputs.into_texts(), req.truncate).await?;
    let mut all: Vec<Vec<LabelScore>> = logits
        .iter()
        .map(|l| ranked(&state.classifier.labels, &softmax(l, temperature)))
        .collect();
    Ok(if single {
        Json(all.remove(0)).into_response()
    } else {
        Json(all).into_response()
    })
}

/// The Hugging Face Inference API's text classification: a list of label lists, one per input.
#[utoipa::path(post, path = "/", request_body = HfRequest,
    responses((status = 200, body = Vec<Vec<LabelScore>>), (status = 422, body = ErrorBody)))]
pub async fn inference_api(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<HfRequest>,
) -> Result<Json<Vec<Vec<LabelScore>>>, ApiError> {
    let parameters = req.parameters.unwrap_or_default();
    let labels = &state.classifier.labels;
    let k = match parameters.top_k {
        Some(0) => return Err(ApiError::Validation("top_k must be at least 1".into())),
        Some(k) => k.min(labels.len()),
        None => labels.len(),
    };
    let function = parameters
        .function_to_apply
        .unwrap_or_else(|| "softmax".into());
    let temperature = state.classifier.config.candor.temperature;
    let score: fn(&[f32], f64) -> Vec<f32> = match function.as_str() {
        "softmax" => softmax,
        "sigmoid" => |l, _| l.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
        "none" => |l, _| l.to_vec(),
        other => {
            return Err(ApiError::Validation(format!(
                "function_to_apply must be softmax, sigmoid or none, got '{other}'"
            )))
        }
    };
    let logits = logits_for(&state, req.inputs.into_texts(), true).await?;
    Ok(Json(
        logits
            .iter()
            .map(|l| {
                let mut scores = ranked(labels, &score(l, temperature));
                scores.truncate(k);
                scores
            })
            .collect(),
    ))
}
