//! AdamW with decoupled weight decay and global gradient-norm clipping, fused
//! into one pass over each parameter.
//!
//! candle-nn's `AdamW` spends about a dozen tensor operations (each a fresh
//! allocation) per parameter per step; for the embedding table that dominated
//! training time. This computes exactly the same update (Loshchilov & Hutter's
//! AdamW as candle implements it) in plain loops over the parameter's values.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, Var};

/// AdamW's hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct AdamWSettings {
    /// Exponential decay of the first moment.
    pub beta1: f64,
    /// Exponential decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay for parameters that take it.
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter and its moment estimates.
struct Slot {
    var: Var,
    decays: bool,
    /// Multiplies the learning rate (and so the decoupled weight decay) of this parameter.
    lr_scale: f64,
    first: Vec<f32>,
    second: Vec<f32>,
}

/// The optimiser state.
pub struct AdamW {
    slots: Vec<Slot>,
    settings: AdamWSettings,
    steps: i32,
}

impl AdamW {
    /// Optimises `params`; those marked `true` take weight decay.
    pub fn new(params: Vec<(Var, bool)>, settings: AdamWSettings) -> Self {
        let scaled = params.into_iter().map(|(v, d)| (v, d, 1.0)).collect();
        Self::with_scales(scaled, settings)
    }

    /// Optimises `params` given as (parameter, takes weight decay, learning-rate scale).
    pub fn with_scales(params: Vec<(Var, bool, f64)>, settings: AdamWSettings) -> Self {
        let slots = params
            .into_iter()
            .map(|(var, decays, lr_scale)| {
                let n = var.elem_count();
                Slot {
                    var,
                    decays,
                    lr_scale,
                    first: vec![0.0; n],
                    second: vec![0.0; n],
                }
            })
            .collect();
        Self {
            slots,
            settings,
            steps: 0,
        }
    }

    /// Clips the gradients to global norm `max_norm` (0 disables) and takes one
    /// step at learning rate `lr`. Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64, max_norm: f64) -> Result<f64> {
        let gradients = self
            .slots
            .iter()
            .map(|s| grads.get(&s.var).map(|g| g.contiguous()).transpose())
            .collect::<Result<Vec<Option<Tensor>>>>()?;
        let mut squares = 0f64;
        for gradient in gradients.iter().flatten() {
            squares = with_values(gradient, |g| {
                g.iter()
                    .fold(squares, |sum, &x| sum + (x as f64) * (x as f64))
            })?;
        }
        let norm = squares.sqrt();
        let clip = if max_norm > 0.0 && norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        self.steps += 1;
        let s = self.settings;
        for (slot, gradient) in self.slots.iter_mut().zip(gradients) {
            let Some(gradient) = gradient else { continue };
            let lr = lr * slot.lr_scale;
            let constants = Constants {
                clip,
                beta1: s.beta1,
                beta2: s.beta2,
                eps: s.eps,
                scale_m: 1.0 / (1.0 - s.beta1.powi(self.steps)),
                scale_v: 1.0 / (1.0 - s.beta2.powi(self.steps)),
                decay: if slot.decays {
                    1.0 - lr * s.weight_decay
                } else {
                    1.0
                },
                lr,
            };
            let step = InPlaceStep {
                first: RefCell::new(&mut slot.first),
                second: RefCell::new(&mut slot.second),
                constants,
            };
            slot.var.as_tensor().inplace_op2(&gradient, &step)?;
        }
        Ok(norm)
    }
}

/// Runs `f` on a contiguous f32 tensor's values where they are stored.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((from, to))) => Ok(f(&values[from..to])),
        _ => candle_core::bail!("AdamW: a gradient is not a contiguous f32 CPU tensor"),
    }
}

/// What one step of one parameter multiplies and adds.
#[derive(Debug, Clone, Copy)]
struct Constants {
    clip: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Bias corrections of the two moments.
    scale_m: f64,
    scale_v: f64,
    /// Decoupled weight decay: the factor on the old value.
    decay: f64,
    lr: f64,
}

