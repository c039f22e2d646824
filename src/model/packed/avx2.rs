//! f32 and f16 panels on CPUs with AVX2, FMA and F16C but no AVX-512: the
//! 512-bit kernel's sums in the same order (one fused multiply-add chain per
//! output over the inputs), eight lanes at a time, so the same bits.

use super::{Activation, PackedDense, Panels, PANEL, ROWS};

impl PackedDense {
    /// [`PackedDense::compute`] for a layer packed for [`super::Simd::Avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn compute_avx2(
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
                // SAFETY: the layer was packed for AVX2 only where the CPU has it.
                match &self.panels {
                    Panels::F32(all) => unsafe { kernel::tile(x, take, k, &all[span], tile) },
                    Panels::F16(all) => unsafe { kernel::tile(x, take, k, &all[span], tile) },
                    Panels::Bf16(_) | Panels::Int8(_) => {
                        unreachable!("bf16 and int8 layers are packed for AVX-512 only")
                    }
                }
            };
            // SAFETY: as above.
            self.tiles_finished_by(rows, out, fill, |tile, bias| unsafe {
                kernel::finish(tile, bias, act)
            });
        });
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn compute_avx2(&self, _: &[f32], _: usize, _: &mut [f32], _: Activation) {
        unreachable!("PackedDense::new returns None off x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::super::activation::{ERF_P, ERF_Q};
    use super::{Activation, PANEL, ROWS};
    use std::arch::x86_64::*;

    /// Rows computed together against half a panel: 6 × 2 accumulators, two
    /// weight registers and a broadcast fill 15 of the 16 registers.
    const GROUP: usize = 6;
    /// Inputs computed before moving to the next half panel and row group:
    /// their share of the panel (16 KB of f32) stays in the 32 KB L1 cache
    /// while the four passes over it read it.
    const BLOCK: usize = 128;

    /// A weight element the kernel reads eight at a time as f32.
    pub(super) trait Weight: Copy {
        /// Eight consecutive weights from `p`, widened to f32.
        unsafe fn load8(p: *const Self) -> __m256;
    }

    impl Weight for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
    }

    impl Weight for half::f16 {
        #[inline(always)]
        unsafe fn load8(p: *const half::f16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
        }
    }

    /// `tile[r][j] = Σ_i x[r·k + i] · panel[i·PANEL + j]` for `r < take`:
    /// blocks of [`BLOCK`] inputs, each half of the panel over groups of up
    /// to [`GROUP`] rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile<W: Weight>(
        x: &[f32],
        take: usize,
        k: usize,
        panel: &[W],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        let mut from = 0;
        while from < k {
            let inputs = from..k.min(from + BLOCK);
            for half in [0, PANEL / 2] {
                // Seven or eight rows as two groups of three or four: a
                // group of one or two has too few sums in flight to keep
                // both FMA units busy.
                let most = if take > GROUP {
                    take.div_ceil(2)
                } else {
                    GROUP
                };
                let mut first = 0;
                while first < take {
                    let group = most.min(take - first);
                    let x = &x[first * k..];
                    let out = &mut tile[first..first + group];
                    let i = inputs.clone();
                    match group {
                        6 => rows::<W, 6>(x, k, i, panel, half, out),
                        5 => rows::<W, 5>(x, k, i, panel, half, out),
                        4 => rows::<W, 4>(x, k, i, panel, half, out),
                        3 => rows::<W, 3>(x, k, i, panel, half, out),
                        2 => rows::<W, 2>(x, k, i, panel, half, out),
                        _ => rows::<W, 1>(x, k, i, panel, half, out),
                    }
                    first += group;
                }
            }
            from = inputs.end;
        }
    }

    /// Columns `half..half + 16` of `R` rows over `inputs`, continuing the
    /// sums in `out` unless `inputs` starts at 0 (so the same chain of fused
    /// multiply-adds however the inputs are blocked).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn rows<W: Weight, const R: usize>(
        x: &[f32],
        k: usize,
        inputs: std::ops::Range<usize>,
        panel: &[W],
        half: usize,
        out: &mut [[f32; PANEL]],
    ) {
        assert!(x.len() >= R * k && panel.len() >= k * PANEL && out.len() >= R);
        assert!(half + 16 <= PANEL && inputs.end <= k);
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        if inputs.start > 0 {
            for r in 0..R {
                lo[r] = _mm256_loadu_ps(out[r].as_ptr().add(half));
                hi[r] = _mm256_loadu_ps(out[r].as_ptr().add(half + 8));
            }
        }
        let (xp, wp) = (x.as_ptr(), panel.as_ptr().add(half));
        for i in inputs {
            // SAFETY: i < k, so i·PANEL + half + 16 ≤ panel.len(), r·k + i < x.len().
            let w0 = W::load8(wp.add(i * PANEL));
            let w1 = W::load8(wp.add(i * PANEL + 8));
            for r in 0..R {
                let xv = _mm256_broadcast_ss(&*xp.add(r * k + i));
                lo[r] = _mm256_fmadd_ps(xv, w0, lo[r]);
                hi[r] = _mm256_fmadd_ps(xv, w1, hi[r]);
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(out[r].as_mut_ptr().add(half), lo[r]);
            _mm256_storeu_ps(out[r].as_mut_ptr().add(half + 8), hi[r]);
        }
    }

    /// Adds the bias and applies the activation to each row of `tile`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn finish(tile: &mut [[f32; PANEL]], bias: &[f32], act: Activation) {
        assert!(bias.len() >= PANEL);
        for row in tile.iter_mut() {
            for at in (0..PANEL).step_by(8) {
                let p = row.as_mut_ptr().add(at);
                let v = _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(bias.as_ptr().add(at)));
                let v = match act {
                    Activation::Identity => v,
                    Activation::Gelu => gelu(v),
                };
                _mm256_storeu_ps(p, v);
            }
        }
    }

    /// [`super::super::gelu`], eight lanes at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gelu(x: __m256) -> __m256 {
        let y = erf(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        ));
        _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(0.5), x),
            _mm256_add_ps(_mm256_set1_ps(1.0), y),
        )
    }

    /// [`super::super::erf`], eight lanes at a time, the same operations in the same order.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn erf(x: __m256) -> __m256 {
        let c = _mm256_set1_ps;
        let x = _mm256_min_ps(_mm256_max_ps(x, c(-4.0)), c(4.0));
        let x2 = _mm256_mul_ps(x, x);
        let mut p = c(ERF_P[0]);
        for &a in &ERF_P[1..] {
            p = _mm256_fmadd_ps(x2, p, c(a));
        }
        let mut q = c(ERF_Q[0]);
        for &b in &ERF_Q[1..] {
            q = _mm256_fmadd_ps(x2, q, c(b));
        }
        let y = _mm256_div_ps(_mm256_mul_ps(x, p), q);
        let y = _mm256_blendv_ps(y, c(1.0), _mm256_cmp_ps::<_CMP_GE_OQ>(x, c(4.0)));
        _mm256_blendv_ps(y, c(-1.0), _mm256_cmp_ps::<_CMP_LE_OQ>(x, c(-4.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_difference, random};
    use super::super::{avx2_available, avx512_available, Precision, Simd};
    use super::*;
    use candle_core::Tensor;

    /// `weight` and `bias` packed for the 256-bit kernel, f32 or (exact halves) f16.
    fn packed_for_avx2(weight: &Tensor, bias: &Tensor) -> Option<PackedDense> {
        avx2_available()
            .then(|| PackedDense::pack(weight, bias, Precision::F32, Simd::Avx2).unwrap())
    }

    #[test]
    fn the_256_bit_kernel_computes_what_candle_computes() {
        for (rows, inputs, outputs) in [(1, 8, 2), (13, 50, 37), (27, 64, 96), (17, 33, 31)] {
            let (weight, bias) = (random(&[outputs, inputs], 1), random(&[outputs], 2));
            let Some(packed) = packed_for_avx2(&weight, &bias) else {
                eprintln!("no AVX2 with FMA here: nothing to compare");
                return;
            };
            // Rows of large values too: GELU's tails.
            let x = (random(&[rows, inputs], 3) * if rows > 13 { 40.0 } else { 1.0 }).unwrap();
            let linear = x
                .matmul(&weight.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let got = packed.forward(&x, Activation::Identity).unwrap();
            assert!(
                max_difference(&got, &linear) < 1e-5,
                "{rows}x{inputs}→{outputs}"
            );
            let expected = linear.gelu_erf().unwrap();
            let got = packed.forward(&x, Activation::Gelu).unwrap();
            assert!(
                max_difference(&got, &expected) < 1e-5,
                "GELU {rows}x{inputs}→{outputs}"
            );
        }
    }

    #[test]
    fn the_256_bit_kernel_gives_the_512_bit_kernels_bits() {
        if !avx512_available() {
            eprintln!("no AVX-512F here: nothing to compare");
            return;
        }
        // f32 weights, then weights that are exact halves (packed as f16).
        let weight = random(&[70, 48], 4);
        let halves = weight.to_dtype(candle_core::DType::F16).unwrap();
        let halves = halves.to_dtype(candle_core::DType::F32).unwrap();
        let bias = random(&[70], 5);
        let x = random(&[3, 29, 48], 6);
        for weight in [weight, halves] {
            let wide = PackedDense::pack(&weight, &bias, Precision::F32, Simd::Avx512).unwrap();
            let narrow = packed_for_avx2(&weight, &bias).unwrap();
            for act in [Activation::Identity, Activation::Gelu] {
                let bits = |p: &PackedDense| {
                    let out = p.forward(&x, act).unwrap().flatten_all().unwrap();
                    out.to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(&wide), bits(&narrow), "{act:?}");
            }
        }
    }
}
