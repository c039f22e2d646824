//! The one error type of the HTTP boundary and its single mapping to status codes.
//!
//! Every error leaves as JSON `{"error": message, "type": kind}` with a stable
//! `type`; internal failures are logged and become an opaque 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::engine::EngineError;
use crate::store::StoreError;

/// A refused value is the request's fault (422, no use retrying); a database
/// that is away or busy is a retryable 503; anything else is internal.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_refused_data() {
            ApiError::DataRefused(e.reason())
        } else if matches!(e, StoreError::Database(_)) && !e.is_permanent() {
            ApiError::DatabaseUnavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

/// A full queue is a retryable 429 and an engine that is gone a 503; a
/// model that failed is internal.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::QueueFull => ApiError::Overloaded,
            EngineError::Stopped | EngineError::Dropped => ApiError::Unavailable(e.to_string()),
            EngineError::Model(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON of the expected shape.
    #[error("{0}")]
    InvalidJson(String),
    /// The body is not UTF-8.
    #[error("request body is not valid UTF-8")]
    NotUtf8,
    /// A field has a value outside what is allowed.
    #[error("{0}")]
    Validation(String),
    /// More inputs than the server accepts in one request.
    #[error("{count} inputs exceed the maximum of {max} per request")]
    TooManyInputs {
        /// Inputs sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not declared as JSON.
    #[error(
        "the request body must be JSON sent with 'Content-Type: application/json' (got '{0}')"
    )]
    UnsupportedMediaType(String),
    /// The body exceeds the size limit (or its Content-Length says it will).
    #[error("request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// The body did not arrive within the body timeout.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// The body could not be read to its end: the client stopped sending it
    /// or the connection failed.
    #[error("the request body ended early or could not be read: {0}")]
    BodyIncomplete(String),
    /// The request is more work than the engine finishes within the timeout.
    #[error("this request costs {cost} token passes (tokens × samples for full MC dropout), more than the {max} this server finishes within its {timeout_ms} ms request timeout; send fewer inputs, fewer samples or shorter texts, or use \"mode\": \"top\" or \"head\"")]
    TooCostly {
        /// What the request costs.
        cost: usize,
        /// The budget.
        max: usize,
        /// The request timeout the budget is derived from.
        timeout_ms: u64,
    },
    /// A text is longer than the model accepts and truncation was refused.
    #[error("input {index} has {tokens} tokens, more than the model's maximum of {max}; send \"truncate\": true to cut it")]
    InputTooLong {
        /// 0-based input index.
        index: usize,
        /// Tokens it needs.
        tokens: usize,
        /// The model's maximum.
        max: usize,
    },
    /// A text has more characters than the server reads and truncation was refused.
    #[error("input {index} has {chars} characters, more than the limit of {max}; send \"truncate\": true to cut it")]
    InputTooManyChars {
        /// 0-based input index.
        index: usize,
        /// Characters it has.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// Missing or wrong API key.
    #[error("missing or invalid API key: send 'Authorization: Bearer <key>'")]
    Unauthorized,
    /// The queue is full; try again shortly.
    #[error("the server is busy: the inference queue is full")]
    Overloaded,
    /// The request did not finish within the request timeout.
    #[error("the request did not finish within {0} ms")]
    Timeout(u64),
    /// The model is not ready (warming up or shutting down).
    #[error("the model is not available: {0}")]
    Unavailable(String),
    /// Feedback names a prediction that was never logged.
    #[error("no logged prediction has id {0}")]
    PredictionNotFound(String),
    /// The server runs with `--no-database`.
    #[error("this server keeps no database (started with --no-database), so it has no feedback, review queue or stats")]
    PersistenceOff,
    /// The database refused the request's data (a value it cannot store);
    /// sending the same again fails again.
    #[error("the database refused this request's data: {0}")]
    DataRefused(String),
    /// The database did not answer; details are logged.
    #[error("the database is unavailable; predictions are still answered, try this again later")]
    DatabaseUnavailable(String),
    /// The request names a model this server does not serve.
    #[error("no model named '{name}' is served here; the models are: {}", served.join(", "))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names served.
        served: Vec<String>,
    },
    /// A reload was asked for while another runs.
    #[error("a reload is already running; try again when it has finished")]
    ReloadInProgress,
    /// A model directory did not load on reload; the old model keeps serving.
    #[error("reload failed, nothing was switched and the models loaded before keep serving: {0}")]
    ReloadFailed(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// Anything unexpected; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable message.
    pub error: String,
    /// A stable machine-readable kind.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl ApiError {
    /// The HTTP status and stable kind of this error.
    pub fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_json"),
            ApiError::NotUtf8 => (StatusCode::BAD_REQUEST, "invalid_encoding"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            ApiError::TooManyInputs { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_inputs"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::BodyIncomplete(_) => (StatusCode::BAD_REQUEST, "body_incomplete"),
            ApiError::TooCostly { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_costly"),
            ApiError::InputTooLong { .. } | ApiError::InputTooManyChars { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "input_too_long")
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::PredictionNotFound(_) => (StatusCode::NOT_FOUND, "prediction_not_found"),
            ApiError::PersistenceOff => (StatusCode::NOT_IMPLEMENTED, "persistence_disabled"),
            ApiError::DataRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "data_refused"),
            ApiError::DatabaseUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::UnknownModel { .. } => (StatusCode::NOT_FOUND, "unknown_model"),
            ApiError::ReloadInProgress => (StatusCode::CONFLICT, "reload_in_progress"),
            ApiError::ReloadFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "reload_failed"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// True for the errors raised before the request body was read to its end.
    fn leaves_body_unread(&self) -> bool {
        matches!(
            self,
            ApiError::BodyTooLarge(_) | ApiError::BodyTimeout(_) | ApiError::BodyIncomplete(_)
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        if let ApiError::DatabaseUnavailable(detail) = &self {
            tracing::warn!(%detail, "database unavailable");
        }
        let body = ErrorBody {
            error: self.to_string(),
            kind,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(
            self,
            ApiError::Overloaded | ApiError::DatabaseUnavailable(_)
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.leaves_body_unread() {
            // The rest of the body is still on the wire: the connection
            // cannot carry another request, so say it closes.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(error: sqlx::Error) -> StatusCode {
        ApiError::from(StoreError::Database(error))
            .status_and_kind()
            .0
    }

    #[test]
    fn data_the_database_refuses_is_a_422_and_a_database_away_is_a_503() {
        let refused = sqlx::Error::Encode("a value the driver cannot send".into());
        assert_eq!(status_of(refused), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status_of(sqlx::Error::PoolTimedOut),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            status_of(sqlx::Error::Io(reset)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let malformed = ApiError::from(StoreError::Malformed("labels".into()));
        assert_eq!(
            malformed.status_and_kind().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn an_engine_that_is_full_or_gone_says_so_and_a_failed_model_is_opaque() {
        let answer = |e: EngineError| {
            let e = ApiError::from(e);
            (e.status_and_kind(), e.to_string())
        };
        assert_eq!(
            answer(EngineError::QueueFull),
            (
                (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
                "the server is busy: the inference queue is full".to_string()
            )
        );
        assert_eq!(
            answer(EngineError::Stopped),
            (
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                "the model is not available: the inference engine has stopped".to_string()
            )
        );
        assert_eq!(
            answer(EngineError::Dropped),
            (
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                "the model is not available: the inference engine dropped the request".to_string()
            )
        );
        let failed = crate::model::ModelError::Tensor(candle_core::Error::Msg("shape".into()));
        assert_eq!(
            answer(EngineError::Model(failed)),
            (
                (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                "internal error".to_string()
            )
        );
    }

    #[test]
    fn a_database_that_is_away_says_when_to_retry() {
        let response = ApiError::DatabaseUnavailable("pool timed out".into()).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
