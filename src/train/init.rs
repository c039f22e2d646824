//! Where the weights start: a fresh tokenizer and configuration or a
//! pretrained checkpoint, and BERT's seeded initialisation for the rest.

use std::collections::HashMap;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::data::Example;
use crate::model::{
    self, ArchitectureSizes, BertClassifier, BertConfig, Kernels, ModelDir, TextEncoder,
};
use crate::rng::{SeededRng, Stream};

/// The tokenizer, configuration and any pretrained weights to start from.
pub(super) fn prepare_model(
    settings: &TrainSettings,
    labels: &[String],
    train: &[Example],
    device: &Device,
) -> anyhow::Result<(TextEncoder, BertConfig, HashMap<String, Tensor>)> {
    let m = settings.model;
    if let Some(dir) = &settings.init_from {
        let mut config: BertConfig = {
            let path = ModelDir::new(dir).config();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        };
        // A checkpoint fine-tuned on these labels (a compressed model to
        // distil into) keeps its classifier; any other starts a fresh one.
        let same_labels = config.labels().is_ok_and(|l| l == labels);
        config.set_labels(labels);
        config.hidden_dropout_prob = m.dropout.hidden;
        config.attention_probs_dropout_prob = m.dropout.attention;
        config.classifier_dropout = Some(m.dropout.classifier);
        config.candor.max_length = m.max_length.min(config.max_position_embeddings);
        config.candor.temperature = 1.0;
        config.validate()?;
        let encoder = TextEncoder::load(&ModelDir::new(dir).tokenizer(), config.candor.max_length)?;
        let (mut weights, _) = model::read_weights(dir, device)?;
        if !same_labels {
            weights.retain(|name, _| !name.starts_with("classifier."));
        }
        return Ok((encoder, config, weights));
    }
    let texts: Vec<String> = train.iter().map(|e| e.text.clone()).collect();
    let encoder = TextEncoder::train(&texts, m.vocab_size, m.max_length)?;
    let sizes = ArchitectureSizes {
        max_positions: m.sizes.max_positions.max(m.max_length),
        ..m.sizes
    };
    let mut config = BertConfig::new(encoder.vocab_size(), sizes, m.dropout, labels);
    config.candor.max_length = m.max_length;
    config.validate()?;
    Ok((encoder, config, HashMap::new()))
}

/// Creates every parameter: from `initial` where it has the tensor, else
/// BERT's initialisation (normal(0, initializer_range) weights, zero biases,
/// unit LayerNorm scales) from the seeded generator.
pub fn initial_parameters(
    config: &BertConfig,
    mut initial: HashMap<String, Tensor>,
    seed: u64,
    device: &Device,
) -> anyhow::Result<VarMap> {
    let varmap = VarMap::new();
    // Building the network through a VarMap-backed builder registers every parameter.
    BertClassifier::load(
        VarBuilder::from_varmap(&varmap, DType::F32, device),
        config,
        Kernels::Fast,
    )?;
    let mut rng = SeededRng::new(Stream::Initialisation.of(seed));
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut fresh = Vec::new();
    for name in names {
        let var = &vars[name];
        let value = match initial.remove(name.as_str()) {
            Some(t) if t.shape() == var.shape() => t,
            Some(t) => bail!(
                "checkpoint tensor {name} has shape {:?}, the model needs {:?}",
                t.dims(),
                var.dims()
            ),
            None => {
                fresh.push(name.clone());
                fresh_tensor(name, var.dims(), config.initializer_range, &mut rng, device)?
            }
        };
        var.set(&value)?;
    }
    if !initial.is_empty() {
        let mut unused: Vec<_> = initial.keys().cloned().collect();
        unused.sort();
        tracing::warn!(tensors = ?unused, "checkpoint tensors the model does not use");
    }
    tracing::debug!(tensors = ?fresh, "freshly initialised");
    drop(vars);
    Ok(varmap)
}

pub(super) fn fresh_tensor(
    name: &str,
    dims: &[usize],
    std: f64,
    rng: &mut SeededRng,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if name.ends_with("LayerNorm.weight") {
        return Tensor::ones(dims, DType::F32, device);
    }
    if name.ends_with(".bias") {
        return Tensor::zeros(dims, DType::F32, device);
    }
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Tensor::from_vec(values, dims, device)
}

/// A copy of every parameter, by name.
pub(super) fn tensors_of(varmap: &VarMap) -> anyhow::Result<HashMap<String, Tensor>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
    let mut out = HashMap::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        out.insert(name.clone(), var.as_tensor().copy()?);
    }
    Ok(out)
}
