//! bfloat16 products summed in f32 (`--precision bf16`): weights packed as
//! bf16 pairs of consecutive inputs, inputs rounded to pairs per chunk of
//! rows, and AVX-512 BF16's `vdpbf16ps` adding two products per lane.

use super::{Activation, PackedDense, CHUNK_BYTES, PANEL, ROWS};

/// Whether the CPU has AVX-512 BF16 (`vdpbf16ps`).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits; in
/// integer operations that vectorise. NaN, which a dense layer's inputs
/// never hold, is not preserved.
fn bits(x: f32) -> u32 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1))) >> 16
}

/// f32 panels of `inputs × PANEL` as bf16 pairs of consecutive inputs
/// (`inputs / 2` rounded up × `PANEL`), the odd input past the end zero.
pub(super) fn pairs(panels: &[f32], inputs: usize) -> Vec<u32> {
    let pairs = inputs.div_ceil(2);
    let mut out = Vec::with_capacity(panels.len() / inputs.max(1) * pairs);
    for panel in panels.chunks_exact(inputs * PANEL) {
        for pair in 0..pairs {
            for lane in 0..PANEL {
                let even = panel[2 * pair * PANEL + lane];
                let odd = panel
                    .get((2 * pair + 1) * PANEL + lane)
                    .filter(|_| 2 * pair + 1 < inputs);
                out.push(bits(even) | (odd.map_or(0, |&w| bits(w)) << 16));
            }
        }
    }
    out
}

impl PackedDense {
    /// [`PackedDense::compute`] for bf16 panels: each chunk of input rows
    /// rounded to bf16 pairs once, then every panel over it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn compute_bf16(
        &self,
        panels: &[u32],
        input: &[f32],
        output: &mut [f32],
        act: Activation,
    ) {
        let pairs = self.inputs.div_ceil(2);
        // Rows in chunks that stay in the core's L2 while every panel passes over them.
        let chunk = (CHUNK_BYTES / (pairs * 4)).max(ROWS) / ROWS * ROWS;
        let mut x = Vec::with_capacity(chunk * pairs);
        for (input, output) in input
            .chunks(chunk * self.inputs)
            .zip(output.chunks_mut(chunk * self.outputs))
        {
            x.clear();
            for row in input.chunks_exact(self.inputs) {
                let two = row.chunks_exact(2);
                let odd = two.remainder().first().map(|&last| bits(last));
                x.extend(two.map(|pair| bits(pair[0]) | (bits(pair[1]) << 16)));
                x.extend(odd);
            }
            self.panels_over_row_tiles(x.len() / pairs, output, act, |panel, row, take, tile| {
                let weights = &panels[panel * pairs * PANEL..(panel + 1) * pairs * PANEL];
                let x = &x[row * pairs..(row + take) * pairs];
                // SAFETY: the caller checked the CPU has AVX-512 BF16.
                unsafe { kernel::tile(x, take, pairs, weights, tile) }
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{PANEL, ROWS};
    use std::arch::x86_64::*;

    /// `tile[r][j] = Σ_p x[r·pairs + p] · panel[p·PANEL + j]`, each term the
    /// sum of two bf16 products, for `r < take`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(
        x: &[u32],
        take: usize,
        pairs: usize,
        panel: &[u32],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        match take {
            8 => rows::<8>(x, pairs, panel, tile),
            7 => rows::<7>(x, pairs, panel, tile),
            6 => rows::<6>(x, pairs, panel, tile),
            5 => rows::<5>(x, pairs, panel, tile),
            4 => rows::<4>(x, pairs, panel, tile),
            3 => rows::<3>(x, pairs, panel, tile),
            2 => rows::<2>(x, pairs, panel, tile),
            _ => rows::<1>(x, pairs, panel, tile),
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn rows<const R: usize>(
        x: &[u32],
        pairs: usize,
        panel: &[u32],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        assert!(x.len() >= R * pairs && panel.len() >= pairs * PANEL);
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let (xp, wp) = (x.as_ptr(), panel.as_ptr());
        for p in 0..pairs {
            // SAFETY: p < pairs, so p·PANEL + 32 ≤ panel.len() and r·pairs + p < x.len().
            let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(wp.add(p * PANEL).cast()));
            let w1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(wp.add(p * PANEL + 16).cast()));
            for r in 0..R {
                let xv: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*xp.add(r * pairs + p) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], xv, w0);
                hi[r] = _mm512_dpbf16_ps(hi[r], xv, w1);
            }
        }
        for r in 0..R {
            _mm512_storeu_ps(tile[r].as_mut_ptr(), lo[r]);
            _mm512_storeu_ps(tile[r].as_mut_ptr().add(16), hi[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_difference, random};
    use super::super::Precision;
    use super::*;
    use candle_core::{DType, Tensor};

    #[test]
    fn a_bf16_layer_computes_the_products_of_bf16_rounded_inputs_and_weights() {
        if !Precision::Bf16.available() {
            eprintln!("no AVX-512 BF16 here: nothing to compare");
            return;
        }
        let bf16 = |t: &Tensor| {
            t.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        };
        // Odd input widths leave half a pair of zeros; 40 rows make 5 whole tiles, 13 do not.
        for (rows, inputs, outputs) in [(1, 8, 2), (13, 51, 37), (40, 384, 96), (9, 33, 31)] {
            let (weight, bias) = (random(&[outputs, inputs], 1), random(&[outputs], 2));
            let packed = PackedDense::with_precision(&weight, &bias, Precision::Bf16)
                .unwrap()
                .unwrap();
            let x = random(&[rows, inputs], 3);
            let expected = bf16(&x)
                .matmul(&bf16(&weight).t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let got = packed.forward(&x, Activation::Identity).unwrap();
            assert!(
                max_difference(&got, &expected) < 1e-5,
                "{rows}x{inputs}→{outputs}"
            );
            // Against f32 arithmetic: as close as 8 significant bits allow.
            let exact = x
                .matmul(&weight.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            assert!(max_difference(&got, &exact) < 0.02 * (inputs as f32).sqrt() / 4.0);
        }
    }
}
