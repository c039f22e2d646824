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
//! Used only where the CPU has AVX-512F (checked at run time); elsewhere, and
//! for training (which needs candle's gradients), [`PackedDense::new`]
//! returns `None` and the caller keeps candle's matrix product. Results
//! agree with candle's to float rounding (tested).

use candle_core::{Result, Tensor};

use super::int8::{self, Int8Panels, QuantisedRows};
use super::view::F32View;

/// Output columns per panel: two 16-lane registers.
pub(super) const PANEL: usize = 32;
/// Input rows computed together against one panel (16 accumulators).
pub(super) const ROWS: usize = 8;
/// Input bytes computed against every panel before moving on (a share of L2).
const CHUNK_BYTES: usize = 256 * 1024;
/// Fewest rows worth a thread of their own: below it, handing work to
/// another core costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 16;

/// What is applied to each output after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    Identity,
    /// GELU, `x · Φ(x)` with the exact (erf) Gaussian CDF, as BERT uses.
    Gelu,
}

/// The arithmetic of the packed dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 products and sums (weights stored as f16 when that loses nothing).
    #[default]
    F32,
    /// bfloat16 products of weights and inputs (both rounded to 8 significant
    /// bits) summed in f32: AVX-512 BF16 computes two per lane and instruction.
    Bf16,
    /// Dynamic int8 quantisation (see [`super::int8`]): weights per output,
    /// inputs per row, integer sums; AVX-512 VNNI computes four per lane and
    /// instruction.
    Int8,
}

impl Precision {
    /// Whether this CPU computes at this precision with the packed kernel.
    pub fn available(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16 => avx512_available() && bf16_available(),
            Precision::Int8 => avx512_available() && int8::available(),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision '{other}': f32, bf16 or int8")),
        }
    }
}

/// Packed weights: f32, f16 when that loses nothing, or bf16 pairs.
#[derive(Debug, Clone)]
enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    /// Two bf16 weights of consecutive inputs per `u32` (the even input in
    /// the low half), `PANEL` of them per input pair.
    Bf16(Vec<u32>),
    /// Four i8 weights of consecutive inputs per `u32`, with their scales.
    Int8(Int8Panels),
}

/// A weight `(outputs, inputs)` and bias packed for [`PackedDense::forward`].
#[derive(Debug, Clone)]
pub struct PackedDense {
    /// Panels of `inputs × PANEL`, zero-padded past the last output.
    panels: Panels,
    /// The bias, zero-padded to whole panels.
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl PackedDense {
    /// Packs `weight` `(outputs, inputs)` and `bias` `(outputs)`, or `None`
    /// when this CPU has no AVX-512F.
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
        if !avx512_available() || !precision.available() {
            return Ok(None);
        }
        Self::pack(weight, bias, precision).map(Some)
    }

    fn pack(weight: &Tensor, bias: &Tensor, precision: Precision) -> Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let rows = weight.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let panel_count = outputs.div_ceil(PANEL);
        let mut panels = vec![0f32; panel_count * inputs * PANEL];
        for (out, row) in rows.iter().enumerate() {
            let (panel, lane) = (out / PANEL, out % PANEL);
            let base = panel * inputs * PANEL;
            for (i, &w) in row.iter().enumerate() {
                panels[base + i * PANEL + lane] = w;
            }
        }
        let exactly_half = panels.iter().all(|&w| half::f16::from_f32(w).to_f32() == w);
        let panels = match precision {
            Precision::Bf16 => Panels::Bf16(bf16_pairs(&panels, inputs)),
            Precision::Int8 => Panels::Int8(Int8Panels::new(&panels, inputs)),
            Precision::F32 if exactly_half => {
                Panels::F16(panels.iter().map(|&w| half::f16::from_f32(w)).collect())
            }
            Precision::F32 => Panels::F32(panels),
        };
        let mut bias = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        bias.resize(panel_count * PANEL, 0.0);
        Ok(Self {
            panels,
            bias,
            inputs,
            outputs,
        })
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
            // SAFETY: `new` returned this value only after checking that the
            // CPU has AVX-512F; the slices hold whole rows of input and output.
            unsafe { self.compute(input, input.len() / self.inputs, output, activation) }
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

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn compute(&self, input: &[f32], rows: usize, output: &mut [f32], act: Activation) {
        let k = self.inputs.max(1);
        match &self.panels {
            Panels::Bf16(all) => return self.compute_bf16(all, input, output, act),
            Panels::Int8(all) => return self.compute_int8(all, input, output, act),
            Panels::F32(_) | Panels::F16(_) => {}
        }
        // Rows in chunks that stay in the core's L2 while every panel passes over them.
        let chunk = (CHUNK_BYTES / (k * 4)).max(ROWS) / ROWS * ROWS;
        let mut start = 0;
        while start < rows {
            let end = rows.min(start + chunk);
            for panel in 0..self.outputs.div_ceil(PANEL) {
                self.panel_over_rows(
                    panel,
                    &input[start * k..end * k],
                    &mut output[start * self.outputs..end * self.outputs],
                    act,
                );
            }
            start = end;
        }
    }

