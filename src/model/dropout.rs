//! Dropout with masks from candor's own seeded generator.
//!
//! candle-nn's `ops::dropout` draws from candle's CPU generator, which cannot be
//! seeded, so neither training nor Monte-Carlo sampling could be reproduced
//! with it. The semantics here are the same (drop each element with
//! probability p, scale survivors by 1/(1−p)), but each mask element is a pure
//! function of (row key, site, logical position). A row key identifies one
//! example (and, for MC dropout, one sample of one request), so a row's masks do
//! not depend on which other rows share its batch or how far it was padded.

use candle_core::{Result, Tensor};

use crate::rng::{hash64, mix};

/// Whether dropout is active in a forward pass.
#[derive(Debug, Clone, Copy)]
pub enum DropoutMode<'a> {
    /// Evaluation: every dropout site is the identity and the model is deterministic.
    Off,
    /// Training or MC sampling: one key per batch row seeds that row's masks.
    On(&'a [u64]),
}

impl DropoutMode<'_> {
    /// True when masks are drawn.
    pub fn is_on(&self) -> bool {
        matches!(self, DropoutMode::On(_))
    }
}

/// Identifies one dropout site in the network, so that sites draw independent masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site(pub u64);

impl Site {
    /// The embeddings output.
    pub const EMBEDDINGS: Site = Site(1);
    /// The classifier input (the pooled `[CLS]` vector).
    pub const CLASSIFIER: Site = Site(2);

    /// A site inside encoder layer `layer`; `slot` tells the sites of one layer apart.
    pub fn in_layer(layer: usize, slot: u64) -> Site {
        Site(1000 + layer as u64 * 16 + slot)
    }
}

/// Applies dropout with probability `p` to `xs`, whose first dimension is the batch row.
///
/// `strides` gives, for each remaining dimension, the logical stride used to
/// number its elements; pass strides built from fixed sizes (such as the
/// maximum length) rather than the padded length, so that the numbering of a
/// real token does not change with padding.
pub fn dropout(
    xs: &Tensor,
    p: f64,
    site: Site,
    strides: &[u64],
    mode: DropoutMode,
) -> Result<Tensor> {
    let DropoutMode::On(row_keys) = mode else {
        return Ok(xs.clone());
    };
    if p <= 0.0 {
        return Ok(xs.clone());
    }
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout probability has to be in [0, 1), got {p}")
    }
    let dims = xs.dims();
    if dims.len() != strides.len() + 1 || dims[0] != row_keys.len() {
        candle_core::bail!(
            "dropout: shape {dims:?} does not match {} strides and {} row keys",
            strides.len(),
            row_keys.len()
        )
    }
    let mask = mask_values(row_keys, &dims[1..], strides, p, site);
    let mask = Tensor::from_vec(mask, dims, xs.device())?.to_dtype(xs.dtype())?;
    xs * mask
}

/// The mask values (0 or 1/(1−p)) in row-major order of `[rows, inner…]`.
fn mask_values(row_keys: &[u64], inner: &[usize], strides: &[u64], p: f64, site: Site) -> Vec<f32> {
    let per_row: usize = inner.iter().product();
    let scale = (1.0 / (1.0 - p)) as f32;
    // Keep an element when its 24-bit uniform draw is at least p, as candle keeps `rand >= p`.
    let threshold = (p * (1u64 << 24) as f64).ceil() as u64;
    let mut out = Vec::with_capacity(row_keys.len() * per_row);
    for &row_key in row_keys {
        let key = mix(row_key, site.0);
        for flat in 0..per_row {
            let index = logical_index(flat, inner, strides);
            let bits = hash64(key.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            out.push(if (bits >> 40) >= threshold {
                scale
            } else {
                0.0
            });
        }
    }
    out
}

/// Converts a row-major offset in `inner` into the padding-independent index.
fn logical_index(mut flat: usize, inner: &[usize], strides: &[u64]) -> u64 {
    let mut index = 0u64;
    for (dim, stride) in inner.iter().zip(strides).rev() {
        index += (flat % dim) as u64 * stride;
        flat /= dim;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn ones(shape: &[usize]) -> Tensor {
        Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn dropout_off_is_the_identity() {
        let x = ones(&[2, 3, 4]);
        let y = dropout(&x, 0.5, Site::EMBEDDINGS, &[4, 1], DropoutMode::Off).unwrap();
        assert_eq!(x.to_vec3::<f32>().unwrap(), y.to_vec3::<f32>().unwrap());
    }

    #[test]
    fn dropout_on_drops_the_expected_fraction_and_keeps_the_mean() {
        let keys: Vec<u64> = (0..64).collect();
        let x = ones(&[64, 32, 64]);
        let p = 0.3;
        let y = dropout(&x, p, Site::EMBEDDINGS, &[64, 1], DropoutMode::On(&keys)).unwrap();
        let values = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let dropped = values.iter().filter(|v| **v == 0.0).count() as f64 / values.len() as f64;
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / values.len() as f64;
        assert!((dropped - p).abs() < 0.01, "dropped {dropped}");
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        let survivors_scale = 1.0 / (1.0 - p) as f32;
        assert!(values
            .iter()
            .all(|v| *v == 0.0 || (*v - survivors_scale).abs() < 1e-6));
    }

    #[test]
    fn the_same_keys_give_the_same_masks_and_other_keys_do_not() {
        let x = ones(&[2, 8, 16]);
        let a = dropout(&x, 0.5, Site(9), &[16, 1], DropoutMode::On(&[1, 2])).unwrap();
        let b = dropout(&x, 0.5, Site(9), &[16, 1], DropoutMode::On(&[1, 2])).unwrap();
        let c = dropout(&x, 0.5, Site(9), &[16, 1], DropoutMode::On(&[3, 4])).unwrap();
        let d = dropout(&x, 0.5, Site(10), &[16, 1], DropoutMode::On(&[1, 2])).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
        assert_ne!(v(&a), v(&d));
    }

    #[test]
    fn a_rows_mask_does_not_depend_on_padding_or_its_neighbours() {
        // Row key 7 alone with 5 positions, and second in a batch padded to 9 positions.
        let short = dropout(
            &ones(&[1, 5, 4]),
            0.5,
            Site(3),
            &[4, 1],
            DropoutMode::On(&[7]),
        )
        .unwrap();
        let long = dropout(
            &ones(&[2, 9, 4]),
            0.5,
            Site(3),
            &[4, 1],
            DropoutMode::On(&[99, 7]),
        )
        .unwrap();
        let long_row = long.get(1).unwrap().narrow(0, 0, 5).unwrap();
        assert_eq!(
            short.get(0).unwrap().to_vec2::<f32>().unwrap(),
            long_row.to_vec2::<f32>().unwrap()
        );
    }
}
