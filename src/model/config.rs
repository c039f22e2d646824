//! The model configuration: a Hugging Face `BertConfig` (`config.json`) with
//! candor's own keys kept under `"candor"`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default dropout rate of BERT's hidden and attention sites.
const BERT_DROPOUT: f64 = 0.1;

/// Mirrors transformers' `BertConfig` for `BertForSequenceClassification`.
///
/// Keys candor does not use are kept in `other` so that a configuration
/// written by transformers survives a load/save round trip unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BertConfig {
    /// Number of rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block; candor supports `gelu` (erf).
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Dropout rate on the embeddings output, attention output and feed-forward output.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout rate on the attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Dropout rate on the classifier input; `None` means `hidden_dropout_prob`, as in transformers.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Length of the position-embedding table, the longest input the model accepts.
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) table; candor only uses segment 0.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Standard deviation of the initial weights.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Token id of `[PAD]`.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Always `"bert"`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// transformers' class names; ours is `BertForSequenceClassification`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Class index (as a string key, as transformers writes it) to label name.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    /// Label name to class index.
    #[serde(default)]
    pub label2id: BTreeMap<String, usize>,
    /// candor's own settings and fitted values.
    #[serde(default)]
    pub candor: CandorSettings,
    /// Every other key of a foreign `config.json`, kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// candor's keys inside `config.json`, ignored by transformers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CandorSettings {
    /// Fitted softmax temperature (logits are divided by it); 1 means uncalibrated.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Longest tokenized input, `[CLS]` and `[SEP]` included; longer inputs are truncated.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
}

impl Default for CandorSettings {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            max_length: default_max_length(),
        }
    }
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    BERT_DROPOUT
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_model_type() -> String {
    "bert".into()
}
fn one() -> f64 {
    1.0
}
fn default_max_length() -> usize {
    128
}

/// The architecture sizes a user chooses when training from scratch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchitectureSizes {
    /// Encoder layers.
    pub layers: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate: usize,
    /// Position-embedding rows (the longest input).
    pub max_positions: usize,
}

/// The dropout rates at BERT's sites.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutRates {
    /// Embeddings output, attention output and feed-forward output.
    pub hidden: f64,
    /// Attention probabilities.
    pub attention: f64,
    /// Classifier input.
    pub classifier: f64,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A size or rate is out of range.
    #[error("invalid model configuration: {0}")]
    Invalid(String),
}

impl BertConfig {
    /// A fresh configuration for a classifier over `labels`.
    pub fn new(
        vocab_size: usize,
        sizes: ArchitectureSizes,
        dropout: DropoutRates,
        labels: &[String],
    ) -> Self {
        let mut config = Self {
            vocab_size,
            hidden_size: sizes.hidden,
            num_hidden_layers: sizes.layers,
            num_attention_heads: sizes.heads,
            intermediate_size: sizes.intermediate,
            hidden_act: default_hidden_act(),
            hidden_dropout_prob: dropout.hidden,
            attention_probs_dropout_prob: dropout.attention,
            classifier_dropout: Some(dropout.classifier),
            max_position_embeddings: sizes.max_positions,
            type_vocab_size: default_type_vocab_size(),
            initializer_range: default_initializer_range(),
            layer_norm_eps: default_layer_norm_eps(),
            pad_token_id: 0,
            model_type: default_model_type(),
            architectures: Vec::new(),
            id2label: BTreeMap::new(),
            label2id: BTreeMap::new(),
            candor: CandorSettings {
                max_length: sizes.max_positions,
                ..CandorSettings::default()
            },
            other: serde_json::Map::new(),
        };
        config.set_labels(labels);
        config
    }

    /// Makes this a sequence classifier over `labels` (index order), as transformers expects.
    pub fn set_labels(&mut self, labels: &[String]) {
        self.architectures = vec!["BertForSequenceClassification".into()];
        self.id2label = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect();
        self.label2id = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
        self.other.insert(
            "problem_type".into(),
            serde_json::Value::String("single_label_classification".into()),
        );
    }

    /// Label names in class-index order; empty for an encoder without a head.
    pub fn labels(&self) -> Result<Vec<String>, ConfigError> {
        (0..self.id2label.len())
            .map(|i| {
                self.id2label.get(&i.to_string()).cloned().ok_or_else(|| {
                    ConfigError::Invalid(format!("id2label has no entry for class {i}"))
                })
            })
            .collect()
    }

    /// The rate on the classifier input, falling back to the hidden rate as transformers does.
    pub fn classifier_dropout_rate(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Checks the sizes and rates before any tensor is made.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return invalid("hidden size, heads and layers must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return invalid(format!(
                "hidden size {} is not a multiple of the {} attention heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_act != "gelu" {
            return invalid(format!(
                "hidden_act '{}' is not supported (only 'gelu')",
                self.hidden_act
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.classifier_dropout_rate()),
        ] {
            if !(0.0..1.0).contains(&p) {
                return invalid(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.candor.max_length < 2 || self.candor.max_length > self.max_position_embeddings {
            return invalid(format!(
                "max_length {} must be between 2 and max_position_embeddings {}",
                self.candor.max_length, self.max_position_embeddings
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return invalid(format!(
                "layer_norm_eps must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        if !(self.candor.temperature > 0.0 && self.candor.temperature.is_finite()) {
            return invalid(format!(
                "temperature must be positive, got {}",
                self.candor.temperature
            ));
        }
        Ok(())
    }
}
