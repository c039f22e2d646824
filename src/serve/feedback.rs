//! The active-learning loop over HTTP: `POST /v1/feedback`,
//! `GET /v1/review-queue` and `GET /v1/stats`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::api::{FeedbackReceipt, FeedbackRequest, ReviewQueue};
use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, QueryParams};
use super::AppState;
use crate::store::{FeedbackRecord, PredictionTarget, ReviewCursor, Stats, Store};

/// Longest `source` accepted.
const MAX_SOURCE_CHARS: usize = 200;
/// Most entries one review-queue call returns.
const MAX_REVIEW_ITEMS: usize = 1000;
/// How long feedback waits for a just-answered prediction to reach the database.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Lookups of a prediction another replica may still be writing.
const REPLICA_RETRIES: usize = 5;
const REPLICA_RETRY_WAIT: Duration = Duration::from_millis(200);

fn store(state: &AppState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or(ApiError::PersistenceOff)
}

/// Record the correct label for a logged prediction.
///
/// Answers 201 only once the feedback is committed. Feedback on a prediction
/// that already has some replaces it: the latest word counts.
#[utoipa::path(post, path = "/v1/feedback", request_body = FeedbackRequest,
    responses((status = 201, body = FeedbackReceipt), (status = 404, body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 501, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<FeedbackRequest>,
) -> Result<(StatusCode, Json<FeedbackReceipt>), ApiError> {
    let store = store(&state)?;
    let id = Uuid::parse_str(req.prediction_id.trim()).map_err(|_| {
        ApiError::Validation(format!(
            "prediction_id must be the id of a prediction (a UUID), got '{}'",
            req.prediction_id
        ))
    })?;
    let source = req.source.filter(|s| !s.trim().is_empty());
    if source
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_SOURCE_CHARS)
    {
        return Err(ApiError::Validation(format!(
            "source must be at most {MAX_SOURCE_CHARS} characters"
        )));
    }
    let target = find_prediction(&state, store, id).await?;
    if !target.labels.contains(&req.label) {
        return Err(ApiError::Validation(format!(
            "label '{}' is not one of the model's labels: {}",
            req.label,
            target.labels.join(", ")
        )));
    }
    store
        .save_feedback(&FeedbackRecord {
            prediction_id: id,
            label: req.label.clone(),
            source: source.clone(),
            created_at: SystemTime::now(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(FeedbackReceipt {
            prediction_id: id.to_string(),
            correct: target.predicted == req.label,
            predicted_label: target.predicted,
            label: req.label,
            source,
        }),
    ))
}

/// Finds the prediction feedback is about. It may have been answered a
/// moment ago and still be on its way to the database, from this server (so
/// its log is flushed first) or from another replica (so the lookup is
/// retried for about a second) before the answer is 404.
async fn find_prediction(
    state: &AppState,
    store: &Store,
    id: Uuid,
) -> Result<PredictionTarget, ApiError> {
    if let Some(target) = store.prediction_target(id).await? {
        return Ok(target);
    }
    if let Some(log) = &state.log {
        log.flush(FLUSH_WAIT)
            .await
            .map_err(|e| ApiError::DatabaseUnavailable(e.to_string()))?;
    }
    for _ in 0..REPLICA_RETRIES {
        if let Some(target) = store.prediction_target(id).await? {
            return Ok(target);
        }
        tokio::time::sleep(REPLICA_RETRY_WAIT).await;
    }
    Err(ApiError::PredictionNotFound(id.to_string()))
}

/// Query of `GET /v1/review-queue`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQueueQuery {
    /// Most entries to return (1–1000, default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Model name (default: the server's default model).
    #[param(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
    /// The `next` of the previous page: this page starts after its last item
    /// (empty: the first page).
    #[param(
        pattern = "^((-?[0-9]{1,9}_){2}(-?[0-9]{1,20}(\\.[0-9]{1,400})?_){3}[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub after: Option<String>,
}

/// Logged predictions nobody has labelled yet, most uncertain first.
///
/// Abstentions first, then by mutual information (MC-dropout predictions
/// first), then predictive entropy, then lowest score; a text logged
/// several times appears once, and drops out once any of its predictions
/// has feedback. Page with `after`, set to the previous answer's `next`.
#[utoipa::path(get, path = "/v1/review-queue", params(ReviewQueueQuery),
    responses((status = 200, body = ReviewQueue), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn review_queue(
    State(state): State<Arc<AppState>>,
    QueryParams(query): QueryParams<ReviewQueueQuery>,
) -> Result<Json<ReviewQueue>, ApiError> {
    let store = store(&state)?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_REVIEW_ITEMS).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_REVIEW_ITEMS}, got {limit}"
        )));
    }
    // An empty cursor is no cursor: the first page.
    let after = query
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(parse_cursor)
        .transpose()?;
    let model = model_name(&state, query.model)?;
    // What the writer still holds belongs in the queue too.
    if let Some(log) = &state.log {
        log.flush(FLUSH_WAIT)
            .await
            .map_err(|e| ApiError::DatabaseUnavailable(e.to_string()))?;
    }
    let page = store
        .review_page(Some(&model), after.as_ref(), limit)
        .await?;
    Ok(Json(ReviewQueue {
        model,
        items: page.items,
        next: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The model a query names (served here or not: the database may hold
/// predictions of models other replicas serve, or served before), or the
/// default model.
fn model_name(state: &AppState, named: Option<String>) -> Result<String, ApiError> {
    Ok(named.unwrap_or_else(|| state.models.default_model().name.clone()))
}

fn parse_cursor(after: &str) -> Result<ReviewCursor, ApiError> {
    after.parse().map_err(|_| {
        ApiError::Validation(
            "after must be the `next` of an earlier review-queue answer, unchanged".into(),
        )
    })
}

/// Query of `GET /v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Model name (default: the server's default model).
    #[param(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
}

/// Prediction and feedback counts, accuracy on feedback (overall and per
/// label) and mean uncertainty, over every replica sharing the database.
#[utoipa::path(get, path = "/v1/stats", params(StatsQuery),
    responses((status = 200, body = Stats), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let store = store(&state)?;
    let model = model_name(&state, query.model)?;
    Ok(Json(store.stats(&model).await?))
}
