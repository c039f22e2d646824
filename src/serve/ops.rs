//! Operational routes: model descriptions, reload, liveness, readiness, metrics.

use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::api::{
    CalibrationInfo, CascadeSummary, DistanceInfo, ModelInfo, ModelList, ModelSummary, Readiness,
    ReloadAnswer, ReloadRequest, RequestLimits, SamplingInfo,
};
use super::error::{ApiError, ErrorBody};
use super::models::ServedModel;
use super::AppState;
use crate::model::{Classifier, ModelDir};
use crate::uncertainty::calibration::Calibration;

/// The default model: labels, sizes, temperature, training metrics, weights hash.
#[utoipa::path(get, path = "/v1/model", responses((status = 200, body = ModelInfo)))]
pub async fn model(State(state): State<Arc<AppState>>) -> Json<ModelInfo> {
    Json(described(&state, &state.models.default_model()))
}

/// One model by name, as `/v1/model` describes the default one.
#[utoipa::path(get, path = "/v1/models/{name}", params(("name" = String, Path, description = "A model's name")),
    responses((status = 200, body = ModelInfo), (status = 404, body = ErrorBody)))]
pub async fn model_by_name(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    let model = state.models.get(Some(&name))?;
    Ok(Json(described(&state, &model)))
}

/// Every model served, the default first: labels, sizes and weights hash.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelList)))]
pub async fn models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    let all = state.models.all();
    let cascades = state
        .models
        .cascades()
        .iter()
        .filter_map(|c| state.models.cascade(&c.name))
        .map(|plan| CascadeSummary {
            name: plan.name.clone(),
            models: plan.stages.iter().map(|(m, _)| m.name.clone()).collect(),
            thresholds: plan.stages[..plan.stages.len() - 1]
                .iter()
                .map(|(_, t)| *t)
                .collect(),
        })
        .collect();
    Json(ModelList {
        default: all[0].name.clone(),
        models: all.iter().map(|m| summary(m)).collect(),
        cascades,
    })
}

