//! Which hidden states describe an input when measuring how far it lies from
//! the training data: one encoder layer's output, pooled over the tokens.
//!
//! A fine-tuned classifier's last layer is shaped by its labels; an earlier
//! layer keeps more of what pretraining knew about language, which is what
//! tells a review from a text message. Which works best is measured (see
//! `candor eval --reference`), not assumed, so the choice is a value.

use std::fmt;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// How a layer's hidden states `(batch, seq, hidden)` become one vector per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the input's real tokens (padding excluded).
    #[default]
    Mean,
    /// The `[CLS]` position's hidden state.
    Cls,
}

impl Pooling {
    /// Every pooling, in the order reports list them.
    pub const ALL: [Pooling; 2] = [Pooling::Mean, Pooling::Cls];

    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }

    /// Pools `hidden` `(batch, seq, width)` into `(batch, width)`;
    /// `attention_mask` `(batch, seq)` marks real tokens with 1.
    pub fn apply(self, hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        match self {
            Pooling::Mean => {
                let mask = attention_mask.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                summed.broadcast_div(&mask.sum(1)?)
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Pooling::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown pooling '{s}': mean or cls"))
    }
}

/// One encoder layer's output, pooled: layer 0 is the embeddings, layer L
/// (the model's layer count) the last hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Representation {
    /// 0 for the embeddings, i for the output of encoder layer i (1-based).
    pub layer: usize,
    /// How the tokens are pooled.
    pub pooling: Pooling,
}

impl Representation {
    /// The mean of the last hidden states of a model with `layers` layers.
    pub fn last_mean(layers: usize) -> Self {
        Self {
            layer: layers,
            pooling: Pooling::Mean,
        }
    }

    /// Every representation of a model with `layers` layers: each layer's
    /// output with each pooling (the embeddings' `[CLS]` says nothing of
    /// the input, so only their mean).
    pub fn all(layers: usize) -> Vec<Self> {
        (0..=layers)
            .flat_map(|layer| {
                Pooling::ALL
                    .into_iter()
                    .filter(move |&p| layer > 0 || p == Pooling::Mean)
                    .map(move |pooling| Self { layer, pooling })
            })
            .collect()
    }

    /// Checks that a model with `layers` layers has this layer.
    pub fn check(&self, layers: usize) -> std::result::Result<(), String> {
        if self.layer > layers {
            return Err(format!(
                "the representation is of layer {}, but the model has {layers} layers",
                self.layer
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Representation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} {}", self.layer, self.pooling.as_str())
    }
}

impl std::str::FromStr for Representation {
    type Err = String;

    /// Parses `LAYER` or `LAYER:POOLING`, e.g. `4` or `3:cls`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (layer, pooling) = s.split_once(':').unwrap_or((s, "mean"));
        let layer = layer.trim().parse().map_err(|_| {
            format!("a representation is LAYER or LAYER:POOLING (e.g. 4 or 3:cls), got '{s}'")
        })?;
        Ok(Self {
            layer,
            pooling: pooling.trim().parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_representation_reads_as_a_layer_and_an_optional_pooling() {
        let parsed: Representation = "3:cls".parse().unwrap();
        assert_eq!(
            parsed,
            Representation {
                layer: 3,
                pooling: Pooling::Cls
            }
        );
        assert_eq!(
            "4".parse::<Representation>().unwrap().pooling,
            Pooling::Mean
        );
        assert!("x".parse::<Representation>().is_err());
        assert!("2:max".parse::<Representation>().is_err());
        assert_eq!(parsed.to_string(), "layer 3 cls");
    }

    #[test]
    fn every_layer_is_offered_with_each_pooling_but_the_embeddings_only_by_mean() {
        let all = Representation::all(2);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], Representation::last_mean(0));
        assert!(all.contains(&Representation {
            layer: 2,
            pooling: Pooling::Cls
        }));
        assert!(Representation::last_mean(3).check(2).is_err());
    }

    #[test]
    fn mean_pooling_leaves_padding_out_and_cls_takes_the_first_token() {
        let device = candle_core::Device::Cpu;
        // One row of two real tokens and one padded one, width 1.
        let hidden = Tensor::new(&[[[1f32], [3.], [100.]]], &device).unwrap();
        let mask = Tensor::new(&[[1f32, 1., 0.]], &device).unwrap();
        let mean = Pooling::Mean.apply(&hidden, &mask).unwrap();
        assert_eq!(mean.to_vec2::<f32>().unwrap(), vec![vec![2.0]]);
        let cls = Pooling::Cls.apply(&hidden, &mask).unwrap();
        assert_eq!(cls.to_vec2::<f32>().unwrap(), vec![vec![1.0]]);
    }
}
