//! Dynamic int8 quantisation for the packed dense layers (`--precision int8`).
//!
//! As PyTorch's `quantize_dynamic`: each weight row (one output) is scaled
//! to signed 8-bit integers once, at load (`w ≈ s_w · q_w`, `|q_w| ≤ 127`);
//! each input row is scaled to unsigned 8-bit integers with a zero point
//! when the layer runs (`x ≈ s_x · (q_x − z)`, `0 ≤ q_x ≤ 255`, the row's
//! own range, which always includes 0). Then
//! `x · w = s_x · s_w · (Σ q_x·q_w − z · Σ q_w)`, and the integer sum is
//! what AVX-512 VNNI computes fastest: `vpdpbusd` adds four u8 × i8
//! products into each of sixteen 32-bit lanes per instruction (the sums
//! stay far inside i32 for any layer width below 60,000).
//!
//! Weights are laid out as [`super::packed`]'s panels, four consecutive
//! inputs per 32-bit word.

use super::packed::PANEL;

/// A weight `(outputs, inputs)` quantised per output, in panels of
/// `inputs / 4` (rounded up) words × [`PANEL`] outputs.
#[derive(Debug, Clone)]
pub struct Int8Panels {
    /// Four i8 weights of consecutive inputs per word, the first in the low byte.
    pub quads: Vec<u32>,
    /// Each output's scale `s_w`, zero-padded to whole panels.
    pub scales: Vec<f32>,
    /// Each output's `Σ q_w`, for the zero-point correction.
    pub sums: Vec<f32>,
}

/// Words of four inputs in a row of `inputs`.
pub fn quads_per_row(inputs: usize) -> usize {
    inputs.div_ceil(4)
}

impl Int8Panels {
    /// Quantises f32 panels of `inputs × PANEL` (input-major, as
    /// [`super::packed`] packs them).
    pub fn new(panels: &[f32], inputs: usize) -> Self {
        let quads = quads_per_row(inputs);
        let panel_count = panels.len() / (inputs * PANEL).max(1);
        let mut out = Int8Panels {
            quads: Vec::with_capacity(panel_count * quads * PANEL),
            scales: vec![0.0; panel_count * PANEL],
            sums: vec![0.0; panel_count * PANEL],
        };
        for (p, panel) in panels.chunks_exact(inputs * PANEL).enumerate() {
            let weight = |i: usize, lane: usize| panel[i * PANEL + lane];
            let mut q = vec![[0i8; PANEL]; quads * 4];
            for lane in 0..PANEL {
                let largest = (0..inputs)
                    .map(|i| weight(i, lane).abs())
                    .fold(0f32, f32::max);
                let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
                let mut sum = 0i32;
                for (i, row) in q.iter_mut().enumerate().take(inputs) {
                    let v = (weight(i, lane) / scale).round().clamp(-127.0, 127.0) as i8;
                    row[lane] = v;
                    sum += i32::from(v);
                }
                out.scales[p * PANEL + lane] = scale;
                out.sums[p * PANEL + lane] = sum as f32;
            }
            for quad in q.chunks_exact(4) {
                out.quads.extend((0..PANEL).map(|lane| {
                    let bytes = [quad[0][lane], quad[1][lane], quad[2][lane], quad[3][lane]];
                    u32::from_le_bytes(bytes.map(|b| b as u8))
                }));
            }
        }
        out
    }
}

/// Input rows quantised to u8 words of four, with each row's scale and zero point.
#[derive(Debug, Default)]
pub struct QuantisedRows {
    pub quads: Vec<u32>,
    pub scales: Vec<f32>,
    pub zeros: Vec<f32>,
}

