//! The model: configuration, tokenizer, BERT layers with seedable dropout, and
//! the model directory in Hugging Face format.
//!
//! A model directory holds `config.json` (a transformers `BertConfig` with
//! candor's keys under `"candor"`), `model.safetensors` (tensor names of
//! `BertForSequenceClassification`) and `tokenizer.json`. This module knows
//! nothing of HTTP or databases.

pub mod bert;
pub mod config;
pub mod dropout;
pub mod packed;
pub mod tokenizer;
pub mod wordpiece;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

pub use bert::{BertClassifier, Kernels, TokenBatch};
pub use config::{ArchitectureSizes, BertConfig, ConfigError, DropoutRates};
pub use dropout::DropoutMode;
pub use tokenizer::{Encoded, TextEncoder, TokenizerError};

/// File names inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights, in safetensors format.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer, in the `tokenizers` JSON format.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Why a model directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` is not a usable BERT configuration.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor operation or the weights file failed.
    #[error("model weights: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// At least two labels, none repeated (a repeated name would make answers
/// and feedback ambiguous).
fn check_labels(labels: &[String]) -> Result<(), String> {
    if labels.len() < 2 {
        return Err("id2label must name at least two classes".into());
    }
    let mut seen = std::collections::HashSet::new();
    match labels.iter().find(|l| !seen.insert(l.as_str())) {
        Some(repeated) => Err(format!(
            "id2label names the label '{repeated}' more than once"
        )),
        None => Ok(()),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and validates `config.json` in `dir`.
pub fn read_config(dir: &Path) -> Result<BertConfig, ModelError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let mut config: BertConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if !text.contains("\"candor\"") {
        // A foreign checkpoint: accept inputs as long as its position table allows.
        config.candor.max_length = config.max_position_embeddings.min(512);
    }
    config.validate().map_err(|e| ModelError::Config {
        path,
        message: e.to_string(),
    })?;
    Ok(config)
}

/// Reads `model.safetensors` as f32 tensors named as in `BertForSequenceClassification`.
///
/// Checkpoints of a bare `BertModel` (no `bert.` prefix) and old ones
/// (LayerNorm `gamma`/`beta`) are renamed on the way in.
pub fn read_weights(
    dir: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, String), ModelError> {
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let raw = candle_core::safetensors::load_buffer(&bytes, device)?;
    let mut weights = HashMap::with_capacity(raw.len());
    for (name, tensor) in raw {
        if name.ends_with("position_ids") {
            continue; // a buffer in old transformers checkpoints, not a weight
        }
        weights.insert(canonical_name(&name), tensor.to_dtype(DType::F32)?);
    }
    Ok((weights, sha256))
}

fn canonical_name(name: &str) -> String {
    let name = name
        .strip_suffix("LayerNorm.gamma")
        .map(|p| format!("{p}LayerNorm.weight"))
        .or_else(|| {
            name.strip_suffix("LayerNorm.beta")
                .map(|p| format!("{p}LayerNorm.bias"))
        })
        .unwrap_or_else(|| name.to_string());
    if name.starts_with("bert.") || name.starts_with("classifier.") {
        name
    } else {
        format!("bert.{name}")
    }
}

/// Writes tensors as `model.safetensors` with the `format: pt` metadata transformers requires.
pub fn write_weights(dir: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), ModelError> {
    let path = dir.join(WEIGHTS_FILE);
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    // Serialised in memory and written with std::fs, which honours the umask;
    // safetensors' own file writer creates the file readable by its owner
    // only, which a container running as another user cannot load.
    let bytes = safetensors::serialize(sorted, metadata).map_err(|e| {
        ModelError::Tensor(candle_core::Error::msg(format!("{}: {e}", path.display())))
    })?;
    std::fs::write(&path, bytes).map_err(io_error(&path))
}

/// Writes `config.json`.
pub fn write_config(dir: &Path, config: &BertConfig) -> Result<(), ModelError> {
    let path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(config).map_err(|e| ModelError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text + "\n").map_err(io_error(&path))
}

/// Logits and mean last hidden states, one row per input.
pub type LogitsAndFeatures = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// A trained classifier ready for inference: configuration, tokenizer and weights.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// The configuration it was loaded with.
    pub config: BertConfig,
    /// Label names in class-index order.
    pub labels: Vec<String>,
    /// The tokenizer with the model's maximum length.
    pub encoder: TextEncoder,
    /// The network, with fast inference kernels.
    pub network: BertClassifier,
    /// Hex sha256 of `model.safetensors`, naming exactly these weights.
    pub weights_sha256: String,
    device: Device,
}

