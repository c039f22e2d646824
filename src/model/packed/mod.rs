//! Dense layers with their weights packed once for inference (AVX-512).
//!
//! candle multiplies by a weight matrix through the `gemm` crate, which
//! repacks the weight on every call and, on stable Rust, uses 256-bit
//! kernels. A served model multiplies small inputs (one text is a few dozen
//! rows) by the same weights millions of times, so here the weight is
//! rearranged once, at load, into panels of [`PANEL`] output columns with the
//! input dimension running down each panel, and a 512-bit kernel computes
//! [`ROWS`] rows by one panel at a time with the bias (and optionally GELU)
//! applied before the result is stored.
//!
//! A weight whose every value is exactly an f16 (a model stored with
//! `candor compress --f16`) is packed as f16 and widened in the kernel: the
//! same numbers, half the memory traffic.
//!
//! Used where the CPU has AVX-512F, or for f32 AVX2 with FMA and F16C
//! (256-bit registers, the same sums in the same order, so the same bits:
//! tested); elsewhere, and for training (which needs candle's gradients),
//! [`PackedDense::new`] returns `None` and the caller keeps candle's matrix
//! product. Results agree with candle's to float rounding (tested).
//!
//! This file holds the layer and its threading; the rest by concept:
//! `panels` packs the weights, `float`, `bf16` and `int8` compute at each
//! [`Precision`] (the int8 arithmetic itself is [`super::int8`]'s),
//! `activation` is the bias-and-GELU step every kernel ends with,
//! `avx2` computes f32 and f16 panels on CPUs without AVX-512, and
//! `precision` names the precisions and says which this CPU has.

mod activation;
mod avx2;
mod bf16;
mod float;
mod int8;
mod panels;
mod precision;

use candle_core::{Result, Tensor};

use super::view::F32View;
use panels::Panels;

pub use activation::{erf, gelu, Activation};
pub use precision::Precision;

/// Output columns per panel: two 16-lane registers.
pub(super) const PANEL: usize = 32;
/// Input rows computed together against one panel (16 accumulators).
pub(super) const ROWS: usize = 8;
/// Input bytes computed against every panel before moving on (a share of L2).
const CHUNK_BYTES: usize = 256 * 1024;
/// Fewest rows worth a thread of their own: below it, handing work to
/// another core costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 16;

/// A weight `(outputs, inputs)` and bias packed for [`PackedDense::forward`].
#[derive(Debug, Clone)]
pub struct PackedDense {
    /// Panels of `inputs × PANEL`, zero-padded past the last output.
    panels: Panels,
    /// The bias, zero-padded to whole panels.
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    /// The vector width the kernels run at.
    simd: Simd,
}

/// The vector instructions a packed layer computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Simd {
    /// 512-bit registers: every precision.
    Avx512,
    /// 256-bit registers with FMA and F16C: f32 (and f16 weights) only.
    Avx2,
}

impl Simd {
    /// The widest this CPU has for `precision`, if any.
    fn for_precision(precision: Precision) -> Option<Simd> {
        if !precision.available() {
            None
        } else if avx512_available() {
            Some(Simd::Avx512)
        } else if precision == Precision::F32 && avx2_available() {
            Some(Simd::Avx2)
        } else {
            None
        }
    }
}

impl PackedDense {
    /// Packs `weight` `(outputs, inputs)` and `bias` `(outputs)`, or `None`
    /// when this CPU has neither AVX-512F nor AVX2 with FMA.
    pub fn new(weight: &Tensor, bias: &Tensor) -> Result<Option<Self>> {
        Self::with_precision(weight, bias, Precision::F32)
    }

    /// As [`PackedDense::new`], computing at `precision`; `None` also when
    /// this CPU lacks it.
    pub fn with_precision(
        weight: &Tensor,
        bias: &Tensor,
        precision: Precision,
    ) -> Result<Option<Self>> {
        match Simd::for_precision(precision) {
            Some(simd) => Self::pack(weight, bias, precision, simd).map(Some),
            None => Ok(None),
        }
    }

