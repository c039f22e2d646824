//! Bodies of the compatible routes: text-embeddings-inference's `POST /predict`
//! and the Hugging Face Inference API's `POST /`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{schema, yes, Inputs, LabelScore};

/// `POST /predict`, as text-embeddings-inference.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeiPredictRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// The raw logits, no softmax (as text-embeddings-inference), instead
    /// of the calibrated probabilities.
    #[serde(default)]
    pub raw_scores: bool,
    /// Cut over-long texts (default true).
    #[serde(default = "yes")]
    pub truncate: bool,
    /// Which end of an over-long text is cut, as text-embeddings-inference
    /// (and the tokenizers library) name it: `Right` (default) keeps the
    /// start, `Left` keeps the end.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
}

/// text-embeddings-inference's `truncation_direction`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum TruncationDirection {
    /// Cut the start: keep the last tokens.
    Left,
    /// Cut the end: keep the first tokens.
    #[default]
    Right,
}

impl TeiPredictRequest {
    /// How to read an over-long text.
    pub fn truncation(&self) -> crate::model::Truncation {
        use crate::model::Truncation;
        match (self.truncate, self.truncation_direction) {
            (false, _) => Truncation::Refuse,
            (true, TruncationDirection::Right) => Truncation::KeepStart,
            (true, TruncationDirection::Left) => Truncation::KeepEnd,
        }
    }
}

/// `POST /predict` answer: the labels of one text, or of each text of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TeiPredictAnswer {
    /// For `"inputs": "text"`: labels with scores, high to low.
    One(Vec<LabelScore>),
    /// For a list of texts: one such list per text, in order.
    Many(Vec<Vec<LabelScore>>),
}

/// `POST /`, as the Hugging Face Inference API.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HfRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// Optional parameters (an object, or null).
    #[serde(default)]
    #[schema(value_type = Option<HfParameters>)]
    pub parameters: Option<serde_json::Value>,
    /// The Inference API's `options` (`wait_for_model`, `use_cache`): accepted
    /// and ignored, since the model is always loaded and nothing is cached.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Parameters of the Hugging Face text-classification task.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HfParameters {
    /// Number of labels to return (more than the model has is all).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub top_k: Option<usize>,
    /// `softmax` (default, calibrated), `sigmoid` or `none` (raw logits).
    #[serde(default)]
    pub function_to_apply: Option<FunctionToApply>,
}

/// What the transformers pipeline applies to the logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionToApply {
    /// The softmax with the model's fitted temperature.
    #[default]
    Softmax,
    /// Each logit's sigmoid.
    Sigmoid,
    /// The logits.
    None,
}
