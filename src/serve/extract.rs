//! A JSON extractor whose rejections use candor's error format.
//!
//! axum's `Json` answers syntax errors with 400 and plain text; candor answers
//! 422 JSON for anything that is not the expected JSON, 400 for bodies that
//! are not UTF-8 or end early, 413 for bodies over the limit (before reading
//! any of it when the Content-Length says so) and 408 for bodies that do not
//! arrive within the body timeout.
//!
//! The body must be declared `Content-Type: application/json` (415 otherwise):
//! a browser can send a cross-site POST without asking first only as
//! `text/plain`, a form or with no content type at all, so insisting on JSON
//! keeps other web pages from using a visitor's access to this service.
//!
//! No string anywhere in a request may hold NUL (U+0000): PostgreSQL cannot
//! store it, and what one database accepts the other must too, so it is
//! refused at the edge with a 422 for both (the Inference API's `options`,
//! which nothing reads or stores, excepted).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_LENGTH;
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
        let bytes = read_body(req, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// A request body read whole within the body rules, with the request's
/// headers, for protocols that frame their own bodies (KServe's v2 with
/// binary tensors). The body may be declared JSON, `application/octet-stream`
/// or not at all, as KServe clients send it; the types a browser may send
/// cross-site without asking first (`text/plain`, forms) are refused.
pub struct RawBody(pub HeaderMap, pub Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = essence(req.headers());
        let allowed =
            declared.is_empty() || declared == "application/octet-stream" || is_json(&declared);
        if !allowed {
            return Err(ApiError::UnsupportedMediaType(declared));
        }
        let headers = req.headers().clone();
        let bytes = read_body(req, state).await?;
        Ok(RawBody(headers, bytes))
    }
}

/// Reads a request's whole body within the body rules recorded on it.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let rules = req
        .extensions()
        .get::<BodyRules>()
        .copied()
        .unwrap_or(BodyRules::NONE);
    rules.check_declared_length(&req)?;
    rules.read(req, state).await
}

/// The body limits in force, recorded on each request so the reader can
/// apply them and a rejection can name them.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Largest body in bytes (also enforced by `DefaultBodyLimit`).
    pub max_bytes: usize,
    /// How long the whole body may take to arrive once reading starts.
    pub timeout: Duration,
}

impl BodyRules {
    /// No limits, for a request that carries no rules.
    const NONE: BodyRules = BodyRules {
        max_bytes: usize::MAX,
        timeout: Duration::MAX,
    };

    /// 413 before any of the body is read when its Content-Length is over the limit.
    fn check_declared_length(&self, req: &Request) -> Result<(), ApiError> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max_bytes as u64 => {
                Err(ApiError::BodyTooLarge(self.max_bytes))
            }
            _ => Ok(()),
        }
    }

    /// Reads the whole body within the size limit and the timeout.
    async fn read<S: Send + Sync>(&self, req: Request, state: &S) -> Result<Bytes, ApiError> {
        match tokio::time::timeout(self.timeout, Bytes::from_request(req, state)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(
                _,
            )))) => Err(ApiError::BodyTooLarge(self.max_bytes)),
            Ok(Err(rejection)) => Err(ApiError::BodyIncomplete(rejection.body_text())),
            Err(_) => Err(ApiError::BodyTimeout(self.timeout.as_millis() as u64)),
        }
    }
}

/// Parses a JSON body: 400 for non-UTF-8, 422 for anything else that is wrong.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(ApiError::InvalidJson(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    // serde would read a struct from a JSON array too; the contract is an object.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::InvalidJson(
            "the request body must be a JSON object".into(),
        ));
    }
    let invalid =
        |e: serde_json::Error| ApiError::InvalidJson(format!("invalid request body: {e}"));
    // The cheap scans spare the common case a walk over the parsed value.
    if !text.contains("\\u0000") && !may_hold_integral_float(text) {
        return serde_json::from_str(text).map_err(invalid);
    }
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
    // A NUL can only arrive escaped; the walk tells an escaped backslash from a real NUL.
    if let Some(path) = nul_in(&value, "") {
        return Err(ApiError::Validation(format!(
            "{path} contains a NUL character (\\u0000), which candor does not accept"
        )));
    }
    whole_numbers_as_integers(&mut value);
    serde_json::from_value(value).map_err(invalid)
}

/// Whether a number like `2.0` or `1e3` may be in the text: a digit followed
/// by `.`, `e` or `E`.
fn may_hold_integral_float(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_digit() && matches!(w[1], b'.' | b'e' | b'E'))
}

/// JSON Schema counts `2.0` as an integer, as the OpenAPI document's
/// integer fields do; serde does not, so whole numbers become integers
/// (float fields read integers as well).
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            const TWO_TO_64: f64 = 18_446_744_073_709_551_616.0;
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.fract() != 0.0 {
                return;
            }
            if (0.0..TWO_TO_64).contains(&x) {
                *value = Value::from(x as u64);
            } else if (-TWO_TO_64 / 2.0..0.0).contains(&x) {
                *value = Value::from(x as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Refuses bodies not declared as JSON (`application/json` or `…+json`).
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_json(&essence(headers)) {
        Ok(())
    } else {
        let declared = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Err(ApiError::UnsupportedMediaType(declared.to_string()))
    }
}

/// The declared media type without parameters, lower-case ("" when none).
fn essence(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
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
        serde_json::Value::Object(fields) => fields
            .iter()
            // The Inference API's `options` are read by no route and never stored.
            .filter(|(k, _)| !(path.is_empty() && k.as_str() == "options"))
            .find_map(|(k, v)| {
                if k.contains('\0') {
                    Some(here())
                } else if path.is_empty() {
                    nul_in(v, k)
                } else {
                    nul_in(v, &format!("{path}.{k}"))
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