/// Re-reads model directories (every model, or the one named) and switches
/// requests to each new copy once it is loaded and warm; requests already
/// queued finish on the old one. When a directory fails to load nothing is
/// switched, the old models keep serving, and the answer says why. `SIGHUP`
/// does the same for every model.
#[utoipa::path(post, path = "/v1/admin/reload", request_body(content = Option<ReloadRequest>),
    responses((status = 200, body = ReloadAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 408, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reload(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<ReloadAnswer>, ApiError> {
    // No body, or JSON null, reloads every model (white space alone is neither).
    let everything = body.is_empty()
        || serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_null());
    let request: ReloadRequest = if everything {
        ReloadRequest::default()
    } else {
        crate::serve::extract::parse(&body)?
    };
    let reloaded = state.models.reload(request.model.as_deref()).await?;
    Ok(Json(ReloadAnswer { reloaded }))
}

/// A model's description with the limits this server sets.
fn described(state: &AppState, model: &ServedModel) -> ModelInfo {
    let limits = &state.settings.limits;
    let mut info = model.info.clone();
    info.limits = Some(RequestLimits {
        max_inputs: limits.max_inputs,
        max_body_bytes: limits.max_body_bytes,
        max_input_chars: limits.max_input_chars,
        max_samples: state.settings.sampling.max_samples,
        max_request_cost: model.engine.cost_budget(),
        request_timeout_ms: limits.request_timeout.as_millis() as u64,
    });
    info
}

fn summary(model: &ServedModel) -> ModelSummary {
    let info = &model.info;
    ModelSummary {
        name: model.name.clone(),
        directory: model.dir.display().to_string(),
        labels: info.labels.clone(),
        layers: info.layers,
        hidden_size: info.hidden_size,
        weights_bytes: std::fs::metadata(ModelDir::new(&model.dir).weights())
            .map_or(0, |m| m.len()),
        weights_sha256: info.weights_sha256.clone(),
        precision: info.precision.clone(),
        loaded_at: crate::store::timestamp(model.loaded_at),
        ready: model.engine.is_ready(),
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: every model is loaded and warm (503 until then).
///
/// The database's state is reported but does not make the server unready:
/// predictions are answered without it (and logged once it is back), so a
/// load balancer should keep sending them.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let ready = state.models.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let (database, database_error) = database_state(&state).await;
    (
        status,
        Json(Readiness {
            ready,
            queue_depth: state
                .models
                .all()
                .iter()
                .map(|m| m.engine.queue_depth())
                .sum(),
            database: database.to_string(),
            log_backlog: state.log.as_ref().map_or(0, |l| l.backlog()),
            database_error,
        }),
    )
}

/// `off`, `ok` or `unavailable` (with the reason): a quick ping, and the
/// writer's last attempt.
async fn database_state(state: &AppState) -> (&'static str, Option<String>) {
    let Some(store) = &state.store else {
        return ("off", None);
    };
    let ping = tokio::time::timeout(Duration::from_secs(1), store.ping()).await;
    match ping {
        Ok(Ok(())) => match state.log.as_ref().and_then(|l| l.last_error()) {
            Some(error) => ("unavailable", Some(error)),
            None => ("ok", None),
        },
        Ok(Err(e)) => ("unavailable", Some(e.to_string())),
        Err(_) => ("unavailable", Some("no answer within 1 s".to_string())),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    for model in state.models.all() {
        state
            .metrics
            .queue_depth
            .with_label_values(&[&model.name])
            .set(model.engine.queue_depth() as i64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// What `GET /v1/models/{name}` says of a model loaded from `dir`.
pub(super) fn model_info(
    name: &str,
    dir: &Path,
    classifier: &Classifier,
    calibration: Option<&Calibration>,
) -> ModelInfo {
    let c = &classifier.config;
    let training_metrics = std::fs::read_to_string(ModelDir::new(dir).metrics())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    ModelInfo {
        name: name.to_string(),
        labels: classifier.labels.clone(),
        layers: c.num_hidden_layers,
        hidden_size: c.hidden_size,
        attention_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        vocab_size: c.vocab_size,
        max_length: c.candor.max_length,
        dropout: [
            c.hidden_dropout_prob,
            c.attention_probs_dropout_prob,
            c.classifier_dropout_rate(),
        ],
        temperature: c.candor.temperature,
        weights_sha256: classifier.weights_sha256.clone(),
        precision: classifier.precision.to_string(),
        training_metrics,
        calibration: calibration.map(|c| CalibrationInfo {
            examples: c.examples,
            mc_samples: c.mc_samples,
            modes: [
                ("full", c.full.is_some()),
                ("head", c.head.is_some()),
                ("top", c.top.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(mode, _)| mode.to_string())
            .collect(),
            feature_distance: c.scores_distances(),
            distance: distance_info(c),
            top_layers: c.top.as_ref().map(|t| t.layers),
            abstention: c.abstention.clone(),
        }),
        sampling: Some(SamplingInfo {
            modes: vec!["full".into(), "head".into(), "top".into()],
            max_top_layers: c.num_hidden_layers,
            default_top_layers: calibration
                .and_then(|c| c.top.as_ref())
                .map_or(1, |t| t.layers),
        }),
        limits: None,
    }
}

/// How a calibration's distance is measured, for `/v1/model`.
fn distance_info(c: &Calibration) -> Option<DistanceInfo> {
    match (&c.neighbours, &c.feature_distance) {
        (Some(n), _) => Some(DistanceInfo {
            score: "knn".into(),
            representation: n.representation.to_string(),
            k: Some(n.k),
            stored: Some(n.stored),
        }),
        (None, Some(_)) => Some(DistanceInfo {
            score: "mahalanobis".into(),
            representation: "last layer mean".into(),
            k: None,
            stored: None,
        }),
        (None, None) => None,
    }
}