    /// `activation(x · Wᵀ + b)` over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let last = dims.len() - 1;
        if dims[last] != self.inputs {
            candle_core::bail!(
                "packed dense: input width {} but the weight takes {}",
                dims[last],
                self.inputs
            )
        }
        let x = x.contiguous()?;
        let input = F32View::of(&x)?;
        let rows = input.len() / self.inputs.max(1);
        let mut output = vec![0f32; rows * self.outputs];
        // Rows are independent: with more than one compute thread, each takes
        // a contiguous share of them (a multiple of the kernel's row tile), so
        // every row's result is the same however many threads there are.
        let threads = rayon::current_num_threads()
            .min(rows / MIN_ROWS_PER_THREAD)
            .max(1);
        let per_thread = rows.div_ceil(threads).div_ceil(ROWS) * ROWS;
        let work = |(input, output): (&[f32], &mut [f32])| {
            let rows = input.len() / self.inputs;
            // SAFETY: `new` returned this value only after checking that the
            // CPU has `self.simd`; the slices hold whole rows of input and output.
            unsafe {
                match self.simd {
                    Simd::Avx512 => self.compute(input, rows, output, activation),
                    Simd::Avx2 => self.compute_avx2(input, rows, output, activation),
                }
            }
        };
        if threads == 1 {
            work((&input[..], &mut output));
        } else {
            use rayon::prelude::*;
            input
                .par_chunks(per_thread * self.inputs)
                .zip(output.par_chunks_mut(per_thread * self.outputs))
                .for_each(work);
        }
        dims[last] = self.outputs;
        Tensor::from_vec(output, dims, x.device())
    }

    /// `rows` rows of `input` through the kernel of this layer's panels.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn compute(&self, input: &[f32], rows: usize, output: &mut [f32], act: Activation) {
        match &self.panels {
            Panels::Bf16(all) => self.compute_bf16(all, input, output, act),
            Panels::Int8(all) => self.compute_int8(all, input, output, act),
            Panels::F32(_) | Panels::F16(_) => self.compute_float(input, rows, output, act),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn compute(&self, _: &[f32], _: usize, _: &mut [f32], _: Activation) {
        unreachable!("PackedDense::new returns None off x86-64")
    }

    /// Every panel over `rows` rows, [`ROWS`] at a time: `fill(panel, row,
    /// take, tile)` computes the products of rows `row..row + take`, then
    /// the bias and activation are applied and the tile stored in `output`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn panels_over_row_tiles(
        &self,
        rows: usize,
        output: &mut [f32],
        act: Activation,
        fill: impl FnMut(usize, usize, usize, &mut [[f32; PANEL]; ROWS]),
    ) {
        self.tiles_finished_by(rows, output, fill, |tile, bias| {
            // SAFETY: this function runs only where the CPU has AVX-512F.
            unsafe { activation::kernel::finish(tile, bias, act) }
        })
    }

    /// [`PackedDense::panels_over_row_tiles`] with `finish(tile, bias)` adding
    /// the bias and applying the activation at whatever width the caller has.
    #[inline(always)]
    fn tiles_finished_by(
        &self,
        rows: usize,
        output: &mut [f32],
        mut fill: impl FnMut(usize, usize, usize, &mut [[f32; PANEL]; ROWS]),
        finish: impl Fn(&mut [[f32; PANEL]], &[f32]),
    ) {
        for panel in 0..self.outputs.div_ceil(PANEL) {
            let first = panel * PANEL;
            let width = PANEL.min(self.outputs - first);
            let bias = &self.bias[first..first + PANEL];
            let mut row = 0;
            while row < rows {
                let take = ROWS.min(rows - row);
                let mut tile = [[0f32; PANEL]; ROWS];
                fill(panel, row, take, &mut tile);
                finish(&mut tile[..take], bias);
                for (r, values) in tile.iter().take(take).enumerate() {
                    let at = (row + r) * self.outputs + first;
                    output[at..at + width].copy_from_slice(&values[..width]);
                }
                row += take;
            }
        }
    }
}

/// Whether the CPU has AVX-512F, which every packed kernel needs.
fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX2 with FMA and F16C, which the 256-bit f32 kernel needs.
fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Inputs and comparisons the tests of every precision share.
#[cfg(test)]
mod testing {
    use candle_core::{Device, Tensor};

    /// A tensor of `shape` with values in [-0.5, 0.5), the same for the same `seed`.
    pub(super) fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = crate::rng::hash64(state.wrapping_add(1));
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The largest absolute difference between `a` and `b`.
    pub(super) fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::random;
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn rows_shared_among_threads_give_the_same_bits_as_one_thread_at_every_precision() {
        let (weight, bias) = (random(&[70, 48], 4), random(&[70], 5));
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let Some(packed) = PackedDense::with_precision(&weight, &bias, precision).unwrap()
            else {
                eprintln!("no {precision} kernel on this CPU: nothing to compare");
                continue;
            };
            // 3 × 29 rows: split 48 + 39 between two threads, 32 + 32 + 23 among three.
            let x = random(&[3, 29, 48], 6);
            let run = |threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| packed.forward(&x, Activation::Gelu).unwrap())
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            let one = run(1);
            assert_eq!(one, run(2), "{precision}");
            assert_eq!(one, run(3), "{precision}");
        }
    }

    #[test]
    fn a_weight_of_another_width_is_refused() {
        let (weight, bias) = (random(&[4, 8], 1), random(&[4], 2));
        if let Some(packed) = PackedDense::new(&weight, &bias).unwrap() {
            let x = Tensor::zeros((2, 7), DType::F32, &Device::Cpu).unwrap();
            assert!(packed.forward(&x, Activation::Identity).is_err());
        }
    }
}
