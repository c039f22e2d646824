//! LayerNorm over the last dimension as one differentiable operation, for
//! training.
//!
//! candle's fused `layer_norm` records no backward pass, so training
//! composed it from nine tensor operations (and about twice as many
//! backwards), each a pass over memory into a fresh buffer. Here the forward
//! pass is one pass per row, and the backward pass one more that yields the
//! gradients of the input, the weight and the bias together. Rows go to the
//! rayon pool in fixed chunks, and the weight and bias gradients are summed
//! chunk by chunk in order, so the bits do not depend on the thread count.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Rows per chunk handed to a thread.
const CHUNK_ROWS: usize = 64;

/// `(x − mean) / sqrt(variance + eps) · weight + bias` over the last
/// dimension of `x`, with a backward pass to all three.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let all_f32 = [x, weight, bias].iter().all(|t| t.dtype() == DType::F32);
    if x.device().is_cpu() && all_f32 {
        let op = LayerNorm { eps: eps as f32 };
        x.contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
    } else {
        composed(x, weight, bias, eps)
    }
}

/// The same function from candle's differentiable operations.
pub fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(variance + eps)?.sqrt()?)?;
    normed.broadcast_mul(weight)?.broadcast_add(bias)
}

/// The contiguous f32 values of `storage` under `layout`.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let (CpuStorage::F32(all), Some((from, to))) = (storage, layout.contiguous_offsets()) else {
        candle_core::bail!("layer norm: needs contiguous f32 values")
    };
    Ok(&all[from..to])
}

/// A row's mean and `sqrt(variance + eps)`.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, (variance + eps).sqrt())
}

/// `x`, the weight and the bias, checked to agree in width.
fn rows_of<'a>(x: &'a [f32], weight: &[f32], other: &[f32]) -> Result<(usize, &'a [f32])> {
    let width = weight.len();
    if width == 0 || other.len() != width || !x.len().is_multiple_of(width) {
        candle_core::bail!(
            "layer norm: {} values do not fit a width of {width}",
            x.len()
        )
    }
    Ok((width, x))
}

#[derive(Debug, Clone, Copy)]
struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "candor-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (weight, bias) = (values(weight, weight_layout)?, values(bias, bias_layout)?);
        let (width, x) = rows_of(values(x, x_layout)?, weight, bias)?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK_ROWS * width)
            .zip(x.par_chunks(CHUNK_ROWS * width))
            .for_each(|(out, x)| {
                for (out, row) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                    let (mean, sd) = moments(row, self.eps);
                    for (((o, &v), &w), &b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                        *o = (v - mean) / sd * w + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?;
        let all = x.apply_op3_no_bwd(weight, &grad, &LayerNormGradients { eps: self.eps })?;
        let rows = x.elem_count() / weight.elem_count();
        let grad_x = all.narrow(0, 0, rows)?.reshape(x.shape())?;
        Ok((Some(grad_x), Some(all.get(rows)?), Some(all.get(rows + 1)?)))
    }
}

/// The gradients of LayerNorm's input (one row per input row), weight and
/// bias (the last two rows) from the input, the weight and the result's
/// gradient.
#[derive(Debug, Clone, Copy)]
struct LayerNormGradients {
    eps: f32,
}

impl CustomOp3 for LayerNormGradients {
    fn name(&self) -> &'static str {
        "candor-layer-norm-gradients"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let weight = values(weight, weight_layout)?;
        let grad = values(grad, grad_layout)?;
        let (width, x) = rows_of(values(x, x_layout)?, weight, weight)?;
        if grad.len() != x.len() {
            candle_core::bail!(
                "layer norm: {} gradients for {} values",
                grad.len(),
                x.len()
            )
        }
        let rows = x.len() / width;
        let mut out = vec![0f32; (rows + 2) * width];
        let (grad_x, sums) = out.split_at_mut(rows * width);
        // Each chunk's sums of g·x̂ (weight) and g (bias), then all in order.
        let partial: Vec<Vec<f32>> = grad_x
            .par_chunks_mut(CHUNK_ROWS * width)
            .zip(x.par_chunks(CHUNK_ROWS * width))
            .zip(grad.par_chunks(CHUNK_ROWS * width))
            .map(|((grad_x, x), grad)| self.chunk(width, weight, x, grad, grad_x))
            .collect();
        for chunk in &partial {
            for (total, value) in sums.iter_mut().zip(chunk) {
                *total += value;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, width))))
    }
}

