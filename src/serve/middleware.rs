//! The layers every request passes: the request id, span and metrics
//! (`observe`), the API key, and candor's answers for unknown routes,
//! wrong methods and panics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tracing::Instrument;

use super::error::ApiError;
use super::record::RequestContext;
use super::AppState;

/// A handler that panicked answers 500 in candor's format rather than
/// closing the connection with no answer.
pub(super) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a handler panicked".into());
    ApiError::Internal(format!("panic: {detail}")).into_response()
}

pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

pub(super) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// Rejects calls without the configured bearer key, comparing in constant time.
pub(super) async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.settings.api_key else {
        return next.run(request).await;
    };
    // The playground page holds no data; the calls it makes need the key.
    if request.method() == Method::GET && request.uri().path() == "/" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110, section 11.1).
pub(super) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The method as a metrics label: the standard ones by name, anything else
/// `other`, so that made-up methods cannot create new series.
pub(super) fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

/// Request id, one span per request, and the request metrics.
pub(super) async fn observe(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(request.method());
    request.extensions_mut().insert(RequestContext {
        id: request_id.clone(),
        started,
    });
    // Handlers record into this span (the current one while they run), so the
    // "answered" line carries the sizes and the tokenize/queue/inference times.
    let empty = tracing::field::Empty;
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        %method,
        %route,
        inputs = empty,
        samples = empty,
        seed = empty,
        tokenize_ms = empty,
        queue_ms = empty,
        inference_ms = empty
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .with_label_values(&[&route, method, &status])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[&route])
        .observe(elapsed.as_secs_f64());
    span.in_scope(
        || tracing::info!(status = %status, ms = elapsed.as_secs_f64() * 1e3, "answered"),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
