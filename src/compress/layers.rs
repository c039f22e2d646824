//! Keeping k of a model's L encoder layers.
//!
//! A layer's weights are renamed to its new position
//! (`bert.encoder.layer.4.…` kept as the second layer becomes
//! `bert.encoder.layer.1.…`), so the result is an ordinary k-layer checkpoint
//! that transformers and candor load as such.

use std::collections::HashMap;

use candle_core::Tensor;

use super::CompressError;

/// Which layers to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerChoice {
    /// All of them.
    All,
    /// This many, evenly spaced, the last layer always among them.
    Count(usize),
    /// Exactly these (0-based, in the order given).
    Indices(Vec<usize>),
}

impl LayerChoice {
    /// The 0-based layers kept of `total`, ascending.
    pub fn resolve(&self, total: usize) -> Result<Vec<usize>, CompressError> {
        let kept = match self {
            LayerChoice::All => (0..total).collect(),
            LayerChoice::Count(k) if (1..=total).contains(k) => evenly_spaced(total, *k),
            LayerChoice::Count(k) => {
                return Err(CompressError::Layers(format!(
                    "cannot keep {k} layers of a model with {total}: choose 1 to {total}"
                )))
            }
            LayerChoice::Indices(indices) => {
                let mut sorted = indices.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.is_empty() || sorted.len() != indices.len() {
                    return Err(CompressError::Layers(format!(
                        "the layers to keep must be distinct and at least one, got {indices:?}"
                    )));
                }
                if let Some(&past) = sorted.iter().find(|&&i| i >= total) {
                    return Err(CompressError::Layers(format!(
                        "layer {past} does not exist: the model has layers 0 to {}",
                        total - 1
                    )));
                }
                sorted
            }
        };
        Ok(kept)
    }
}

/// `k` of `total` layers spread evenly, ending with the last: the classifier
/// was trained on the last layer's output, so that one always stays.
pub fn evenly_spaced(total: usize, k: usize) -> Vec<usize> {
    (1..=k).map(|j| j * total / k - 1).collect()
}

const LAYER_PREFIX: &str = "bert.encoder.layer.";

/// Drops the weights of layers not in `kept` and renumbers the others.
pub fn keep_layers(weights: HashMap<String, Tensor>, kept: &[usize]) -> HashMap<String, Tensor> {
    let position: HashMap<usize, usize> = kept
        .iter()
        .enumerate()
        .map(|(new, &old)| (old, new))
        .collect();
    weights
        .into_iter()
        .filter_map(|(name, tensor)| {
            let Some(rest) = name.strip_prefix(LAYER_PREFIX) else {
                return Some((name, tensor));
            };
            let (index, tail) = rest.split_once('.')?;
            let new = position.get(&index.parse::<usize>().ok()?)?;
            Some((format!("{LAYER_PREFIX}{new}.{tail}"), tensor))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_layers_end_with_the_last_one() {
        assert_eq!(evenly_spaced(6, 3), [1, 3, 5]);
        assert_eq!(evenly_spaced(6, 2), [2, 5]);
        assert_eq!(evenly_spaced(6, 4), [0, 2, 3, 5]);
        assert_eq!(evenly_spaced(6, 6), [0, 1, 2, 3, 4, 5]);
        assert_eq!(evenly_spaced(6, 1), [5]);
    }

    #[test]
    fn a_layer_choice_beyond_the_model_is_refused() {
        assert!(LayerChoice::Count(7).resolve(6).is_err());
        assert!(LayerChoice::Count(0).resolve(6).is_err());
        assert!(LayerChoice::Indices(vec![0, 6]).resolve(6).is_err());
        assert!(LayerChoice::Indices(vec![2, 2]).resolve(6).is_err());
        assert_eq!(LayerChoice::Indices(vec![4, 0]).resolve(6).unwrap(), [0, 4]);
        assert_eq!(LayerChoice::All.resolve(3).unwrap(), [0, 1, 2]);
    }

    #[test]
    fn kept_layers_are_renumbered_and_the_others_dropped() {
        let t = || Tensor::zeros(1, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let weights: HashMap<String, Tensor> = [
            "bert.embeddings.word_embeddings.weight",
            "bert.encoder.layer.0.output.dense.weight",
            "bert.encoder.layer.1.output.dense.weight",
            "bert.encoder.layer.2.output.dense.weight",
            "classifier.weight",
        ]
        .into_iter()
        .map(|n| (n.to_string(), t()))
        .collect();
        let mut names: Vec<String> = keep_layers(weights, &[0, 2]).into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "bert.embeddings.word_embeddings.weight",
                "bert.encoder.layer.0.output.dense.weight",
                "bert.encoder.layer.1.output.dense.weight",
                "classifier.weight",
            ]
        );
    }
}
