//! A JSON extractor whose rejections use candor's error format.
//!
//! axum's `Json` answers syntax errors with 400 and plain text; candor answers
//! 422 JSON for anything that is not the expected JSON, 400 only for bodies that
//! are not UTF-8, and 413 for bodies over the limit. The content type is not
//! required, so `curl -d` works.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body, parsed once at the edge.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::BodyTooLarge(limit))?;
        parse(&bytes).map(JsonBody)
    }
}

/// The body limit in force, recorded so a rejection can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parses a JSON body: 400 for non-UTF-8, 422 for anything else that is wrong.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(ApiError::InvalidJson(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    serde_json::from_str(text)
        .map_err(|e| ApiError::InvalidJson(format!("invalid request body: {e}")))
}

/// A query string, parsed once at the edge; a malformed one is 422 in
/// candor's error format.
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::Validation(format!("invalid query string: {}", e.body_text())))
    }
}
