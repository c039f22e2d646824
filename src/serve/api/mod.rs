//! Request and response bodies; the field names are the public contract.
//! Classification and uncertainty here; the compatible routes, the model
//! routes and feedback in their own files.

mod compat;
mod feedback;
mod models;

pub use compat::*;
pub use feedback::*;
pub use models::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::uncertainty::calibration::{AbstentionPolicy, AbstentionRule};
use crate::uncertainty::SamplingMode;

use super::schema;

/// One text or a list of texts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "\"inputs\" must be a string or a list of strings"
)]
pub enum Inputs {
    /// A single text.
    One(String),
    /// Several texts, answered in order.
    Many(Vec<String>),
}

impl Inputs {
    /// The texts, in order.
    pub fn into_texts(self) -> Vec<String> {
        match self {
            Inputs::One(t) => vec![t],
            Inputs::Many(ts) => ts,
        }
    }

    /// True for a single string (some compatible routes answer it unwrapped).
    pub fn is_single(&self) -> bool {
        matches!(self, Inputs::One(_))
    }
}

/// `POST /v1/classify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// The model to answer with, by name (default: the server's default
    /// model; `GET /v1/models` lists them).
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
    /// Return only the k best labels in `scores` (default: all; more than
    /// the model has is all).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub top_k: Option<usize>,
    /// Plain softmax of the logits instead of the temperature-calibrated one.
    #[serde(default)]
    pub raw_scores: bool,
    /// Cut over-long texts to the model's maximum length (default true); false rejects them.
    #[serde(default = "yes")]
    pub truncate: bool,
    /// Return a conformal `prediction_set` holding the true label with
    /// probability at least 1 − alpha, e.g. 0.1 (needs the model's calibration.json).
    #[serde(default)]
    #[schema(schema_with = schema::alpha)]
    pub alpha: Option<f64>,
    /// Abstention: `true` for the model's default policy (used when absent,
    /// if the model has one), `false` for none, or a policy.
    #[serde(default)]
    #[schema(schema_with = schema::abstain_deterministic)]
    pub abstain: Option<AbstainOption>,
}

/// The `abstain` field of a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "\"abstain\" must be true, false or a policy like {\"score\": \"predictive_entropy\", \"coverage\": 0.9}"
)]
pub enum AbstainOption {
    /// `true`: the model's default policy; `false`: never abstain.
    Default(bool),
    /// A policy for this request.
    Policy(AbstentionPolicy),
}

/// `POST /v1/classify/uncertainty`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UncertaintyRequest {
    /// Text(s) to classify.
    #[schema(schema_with = schema::inputs)]
    pub inputs: Inputs,
    /// The model to answer with, by name (default: the server's default
    /// model; `GET /v1/models` lists them).
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub model: Option<String>,
    /// MC-dropout samples T (default 30, at most the server's --max-samples, 100 by default).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub samples: Option<usize>,
    /// Seed of the dropout masks; the same input and seed give bit-identical output. Random when absent (and returned).
    #[serde(default)]
    #[schema(schema_with = schema::seed)]
    pub seed: Option<u64>,
    /// Return only the k best labels in `scores` (more than the model has is all).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub top_k: Option<usize>,
    /// Cut over-long texts (default true).
    #[serde(default = "yes")]
    pub truncate: bool,
    /// `full` (default): dropout at every site; `head`: on the classifier
    /// input only, about the cost of one pass; `top`: in the top
    /// `top_layers` encoder layers and the classifier input, the layers
    /// below computed once.
    #[serde(default)]
    #[schema(inline, example = "full")]
    pub mode: ModeName,
    /// With `mode: top`, how many of the top encoder layers to sample (at
    /// least 1; more than the model has samples them all; default: the
    /// number the model's calibration was fitted with, else 1).
    #[serde(default)]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 4294967295_u64, example = 1)]
    pub top_layers: Option<serde_json::Value>,
    /// Return a conformal `prediction_set` at this miscoverage, calibrated for this mode.
    #[serde(default)]
    #[schema(schema_with = schema::alpha)]
    pub alpha: Option<f64>,
    /// Abstention: `true` for the model's default policy (used when absent,
    /// if the model has one), `false` for none, or a policy.
    #[serde(default)]
    #[schema(schema_with = schema::abstain_sampled)]
    pub abstain: Option<AbstainOption>,
    /// Also return each label's T sampled probabilities (`scores[].samples`).
    #[serde(default)]
    pub return_samples: bool,
}

/// Where an uncertainty request applies dropout, as requests name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// Every dropout site.
    #[default]
    Full,
    /// The classifier input only.
    Head,
    /// The top layers and the classifier input.
    Top,
}

impl<'de> Deserialize<'de> for ModeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match value.as_str() {
            Some("full") => Ok(ModeName::Full),
            Some("head") => Ok(ModeName::Head),
            Some("top") => Ok(ModeName::Top),
            _ => Err(serde::de::Error::custom(format!(
                "mode must be \"full\", \"head\" or \"top\", got {value}"
            ))),
        }
    }
}