impl QuantisedRows {
    /// Replaces the contents with `input`'s rows of `inputs` values.
    pub fn quantise(&mut self, input: &[f32], inputs: usize) {
        self.quads.clear();
        self.scales.clear();
        self.zeros.clear();
        let quads = quads_per_row(inputs);
        let mut bytes = vec![0u8; quads * 4];
        for row in input.chunks_exact(inputs) {
            // Plain comparisons (not `f32::min`), so that the loops vectorise.
            let low = row.iter().fold(0f32, |a, &x| if x < a { x } else { a });
            let high = row.iter().fold(0f32, |a, &x| if x > a { x } else { a });
            let scale = if high > low {
                (high - low) / 255.0
            } else {
                1.0
            };
            let zero = (-low / scale).round_ties_even().clamp(0.0, 255.0);
            let inverse = 1.0 / scale;
            for (b, &x) in bytes.iter_mut().zip(row) {
                *b = ((x * inverse).round_ties_even() + zero).clamp(0.0, 255.0) as u8;
            }
            bytes[inputs..].fill(zero as u8);
            self.quads.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            self.scales.push(scale);
            self.zeros.push(zero);
        }
    }
}

/// Whether the CPU has AVX-512 VNNI.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
pub mod kernel {
    use super::PANEL;
    use std::arch::x86_64::*;

    /// One row tile's scales: each input row's scale and zero point, and
    /// this panel's weight scales and sums.
    pub struct Scales<'a> {
        pub row_scales: &'a [f32],
        pub row_zeros: &'a [f32],
        pub weight_scales: &'a [f32],
        pub weight_sums: &'a [f32],
    }

    /// `tile[r][j]` = the dequantised `x_r · w_j` for `r < R`, from
    /// `x` (`R` rows of `quads` words) and one panel of weights.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn tile<const R: usize>(
        x: &[u32],
        quads: usize,
        panel: &[u32],
        scales: &Scales,
        tile: &mut [[f32; PANEL]],
    ) {
        assert!(x.len() >= R * quads && panel.len() >= quads * PANEL && tile.len() >= R);
        let mut lo = [_mm512_setzero_si512(); R];
        let mut hi = [_mm512_setzero_si512(); R];
        let (xp, wp) = (x.as_ptr(), panel.as_ptr());
        for q in 0..quads {
            // SAFETY: q < quads, so q·PANEL + 32 ≤ panel.len() and r·quads + q < x.len().
            let w0 = _mm512_loadu_si512(wp.add(q * PANEL).cast());
            let w1 = _mm512_loadu_si512(wp.add(q * PANEL + 16).cast());
            for r in 0..R {
                let xv = _mm512_set1_epi32(*xp.add(r * quads + q) as i32);
                lo[r] = _mm512_dpbusd_epi32(lo[r], xv, w0);
                hi[r] = _mm512_dpbusd_epi32(hi[r], xv, w1);
            }
        }
        for r in 0..R {
            let mut sums = [0i32; PANEL];
            _mm512_storeu_si512(sums.as_mut_ptr().cast(), lo[r]);
            _mm512_storeu_si512(sums.as_mut_ptr().add(16).cast(), hi[r]);
            let (scale, zero) = (scales.row_scales[r], scales.row_zeros[r]);
            for (j, out) in tile[r].iter_mut().enumerate() {
                let corrected = sums[j] as f32 - zero * scales.weight_sums[j];
                *out = scale * scales.weight_scales[j] * corrected;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_rows_recover_their_values_within_half_a_step() {
        let row: Vec<f32> = (0..37)
            .map(|i| (i as f32 * 0.7).sin() * 3.0 + 0.5)
            .collect();
        let mut rows = QuantisedRows::default();
        rows.quantise(&row, 37);
        let (scale, zero) = (rows.scales[0], rows.zeros[0]);
        let bytes: Vec<u8> = rows.quads.iter().flat_map(|q| q.to_le_bytes()).collect();
        for (x, &q) in row.iter().zip(&bytes) {
            let back = scale * (f32::from(q) - zero);
            assert!(
                (back - x).abs() <= scale / 2.0 + 1e-6,
                "{x} came back as {back}"
            );
        }
        // Padding past the row's end is the zero point: it adds nothing.
        assert_eq!(f32::from(bytes[39]), zero);
    }

    #[test]
    fn a_row_of_zeros_quantises_to_its_zero_point() {
        let mut rows = QuantisedRows::default();
        rows.quantise(&[0.0; 8], 8);
        let bytes: Vec<u8> = rows.quads.iter().flat_map(|q| q.to_le_bytes()).collect();
        assert!(bytes.iter().all(|&b| f32::from(b) == rows.zeros[0]));
    }
}
