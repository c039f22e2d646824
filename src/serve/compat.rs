//! Hugging Face compatible routes: `POST /predict` as text-embeddings-inference
//! and `POST /` as the Hugging Face Inference API, so existing clients
//! (`huggingface_hub.InferenceClient`) work unchanged.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::api::{
    FunctionToApply, HfParameters, HfRequest, LabelScore, TeiPredictAnswer, TeiPredictRequest,
};
use super::classify::{check_top_k, logits_for, ranked};
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::record::{log_deterministic, RequestContext};
use super::AppState;
use crate::model::softmax;

/// text-embeddings-inference's `/predict`: all labels, high to low; a list of lists for a batch.
#[utoipa::path(post, path = "/predict", request_body = TeiPredictRequest,
    responses((status = 200, body = TeiPredictAnswer), (status = 400, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    JsonBody(req): JsonBody<TeiPredictRequest>,
) -> Result<Response, ApiError> {
    let model = state.models.default_model();
    let truncation = req.truncation();
    let single = req.inputs.is_single();
    let texts = req.inputs.into_texts();
    let logits = logits_for(&state, &model, texts.clone(), truncation).await?;
    // What is logged is the calibrated prediction, whatever the caller sees.
    let calibrated: Vec<Vec<f32>> = logits
        .iter()
        .map(|l| softmax(l, model.temperature()))
        .collect();
    let ids = log_deterministic(
        &state,
        &model,
        &context,
        "predict",
        &texts,
        &calibrated,
        &[],
    );
    // As text-embeddings-inference: raw scores are the logits, untouched.
    let shown = if req.raw_scores { &logits } else { &calibrated };
    let mut all: Vec<Vec<LabelScore>> = shown.iter().map(|p| ranked(model.labels(), p)).collect();
    let response = if single {
        Json(all.remove(0)).into_response()
    } else {
        Json(all).into_response()
    };
    Ok(with_prediction_ids(response, &ids))
}

/// The compatible bodies have no room for ids, so they travel in a header.
fn with_prediction_ids(mut response: Response, ids: &[String]) -> Response {
    if let Ok(value) = HeaderValue::from_str(&ids.join(",")) {
        response.headers_mut().insert("x-prediction-ids", value);
    }
    response
}

/// The Hugging Face Inference API's text classification: a list of label lists, one per input.
#[utoipa::path(post, path = "/", request_body = HfRequest,
    responses((status = 200, body = Vec<Vec<LabelScore>>), (status = 400, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn inference_api(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    JsonBody(req): JsonBody<HfRequest>,
) -> Result<Response, ApiError> {
    let model = state.models.default_model();
    let parameters: HfParameters = match req.parameters {
        None | Some(serde_json::Value::Null) => HfParameters::default(),
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value)
            .map_err(|e| ApiError::InvalidJson(format!("invalid parameters: {e}")))?,
        Some(other) => {
            return Err(ApiError::InvalidJson(format!(
                "parameters must be an object like {{\"top_k\": 2}}, got {other}"
            )))
        }
    };
    let labels = model.labels();
    let k = check_top_k(parameters.top_k, labels.len())?;
    let score: fn(&[f32], f64) -> Vec<f32> = match parameters.function_to_apply.unwrap_or_default()
    {
        FunctionToApply::Softmax => softmax,
        FunctionToApply::Sigmoid => |l, _| l.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
        FunctionToApply::None => |l, _| l.to_vec(),
    };
    let temperature = model.temperature();
    let texts = req.inputs.into_texts();
    let logits = logits_for(&state, &model, texts.clone(), true).await?;
    // What is logged is the calibrated prediction, whatever function the caller asked for.
    let calibrated: Vec<Vec<f32>> = logits.iter().map(|l| softmax(l, temperature)).collect();
    let ids = log_deterministic(
        &state,
        &model,
        &context,
        "inference_api",
        &texts,
        &calibrated,
        &[],
    );
    let body: Vec<Vec<LabelScore>> = logits
        .iter()
        .map(|l| {
            let mut scores = ranked(labels, &score(l, temperature));
            scores.truncate(k);
            scores
        })
        .collect();
    Ok(with_prediction_ids(Json(body).into_response(), &ids))
}
