//! What a packed layer applies to each output after the bias, in scalar
//! form and as the vector step every kernel's tile ends with.

/// What is applied to each output after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    Identity,
    /// GELU, `x · Φ(x)` with the exact (erf) Gaussian CDF, as BERT uses.
    Gelu,
}

/// GELU with erf from a rational approximation accurate to a few f32 ulps on
/// (-4, 4), and ±1 beyond (as erf is in f32); the coefficients are the
/// minimax fit Eigen and XLA use for f32 erf.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The numerator's coefficients of [`erf`]'s rational function of `x²`,
/// highest power first (it is multiplied by `x`).
pub(super) const ERF_P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_1e-3,
    -1.609_603_3e-2,
];
/// The denominator's, highest power first.
pub(super) const ERF_Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329_2e-3,
    -1.426_473_9e-2,
];

/// erf in f32 (see [`gelu`]).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ERF_P[1..].iter().fold(ERF_P[0], |p, &c| x2.mul_add(p, c));
    let q = ERF_Q[1..].iter().fold(ERF_Q[0], |q, &c| x2.mul_add(q, c));
    // ±1 exactly where erf rounds to it, so GELU is 0 far below zero.
    if x.abs() >= 4.0 {
        1f32.copysign(x)
    } else {
        x * p / q
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod kernel {
    use super::super::PANEL;
    use super::{Activation, ERF_P, ERF_Q};
    use std::arch::x86_64::*;

    /// Adds the bias and applies the activation to each row of `tile`.
    #[target_feature(enable = "avx512f")]
    pub(in crate::model::packed) unsafe fn finish(
        tile: &mut [[f32; PANEL]],
        bias: &[f32],
        act: Activation,
    ) {
        assert!(bias.len() >= PANEL);
        let (b0, b1) = (
            _mm512_loadu_ps(bias.as_ptr()),
            _mm512_loadu_ps(bias.as_ptr().add(16)),
        );
        for row in tile.iter_mut() {
            for (half, b) in [(0, b0), (16, b1)] {
                let p = row.as_mut_ptr().add(half);
                let v = _mm512_add_ps(_mm512_loadu_ps(p), b);
                let v = match act {
                    Activation::Identity => v,
                    Activation::Gelu => gelu(v),
                };
                _mm512_storeu_ps(p, v);
            }
        }
    }

    /// [`super::gelu`], sixteen lanes at a time.
    #[target_feature(enable = "avx512f")]
    unsafe fn gelu(x: __m512) -> __m512 {
        let half = _mm512_set1_ps(0.5);
        let y = erf(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        _mm512_mul_ps(
            _mm512_mul_ps(half, x),
            _mm512_add_ps(_mm512_set1_ps(1.0), y),
        )
    }

    /// [`super::erf`], sixteen lanes at a time, the same operations in the same order.
    #[target_feature(enable = "avx512f")]
    unsafe fn erf(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
        let x2 = _mm512_mul_ps(x, x);
        let c = _mm512_set1_ps;
        let mut p = c(ERF_P[0]);
        for &a in &ERF_P[1..] {
            p = _mm512_fmadd_ps(x2, p, c(a));
        }
        let mut q = c(ERF_Q[0]);
        for &b in &ERF_Q[1..] {
            q = _mm512_fmadd_ps(x2, q, c(b));
        }
        let y = _mm512_div_ps(_mm512_mul_ps(x, p), q);
        let y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, c(4.0)), y, c(1.0));
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, c(-4.0)), y, c(-1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_4e_7_of_the_exact_function() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f64 / 1000.0;
            let exact = libm::erf(x);
            worst = worst.max((erf(x as f32) as f64 - exact).abs());
        }
        assert!(worst < 4e-7, "worst error {worst}");
    }

    #[test]
    fn gelu_far_below_zero_is_zero_and_far_above_is_the_input() {
        for x in [-6.0f32, -30.0, -1e6] {
            assert_eq!(gelu(x), 0.0, "gelu({x})");
        }
        for x in [6.0f32, 30.0, 1e6] {
            assert_eq!(gelu(x), x, "gelu({x})");
        }
    }
}