impl ModeName {
    /// The sampling mode of a model of `layers` layers: `top_layers` is only
    /// for `top`, where it defaults to `default_top`.
    pub fn resolve(
        self,
        top_layers: Option<&serde_json::Value>,
        layers: usize,
        default_top: usize,
    ) -> Result<SamplingMode, String> {
        let all = layers.max(1);
        match (self, top_layers) {
            (ModeName::Full, None) => Ok(SamplingMode::Full),
            (ModeName::Head, None) => Ok(SamplingMode::Head),
            (ModeName::Top, None) => Ok(SamplingMode::Top(default_top.clamp(1, all))),
            // More layers than the model has is all of them, as top_k is.
            (ModeName::Top, Some(value)) => match value.as_u64() {
                Some(k) if (1..=u32::MAX as u64).contains(&k) => {
                    Ok(SamplingMode::Top((k as usize).min(all)))
                }
                _ => Err(format!(
                    "top_layers must be a whole number from 1 to {}, got {value}",
                    u32::MAX
                )),
            },
            (_, Some(_)) => Err(
                "top_layers applies to mode \"top\" only; send \"mode\": \"top\" with it, or leave it out"
                    .to_string(),
            ),
        }
    }
}

/// What the decision tools say about one prediction.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    /// Labels of the conformal set, most probable first (when `alpha` was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_set: Option<Vec<String>>,
    /// Whether to withhold this answer (when an abstention policy applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain: Option<bool>,
    /// Why, when abstaining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstain_reason: Option<String>,
    /// Mahalanobis distance of the input's mean last hidden state to the
    /// nearest training class (when the model's calibration has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_distance: Option<f64>,
    /// Share of the calibration texts closer to the training data than this
    /// input: near 1 means unlike anything the model was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_percentile: Option<f64>,
}

/// The decision rules a response applied.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DecisionRules {
    /// The miscoverage of the prediction sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// The abstention rule applied (a coverage policy resolved to its threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstention: Option<AbstentionRule>,
}

fn yes() -> bool {
    true
}

/// A label and its probability.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LabelScore {
    /// Label name.
    pub label: String,
    /// Probability.
    pub score: f32,
}

/// One input's prediction.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    /// Id of this prediction (a UUID): send it to `/v1/feedback` to correct it.
    pub id: String,
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// Labels with probabilities, high to low.
    pub scores: Vec<LabelScore>,
    /// When a cascade answered: the model of the cascade that did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Prediction set and abstention, when asked for.
    #[serde(flatten)]
    pub decision: Decision,
}

/// `POST /v1/classify` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClassifyResponse {
    /// Name of the model (or cascade) that answered.
    pub model: String,
    /// The decision rules applied, if any.
    #[serde(flatten)]
    pub rules: DecisionRules,
    /// One prediction per input, in input order.
    pub predictions: Vec<Prediction>,
}

/// A label's mean probability over the samples and its spread.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LabelMoments {
    /// Label name.
    pub label: String,
    /// Mean probability over the T samples.
    pub mean: f32,
    /// Standard deviation over the samples (T−1 denominator).
    pub std: f32,
    /// The probability in each of the T samples, in sample order (with
    /// `"return_samples": true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<f32>>,
}

/// One input's MC-dropout prediction and uncertainty.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UncertainPrediction {
    /// Id of this prediction (a UUID): send it to `/v1/feedback` to correct it.
    pub id: String,
    /// Argmax of the mean probabilities.
    pub label: String,
    /// Its mean probability.
    pub score: f32,
    /// Labels with mean and std, by mean high to low.
    pub scores: Vec<LabelMoments>,
    /// Entropy of the mean distribution (nats): total uncertainty.
    pub predictive_entropy: f64,
    /// Mean entropy of the samples (nats): aleatoric uncertainty.
    pub expected_entropy: f64,
    /// Predictive − expected entropy, ≥ 0 (nats): epistemic uncertainty (BALD).
    pub mutual_information: f64,
    /// Share of samples whose argmax differs from the modal label.
    pub variation_ratio: f64,
    /// Mean probability of the best label minus the runner-up's.
    pub margin: f64,
    /// Samples T.
    pub samples: usize,
    /// Seed used.
    pub seed: u64,
    /// Prediction set and abstention, when asked for.
    #[serde(flatten)]
    pub decision: Decision,
}

/// `POST /v1/classify/uncertainty` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UncertaintyResponse {
    /// Name of the model that answered.
    pub model: String,
    /// Samples T per input.
    pub samples: usize,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Where dropout was applied (`full`, `head` or `top`).
    #[schema(value_type = String, example = "full")]
    pub mode: ModeName,
    /// With `mode: top`, the top encoder layers sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_layers: Option<usize>,
    /// The decision rules applied, if any.
    #[serde(flatten)]
    pub rules: DecisionRules,
    /// One per input, in input order.
    pub predictions: Vec<UncertainPrediction>,
}
