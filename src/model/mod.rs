//! The model: configuration, tokenizer, BERT layers with seedable dropout, and
//! the model directory in Hugging Face format.
//!
//! A model directory holds `config.json` (a transformers `BertConfig` with
//! candor's keys under `"candor"`), `model.safetensors` (tensor names of
//! `BertForSequenceClassification`) and `tokenizer.json`, and what candor
//! keeps beside them; [`ModelDir`] names each file and the model. This module
//! knows nothing of HTTP or databases.

pub mod bert;
pub mod config;
pub mod dir;
pub mod dropout;
pub mod features;
pub(crate) mod gelu;
mod int8;
pub(crate) mod layer_norm;
pub mod packed;
pub mod tokenizer;
mod view;
pub mod wordpiece;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

pub use bert::{BertClassifier, Kernels, TokenBatch};
pub use config::{ArchitectureSizes, BertConfig, ConfigError, DropoutRates};
pub use dir::{ModelDir, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
pub use dropout::DropoutMode;
pub use features::{Pooling, Representation};
pub use packed::Precision;
pub use tokenizer::{Encoded, TextEncoder, TokenizerError, Truncation};

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
    /// This CPU cannot compute at the precision asked for.
    #[error("this CPU cannot compute at {0} precision (bf16 needs AVX-512 BF16, int8 AVX-512 VNNI); use f32")]
    Precision(Precision),
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
    let path = ModelDir::new(dir).config();
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
    let path = ModelDir::new(dir).weights();
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
    let path = ModelDir::new(dir).weights();
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
    let path = ModelDir::new(dir).config();
    let text = serde_json::to_string_pretty(config).map_err(|e| ModelError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text + "\n").map_err(io_error(&path))
}

/// Deterministic logits and feature vectors of the same rows, from one pass.
#[derive(Debug, Clone, Default)]
pub struct LogitsAndFeatures {
    /// Raw logits, one row per input.
    pub logits: Vec<Vec<f32>>,
    /// [`Classifier::features`] vectors, one row per input.
    pub features: Vec<Vec<f32>>,
}

/// The deterministic lower layers of one row, computed once for sampling
/// the layers above (see [`Classifier::lower_pass`]).
#[derive(Debug, Clone)]
pub struct LowerPass {
    /// The input of layer `lower`, `(1, seq, hidden)`.
    below: Tensor,
    /// The row's attention bias `(1, 1, 1, seq)`.
    mask_bias: Tensor,
    /// The first sampled layer.
    lower: usize,
    /// The row's feature vector.
    pub feature: Vec<f32>,
}

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
    /// The representation the `*_features` methods return (the mean of the
    /// last hidden states unless a calibration chose another).
    pub features: Representation,
    /// The arithmetic of the dense layers.
    pub precision: Precision,
    device: Device,
}

