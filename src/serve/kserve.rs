//! KServe's Open Inference Protocol (v2) over the served models, with
//! Triton's binary tensor extension, so `tritonclient` and KServe's own
//! clients work unchanged.
//!
//! Each model takes one input, `text` (`BYTES`, shape `[n]` or `[n, 1]`), and
//! answers `label` (`BYTES`, `[n]`) and `probabilities` (`FP32`,
//! `[n, labels]`, the calibrated softmax). With `"parameters": {"samples": T}`
//! (and optionally `seed`, `mode`, `top_layers`, as on the uncertainty route)
//! it runs MC dropout: `probabilities` are the means over the samples, and
//! `predictive_entropy`, `mutual_information` (`FP32`, `[n]`) and `std`
//! (`FP32`, `[n, labels]`) join them. Errors are `{"error": message}` (with
//! candor's `type` beside it), 400 for a request the protocol calls invalid.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::ModeName;
use super::classify::{check_samples, logits_for, rand_seed};
use super::engine::{Output, Work};
use super::error::ApiError;
use super::extract::RawBody;
use super::inference::{compute, tokenize, validate_texts, within_deadline};
use super::models::ServedModel;
use super::record::{log_deterministic, log_predictions, Answered, RequestContext};
use super::AppState;
use crate::model::softmax;
use crate::uncertainty::{summarize, McSummary, SamplingMode};

/// The header that splits a body into its JSON part and binary tensors.
const HEADER_LENGTH: &str = "inference-header-content-length";
/// The one input a model takes.
const INPUT: &str = "text";
/// Outputs every answer can carry, and those only sampling gives.
const OUTPUTS: [&str; 2] = ["label", "probabilities"];
const SAMPLED_OUTPUTS: [&str; 3] = ["predictive_entropy", "mutual_information", "std"];

/// An error in the protocol's shape; what candor answers 422 is 400 here.
pub struct V2Error(ApiError);

impl From<ApiError> for V2Error {
    fn from(e: ApiError) -> Self {
        V2Error(e)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let (status, kind) = self.0.status_and_kind();
        let status = match status {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        if let ApiError::Internal(detail) = &self.0 {
            tracing::error!(%detail, "internal error");
        }
        let body = json!({"error": self.0.to_string(), "type": kind});
        (status, Json(body)).into_response()
    }
}

fn invalid(message: impl Into<String>) -> V2Error {
    V2Error(ApiError::Validation(message.into()))
}

/// `GET /v2`: the server's name, version and protocol extensions.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "candor",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: every model is warm.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    readiness(
        state.models.is_ready(),
        json!({"ready": state.models.is_ready()}),
    )
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, V2Error> {
    let model = state.models.get(Some(&name))?;
    let ready = model.engine.is_ready();
    Ok(readiness(ready, json!({"name": name, "ready": ready})))
}

