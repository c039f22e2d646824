//! Operational routes: model description, liveness, readiness, metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::api::{ModelInfo, Readiness, RequestLimits};
use super::AppState;

/// The model being served: labels, sizes, temperature, training metrics, weights hash.
#[utoipa::path(get, path = "/v1/model", responses((status = 200, body = ModelInfo)))]
pub async fn model(State(state): State<Arc<AppState>>) -> Json<ModelInfo> {
    let limits = &state.settings.limits;
    let mut info = state.info.clone();
    info.limits = Some(RequestLimits {
        max_inputs: limits.max_inputs,
        max_body_bytes: limits.max_body_bytes,
        max_input_chars: limits.max_input_chars,
        max_samples: state.settings.sampling.max_samples,
        max_request_cost: state.engine.cost_budget(),
        request_timeout_ms: limits.request_timeout.as_millis() as u64,
    });
    Json(info)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the model is loaded and warm (503 until then).
///
/// The database's state is reported but does not make the server unready:
/// predictions are answered without it (and logged once it is back), so a
/// load balancer should keep sending them.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let ready = state.engine.is_ready();
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
            queue_depth: state.engine.queue_depth(),
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
    state
        .metrics
        .queue_depth
        .set(state.engine.queue_depth() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
