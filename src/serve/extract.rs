//! A JSON extractor whose rejections use candor's error format.
//!
//! axum's `Json` answers syntax errors with 400 and plain text; candor answers
//! 422 JSON for anything that is not the expected JSON, 400 only for bodies that
//! are not UTF-8, and 413 for bodies over the limit.
//!
//! The body must be declared `Content-Type: application/json` (415 otherwise):
//! a browser can send a cross-site POST without asking first only as
//! `text/plain`, a form or with no content type at all, so insisting on JSON
//! keeps other web pages from using a visitor's access to this service.
//!
//! No string anywhere in a request may hold NUL (U+0000): PostgreSQL cannot
//! store it, and what one database accepts the other must too, so it is
//! refused at the edge with a 422 for both.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
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
        require_json(req.headers())?;
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
    let invalid =
        |e: serde_json::Error| ApiError::InvalidJson(format!("invalid request body: {e}"));
    // A NUL can only arrive escaped; the cheap scan spares the common case a
    // second parse, the walk tells an escaped backslash from a real NUL.
    if text.contains("\\u0000") {
        let value: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
        if let Some(path) = nul_in(&value, "") {
            return Err(ApiError::Validation(format!(
                "{path} contains a NUL character (\\u0000), which candor does not accept"
            )));
        }
    }
    serde_json::from_str(text).map_err(invalid)
}

/// Refuses bodies not declared as JSON (`application/json` or `…+json`).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(declared.to_string()))
    }
}

/// Where in `value` a string (or key) holds NUL, as a path like `inputs[2]`.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "the body".to_string()
        } else {
            path.to_string()
        }
    };
    match value {
        serde_json::Value::String(s) => s.contains('\0').then(here),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let inner = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(here())
            } else {
                nul_in(v, &inner)
            }
        }),
        _ => None,
    }
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
        // "%00" is the only way to spell NUL in a query string.
        if let Some(query) = parts.uri.query() {
            if query.contains("%00") {
                return Err(ApiError::Validation(
                    "the query string contains a NUL character (%00), which candor does not accept"
                        .into(),
                ));
            }
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::Validation(format!("invalid query string: {}", e.body_text())))
    }
}