impl Classifier {
    /// Loads a model directory for inference (f32 arithmetic).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Self::load_with(dir, Precision::F32)
    }

    /// Loads a model directory for inference computing its dense layers at
    /// `precision`; an error when this CPU cannot.
    pub fn load_with(dir: &Path, precision: Precision) -> Result<Self, ModelError> {
        if !precision.available() {
            return Err(ModelError::Precision(precision));
        }
        let device = Device::Cpu;
        let files = ModelDir::new(dir);
        let config = read_config(dir)?;
        let labels = config.labels().map_err(|e| ModelError::Config {
            path: files.config(),
            message: e.to_string(),
        })?;
        check_labels(&labels).map_err(|message| ModelError::Config {
            path: files.config(),
            message,
        })?;
        let encoder = TextEncoder::load(&files.tokenizer(), config.candor.max_length)?;
        if encoder.id_bound() > config.vocab_size {
            return Err(ModelError::Config {
                path: files.tokenizer(),
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
        network.pack_for_inference(precision)?;
        Ok(Self {
            features: Representation::last_mean(network.layer_count()),
            precision,
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

    /// Each row's [`Classifier::features`] vector, dropout off, in
    /// length-sorted batches of `batch_size`; in row order.
    pub fn features_for_all(
        &self,
        rows: &[Vec<u32>],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self
            .representations_for_all(rows, batch_size, &[self.features])?
            .pop()
            .unwrap_or_default())
    }

    /// Each row's vector in each of `representations`, dropout off:
    /// `[representation][row]`, rows in their order.
    pub fn representations_for_all(
        &self,
        rows: &[Vec<u32>],
        batch_size: usize,
        representations: &[Representation],
    ) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        let mut out = vec![vec![Vec::new(); rows.len()]; representations.len()];
        for chunk in by_length(rows).chunks(batch_size.max(1)) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            let batch = TokenBatch::from_rows(&batch, self.encoder.pad_id(), &self.device)?;
            let (_, pooled) = self.encode_pooled(&batch, representations)?;
            for (r, pooled) in pooled.into_iter().enumerate() {
                for (&i, values) in chunk.iter().zip(pooled.to_vec2::<f32>()?) {
                    out[r][i] = values;
                }
            }
        }
        Ok(out)
    }

    /// Runs the encoder with dropout off and pools the hidden states of each
    /// of `representations`; returns the last hidden states too.
    fn encode_pooled(
        &self,
        batch: &TokenBatch,
        representations: &[Representation],
    ) -> Result<(Tensor, Vec<Tensor>), ModelError> {
        let layers = self.network.layer_count();
        if let Some(bad) = representations.iter().find(|r| r.check(layers).is_err()) {
            return Err(candle_core::Error::Msg(format!(
                "the model has {layers} layers, not the {bad}"
            ))
            .into());
        }
        let mut pooled = vec![None; representations.len()];
        let mut pool_at = |layer: usize, x: &Tensor| -> candle_core::Result<()> {
            for (slot, r) in pooled.iter_mut().zip(representations) {
                if r.layer == layer {
                    *slot = Some(r.pooling.apply(x, &batch.attention_mask)?);
                }
            }
            Ok(())
        };
        let (mut x, mask_bias) = self.network.embed(batch, DropoutMode::Off)?;
        pool_at(0, &x)?;
        for layer in 0..layers {
            x = self
                .network
                .run_layers(x, &mask_bias, layer..layer + 1, DropoutMode::Off)?;
            pool_at(layer + 1, &x)?;
        }
        Ok((x, pooled.into_iter().flatten().collect()))
    }

    /// Deterministic logits and [`Classifier::features`] vectors of the same
    /// rows, from one encoder pass.
    pub fn logits_and_features(&self, rows: &[&[u32]]) -> Result<LogitsAndFeatures, ModelError> {
        let batch = TokenBatch::from_rows(rows, self.encoder.pad_id(), &self.device)?;
        let (hidden, mut features) = self.encode_pooled(&batch, &[self.features])?;
        let pooled = self.network.pool(&hidden)?;
        let logits = self.network.classify(&pooled, DropoutMode::Off)?;
        let features = features.pop().map(|f| f.to_vec2::<f32>()).transpose()?;
        Ok(LogitsAndFeatures {
            logits: logits.to_vec2::<f32>()?,
            features: features.unwrap_or_default(),
        })
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

    /// The deterministic part of sampling only the top `top` encoder layers
    /// (and the head) of one row: the layers below, run once on the row
    /// alone, and the row's [`Classifier::features`] vector from the same
    /// pass (continued through the top layers, dropout off, when the
    /// representation lies among them). `top` = 0 leaves the head alone.
    pub fn lower_pass(&self, row: &[u32], top: usize) -> Result<LowerPass, ModelError> {
        let layers = self.network.layer_count();
        if top > layers {
            return Err(candle_core::Error::Msg(format!(
                "cannot sample the top {top} layers of a model of {layers}"
            ))
            .into());
        }
        let lower = layers - top;
        let batch = TokenBatch::from_rows(&[row], self.encoder.pad_id(), &self.device)?;
        let want = self.features;
        let pool = |x: &Tensor| want.pooling.apply(x, &batch.attention_mask);
        let (mut x, mask_bias) = self.network.embed(&batch, DropoutMode::Off)?;
        let mut feature = if want.layer == 0 {
            Some(pool(&x)?)
        } else {
            None
        };
        let mut below = None;
        for layer in 0..layers {
            if layer == lower {
                below = Some(x.clone());
                if feature.is_some() {
                    break;
                }
            }
            x = self
                .network
                .run_layers(x, &mask_bias, layer..layer + 1, DropoutMode::Off)?;
            if layer + 1 == want.layer {
                feature = Some(pool(&x)?);
            }
        }
        let feature = match feature {
            Some(f) => f.squeeze(0)?.to_vec1::<f32>()?,
            None => Vec::new(),
        };
        Ok(LowerPass {
            below: below.unwrap_or(x),
            mask_bias,
            lower,
            feature,
        })
    }

    /// One logit row per key: the lower pass's output replicated once per
    /// key through the top layers and the head, with dropout on.
    pub fn top_sample_logits(
        &self,
        pass: &LowerPass,
        keys: &[u64],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let replicate = |t: &Tensor| -> candle_core::Result<Tensor> {
            let mut dims = t.dims().to_vec();
            dims[0] = keys.len();
            t.broadcast_as(dims)?.contiguous()
        };
        let mode = DropoutMode::On(keys);
        if pass.lower == self.network.layer_count() {
            // Head only: pool the one row, then replicate the pooled vector.
            let pooled = replicate(&self.network.pool(&pass.below)?)?;
            return Ok(self.network.classify(&pooled, mode)?.to_vec2::<f32>()?);
        }
        let hidden = self.network.run_layers(
            replicate(&pass.below)?,
            &replicate(&pass.mask_bias)?,
            pass.lower..self.network.layer_count(),
            mode,
        )?;
        let pooled = self.network.pool(&hidden)?;
        Ok(self.network.classify(&pooled, mode)?.to_vec2::<f32>()?)
    }

    /// Raw logits for rows of token ids, as `Vec` per row.
    pub fn logits(&self, rows: &[&[u32]], mode: DropoutMode) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = TokenBatch::from_rows(rows, self.encoder.pad_id(), &self.device)?;
        Ok(self.network.forward(&batch, mode)?.to_vec2::<f32>()?)
    }
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

    fn fixture() -> Classifier {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-trec6");
        Classifier::load(&dir).expect("the fixture loads")
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
        a.len() == b.len()
            && a.iter()
                .flatten()
                .zip(b.iter().flatten())
                .all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn sampling_the_top_layers_equals_full_sampling_with_dropout_only_in_those_layers() {
        let classifier = fixture();
        let network = &classifier.network;
        let layers = network.layer_count();
        let row: Vec<u32> = vec![2, 40, 41, 57, 3];
        let keys: Vec<u64> = (0..6).map(|t| crate::rng::mix(9, t)).collect();
        for top in 0..=layers {
            let pass = classifier.lower_pass(&row, top).expect("lower pass");
            let fast = classifier.top_sample_logits(&pass, &keys).expect("samples");
            // Reference: every sample's copy of the row through every layer,
            // dropout off below the top `top` layers and on in them.
            let copies = vec![row.as_slice(); keys.len()];
            let batch = TokenBatch::from_rows(&copies, classifier.encoder.pad_id(), &Device::Cpu)
                .expect("batch");
            let on = DropoutMode::On(&keys);
            let (x, bias) = network.embed(&batch, DropoutMode::Off).expect("embed");
            let x = network
                .run_layers(x, &bias, 0..layers - top, DropoutMode::Off)
                .expect("lower");
            let x = network
                .run_layers(x, &bias, layers - top..layers, on)
                .expect("upper");
            let pooled = network.pool(&x).expect("pool");
            let reference = network
                .classify(&pooled, on)
                .and_then(|l| l.to_vec2::<f32>())
                .expect("logits");
            assert!(
                close(&fast, &reference),
                "top {top}: {fast:?} vs {reference:?}"
            );
            assert!(
                fast.iter().any(|l| l != &fast[0]),
                "top {top}: the samples differ"
            );
        }
    }

    #[test]
    fn the_lower_pass_gives_the_same_features_as_a_deterministic_pass() {
        let mut classifier = fixture();
        let row: Vec<u32> = vec![2, 40, 41, 57, 3];
        let layers = classifier.network.layer_count();
        for representation in Representation::all(layers) {
            classifier.features = representation;
            let whole = classifier
                .logits_and_features(&[&row])
                .expect("pass")
                .features;
            for top in 0..=layers {
                let pass = classifier.lower_pass(&row, top).expect("lower pass");
                assert!(
                    close(std::slice::from_ref(&pass.feature), &whole),
                    "{representation}, top {top}"
                );
            }
        }
        assert!(classifier.lower_pass(&row, layers + 1).is_err());
    }
}