fn readiness(ready: bool, body: Value) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /v2/models/{name}`: the input and outputs, and the labels.
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, V2Error> {
    let model = state.models.get(Some(&name))?;
    let labels = model.labels().len();
    let tensor = |name: &str, datatype: &str, shape: Value| json!({"name": name, "datatype": datatype, "shape": shape});
    Ok(Json(json!({
        "name": model.name,
        "versions": ["1"],
        "platform": "candor",
        "inputs": [tensor(INPUT, "BYTES", json!([-1]))],
        "outputs": [
            tensor("label", "BYTES", json!([-1])),
            tensor("probabilities", "FP32", json!([-1, labels])),
            tensor("predictive_entropy", "FP32", json!([-1])),
            tensor("mutual_information", "FP32", json!([-1])),
            tensor("std", "FP32", json!([-1, labels])),
        ],
        "parameters": {
            "labels": model.labels().join(","),
            "weights_sha256": model.info.weights_sha256,
        },
    })))
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Path(name): Path<String>,
    RawBody(headers, body): RawBody,
) -> Result<Response, V2Error> {
    let model = state.models.get(Some(&name))?;
    let (request, binary) = split_body(&headers, &body)?;
    let texts = input_texts(&request, binary)?;
    let wanted = requested_outputs(&request)?;
    let sampling = Sampling::of(&state, &model, &request.parameters)?;
    let (tensors, ids) = match sampling {
        None => classify(&state, &model, &context, texts).await?,
        Some(sampling) => sample(&state, &model, &context, texts, sampling).await?,
    };
    let tensors: Vec<(Tensor, bool)> = tensors
        .into_iter()
        .filter_map(|t| wanted.binary_of(t.name).map(|binary| (t, binary)))
        .collect();
    if let Some(missing) = wanted.missing(&tensors) {
        return Err(invalid(format!(
            "output '{missing}' needs sampling: add \"parameters\": {{\"samples\": 30}}"
        )));
    }
    let mut parameters = Map::new();
    parameters.insert("prediction_ids".into(), Value::String(ids.join(",")));
    Ok(respond(&model, request.id, parameters, tensors))
}

/// The JSON part of a body and the binary tensors after it.
fn split_body<'a>(
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<(InferRequest, &'a [u8]), V2Error> {
    let json_length = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| {
                invalid(format!(
                    "{HEADER_LENGTH} must be a byte count within the body ({} bytes)",
                    body.len()
                ))
            })?,
    };
    let request = super::extract::parse(&body[..json_length])?;
    Ok((request, &body[json_length..]))
}

/// The texts of the request's one input, from its JSON data or its binary tensor.
fn input_texts(request: &InferRequest, binary: &[u8]) -> Result<Vec<String>, V2Error> {
    let [input] = request.inputs.as_slice() else {
        return Err(invalid(format!(
            "a request has one input, '{INPUT}' (BYTES), got {}",
            request.inputs.len()
        )));
    };
    if input.name != INPUT {
        return Err(invalid(format!(
            "unknown input '{}': the input is '{INPUT}' (BYTES)",
            input.name
        )));
    }
    if input.datatype != "BYTES" {
        return Err(invalid(format!(
            "input '{INPUT}' must be BYTES (texts), got {}",
            input.datatype
        )));
    }
    let count = match input.shape.as_slice() {
        [n] | [n, 1] if *n >= 0 => *n as usize,
        _ => {
            return Err(invalid(format!(
                "input '{INPUT}' must have shape [n] or [n, 1], got {:?}",
                input.shape
            )))
        }
    };
    let texts = match (&input.data, input.parameters.get("binary_data_size")) {
        (Some(data), None) => json_texts(data)?,
        (None, Some(size)) => {
            let size = size
                .as_u64()
                .ok_or_else(|| invalid("binary_data_size must be a byte count"))?;
            binary_texts(binary.get(..size as usize).ok_or_else(|| {
                invalid("the binary tensor is shorter than its binary_data_size")
            })?)?
        }
        _ => {
            return Err(invalid(format!(
                "input '{INPUT}' needs \"data\" or a binary tensor (binary_data_size), one of them"
            )))
        }
    };
    if texts.len() != count {
        return Err(invalid(format!(
            "input '{INPUT}' has shape {:?} but holds {} texts",
            input.shape,
            texts.len()
        )));
    }
    Ok(texts)
}

/// Strings of a JSON tensor, flattened in row-major order.
fn json_texts(data: &Value) -> Result<Vec<String>, V2Error> {
    let mut texts = Vec::new();
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => {
                return Err(invalid(format!(
                    "input '{INPUT}' holds texts (strings), got {other}"
                )))
            }
        }
    }
    Ok(texts)
}

/// Texts of a binary BYTES tensor: each a 4-byte little-endian length, then its bytes.
fn binary_texts(mut bytes: &[u8]) -> Result<Vec<String>, V2Error> {
    let mut texts = Vec::new();
    while !bytes.is_empty() {
        let (length, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("a binary BYTES tensor ends inside a length"))?;
        let length = u32::from_le_bytes(*length) as usize;
        let text = rest
            .get(..length)
            .ok_or_else(|| invalid("a binary BYTES tensor ends inside an element"))?;
        let text = std::str::from_utf8(text).map_err(|_| {
            invalid(format!(
                "input '{INPUT}' element {} is not UTF-8",
                texts.len()
            ))
        })?;
        if text.contains('\0') {
            return Err(invalid(format!(
                "input '{INPUT}' element {} contains a NUL character, which candor does not accept",
                texts.len()
            )));
        }
        texts.push(text.to_string());
        bytes = &rest[length..];
    }
    Ok(texts)
}

/// Which outputs to send, and which of them as binary tensors.
struct Wanted {
    /// `None`: every output the answer has.
    named: Option<Vec<(String, bool)>>,
    /// Binary unless an output says otherwise (`binary_data_output`).
    binary_default: bool,
}

impl Wanted {
    fn binary_of(&self, name: &str) -> Option<bool> {
        match &self.named {
            None => Some(self.binary_default),
            Some(named) => named.iter().find(|(n, _)| n == name).map(|(_, b)| *b),
        }
    }

    /// A requested output the answer does not have.
    fn missing(&self, tensors: &[(Tensor, bool)]) -> Option<String> {
        let named = self.named.as_ref()?;
        named
            .iter()
            .find(|(n, _)| !tensors.iter().any(|(t, _)| t.name == n))
            .map(|(n, _)| n.clone())
    }
}

fn requested_outputs(request: &InferRequest) -> Result<Wanted, V2Error> {
    let binary_default = flag(&request.parameters, "binary_data_output")?;
    let Some(outputs) = &request.outputs else {
        return Ok(Wanted {
            named: None,
            binary_default,
        });
    };
    let mut named = Vec::with_capacity(outputs.len());
    for output in outputs {
        if !OUTPUTS.contains(&output.name.as_str())
            && !SAMPLED_OUTPUTS.contains(&output.name.as_str())
        {
            return Err(invalid(format!(
                "unknown output '{}': the outputs are {}",
                output.name,
                OUTPUTS
                    .iter()
                    .chain(&SAMPLED_OUTPUTS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let binary = match output.parameters.get("binary_data") {
            None => binary_default,
            Some(_) => flag(&output.parameters, "binary_data")?,
        };
        named.push((output.name.clone(), binary));
    }
    Ok(Wanted {
        named: Some(named),
        binary_default,
    })
}

fn flag(parameters: &Map<String, Value>, name: &str) -> Result<bool, V2Error> {
    match parameters.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(format!(
            "{name} must be true or false, got {other}"
        ))),
    }
}

/// MC dropout as a request's parameters ask for it.
struct Sampling {
    samples: usize,
    seed: u64,
    mode: SamplingMode,
}

impl Sampling {
    /// `None` unless the parameters name `samples`.
    fn of(
        state: &AppState,
        model: &ServedModel,
        parameters: &Map<String, Value>,
    ) -> Result<Option<Self>, V2Error> {
        let Some(samples) = parameters.get("samples") else {
            for name in ["seed", "mode", "top_layers"] {
                if parameters.contains_key(name) {
                    return Err(invalid(format!(
                        "the parameter {name} applies to sampling: add \"samples\" with it"
                    )));
                }
            }
            return Ok(None);
        };
        let whole = |name: &str, value: &Value| {
            value
                .as_u64()
                .ok_or_else(|| invalid(format!("{name} must be a whole number, got {value}")))
        };
        let samples = check_samples(state, Some(whole("samples", samples)? as usize))?;
        let seed = match parameters.get("seed") {
            Some(seed) => whole("seed", seed)?,
            None => rand_seed(),
        };
        let mode: ModeName = match parameters.get("mode") {
            Some(mode) => {
                serde_json::from_value(mode.clone()).map_err(|e| invalid(e.to_string()))?
            }
            None => ModeName::Full,
        };
        let calibrated = model
            .calibration
            .as_ref()
            .and_then(|c| c.top.as_ref())
            .map_or(1, |top| top.layers);
        let mode = mode
            .resolve(parameters.get("top_layers"), model.layers(), calibrated)
            .map_err(invalid)?;
        Ok(Some(Self {
            samples,
            seed,
            mode,
        }))
    }
}

/// One output tensor.
struct Tensor {
    name: &'static str,
    shape: Vec<usize>,
    data: Data,
}

enum Data {
    Bytes(Vec<String>),
    Fp32(Vec<f32>),
}

impl Data {
    fn datatype(&self) -> &'static str {
        match self {
            Data::Bytes(_) => "BYTES",
            Data::Fp32(_) => "FP32",
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Data::Bytes(texts) => json!(texts),
            Data::Fp32(values) => json!(values),
        }
    }

    fn to_binary(&self) -> Vec<u8> {
        match self {
            Data::Bytes(texts) => texts
                .iter()
                .flat_map(|t| {
                    let length = (t.len() as u32).to_le_bytes();
                    length.into_iter().chain(t.bytes())
                })
                .collect(),
            Data::Fp32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The deterministic answer: labels and calibrated probabilities.
async fn classify(
    state: &AppState,
    model: &ServedModel,
    context: &RequestContext,
    texts: Vec<String>,
) -> Result<(Vec<Tensor>, Vec<String>), V2Error> {
    let logits = logits_for(state, model, texts.clone(), true).await?;
    let probabilities: Vec<Vec<f32>> = logits
        .iter()
        .map(|l| softmax(l, model.temperature()))
        .collect();
    let ids = log_deterministic(
        state,
        model,
        context,
        "v2_infer",
        &texts,
        &probabilities,
        &[],
    );
    Ok((base_tensors(model, &probabilities), ids))
}

/// The MC-dropout answer: mean probabilities and the uncertainty figures.
async fn sample(
    state: &AppState,
    model: &ServedModel,
    context: &RequestContext,
    texts: Vec<String>,
    sampling: Sampling,
) -> Result<(Vec<Tensor>, Vec<String>), V2Error> {
    validate_texts(&texts, state.settings.limits.max_inputs)?;
    let Sampling {
        samples,
        seed,
        mode,
    } = sampling;
    let per_input = within_deadline(state, async {
        let rows = tokenize(state, model, texts.clone(), true).await?;
        let work = Work::Sample {
            rows,
            samples,
            seed,
            mode,
            features: false,
        };
        match compute(state, model, work).await?.output {
            Output::Samples(s, _) => Ok(s),
            Output::Logits(..) => Err(ApiError::Internal(
                "engine answered logits to a sampling job".into(),
            )),
        }
    })
    .await?;
    let summaries: Vec<McSummary> = per_input.iter().map(|s| summarize(s)).collect();
    let answered: Vec<Answered> = texts
        .iter()
        .zip(&summaries)
        .map(|(text, s)| Answered {
            text,
            probabilities: &s.mean,
            sampled: Some((s, mode, seed)),
            abstained: None,
        })
        .collect();
    let ids = log_predictions(state, model, context, "v2_infer", &answered)
        .iter()
        .map(|id| id.to_string())
        .collect();
    let means: Vec<Vec<f32>> = summaries.iter().map(|s| s.mean.clone()).collect();
    let mut tensors = base_tensors(model, &means);
    let n = summaries.len();
    let per_text = |figure: fn(&McSummary) -> f64| {
        Data::Fp32(summaries.iter().map(|s| figure(s) as f32).collect())
    };
    tensors.extend([
        Tensor {
            name: "predictive_entropy",
            shape: vec![n],
            data: per_text(|s| s.predictive_entropy),
        },
        Tensor {
            name: "mutual_information",
            shape: vec![n],
            data: per_text(|s| s.mutual_information),
        },
        Tensor {
            name: "std",
            shape: vec![n, model.labels().len()],
            data: Data::Fp32(summaries.iter().flat_map(|s| s.std.clone()).collect()),
        },
    ]);
    Ok((tensors, ids))
}

/// `label` and `probabilities` of per-text probabilities in class order.
fn base_tensors(model: &ServedModel, probabilities: &[Vec<f32>]) -> Vec<Tensor> {
    let labels = model.labels();
    let best = |p: &Vec<f32>| {
        let i = (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0);
        labels[i].clone()
    };
    vec![
        Tensor {
            name: "label",
            shape: vec![probabilities.len()],
            data: Data::Bytes(probabilities.iter().map(best).collect()),
        },
        Tensor {
            name: "probabilities",
            shape: vec![probabilities.len(), labels.len()],
            data: Data::Fp32(probabilities.concat()),
        },
    ]
}

/// The response: JSON alone, or JSON followed by the binary tensors.
fn respond(
    model: &ServedModel,
    id: Option<String>,
    parameters: Map<String, Value>,
    tensors: Vec<(Tensor, bool)>,
) -> Response {
    let mut binary = Vec::new();
    let outputs: Vec<Value> = tensors
        .iter()
        .map(|(t, as_binary)| {
            let mut out = json!({"name": t.name, "datatype": t.data.datatype(), "shape": t.shape});
            if *as_binary {
                let bytes = t.data.to_binary();
                out["parameters"] = json!({"binary_data_size": bytes.len()});
                binary.extend(bytes);
            } else {
                out["data"] = t.data.to_json();
            }
            out
        })
        .collect();
    let mut head = json!({
        "model_name": model.name,
        "model_version": "1",
        "parameters": parameters,
        "outputs": outputs,
    });
    if let Some(id) = id {
        head["id"] = Value::String(id);
    }
    let head = head.to_string().into_bytes();
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let json_length = head.len();
    let mut body = head;
    body.extend(binary);
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    response
        .headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_length));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_texts_read_what_binary_encoding_writes() {
        let texts = vec!["a film".to_string(), String::new(), "é€".to_string()];
        let bytes = Data::Bytes(texts.clone()).to_binary();
        assert_eq!(binary_texts(&bytes).ok(), Some(texts));
    }

    #[test]
    fn a_binary_tensor_cut_short_is_refused() {
        let bytes = Data::Bytes(vec!["abcdef".into()]).to_binary();
        assert!(binary_texts(&bytes[..7]).is_err());
        assert!(binary_texts(&bytes[..2]).is_err());
    }

    #[test]
    fn json_texts_flatten_nested_rows_in_order() {
        let data = json!([["one"], ["two"], ["three"]]);
        assert_eq!(
            json_texts(&data).ok(),
            Some(vec!["one".into(), "two".into(), "three".into()])
        );
        assert!(json_texts(&json!([1, 2])).is_err());
    }
}
