//! Temperature scaling (Guo et al., 2017): one scalar T dividing the logits,
//! chosen to minimise the negative log-likelihood on held-out data.

use crate::model::softmax;

/// Mean negative log-likelihood of `targets` under `softmax(logits / t)`.
pub fn nll_at(logits: &[Vec<f32>], targets: &[usize], t: f64) -> f64 {
    if logits.is_empty() {
        return 0.0;
    }
    let total: f64 = logits
        .iter()
        .zip(targets)
        .map(|(l, &y)| -(softmax(l, t)[y] as f64).max(1e-12).ln())
        .sum();
    total / logits.len() as f64
}

/// The temperature in [0.05, 20] minimising NLL, by golden-section search on log T.
///
/// NLL is convex in 1/T, hence unimodal in log T, so the search finds the optimum.
pub fn fit_temperature(logits: &[Vec<f32>], targets: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| nll_at(logits, targets, log_t.exp());
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (0.05f64.ln(), 20f64.ln());
    let mut a = hi - golden * (hi - lo);
    let mut b = lo + golden * (hi - lo);
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..60 {
        if fa < fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - golden * (hi - lo);
            fa = f(a);
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + golden * (hi - lo);
            fb = f(b);
        }
    }
    ((lo + hi) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn over_confident_logits_get_a_temperature_above_one() {
        // Logits of ±4 but only 70% correct: the model is over-confident.
        let mut rng = SeededRng::new(1);
        let (mut logits, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            let correct = rng.next_f64() < 0.7;
            logits.push(vec![4.0, -4.0]);
            targets.push(if correct { 0 } else { 1 });
        }
        let t = fit_temperature(&logits, &targets);
        // The optimum makes softmax(8/T) equal the observed accuracy a: T = 8 / ln(a/(1−a)).
        let a = targets.iter().filter(|&&y| y == 0).count() as f64 / targets.len() as f64;
        let expected = 8.0 / (a / (1.0 - a)).ln();
        assert!(t > 1.0);
        assert!(
            (t - expected).abs() / expected < 0.01,
            "t {t}, expected {expected}"
        );
        assert!(nll_at(&logits, &targets, t) < nll_at(&logits, &targets, 1.0));
    }

    #[test]
    fn the_fitted_temperature_never_increases_nll_over_one() {
        let logits = vec![vec![0.1, 0.2], vec![0.3, -0.1], vec![-0.2, 0.4]];
        let targets = vec![1, 0, 1];
        let t = fit_temperature(&logits, &targets);
        assert!(nll_at(&logits, &targets, t) <= nll_at(&logits, &targets, 1.0) + 1e-12);
    }
}
