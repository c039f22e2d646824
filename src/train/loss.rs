//! The training loss: cross-entropy, optionally with label smoothing.
//!
//! Label smoothing trains against `(1 − ε)` on the true class plus `ε/K`
//! spread over all `K` classes, i.e. `(1 − ε)·NLL + ε·mean_k(−log p_k)`: the
//! model is never pushed towards infinitely confident logits, which on small
//! data is where memorising starts.

use candle_core::{Result, Tensor, D};

/// Mean cross-entropy of `logits (batch, classes)` against `targets (batch)` u32
/// class indices, with label smoothing `smoothing` (0: plain cross-entropy).
pub fn smoothed_cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    if smoothing <= 0.0 {
        return candle_nn::loss::cross_entropy(logits, targets);
    }
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .neg()?
        .mean_all()?;
    let uniform = log_probs.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll.affine(1.0 - smoothing, 0.0)? + uniform.affine(smoothing, 0.0)?)?.reshape(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn smoothing_mixes_the_nll_with_the_mean_negative_log_probability() {
        let logits = Tensor::new(&[[2.0f32, 0.0, 0.0], [0.0, 1.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let eps = 0.1;
        // Row 1: log Z = ln(e² + 2); row 2: log Z = ln(2 + e).
        let (z1, z2) = ((2f64.exp() + 2.0).ln(), (2.0 + 1f64.exp()).ln());
        let nll = ((z1 - 2.0) + z2) / 2.0;
        let uniform = ((3.0 * z1 - 2.0) / 3.0 + (3.0 * z2 - 1.0) / 3.0) / 2.0;
        let expected = (1.0 - eps) * nll + eps * uniform;
        let got = smoothed_cross_entropy(&logits, &targets, eps)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn no_smoothing_is_plain_cross_entropy() {
        let logits = Tensor::new(&[[0.3f32, -1.0], [2.0, 0.5]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let ours = smoothed_cross_entropy(&logits, &targets, 0.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let plain = candle_nn::loss::cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(ours, plain);
    }
}