    /// [`PackedDense::compute`] for bf16 panels: each chunk of input rows
    /// rounded to bf16 pairs once, then every panel over it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn compute_bf16(
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
                let odd = two.remainder().first().map(|&last| bf16_bits(last));
                x.extend(two.map(|pair| bf16_bits(pair[0]) | (bf16_bits(pair[1]) << 16)));
                x.extend(odd);
            }
            self.panels_over_row_tiles(x.len() / pairs, output, act, |panel, row, take, tile| {
                let weights = &panels[panel * pairs * PANEL..(panel + 1) * pairs * PANEL];
                let x = &x[row * pairs..(row + take) * pairs];
                // SAFETY: the caller checked the CPU has AVX-512 BF16.
                unsafe { kernel::tile_bf16(x, take, pairs, weights, tile) }
            });
        }
    }

    /// [`PackedDense::compute`] for int8 panels: each chunk of input rows
    /// quantised once, then every panel over it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn compute_int8(
        &self,
        weights: &Int8Panels,
        input: &[f32],
        output: &mut [f32],
        act: Activation,
    ) {
        let quads = int8::quads_per_row(self.inputs);
        let chunk = (CHUNK_BYTES / (quads * 4)).max(ROWS) / ROWS * ROWS;
        let mut x = QuantisedRows::default();
        for (input, output) in input
            .chunks(chunk * self.inputs)
            .zip(output.chunks_mut(chunk * self.outputs))
        {
            x.quantise(input, self.inputs);
            self.panels_over_row_tiles(x.scales.len(), output, act, |panel, row, take, tile| {
                let span = panel * PANEL..(panel + 1) * PANEL;
                let scales = int8::kernel::Scales {
                    row_scales: &x.scales[row..row + take],
                    row_zeros: &x.zeros[row..row + take],
                    weight_scales: &weights.scales[span.clone()],
                    weight_sums: &weights.sums[span],
                };
                let w = &weights.quads[panel * quads * PANEL..(panel + 1) * quads * PANEL];
                let xs = &x.quads[row * quads..(row + take) * quads];
                // SAFETY: the caller checked the CPU has AVX-512 VNNI.
                unsafe {
                    match take {
                        8 => int8::kernel::tile::<8>(xs, quads, w, &scales, tile),
                        7 => int8::kernel::tile::<7>(xs, quads, w, &scales, tile),
                        6 => int8::kernel::tile::<6>(xs, quads, w, &scales, tile),
                        5 => int8::kernel::tile::<5>(xs, quads, w, &scales, tile),
                        4 => int8::kernel::tile::<4>(xs, quads, w, &scales, tile),
                        3 => int8::kernel::tile::<3>(xs, quads, w, &scales, tile),
                        2 => int8::kernel::tile::<2>(xs, quads, w, &scales, tile),
                        _ => int8::kernel::tile::<1>(xs, quads, w, &scales, tile),
                    }
                }
            });
        }
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
        mut fill: impl FnMut(usize, usize, usize, &mut [[f32; PANEL]; ROWS]),
    ) {
        for panel in 0..self.outputs.div_ceil(PANEL) {
            let first = panel * PANEL;
            let width = PANEL.min(self.outputs - first);
            let mut row = 0;
            while row < rows {
                let take = ROWS.min(rows - row);
                let mut tile = [[0f32; PANEL]; ROWS];
                fill(panel, row, take, &mut tile);
                kernel::finish(&mut tile[..take], &self.bias[first..first + PANEL], act);
                for (r, values) in tile.iter().take(take).enumerate() {
                    let at = (row + r) * self.outputs + first;
                    output[at..at + width].copy_from_slice(&values[..width]);
                }
                row += take;
            }
        }
    }

    /// One panel of outputs for `input`'s rows, [`ROWS`] at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn panel_over_rows(
        &self,
        panel: usize,
        input: &[f32],
        output: &mut [f32],
        act: Activation,
    ) {
        let k = self.inputs;
        let rows = input.len() / k;
        let span = panel * k * PANEL..(panel + 1) * k * PANEL;
        let first = panel * PANEL;
        let width = PANEL.min(self.outputs - first);
        let bias = &self.bias[first..first + PANEL];
        let mut row = 0;
        while row < rows {
            let take = ROWS.min(rows - row);
            let mut tile = [[0f32; PANEL]; ROWS];
            let x = &input[row * k..(row + take) * k];
            match &self.panels {
                Panels::F32(all) => kernel::tile(x, take, k, &all[span.clone()], &mut tile),
                Panels::F16(all) => kernel::tile(x, take, k, &all[span.clone()], &mut tile),
                Panels::Bf16(_) | Panels::Int8(_) => {
                    unreachable!("compute sends bf16 and int8 panels to their own loops")
                }
            }
            kernel::finish(&mut tile[..take], bias, act);
            for (r, values) in tile.iter().take(take).enumerate() {
                let at = (row + r) * self.outputs + first;
                output[at..at + width].copy_from_slice(&values[..width]);
            }
            row += take;
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn compute(&self, _: &[f32], _: usize, _: &mut [f32], _: Activation) {
        unreachable!("PackedDense::new returns None off x86-64")
    }
}

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

/// GELU with erf from a rational approximation accurate to a few f32 ulps on
/// [-4, 4] (beyond which erf is ±1 in f32); the coefficients are the
/// minimax fit Eigen and XLA use for f32 erf.
#[inline(always)]
/// Whether the CPU has AVX-512 BF16 (`vdpbf16ps`).
fn bf16_available() -> bool {
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
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1))) >> 16
}