impl Classifier {
    /// Loads a model directory for inference.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let device = Device::Cpu;
        let config = read_config(dir)?;
        let labels = config.labels().map_err(|e| ModelError::Config {
            path: dir.join(CONFIG_FILE),
            message: e.to_string(),
        })?;
        check_labels(&labels).map_err(|message| ModelError::Config {
            path: dir.join(CONFIG_FILE),
            message,
        })?;
        let encoder = TextEncoder::load(&dir.join(TOKENIZER_FILE), config.candor.max_length)?;
        if encoder.id_bound() > config.vocab_size {
            return Err(ModelError::Config {
                path: dir.join(TOKENIZER_FILE),
                message: format!(
                    "the tokenizer produces ids up to {}, but config.json's vocab_size is {}",
                    encoder.id_bound() - 1,
                    config.vocab_size
                ),
            });
        }
        let (weights, weights_sha256) = read_weights(dir, &device)?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let mut network = BertClassifier::load(vb, &config, Kernels::Fast)?;
        network.pack_for_inference()?;
        Ok(Self {
            config,
            labels,
            encoder,
            network,
            weights_sha256,
            device,
        })
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Deterministic logits for many rows, batched by similar length to limit padding.
    pub fn logits_for_all(
        &self,
        rows: &[Vec<u32>],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        self.for_all(rows, batch_size, |batch| {
            self.logits(batch, DropoutMode::Off)
        })
    }

    /// The mean of the encoder's last hidden states over each row's tokens
    /// (padding excluded), dropout off, in length-sorted batches of
    /// `batch_size`; in row order.
    pub fn mean_hidden_for_all(
        &self,
        rows: &[Vec<u32>],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        self.for_all(rows, batch_size, |batch| {
            let batch = TokenBatch::from_rows(batch, self.encoder.pad_id(), &self.device)?;
            let hidden = self.network.encode(&batch, DropoutMode::Off)?;
            Ok(mean_over_tokens(&hidden, &batch)?.to_vec2::<f32>()?)
        })
    }

    /// Deterministic logits and mean last hidden states of the same rows, from one encoder pass.
    pub fn logits_and_mean_hidden(&self, rows: &[&[u32]]) -> Result<LogitsAndFeatures, ModelError> {
        let batch = TokenBatch::from_rows(rows, self.encoder.pad_id(), &self.device)?;
        let hidden = self.network.encode(&batch, DropoutMode::Off)?;
        let pooled = self.network.pool(&hidden)?;
        let logits = self.network.classify(&pooled, DropoutMode::Off)?;
        Ok((
            logits.to_vec2::<f32>()?,
            mean_over_tokens(&hidden, &batch)?.to_vec2::<f32>()?,
        ))
    }

    /// Runs `f` over length-sorted batches and puts its per-row outputs back in row order.
    fn for_all(
        &self,
        rows: &[Vec<u32>],
        batch_size: usize,
        f: impl Fn(&[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut out = vec![Vec::new(); rows.len()];
        for chunk in by_length(rows).chunks(batch_size.max(1)) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            for (&i, values) in chunk.iter().zip(f(&batch)?) {
                out[i] = values;
            }
        }
        Ok(out)
    }

    /// Logits of dropout on the head only: the encoder runs once, deterministically,
    /// and its pooled vector goes through the classifier dropout once per key.
    pub fn head_sample_logits(
        &self,
        row: &[u32],
        keys: &[u64],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.head_samples_and_mean_hidden(row, keys)?.0)
    }

    /// [`Classifier::head_sample_logits`] and the row's mean last hidden
    /// state, from the same single encoder pass.
    pub fn head_samples_and_mean_hidden(
        &self,
        row: &[u32],
        keys: &[u64],
    ) -> Result<(Vec<Vec<f32>>, Vec<f32>), ModelError> {
        let batch = TokenBatch::from_rows(&[row], self.encoder.pad_id(), &self.device)?;
        let hidden = self.network.encode(&batch, DropoutMode::Off)?;
        let pooled = self.network.pool(&hidden)?;
        let replicated = pooled
            .broadcast_as((keys.len(), pooled.dim(1)?))?
            .contiguous()?;
        let logits = self
            .network
            .classify(&replicated, DropoutMode::On(keys))?
            .to_vec2::<f32>()?;
        let mean = mean_over_tokens(&hidden, &batch)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        Ok((logits, mean))
    }

    /// Raw logits for rows of token ids, as `Vec` per row.
    pub fn logits(&self, rows: &[&[u32]], mode: DropoutMode) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = TokenBatch::from_rows(rows, self.encoder.pad_id(), &self.device)?;
        Ok(self.network.forward(&batch, mode)?.to_vec2::<f32>()?)
    }
}

/// The mean of `hidden` `(batch, seq, width)` over each row's real tokens.
fn mean_over_tokens(hidden: &Tensor, batch: &TokenBatch) -> candle_core::Result<Tensor> {
    let mask = batch.attention_mask.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?;
    summed.broadcast_div(&counts)
}

/// Indices of `rows` ordered by length, so that neighbours pad little.
pub fn by_length(rows: &[Vec<u32>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    order
}

/// Softmax of `logits / temperature`, computed in f64 for stability.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f32> {
    let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scaled.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn weights_are_written_with_the_same_permissions_as_any_other_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tensors = HashMap::from([(
            "classifier.bias".to_string(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).expect("tensor"),
        )]);
        write_weights(dir.path(), &tensors).expect("writes");
        std::fs::write(dir.path().join("other"), b"x").expect("writes");
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .expect("exists")
                .permissions()
                .mode()
        };
        // A container user other than the trainer must be able to read them.
        assert_eq!(mode(WEIGHTS_FILE), mode("other"));
    }
}
