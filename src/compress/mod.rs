//! `candor compress`: a fine-tuned model directory made smaller, in the same
//! Hugging Face format (transformers loads it with no missing or unexpected
//! keys), by any of:
//!
//! - [`vocab`]: pruning the vocabulary to the word pieces some texts use;
//! - [`layers`]: keeping k of the L encoder layers (recover the accuracy by
//!   distilling the full model into the smaller one: `candor train
//!   --init-from SMALL --teacher FULL`);
//! - [`neurons`]: keeping n of each layer's feed-forward neurons (distil
//!   after it likewise);
//! - half-precision storage: weights stored as f16 (`torch_dtype: float16`
//!   in `config.json`), computed in f32 at load.
//!
//! Nothing is written unless everything succeeds: the result is assembled
//! in a temporary directory beside the output and renamed into place.
//! `compression.json` in the result records what was done and what it cost.

pub mod layers;
pub mod neurons;
pub mod vocab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::model::{read_config, read_weights, write_config, write_weights, BertConfig, ModelDir};
pub use layers::LayerChoice;
use vocab::{pruning_cost, PruningCost, VocabPlan, WORD_EMBEDDINGS};

/// What `candor compress` should do.
#[derive(Debug, Clone)]
pub struct CompressSettings {
    /// Texts whose word pieces are kept; `None` keeps the whole vocabulary.
    pub prune_to: Option<Vec<String>>,
    /// Texts the pruning did not see, to measure what it costs.
    pub held_out: Option<Vec<String>>,
    /// Labels of the pruning data, which must all be the model's.
    pub data_labels: Vec<String>,
    /// Encoder layers to keep.
    pub layers: LayerChoice,
    /// Feed-forward neurons to keep in each layer; `None` keeps them all.
    pub intermediate: Option<usize>,
    /// Store the weights as f16.
    pub half: bool,
    /// Replace the output directory if it exists.
    pub force: bool,
}

/// Why a model could not be compressed (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// The input is not a model directory candor can read.
    #[error("{0} is not a model directory: {1}")]
    NotAModel(PathBuf, String),
    /// The data has labels the model does not know.
    #[error(
        "the data has labels the model does not know: {missing:?} (the model's labels: {model:?})"
    )]
    LabelsDiffer {
        /// Labels of the data missing from the model.
        missing: Vec<String>,
        /// The model's labels.
        model: Vec<String>,
    },
    /// An impossible layer choice.
    #[error("{0}")]
    Layers(String),
    /// An impossible feed-forward width.
    #[error("{0}")]
    Width(String),
    /// The output exists and `force` was not given.
    #[error("{0} exists; choose another --out or pass --force to replace it")]
    OutputExists(PathBuf),
    /// The tokenizer could not be read or rewritten.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation failed.
    #[error("weights: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Writing the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

/// What was done, written as `compression.json` beside the weights.
#[derive(Debug, Clone, Serialize)]
pub struct CompressReport {
    /// The model directory compressed.
    pub source: String,
    /// Vocabulary size before and after.
    pub vocab_size: [usize; 2],
    /// What pruning costs on held-out texts, when measured.
    pub held_out: Option<PruningCost>,
    /// Encoder layers before, and the 0-based layers kept.
    pub layers: (usize, Vec<usize>),
    /// Feed-forward neurons per layer before and after.
    pub intermediate_size: [usize; 2],
    /// `float32` or `float16`.
    pub dtype: String,
    /// Bytes of `model.safetensors` before and after.
    pub weights_bytes: [u64; 2],
    /// Bytes of `tokenizer.json` before and after.
    pub tokenizer_bytes: [u64; 2],
}

