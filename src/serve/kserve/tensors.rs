//! The v2 protocol's tensors: reading a request (JSON, or JSON followed by
//! Triton's binary tensors), choosing the outputs, and writing the answer.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{invalid, V2Error, HEADER_LENGTH, INPUT, OUTPUTS, SAMPLED_OUTPUTS};
use crate::serve::models::ServedModel;

#[derive(Debug, Deserialize)]
pub(super) struct InferRequest {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) parameters: Map<String, Value>,
    pub(super) inputs: Vec<InputTensor>,
    #[serde(default)]
    pub(super) outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct InputTensor {
    pub(super) name: String,
    pub(super) shape: Vec<i64>,
    pub(super) datatype: String,
    #[serde(default)]
    pub(super) parameters: Map<String, Value>,
    #[serde(default)]
    pub(super) data: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RequestedOutput {
    pub(super) name: String,
    #[serde(default)]
    pub(super) parameters: Map<String, Value>,
}

/// The JSON part of a body and the binary tensors after it.
pub(super) fn split_body<'a>(
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
    let request = crate::serve::extract::parse(&body[..json_length])?;
    Ok((request, &body[json_length..]))
}

/// The texts of the request's one input, from its JSON data or its binary tensor.
pub(super) fn input_texts(request: &InferRequest, binary: &[u8]) -> Result<Vec<String>, V2Error> {
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
pub(super) fn json_texts(data: &Value) -> Result<Vec<String>, V2Error> {
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
pub(super) fn binary_texts(mut bytes: &[u8]) -> Result<Vec<String>, V2Error> {
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
pub(super) struct Wanted {
    /// `None`: every output the answer has.
    pub(super) named: Option<Vec<(String, bool)>>,
    /// Binary unless an output says otherwise (`binary_data_output`).
    pub(super) binary_default: bool,
}

impl Wanted {
    pub(super) fn binary_of(&self, name: &str) -> Option<bool> {
        match &self.named {
            None => Some(self.binary_default),
            Some(named) => named.iter().find(|(n, _)| n == name).map(|(_, b)| *b),
        }
    }

    /// A requested output the answer does not have.
    pub(super) fn missing(&self, tensors: &[(Tensor, bool)]) -> Option<String> {
        let named = self.named.as_ref()?;
        named
            .iter()
            .find(|(n, _)| !tensors.iter().any(|(t, _)| t.name == n))
            .map(|(n, _)| n.clone())
    }
}

pub(super) fn requested_outputs(request: &InferRequest) -> Result<Wanted, V2Error> {
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

pub(super) fn flag(parameters: &Map<String, Value>, name: &str) -> Result<bool, V2Error> {
    match parameters.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(format!(
            "{name} must be true or false, got {other}"
        ))),
    }
}

/// One output tensor.
pub(super) struct Tensor {
    pub(super) name: &'static str,
    pub(super) shape: Vec<usize>,
    pub(super) data: Data,
}

pub(super) enum Data {
    Bytes(Vec<String>),
    Fp32(Vec<f32>),
}

impl Data {
    pub(super) fn datatype(&self) -> &'static str {
        match self {
            Data::Bytes(_) => "BYTES",
            Data::Fp32(_) => "FP32",
        }
    }

    pub(super) fn to_json(&self) -> Value {
        match self {
            Data::Bytes(texts) => json!(texts),
            Data::Fp32(values) => json!(values),
        }
    }

    pub(super) fn to_binary(&self) -> Vec<u8> {
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

/// The response: JSON alone, or JSON followed by the binary tensors.
pub(super) fn respond(
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
