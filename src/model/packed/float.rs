//! f32 arithmetic over f32 weights, or f16 weights widened as they are read.

use super::{Activation, PackedDense, Panels, CHUNK_BYTES, PANEL, ROWS};

impl PackedDense {
    /// [`PackedDense::compute`] for f32 and f16 panels: each chunk of input
    /// rows, then every panel over its row tiles.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn compute_float(
        &self,
        input: &[f32],
        rows: usize,
        output: &mut [f32],
        act: Activation,
    ) {
        let k = self.inputs.max(1);
        self.in_float_chunks(input, rows, output, |x, out, rows| {
            let fill = |panel: usize, row: usize, take: usize, tile: &mut [[f32; PANEL]; ROWS]| {
                let span = panel * k * PANEL..(panel + 1) * k * PANEL;
                let x = &x[row * k..(row + take) * k];
                // SAFETY: the caller checked the CPU has AVX-512F.
                match &self.panels {
                    Panels::F32(all) => unsafe { kernel::tile(x, take, k, &all[span], tile) },
                    Panels::F16(all) => unsafe { kernel::tile(x, take, k, &all[span], tile) },
                    Panels::Bf16(_) | Panels::Int8(_) => {
                        unreachable!("compute sends bf16 and int8 panels to their own loops")
                    }
                }
            };
            // SAFETY: as above.
            unsafe { self.panels_over_row_tiles(rows, out, act, fill) }
        });
    }

    /// `each(x, out, rows)` over chunks of `rows` input rows (and their
    /// output rows) small enough to stay in the core's L2 while every panel
    /// passes over them: the f32 and f16 loops of every vector width.
    #[inline(always)]
    pub(super) fn in_float_chunks(
        &self,
        input: &[f32],
        rows: usize,
        output: &mut [f32],
        mut each: impl FnMut(&[f32], &mut [f32], usize),
    ) {
        let k = self.inputs.max(1);
        let chunk = (CHUNK_BYTES / (k * 4)).max(ROWS) / ROWS * ROWS;
        for start in (0..rows).step_by(chunk) {
            let end = rows.min(start + chunk);
            let out = &mut output[start * self.outputs..end * self.outputs];
            each(&input[start * k..end * k], out, end - start);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{PANEL, ROWS};
    use std::arch::x86_64::*;

    /// A weight element the kernel reads sixteen at a time as f32.
    pub(super) trait Weight: Copy {
        /// Sixteen consecutive weights from `p`, widened to f32.
        unsafe fn load16(p: *const Self) -> __m512;
    }

    impl Weight for f32 {
        #[inline(always)]
        unsafe fn load16(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
    }

    impl Weight for half::f16 {
        #[inline(always)]
        unsafe fn load16(p: *const half::f16) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
        }
    }

    /// `tile[r][j] = Σ_i x[r·k + i] · panel[i·PANEL + j]` for `r < take`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<W: Weight>(
        x: &[f32],
        take: usize,
        k: usize,
        panel: &[W],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        match take {
            8 => rows::<W, 8>(x, k, panel, tile),
            7 => rows::<W, 7>(x, k, panel, tile),
            6 => rows::<W, 6>(x, k, panel, tile),
            5 => rows::<W, 5>(x, k, panel, tile),
            4 => rows::<W, 4>(x, k, panel, tile),
            3 => rows::<W, 3>(x, k, panel, tile),
            2 => rows::<W, 2>(x, k, panel, tile),
            _ => rows::<W, 1>(x, k, panel, tile),
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows<W: Weight, const R: usize>(
        x: &[f32],
        k: usize,
        panel: &[W],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        assert!(x.len() >= R * k && panel.len() >= k * PANEL);
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let (xp, wp) = (x.as_ptr(), panel.as_ptr());
        for i in 0..k {
            // SAFETY: i < k, so i·PANEL + 32 ≤ panel.len() and r·k + i < x.len().
            let w0 = W::load16(wp.add(i * PANEL));
            let w1 = W::load16(wp.add(i * PANEL + 16));
            for r in 0..R {
                let xv = _mm512_set1_ps(*xp.add(r * k + i));
                lo[r] = _mm512_fmadd_ps(xv, w0, lo[r]);
                hi[r] = _mm512_fmadd_ps(xv, w1, hi[r]);
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
    use super::*;

    #[test]
    fn a_packed_layer_computes_what_candle_computes_at_every_shape() {
        for (batch, seq, inputs, outputs) in [
            (1, 1, 8, 2),
            (1, 13, 50, 37),
            (3, 9, 64, 96),
            (2, 17, 33, 31),
        ] {
            let (weight, bias) = (random(&[outputs, inputs], 1), random(&[outputs], 2));
            let Some(packed) = PackedDense::new(&weight, &bias).unwrap() else {
                eprintln!("no AVX-512F here: nothing to compare");
                return;
            };
            let x = random(&[batch, seq, inputs], 3);
            let expected = x
                .reshape((batch * seq, inputs))
                .unwrap()
                .matmul(&weight.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap()
                .reshape((batch, seq, outputs))
                .unwrap();
            let got = packed.forward(&x, Activation::Identity).unwrap();
            assert!(
                max_difference(&got, &expected) < 1e-5,
                "shape {batch}x{seq}x{inputs}→{outputs}"
            );
            let got = packed.forward(&x, Activation::Gelu).unwrap();
            let expected = expected.gelu_erf().unwrap();
            assert!(
                max_difference(&got, &expected) < 1e-5,
                "gelu at {batch}x{seq}x{inputs}→{outputs}"
            );
        }
    }
}