/// One AdamW step of one parameter, written into the parameter's storage.
struct InPlaceStep<'a> {
    first: RefCell<&'a mut Vec<f32>>,
    second: RefCell<&'a mut Vec<f32>>,
    constants: Constants,
}

impl candle_core::InplaceOp2 for InPlaceStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        theta: &mut CpuStorage,
        theta_layout: &Layout,
        gradient: &CpuStorage,
        gradient_layout: &Layout,
    ) -> Result<()> {
        let (Some((t0, t1)), Some((g0, g1))) = (
            theta_layout.contiguous_offsets(),
            gradient_layout.contiguous_offsets(),
        ) else {
            candle_core::bail!("AdamW: parameters and gradients must be contiguous")
        };
        let (CpuStorage::F32(theta), CpuStorage::F32(gradient)) = (theta, gradient) else {
            candle_core::bail!("AdamW: parameters and gradients must be f32")
        };
        let mut first = self.first.borrow_mut();
        let mut second = self.second.borrow_mut();
        update(
            &mut theta[t0..t1],
            &gradient[g0..g1],
            &mut first,
            &mut second,
            self.constants,
        );
        Ok(())
    }
}

/// Elements per chunk when the step is shared among threads.
const CHUNK: usize = 1 << 16;

/// The AdamW update of every element, in chunks over the rayon pool; each
/// element's arithmetic is the same at any thread count and vector width.
fn update(
    theta: &mut [f32],
    gradient: &[f32],
    first: &mut [f32],
    second: &mut [f32],
    k: Constants,
) {
    use rayon::prelude::*;
    assert!(
        theta.len() == gradient.len() && theta.len() == first.len() && theta.len() == second.len()
    );
    theta
        .par_chunks_mut(CHUNK)
        .zip(gradient.par_chunks(CHUNK))
        .zip(first.par_chunks_mut(CHUNK))
        .zip(second.par_chunks_mut(CHUNK))
        .for_each(|(((t, g), m), v)| update_chunk(t, g, m, v, k));
}

fn update_chunk(
    theta: &mut [f32],
    gradient: &[f32],
    first: &mut [f32],
    second: &mut [f32],
    k: Constants,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { update_avx512(theta, gradient, first, second, k) };
    }
    update_elements(theta, gradient, first, second, k)
}

/// The same loop compiled for AVX-512 (IEEE operations, so the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_avx512(
    theta: &mut [f32],
    gradient: &[f32],
    first: &mut [f32],
    second: &mut [f32],
    k: Constants,
) {
    update_elements(theta, gradient, first, second, k)
}

