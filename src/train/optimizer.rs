//! AdamW with decoupled weight decay and global gradient-norm clipping, fused
//! into one pass over each parameter.
//!
//! candle-nn's `AdamW` spends about a dozen tensor operations (each a fresh
//! allocation) per parameter per step; for the embedding table that dominated
//! training time. This computes exactly the same update (Loshchilov & Hutter's
//! AdamW as candle implements it) in plain loops over the parameter's values.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

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
            .map(|s| grads.get(&s.var).map(flat_values).transpose())
            .collect::<Result<Vec<Option<Vec<f32>>>>>()?;
        let norm = gradients
            .iter()
            .flatten()
            .flat_map(|g| g.iter())
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        let clip = if max_norm > 0.0 && norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        self.steps += 1;
        let s = self.settings;
        let scale_m = 1.0 / (1.0 - s.beta1.powi(self.steps));
        let scale_v = 1.0 / (1.0 - s.beta2.powi(self.steps));
        for (slot, gradient) in self.slots.iter_mut().zip(gradients) {
            let Some(gradient) = gradient else { continue };
            let lr = lr * slot.lr_scale;
            let decay = if slot.decays {
                1.0 - lr * s.weight_decay
            } else {
                1.0
            };
            let mut theta = flat_values(slot.var.as_tensor())?;
            for i in 0..theta.len() {
                let g = gradient[i] as f64 * clip;
                let m = s.beta1 * slot.first[i] as f64 + (1.0 - s.beta1) * g;
                let v = s.beta2 * slot.second[i] as f64 + (1.0 - s.beta2) * g * g;
                slot.first[i] = m as f32;
                slot.second[i] = v as f32;
                let update = (m * scale_m) / ((v * scale_v).sqrt() + s.eps);
                theta[i] = (theta[i] as f64 * decay - lr * update) as f32;
            }
            let shape = slot.var.shape().clone();
            slot.var
                .set(&Tensor::from_vec(theta, shape, slot.var.device())?)?;
        }
        Ok(norm)
    }
}

fn flat_values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
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