/// Compresses the model in `model_dir` into `out_dir`.
pub fn compress(
    model_dir: &Path,
    out_dir: &Path,
    settings: &CompressSettings,
) -> Result<CompressReport, CompressError> {
    if out_dir.exists() && !settings.force {
        return Err(CompressError::OutputExists(out_dir.to_path_buf()));
    }
    let not_a_model = |e: &dyn std::fmt::Display| {
        CompressError::NotAModel(model_dir.to_path_buf(), e.to_string())
    };
    let mut config = read_config(model_dir).map_err(|e| not_a_model(&e))?;
    check_labels(&config, &settings.data_labels)?;
    let total_layers = config.num_hidden_layers;
    let kept_layers = settings.layers.resolve(total_layers)?;
    let tokenizer_path = ModelDir::new(model_dir).tokenizer();
    let tokenizer_text = read(&tokenizer_path)?;
    let tokenizer = Tokenizer::from_str(&tokenizer_text).map_err(|e| not_a_model(&e))?;
    let (mut weights, _) = read_weights(model_dir, &Device::Cpu).map_err(|e| not_a_model(&e))?;

    let mut tokenizer_json: serde_json::Value =
        serde_json::from_str(&tokenizer_text).map_err(|e| not_a_model(&e))?;
    let mut held_out = None;
    if let Some(texts) = &settings.prune_to {
        let plan = VocabPlan::for_texts(&tokenizer, texts)?;
        plan.rewrite_tokenizer(&mut tokenizer_json)?;
        prune_weights(&mut weights, &plan)?;
        config.vocab_size = plan.kept.len();
        config.pad_token_id = plan.new_id(config.pad_token_id).unwrap_or(0);
        if let Some(texts) = &settings.held_out {
            let pruned = Tokenizer::from_str(&tokenizer_json.to_string())
                .map_err(|e| CompressError::Tokenizer(e.to_string()))?;
            held_out = Some(pruning_cost(&tokenizer, &pruned, texts)?);
        }
    }
    let mut weights = layers::keep_layers(weights, &kept_layers);
    config.num_hidden_layers = kept_layers.len();
    let full_width = config.intermediate_size;
    if let Some(keep) = settings.intermediate {
        neurons::keep_neurons(&mut weights, kept_layers.len(), full_width, keep)?;
        config.intermediate_size = keep;
    }
    let weights = if settings.half {
        to_half(weights)?
    } else {
        weights
    };
    config.other.insert(
        "torch_dtype".into(),
        serde_json::Value::from(if settings.half { "float16" } else { "float32" }),
    );

    let staging = ModelDir::new(staging_dir(out_dir)?);
    let written = write_model(&staging, &config, &weights, &tokenizer_json);
    let report = written.map(|()| CompressReport {
        source: model_dir.display().to_string(),
        vocab_size: [tokenizer.get_vocab_size(true), config.vocab_size],
        held_out,
        layers: (total_layers, kept_layers.clone()),
        intermediate_size: [full_width, config.intermediate_size],
        dtype: if settings.half { "float16" } else { "float32" }.into(),
        weights_bytes: [
            size(&ModelDir::new(model_dir).weights()),
            size(&staging.weights()),
        ],
        tokenizer_bytes: [size(&tokenizer_path), size(&staging.tokenizer())],
    });
    match report.and_then(|r| finish(&staging, out_dir, &r).map(|()| r)) {
        Ok(report) => Ok(report),
        Err(e) => {
            let _ = std::fs::remove_dir_all(staging.path());
            Err(e)
        }
    }
}

/// Every label of the data must be one of the model's.
fn check_labels(config: &BertConfig, data_labels: &[String]) -> Result<(), CompressError> {
    let model = config.labels().unwrap_or_default();
    let mut missing: Vec<String> = data_labels
        .iter()
        .filter(|l| !model.contains(l))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CompressError::LabelsDiffer { missing, model })
    }
}

fn prune_weights(
    weights: &mut HashMap<String, Tensor>,
    plan: &VocabPlan,
) -> Result<(), CompressError> {
    let table = weights.get(WORD_EMBEDDINGS).ok_or_else(|| {
        CompressError::Tokenizer(format!("the weights have no {WORD_EMBEDDINGS}"))
    })?;
    let pruned = plan.prune_embeddings(table)?;
    weights.insert(WORD_EMBEDDINGS.to_string(), pruned);
    Ok(())
}

fn to_half(weights: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>, CompressError> {
    weights
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F16)?)))
        .collect()
}

/// A fresh directory beside `out_dir` to assemble the result in.
fn staging_dir(out_dir: &Path) -> Result<PathBuf, CompressError> {
    let name = out_dir
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let staging = out_dir.with_file_name(format!(".{name}.compressing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| CompressError::Io(staging.clone(), e))?;
    Ok(staging)
}

fn write_model(
    dir: &ModelDir,
    config: &BertConfig,
    weights: &HashMap<String, Tensor>,
    tokenizer: &serde_json::Value,
) -> Result<(), CompressError> {
    write_config(dir.path(), config)?;
    write_weights(dir.path(), weights)?;
    let path = dir.tokenizer();
    let text =
        serde_json::to_string(tokenizer).map_err(|e| CompressError::Tokenizer(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| CompressError::Io(path, e))
}

/// Writes the report and moves the staged model into place.
fn finish(
    staging: &ModelDir,
    out_dir: &Path,
    report: &CompressReport,
) -> Result<(), CompressError> {
    let path = staging.compression();
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| CompressError::Tokenizer(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| CompressError::Io(path, e))?;
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir)
            .map_err(|e| CompressError::Io(out_dir.to_path_buf(), e))?;
    }
    std::fs::rename(staging.path(), out_dir)
        .map_err(|e| CompressError::Io(out_dir.to_path_buf(), e))
}

fn read(path: &Path) -> Result<String, CompressError> {
    std::fs::read_to_string(path).map_err(|e| CompressError::Io(path.to_path_buf(), e))
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