#[inline(always)]
fn update_elements(
    theta: &mut [f32],
    gradient: &[f32],
    first: &mut [f32],
    second: &mut [f32],
    k: Constants,
) {
    let (one_minus_beta1, one_minus_beta2) = (1.0 - k.beta1, 1.0 - k.beta2);
    for (((t, &g), m), v) in theta
        .iter_mut()
        .zip(gradient)
        .zip(first.iter_mut())
        .zip(second.iter_mut())
    {
        let g = g as f64 * k.clip;
        let m_new = k.beta1 * *m as f64 + one_minus_beta1 * g;
        let v_new = k.beta2 * *v as f64 + one_minus_beta2 * g * g;
        *m = m_new as f32;
        *v = v_new as f32;
        let step = (m_new * k.scale_m) / ((v_new * k.scale_v).sqrt() + k.eps);
        *t = (*t as f64 * k.decay - k.lr * step) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use candle_nn::{Optimizer, ParamsAdamW};

    fn quadratic_loss(w: &Var) -> Tensor {
        let target = Tensor::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
        (w.as_tensor() - target)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    }

    #[test]
    fn the_fused_step_matches_candles_adamw() {
        let start = Tensor::new(&[0.5f32, 0.5, 0.5], &Device::Cpu).unwrap();
        let ours = Var::from_tensor(&start).unwrap();
        let theirs = Var::from_tensor(&start).unwrap();
        let mut fused = AdamW::new(vec![(ours.clone(), true)], AdamWSettings::default());
        let params = ParamsAdamW {
            lr: 0.1,
            ..ParamsAdamW::default()
        };
        let mut reference = candle_nn::AdamW::new(vec![theirs.clone()], params).unwrap();
        for _ in 0..20 {
            fused
                .step(&quadratic_loss(&ours).backward().unwrap(), 0.1, 0.0)
                .unwrap();
            reference.backward_step(&quadratic_loss(&theirs)).unwrap();
        }
        let a = ours.as_tensor().to_vec1::<f32>().unwrap();
        let b = theirs.as_tensor().to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    /// The step as first written: one scalar loop over copies of the values.
    fn scalar_step(theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Constants) {
        for i in 0..theta.len() {
            let g = g[i] as f64 * k.clip;
            let m_new = k.beta1 * m[i] as f64 + (1.0 - k.beta1) * g;
            let v_new = k.beta2 * v[i] as f64 + (1.0 - k.beta2) * g * g;
            m[i] = m_new as f32;
            v[i] = v_new as f32;
            let update = (m_new * k.scale_m) / ((v_new * k.scale_v).sqrt() + k.eps);
            theta[i] = (theta[i] as f64 * k.decay - k.lr * update) as f32;
        }
    }

    #[test]
    fn the_step_in_place_over_threads_gives_the_scalar_loops_bits() {
        let n = 2 * CHUNK + 123;
        let [theta, gradients, first, second] =
            crate::rng::uniform_vectors(4, n, 7).try_into().unwrap();
        let second: Vec<f32> = second.iter().map(|x| x.abs()).collect();
        let k = Constants {
            clip: 0.37,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            scale_m: 1.0 / (1.0 - 0.9f64.powi(3)),
            scale_v: 1.0 / (1.0 - 0.999f64.powi(3)),
            decay: 1.0 - 5e-5 * 0.01,
            lr: 5e-5,
        };
        let (mut t1, mut m1, mut v1) = (theta.clone(), first.clone(), second.clone());
        scalar_step(&mut t1, &gradients, &mut m1, &mut v1, k);
        let (mut t2, mut m2, mut v2) = (theta.clone(), first, second);
        update(&mut t2, &gradients, &mut m2, &mut v2, k);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&t1), bits(&t2));
        assert_eq!(bits(&m1), bits(&m2));
        assert_eq!(bits(&v1), bits(&v2));
        assert_ne!(bits(&t1), bits(&theta));
    }

    #[test]
    fn a_learning_rate_scale_is_the_same_as_a_scaled_learning_rate() {
        let start = Tensor::new(&[0.5f32, 0.5, 0.5], &Device::Cpu).unwrap();
        let scaled = Var::from_tensor(&start).unwrap();
        let plain = Var::from_tensor(&start).unwrap();
        let mut a = AdamW::with_scales(vec![(scaled.clone(), true, 0.5)], AdamWSettings::default());
        let mut b = AdamW::new(vec![(plain.clone(), true)], AdamWSettings::default());
        for _ in 0..5 {
            a.step(&quadratic_loss(&scaled).backward().unwrap(), 0.2, 0.0)
                .unwrap();
            b.step(&quadratic_loss(&plain).backward().unwrap(), 0.1, 0.0)
                .unwrap();
        }
        assert_eq!(
            scaled.as_tensor().to_vec1::<f32>().unwrap(),
            plain.as_tensor().to_vec1::<f32>().unwrap()
        );
        assert_ne!(
            scaled.as_tensor().to_vec1::<f32>().unwrap(),
            start.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn clipping_bounds_the_first_step_and_reports_the_raw_norm() {
        let w = Var::from_tensor(&Tensor::new(&[0.0f32, 0.0, 0.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![(w.clone(), false)], AdamWSettings::default());
        let norm = opt
            .step(&quadratic_loss(&w).backward().unwrap(), 0.1, 1.0)
            .unwrap();
        // Gradient is 2(w − target) = (−2, 4, −6): norm sqrt(56).
        assert!((norm - 56f64.sqrt()).abs() < 1e-4);
    }
}