impl LayerNormGradients {
    /// The input gradients of a chunk of rows into `grad_x`; returns the
    /// chunk's weight and bias gradients, one after the other.
    fn chunk(
        &self,
        width: usize,
        weight: &[f32],
        x: &[f32],
        grad: &[f32],
        grad_x: &mut [f32],
    ) -> Vec<f32> {
        let mut sums = vec![0f32; 2 * width];
        let (sum_gx_hat, sum_g) = sums.split_at_mut(width);
        let mut normed = vec![0f32; width];
        let rows = x.chunks_exact(width).zip(grad.chunks_exact(width));
        for ((row, g), out) in rows.zip(grad_x.chunks_exact_mut(width)) {
            let (mean, sd) = moments(row, self.eps);
            let (mut mean_gw, mut mean_gw_hat) = (0f32, 0f32);
            for i in 0..width {
                normed[i] = (row[i] - mean) / sd;
                let gw = g[i] * weight[i];
                mean_gw += gw;
                mean_gw_hat += gw * normed[i];
                sum_gx_hat[i] += g[i] * normed[i];
                sum_g[i] += g[i];
            }
            let n = width as f32;
            let (mean_gw, mean_gw_hat) = (mean_gw / n, mean_gw_hat / n);
            for i in 0..width {
                out[i] = (g[i] * weight[i] - mean_gw - normed[i] * mean_gw_hat) / sd;
            }
        }
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// A tensor of `shape` with values in [-2, 2), the same for the same `seed`.
    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = crate::rng::hash64(state.wrapping_add(1));
                (state >> 40) as f32 / (1u64 << 22) as f32 - 2.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// The gradients of `Σ layer_norm(x)·scale` for x, weight and bias.
    fn gradients(fused: bool, x: &Var, w: &Var, b: &Var, scale: &Tensor) -> Vec<Tensor> {
        let norm = if fused { layer_norm } else { composed };
        let y = norm(x, w, b, 1e-12).unwrap();
        let grads = (y * scale).unwrap().sum_all().unwrap().backward().unwrap();
        [x.as_tensor(), w.as_tensor(), b.as_tensor()]
            .iter()
            .map(|t| grads.get(t).unwrap().clone())
            .collect()
    }

    #[test]
    fn the_fused_layer_norm_computes_the_composed_ones_values_and_gradients() {
        // 3 × 70 rows: two chunks and a part, a width that is not a power of two.
        let x = Var::from_tensor(&random(&[3, 70, 48], 1)).unwrap();
        let w = Var::from_tensor(&random(&[48], 2)).unwrap();
        let b = Var::from_tensor(&random(&[48], 3)).unwrap();
        let scale = random(&[3, 70, 48], 4);
        let fused = layer_norm(&x, &w, &b, 1e-12).unwrap();
        let reference = composed(&x, &w, &b, 1e-12).unwrap();
        assert!(max_difference(&fused, &reference) < 1e-5);
        let (ours, theirs) = (
            gradients(true, &x, &w, &b, &scale),
            gradients(false, &x, &w, &b, &scale),
        );
        for (name, (a, b)) in ["input", "weight", "bias"]
            .iter()
            .zip(ours.iter().zip(&theirs))
        {
            assert_eq!(a.dims(), b.dims(), "{name}");
            assert!(
                max_difference(a, b) < 1e-4,
                "{name}: {}",
                max_difference(a, b)
            );
        }
    }

    #[test]
    fn a_transposed_input_is_normalised_as_its_values_read() {
        let x = random(&[8, 5], 5).t().unwrap();
        let (w, b) = (random(&[8], 6), random(&[8], 7));
        let fused = layer_norm(&x, &w, &b, 1e-5).unwrap();
        assert!(max_difference(&fused, &composed(&x, &w, &b, 1e-5).unwrap()) < 1e-5);
    }

    #[test]
    fn the_gradients_do_not_depend_on_the_thread_count() {
        let x = Var::from_tensor(&random(&[300, 40], 8)).unwrap();
        let w = Var::from_tensor(&random(&[40], 9)).unwrap();
        let b = Var::from_tensor(&random(&[40], 10)).unwrap();
        let scale = random(&[300, 40], 11);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let grads = gradients(true, &x, &w, &b, &scale);
                let bits = |t: &Tensor| {
                    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    v.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                grads.iter().map(bits).collect::<Vec<_>>()
            })
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn a_weight_of_another_width_is_refused() {
        let x = random(&[4, 6], 12);
        let (w, b) = (random(&[5], 13), random(&[5], 14));
        assert!(layer_norm(&x, &w, &b, 1e-5).is_err());
    }
}