/// f32 panels of `inputs × PANEL` as bf16 pairs of consecutive inputs
/// (`inputs / 2` rounded up × `PANEL`), the odd input past the end zero.
fn bf16_pairs(panels: &[f32], inputs: usize) -> Vec<u32> {
    let pairs = inputs.div_ceil(2);
    let mut out = Vec::with_capacity(panels.len() / inputs.max(1) * pairs);
    for panel in panels.chunks_exact(inputs * PANEL) {
        for pair in 0..pairs {
            for lane in 0..PANEL {
                let even = panel[2 * pair * PANEL + lane];
                let odd = panel
                    .get((2 * pair + 1) * PANEL + lane)
                    .filter(|_| 2 * pair + 1 < inputs);
                out.push(bf16_bits(even) | (odd.map_or(0, |&w| bf16_bits(w)) << 16));
            }
        }
    }
    out
}

pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf in f32 (see [`gelu`]).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_600_1e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329_2e-3);
    q = x2.mul_add(q, -1.426_473_9e-2);
    x * p / q
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{Activation, PANEL, ROWS};
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

    /// `tile[r][j] = Σ_p x[r·pairs + p] · panel[p·PANEL + j]`, each term the
    /// sum of two bf16 products, for `r < take`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile_bf16(
        x: &[u32],
        take: usize,
        pairs: usize,
        panel: &[u32],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        match take {
            8 => rows_bf16::<8>(x, pairs, panel, tile),
            7 => rows_bf16::<7>(x, pairs, panel, tile),
            6 => rows_bf16::<6>(x, pairs, panel, tile),
            5 => rows_bf16::<5>(x, pairs, panel, tile),
            4 => rows_bf16::<4>(x, pairs, panel, tile),
            3 => rows_bf16::<3>(x, pairs, panel, tile),
            2 => rows_bf16::<2>(x, pairs, panel, tile),
            _ => rows_bf16::<1>(x, pairs, panel, tile),
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn rows_bf16<const R: usize>(
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

    /// Adds the bias and applies the activation to each row of `tile`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn finish(tile: &mut [[f32; PANEL]], bias: &[f32], act: Activation) {
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
        let mut p = _mm512_fmadd_ps(x2, c(-2.726_142_3e-10), c(2.770_681_4e-8));
        for a in [
            -2.101_024e-6,
            -5.692_506_4e-5,
            -7.349_906_3e-4,
            -2.954_600_1e-3,
            -1.609_603_3e-2,
        ] {
            p = _mm512_fmadd_ps(x2, p, c(a));
        }
        let mut q = _mm512_fmadd_ps(x2, c(-1.456_607_2e-5), c(-2.133_740_6e-4));
        for b in [-1.682_827e-3, -7.373_329_2e-3, -1.426_473_9e-2] {
            q = _mm512_fmadd_ps(x2, q, c(b));
        }
        _mm512_div_ps(_mm512_mul_ps(x, p), q)
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
    use super::*;
    use candle_core::{DType, Device};

    fn random(shape: &[usize], seed: u64) -> Tensor {
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

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
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

    #[test]
    fn a_weight_of_exact_halves_is_packed_as_f16_and_computes_the_same() {
        let weight = random(&[40, 24], 1)
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let bias = random(&[40], 2);
        let Some(packed) = PackedDense::new(&weight, &bias).unwrap() else {
            return;
        };
        assert!(matches!(packed.panels, Panels::F16(_)));
        let x = random(&[5, 24], 3);
        let expected = x
            .matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let got = packed.forward(&x, Activation::Identity).unwrap();
        assert!(max_difference(&got, &expected) < 1e-5);
        let weight = random(&[40, 24], 4);
        let packed = PackedDense::new(&weight, &bias).unwrap().unwrap();
        assert!(matches!(packed.panels, Panels::F32(_)));
    }

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

    /// `x` and `weight` as the int8 kernel sees them: quantised and scaled back.
    fn dequantised(x: &Tensor, weight: &Tensor) -> (Tensor, Tensor) {
        let (rows, inputs) = x.dims2().unwrap();
        let outputs = weight.dim(0).unwrap();
        let mut q = QuantisedRows::default();
        q.quantise(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), inputs);
        let quads = int8::quads_per_row(inputs);
        let x_back: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let bytes: Vec<u8> = q.quads[r * quads..(r + 1) * quads]
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect();
                let (scale, zero) = (q.scales[r], q.zeros[r]);
                bytes[..inputs]
                    .iter()
                    .map(move |&b| scale * (f32::from(b) - zero))
                    .collect::<Vec<_>>()
            })
            .collect();
        let zero_bias = Tensor::zeros(outputs, DType::F32, &Device::Cpu).unwrap();
        let packed = PackedDense::pack(weight, &zero_bias, Precision::F32).unwrap();
        let Panels::F32(panels) = &packed.panels else {
            unreachable!("random weights are not exact halves")
        };
        let w = Int8Panels::new(panels, inputs);
        let mut w_back = vec![0f32; outputs * inputs];
        for (o, row) in w_back.chunks_mut(inputs).enumerate() {
            let (panel, lane) = (o / PANEL, o % PANEL);
            for (i, value) in row.iter_mut().enumerate() {
                let word = w.quads[(panel * quads + i / 4) * PANEL + lane];
                let byte = word.to_le_bytes()[i % 4] as i8;
                *value = w.scales[o] * f32::from(byte);
            }
        }
        (
            Tensor::from_vec(x_back, (rows, inputs), &Device::Cpu).unwrap(),
            Tensor::from_vec(w_back, (outputs, inputs), &Device::Cpu).unwrap(),
        )
    }

    #[test]
    fn an_int8_layer_computes_the_products_of_its_quantised_inputs_and_weights() {
        if !Precision::Int8.available() {
            eprintln!("no AVX-512 VNNI here: nothing to compare");
            return;
        }
        // Widths not a multiple of four leave padded words; 13 rows leave a partial tile.
        for (rows, inputs, outputs) in [(1, 8, 2), (13, 51, 37), (40, 384, 96), (9, 33, 31)] {
            let (weight, bias) = (random(&[outputs, inputs], 1), random(&[outputs], 2));
            let packed = PackedDense::with_precision(&weight, &bias, Precision::Int8)
                .unwrap()
                .unwrap();
            let x = random(&[rows, inputs], 3);
            let (x_back, w_back) = dequantised(&x, &weight);
            let expected = x_back
                .matmul(&w_back.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let got = packed.forward(&x, Activation::Identity).unwrap();
            let difference = max_difference(&got, &expected);
            assert!(difference < 1e-4, "{rows}x{inputs}→{outputs}: {difference}");
            // Against f32 arithmetic: as close as 8-bit steps allow.
            let exact = x
                .matmul(&weight.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            assert!(max_difference(&got, &exact) < 0.01 * (inputs as f32).sqrt());
        }
    }

    #[test]
    fn precisions_read_and_print_as_their_names() {
        for p in [Precision::F32, Precision::Bf16, Precision::Int8] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("int4"
            .parse::<Precision>()
            .unwrap_err()
            .contains("f32, bf16 or int8"));
    }

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
    fn a_weight_of_another_width_is_refused() {
        let (weight, bias) = (random(&[4, 8], 1), random(&[4], 2));
        if let Some(packed) = PackedDense::new(&weight, &bias).unwrap() {
            let x = Tensor::zeros((2, 7), DType::F32, &Device::Cpu).unwrap();
            assert!(packed.forward(&x, Activation::Identity).is_err());
        }
    }
}
