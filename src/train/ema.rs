//! An exponential moving average (EMA) of the weights.
//!
//! A small transformer trained on a few thousand texts jumps around the loss
//! surface from step to step; the average of its recent weights usually
//! generalises better than the last iterate. After every optimisation step each
//! parameter's average moves towards the current value,
//! `avg ← d·avg + (1 − d)·θ`, starting from zero and divided by `1 − dⁿ` after
//! `n` updates (Adam's bias correction), so the average weighs exactly the
//! iterates seen so far and never the random initialisation.

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var};

/// The running average of a set of named parameters.
pub struct Ema {
    decay: f64,
    updates: i32,
    slots: Vec<(String, Var, Tensor)>,
}

impl Ema {
    /// Averages `params` with per-step decay `decay` (in `[0, 1)`).
    pub fn new(params: Vec<(String, Var)>, decay: f64) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let zero = var.as_tensor().zeros_like()?;
                Ok((name, var, zero))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decay,
            updates: 0,
            slots,
        })
    }

    /// Folds the parameters' current values into the average.
    pub fn update(&mut self) -> Result<()> {
        let d = self.decay;
        for (_, var, avg) in &mut self.slots {
            // Detached: otherwise each average would keep the graph of all before it.
            *avg = (avg.affine(d, 0.0)? + var.as_tensor().affine(1.0 - d, 0.0)?)?.detach();
        }
        self.updates += 1;
        Ok(())
    }

    /// The bias-corrected averages by name (empty before the first update).
    pub fn averaged(&self) -> Result<HashMap<String, Tensor>> {
        if self.updates == 0 {
            return Ok(HashMap::new());
        }
        let correction = 1.0 / (1.0 - self.decay.powi(self.updates));
        self.slots
            .iter()
            .map(|(name, _, avg)| Ok((name.clone(), avg.affine(correction, 0.0)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_average_weighs_the_iterates_seen_and_not_the_start() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut ema = Ema::new(vec![("w".into(), var.clone())], 0.5).unwrap();
        ema.update().unwrap();
        let first = ema.averaged().unwrap()["w"].to_vec1::<f32>().unwrap();
        assert_eq!(first, vec![1.0, -2.0]);
        var.set(&Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update().unwrap();
        // Weights 0.5 (older) and 1 (newer), normalised: (0.5·1 + 3)/1.5 and (0.5·−2 + 4)/1.5.
        let second = ema.averaged().unwrap()["w"].to_vec1::<f32>().unwrap();
        assert!((second[0] - 3.5 / 1.5).abs() < 1e-6, "{second:?}");
        assert!((second[1] - 3.0 / 1.5).abs() < 1e-6, "{second:?}");
    }

    #[test]
    fn nothing_is_averaged_before_the_first_update() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        let ema = Ema::new(vec![("w".into(), var)], 0.99).unwrap();
        assert!(ema.averaged().unwrap().is_empty());
    }
}
