//! Keeping n of each encoder layer's feed-forward neurons (its intermediate
//! width).
//!
//! Neuron j of a layer is row j of `intermediate.dense` (weights and bias)
//! and column j of `output.dense`: what it reads and what it writes back.
//! Its weight is the product of the two norms, ‖row‖ · ‖column‖, a bound on
//! how much it can add to the layer's output for an input of unit size.
//! Each layer keeps its n heaviest neurons in their original order, so the
//! result is an ordinary checkpoint of `intermediate_size` n (recover the
//! accuracy by distilling the full model into it, as for fewer layers).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::CompressError;

/// The names of a layer's feed-forward weights, from the layer's prefix.
fn names(layer: usize) -> [String; 3] {
    let prefix = format!("bert.encoder.layer.{layer}");
    [
        format!("{prefix}.intermediate.dense.weight"),
        format!("{prefix}.intermediate.dense.bias"),
        format!("{prefix}.output.dense.weight"),
    ]
}

/// Keeps the `keep` heaviest feed-forward neurons of each of `layers`
/// layers of `width` neurons.
pub fn keep_neurons(
    weights: &mut HashMap<String, Tensor>,
    layers: usize,
    width: usize,
    keep: usize,
) -> Result<(), CompressError> {
    if !(1..=width).contains(&keep) {
        return Err(CompressError::Width(format!(
            "cannot keep {keep} feed-forward neurons of a layer with {width}: choose 1 to {width}"
        )));
    }
    for layer in 0..layers {
        let [reads, bias, writes] = names(layer);
        let tensor = |name: &str| {
            weights
                .get(name)
                .cloned()
                .ok_or_else(|| CompressError::Width(format!("the weights have no {name}")))
        };
        let (w_in, b_in, w_out) = (tensor(&reads)?, tensor(&bias)?, tensor(&writes)?);
        let kept = heaviest(&w_in, &w_out, keep)?;
        weights.insert(reads, w_in.index_select(&kept, 0)?);
        weights.insert(bias, b_in.index_select(&kept, 0)?);
        weights.insert(writes, w_out.index_select(&kept, 1)?);
    }
    Ok(())
}

/// Indices of the `keep` neurons with the largest ‖row of `w_in`‖ ·
/// ‖column of `w_out`‖, ascending.
fn heaviest(w_in: &Tensor, w_out: &Tensor, keep: usize) -> Result<Tensor, CompressError> {
    let norms = |t: &Tensor, dim: usize| -> Result<Vec<f32>, CompressError> {
        Ok(t.to_dtype(DType::F32)?.sqr()?.sum(dim)?.sqrt()?.to_vec1()?)
    };
    let (reads, writes) = (norms(w_in, 1)?, norms(w_out, 0)?);
    let mut order: Vec<usize> = (0..reads.len()).collect();
    // Heaviest first; ties keep the lower index.
    order.sort_by(|&a, &b| (reads[b] * writes[b]).total_cmp(&(reads[a] * writes[a])));
    let mut kept: Vec<u32> = order[..keep].iter().map(|&j| j as u32).collect();
    kept.sort_unstable();
    Ok(Tensor::new(kept, w_in.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A layer of 4 neurons over inputs of 3 whose neurons 1 and 3 write nothing.
    fn layer() -> HashMap<String, Tensor> {
        let d = &Device::Cpu;
        let [reads, bias, writes] = names(0);
        let w_in = Tensor::new(
            &[
                [0.5f32, -1.0, 0.25],
                [2.0, 2.0, 2.0],
                [-0.75, 0.5, 1.0],
                [3.0, 0.0, -3.0],
            ],
            d,
        )
        .unwrap();
        let b_in = Tensor::new(&[0.1f32, 0.2, -0.3, 0.4], d).unwrap();
        let w_out = Tensor::new(
            &[
                [1.0f32, 0.0, -2.0, 0.0],
                [0.5, 0.0, 0.25, 0.0],
                [-1.5, 0.0, 1.0, 0.0],
            ],
            d,
        )
        .unwrap();
        [(reads, w_in), (bias, b_in), (writes, w_out)].into()
    }

    /// The layer's feed-forward output for `x`: GELU(x Wᵢᵀ + b) Wₒᵀ.
    fn feed_forward(weights: &HashMap<String, Tensor>, x: &Tensor) -> Vec<Vec<f32>> {
        let [reads, bias, writes] = names(0);
        x.matmul(&weights[&reads].t().unwrap())
            .unwrap()
            .broadcast_add(&weights[&bias])
            .unwrap()
            .gelu_erf()
            .unwrap()
            .matmul(&weights[&writes].t().unwrap())
            .unwrap()
            .to_vec2()
            .unwrap()
    }

    #[test]
    fn neurons_that_write_nothing_go_first_and_the_output_stays() {
        let mut weights = layer();
        let x = Tensor::new(&[[0.3f32, -0.2, 0.9], [1.0, 0.5, -0.5]], &Device::Cpu).unwrap();
        let before = feed_forward(&weights, &x);
        keep_neurons(&mut weights, 1, 4, 2).unwrap();
        let [reads, bias, writes] = names(0);
        assert_eq!(weights[&reads].dims(), [2, 3]);
        assert_eq!(weights[&bias].to_vec1::<f32>().unwrap(), [0.1, -0.3]);
        assert_eq!(weights[&writes].dims(), [3, 2]);
        let after = feed_forward(&weights, &x);
        for (b, a) in before.iter().flatten().zip(after.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{before:?} vs {after:?}");
        }
    }

    #[test]
    fn the_heaviest_neurons_stay_in_their_order() {
        let mut weights = layer();
        // Neuron 0: 1.15 × 1.87; neuron 2: 1.35 × 2.26: keeping one keeps 2.
        keep_neurons(&mut weights, 1, 4, 1).unwrap();
        let [_, bias, _] = names(0);
        assert_eq!(weights[&bias].to_vec1::<f32>().unwrap(), [-0.3]);
    }

    #[test]
    fn a_width_beyond_the_layer_or_zero_is_refused() {
        let mut weights = layer();
        let message = keep_neurons(&mut weights, 1, 4, 5).unwrap_err().to_string();
        assert!(message.contains("choose 1 to 4"), "{message}");
        assert!(keep_neurons(&mut weights, 1, 4, 0).is_err());
        assert_eq!(weights[&names(0)[1]].dims(), [4], "nothing changed");
    }
}
