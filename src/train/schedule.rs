//! The learning-rate schedule: linear warm-up, then linear decay to zero.

/// Learning rate for each optimisation step.
#[derive(Debug, Clone, Copy)]
pub struct LinearSchedule {
    /// Peak learning rate, reached at the end of warm-up.
    pub peak: f64,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: usize,
    /// Total steps; the rate reaches 0 here.
    pub total_steps: usize,
}

impl LinearSchedule {
    /// The rate at step `step` (0-based).
    pub fn rate(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let done = (step - self.warmup_steps) as f64 / decay_steps as f64;
        self.peak * (1.0 - done).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_warms_up_linearly_then_decays_to_zero() {
        let s = LinearSchedule {
            peak: 1.0,
            warmup_steps: 4,
            total_steps: 14,
        };
        assert_eq!(s.rate(0), 0.25);
        assert_eq!(s.rate(3), 1.0);
        assert_eq!(s.rate(4), 1.0);
        assert!((s.rate(9) - 0.5).abs() < 1e-12);
        assert_eq!(s.rate(14), 0.0);
        assert_eq!(s.rate(100), 0.0);
    }

    #[test]
    fn no_warm_up_starts_at_the_peak() {
        let s = LinearSchedule {
            peak: 2.0,
            warmup_steps: 0,
            total_steps: 10,
        };
        assert_eq!(s.rate(0), 2.0);
    }
}
