//! The training loss: cross-entropy, optionally with label smoothing, and
//! the consistency (R-Drop) and distillation terms.
//!
//! Label smoothing trains against `(1 − ε)` on the true class plus `ε/K`
//! spread over all `K` classes, i.e. `(1 − ε)·NLL + ε·mean_k(−log p_k)`: the
//! model is never pushed towards infinitely confident logits, which on small
//! data is where memorising starts.
//!
//! R-Drop (Liang et al., 2021) adds the symmetric KL divergence between the
//! predictions of two passes of the same batch under different dropout
//! masks: the sub-networks dropout samples are pushed to agree, which
//! regularises beyond dropout alone and narrows the gap between the
//! deterministic model and the MC-dropout average.

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

/// Mean over the batch of the symmetric KL divergence
/// `½·(KL(p‖q) + KL(q‖p))` between the class distributions of two logit
/// tensors `(batch, classes)`.
pub fn symmetric_kl(logits_p: &Tensor, logits_q: &Tensor) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits_p, D::Minus1)?;
    let log_q = candle_nn::ops::log_softmax(logits_q, D::Minus1)?;
    // KL(p‖q) + KL(q‖p) = Σ (p − q)(log p − log q).
    let diff = (log_p.exp()? - log_q.exp()?)?;
    let per_row = (diff * (log_p - log_q)?)?.sum(D::Minus1)?;
    per_row.mean_all()?.affine(0.5, 0.0)
}

/// Mean over the batch of the cross-entropy `−Σ p·log q` of the student's
/// distribution `q = softmax(logits / T)` against `targets (batch, classes)`,
/// the teachers' probabilities (already at temperature `T`), times `T²` so
/// the gradients keep their size as `T` grows (Hinton et al., 2015).
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor, temperature: f64) -> Result<Tensor> {
    let log_q = candle_nn::ops::log_softmax(&logits.affine(1.0 / temperature, 0.0)?, D::Minus1)?;
    let per_row = (targets * log_q)?.sum(D::Minus1)?.neg()?;
    per_row.mean_all()?.affine(temperature * temperature, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The value of a scalar loss.
    fn value(loss: Result<Tensor>) -> f32 {
        loss.unwrap().to_scalar::<f32>().unwrap()
    }

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
        let got = value(smoothed_cross_entropy(&logits, &targets, eps)) as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn the_symmetric_kl_is_zero_for_equal_predictions_and_matches_the_formula_otherwise() {
        let a = Tensor::new(&[[1.0f32, 0.0], [0.5, 0.5]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[0.0f32, 1.0], [0.5, 0.5]], &Device::Cpu).unwrap();
        let same = symmetric_kl(&a, &a).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(same, 0.0);
        // Row 1: p = (s, 1 − s), q = (1 − s, s) with s = σ(1);
        // KL(p‖q) = KL(q‖p) = (2s − 1)·ln(s / (1 − s)) = (2s − 1)·1. Row 2: 0.
        let s = 1.0 / (1.0 + (-1f64).exp());
        let expected = (2.0 * s - 1.0) / 2.0;
        let got = symmetric_kl(&a, &b).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn soft_targets_on_one_class_give_the_plain_cross_entropy_and_scale_with_the_temperature() {
        let logits = Tensor::new(&[[0.3f32, -1.0], [2.0, 0.5]], &Device::Cpu).unwrap();
        let one_hot = Tensor::new(&[[0.0f32, 1.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let soft = value(soft_cross_entropy(&logits, &one_hot, 1.0));
        let plain = value(candle_nn::loss::cross_entropy(&logits, &targets));
        assert!((soft - plain).abs() < 1e-6, "{soft} vs {plain}");
        // At T = 2 the logits are halved and the loss is multiplied by 4.
        let halved = logits.affine(0.5, 0.0).unwrap();
        let expected = 4.0 * value(candle_nn::loss::cross_entropy(&halved, &targets));
        let at_two = value(soft_cross_entropy(&logits, &one_hot, 2.0));
        assert!((at_two - expected).abs() < 1e-5, "{at_two} vs {expected}");
    }

    #[test]
    fn no_smoothing_is_plain_cross_entropy() {
        let logits = Tensor::new(&[[0.3f32, -1.0], [2.0, 0.5]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let ours = value(smoothed_cross_entropy(&logits, &targets, 0.0));
        let plain = value(candle_nn::loss::cross_entropy(&logits, &targets));
        assert_eq!(ours, plain);
    }
}
