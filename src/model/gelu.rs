//! GELU (`x · Φ(x)`, the exact erf form BERT uses) as one differentiable
//! operation for training and for models without packed layers.
//!
//! candle's `gelu_erf` calls libm's scalar `erff` per value, and its
//! backward pass composes seven tensor operations (each a pass over memory
//! and a fresh buffer, one of them a second erf). Here the forward pass and
//! the derivative `Φ(x) + x·φ(x)` are each one pass, vectorised (the erf of
//! the packed kernels, [`super::packed::erf`], and an exp polynomial), over
//! the rayon pool in chunks: the result does not depend on the thread count.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::packed::{erf, gelu};

/// Values per chunk handed to a thread.
const CHUNK: usize = 16 * 1024;

/// GELU of `x`, with a backward pass; candle's own for tensors off the CPU or
/// not f32.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu_erf()
    }
}

/// The derivative of GELU, `Φ(x) + x·φ(x)`.
fn gelu_derivative(x: f32) -> f32 {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * FRAC_1_SQRT_2PI * exp_nonpositive(-0.5 * x * x)
}

/// `e^x` for `x ≤ 0` to about 2 f32 ulps, in operations the compiler
/// vectorises: `x = n·ln 2 + r`, a degree-6 polynomial for `e^r`, `2^n`
/// from the exponent bits; 0 below −87 (where `e^x` leaves the normal f32s).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_66,
        0.5,
    ] {
        p = p.mul_add(r, c);
    }
    let e_r = (p * r).mul_add(r, r) + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `f` of every value of `input` into a new vector, in chunks over the
/// rayon pool, each through the widest loop this CPU has.
fn map(input: &[f32], f: fn(&[f32], &mut [f32])) -> Vec<f32> {
    let mut output = vec![0f32; input.len()];
    output
        .par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .for_each(|(out, x)| f(x, out));
    output
}

/// `out[i] = op(a[i], b[i])` loops compiled for AVX-512, AVX2 with FMA, and
/// plain x86-64 or other targets, chosen at run time (the same operations,
/// so the same bits, at every width).
macro_rules! vectorised {
    ($name:ident, |$($arg:ident),+| $body:expr) => {
        fn $name($($arg: &[f32],)+ out: &mut [f32]) {
            #[inline(always)]
            fn body($($arg: &[f32],)+ out: &mut [f32]) {
                let n = out.len();
                $(let $arg = &$arg[..n];)+
                for i in 0..n {
                    $(let $arg = $arg[i];)+
                    out[i] = $body;
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn wide($($arg: &[f32],)+ out: &mut [f32]) {
                    body($($arg,)+ out)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: &[f32],)+ out: &mut [f32]) {
                    body($($arg,)+ out)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (and so FMA).
                    return unsafe { wide($($arg,)+ out) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { narrow($($arg,)+ out) };
                }
            }
            body($($arg,)+ out)
        }
    };
}

vectorised!(gelu_values, |x| gelu(x));
vectorised!(gelu_gradients, |x, g| g * gelu_derivative(x));

/// The contiguous f32 values of `storage` under `layout`.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let (CpuStorage::F32(all), Some((from, to))) = (storage, layout.contiguous_offsets()) else {
        candle_core::bail!("gelu: needs contiguous f32 values")
    };
    Ok(&all[from..to])
}

/// GELU forwards; its backward pass is [`GeluGradient`].
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "candor-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = map(values(storage, layout)?, gelu_values);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &GeluGradient)?))
    }
}

/// `grad · GELU'(x)` for the input `x` and the result's gradient `grad`.
struct GeluGradient;

impl CustomOp2 for GeluGradient {
    fn name(&self) -> &'static str {
        "candor-gelu-erf-gradient"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, grad) = (values(x, x_layout)?, values(grad, grad_layout)?);
        if x.len() != grad.len() {
            candle_core::bail!(
                "gelu gradient: {} values but {} gradients",
                x.len(),
                grad.len()
            )
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .for_each(|(out, (x, g))| gelu_gradients(x, g, out));
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values from −9 to 9 in uneven steps, with the zeros and a few extremes.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..4001).map(|i| -9.0 + i as f32 * 0.0045).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e6, -1e6]);
        xs
    }

    #[test]
    fn exp_of_nonpositive_values_is_within_two_ulps_of_the_library() {
        for i in 0..87_000 {
            let x = -(i as f32) * 0.001;
            let (ours, exact) = (exp_nonpositive(x), x.exp());
            assert!(
                (ours - exact).abs() <= 2.5 * f32::EPSILON * exact,
                "exp({x}): {ours} vs {exact}"
            );
        }
        assert_eq!(exp_nonpositive(-200.0), (-87f32).exp());
    }

    #[test]
    fn gelu_forwards_computes_what_candle_computes() {
        let x = Tensor::new(inputs(), &Device::Cpu).unwrap();
        let ours = gelu_erf(&x).unwrap().to_vec1::<f32>().unwrap();
        let theirs = x.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for ((a, b), x) in ours.iter().zip(&theirs).zip(inputs()) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "gelu({x}): {a} vs {b}"
            );
        }
    }

    #[test]
    fn gelu_gradients_are_candles_composed_ones() {
        let xs = inputs();
        let weights: Vec<f32> = (0..xs.len())
            .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
            .collect();
        let w = Tensor::new(weights, &Device::Cpu).unwrap();
        let gradient = |ours: bool| {
            let x = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
            let y = if ours { gelu_erf(&x) } else { x.gelu_erf() }.unwrap();
            let grads = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            grads.get(&x).unwrap().to_vec1::<f32>().unwrap()
        };
        let (ours, theirs) = (gradient(true), gradient(false));
        for ((a, b), x) in ours.iter().zip(&theirs).zip(&xs) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "gelu'({x}): {a} vs {b}"
            );
        }
    }

    #[test]
    fn a_transposed_input_and_its_gradient_follow_their_layout() {
        let x = Var::new(&[[-1f32, 0.5, 2.0], [3.0, -0.25, 0.0]], &Device::Cpu).unwrap();
        let t = x.t().unwrap();
        let (ours, theirs) = (gelu_erf(&t).unwrap(), t.gelu_erf().unwrap());
        let difference = (&ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(difference.to_scalar::<f32>().unwrap() < 1e-6);
        let scale = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu).unwrap();
        let grad = |y: Tensor| {
            let grads = (y * &scale).unwrap().sum_all().unwrap().backward().unwrap();
            grads
                .get(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        for (a, b) in grad(ours).iter().zip(grad(theirs)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let xs: Vec<f32> = (0..100_003)
            .map(|i| (i as f32 * 0.37).sin() * 5.0)
            .collect();
        let x = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let y = gelu_erf(&x).unwrap();
                    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                    let bits = |t: &Tensor| {
                        let v = t.to_vec1::<f32>().unwrap();
                        v.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    };
                    (bits(&y), bits(grads.get(&x).unwrap()))
                })
        };
        assert_eq!(run(1), run(2));
    }
}
