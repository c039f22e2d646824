//! A cascade of models: the first answers when it is sure, and passes the
//! text on otherwise. "Sure" is its calibrated top probability reaching a
//! threshold, fitted on calibration data so that the cascade's accuracy
//! stays within a margin of the next model's alone while as few texts as
//! possible go on to it.

use serde::{Deserialize, Serialize};

/// One fitted hand-over, stored in the first model's calibration.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeStep {
    /// The model texts are passed on to, by its weights' sha256 (a reloaded
    /// or retrained next model needs a new fit).
    pub next_weights_sha256: String,
    /// Its directory's name when fitted, for people reading the file.
    pub next_name: String,
    /// The score compared with the threshold: the calibrated top probability.
    pub score: String,
    /// A text whose score is at least this is answered by this model;
    /// `null` passes every text on (no threshold kept accuracy in the margin).
    pub threshold: Option<f64>,
    /// The accuracy margin, in points, the threshold was fitted for.
    pub margin_points: f64,
    /// Calibration examples behind the fit.
    pub examples: usize,
    /// Share of them passed on at the threshold.
    pub passed_on: f64,
    /// Accuracy of this model alone, of the next alone, and of the two as a
    /// cascade at the threshold, on those examples.
    pub accuracy: CascadeAccuracy,
    /// The trade-off: for other margins, the share passed on and the accuracy.
    pub trade_off: Vec<TradeOff>,
}

/// Accuracies on the calibration examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeAccuracy {
    /// This model alone.
    pub first: f64,
    /// The next model alone.
    pub next: f64,
    /// The cascade at the fitted threshold.
    pub cascade: f64,
}

/// One point of the trade-off curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeOff {
    /// The margin in points.
    pub margin_points: f64,
    /// The threshold it gives (`null`: pass everything on).
    pub threshold: Option<f64>,
    /// Share of texts passed on.
    pub passed_on: f64,
    /// The cascade's accuracy.
    pub accuracy: f64,
}

/// The margins the trade-off curve is reported at, in points.
pub const TRADE_OFF_MARGINS: [f64; 6] = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0];

/// The lowest threshold on `confidence` (so the fewest texts passed on)
/// whose cascade accuracy is within `margin_points` of the next model's.
///
/// `first_correct[i]` and `next_correct[i]` say whether each model alone
/// labels example `i` correctly. Texts are kept by the first model from the
/// most confident down; a threshold only falls between distinct confidences.
pub fn fit(
    confidence: &[f64],
    first_correct: &[bool],
    next_correct: &[bool],
    margin_points: f64,
) -> TradeOff {
    let n = confidence.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    let next_total = next_correct.iter().filter(|&&c| c).count() as f64;
    let target = next_total / n.max(1) as f64 - margin_points / 100.0;
    // correct[k]: correct answers when the k most confident stay with the first model.
    let mut correct = next_total;
    let mut best = TradeOff {
        margin_points,
        threshold: None,
        passed_on: 1.0,
        accuracy: next_total / n.max(1) as f64,
    };
    for (k, &i) in order.iter().enumerate() {
        correct += f64::from(u8::from(first_correct[i])) - f64::from(u8::from(next_correct[i]));
        let kept = k + 1;
        let boundary = order
            .get(kept)
            .is_none_or(|&j| confidence[j] < confidence[i]);
        let accuracy = correct / n as f64;
        if boundary && accuracy >= target - 1e-12 {
            best = TradeOff {
                margin_points,
                threshold: Some(confidence[i]),
                passed_on: (n - kept) as f64 / n as f64,
                accuracy,
            };
        }
    }
    best
}

/// Accuracy of the cascade at `threshold` on the examples.
pub fn accuracy_at(
    threshold: Option<f64>,
    confidence: &[f64],
    first_correct: &[bool],
    next_correct: &[bool],
) -> f64 {
    let n = confidence.len().max(1) as f64;
    let correct = confidence
        .iter()
        .zip(first_correct.iter().zip(next_correct))
        .filter(|(&c, (&first, &next))| match threshold {
            Some(t) if c >= t => first,
            _ => next,
        })
        .count();
    correct as f64 / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sure_and_right_first_model_keeps_what_it_is_sure_of() {
        // The first model is right exactly when it is confident.
        let confidence = [0.99, 0.95, 0.9, 0.6, 0.55];
        let first = [true, true, true, false, false];
        let next = [true, true, true, true, true];
        let fit = fit(&confidence, &first, &next, 0.0);
        assert_eq!(fit.threshold, Some(0.9));
        assert!((fit.passed_on - 0.4).abs() < 1e-12);
        assert!((fit.accuracy - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_wider_margin_passes_fewer_texts_on() {
        let confidence: Vec<f64> = (0..100).map(|i| 1.0 - i as f64 / 200.0).collect();
        let first: Vec<bool> = (0..100).map(|i| i % 10 != 9 || i < 50).collect();
        let next = vec![true; 100];
        let shares: Vec<f64> = [0.0, 1.0, 3.0, 10.0]
            .iter()
            .map(|&m| fit(&confidence, &first, &next, m).passed_on)
            .collect();
        assert!(shares.windows(2).all(|w| w[1] <= w[0]), "{shares:?}");
        for m in [0.0, 1.0, 3.0] {
            let f = fit(&confidence, &first, &next, m);
            assert!(f.accuracy >= 1.0 - m / 100.0 - 1e-12);
            assert_eq!(
                accuracy_at(f.threshold, &confidence, &first, &next),
                f.accuracy
            );
        }
    }

    #[test]
    fn ties_are_never_split_by_the_threshold() {
        let confidence = [0.9, 0.9, 0.9, 0.5];
        let first = [true, false, true, true];
        let next = [true, true, true, false];
        // Keeping only the first 0.9 would give 4/4 with the next model's
        // answers, but the three 0.9s stand or fall together.
        let fit = fit(&confidence, &first, &next, 0.0);
        assert_eq!(fit.threshold, Some(0.5));
        assert_eq!(
            accuracy_at(fit.threshold, &confidence, &first, &next),
            fit.accuracy
        );
    }

    #[test]
    fn nothing_is_kept_when_no_threshold_keeps_the_accuracy() {
        let fit = fit(&[0.9, 0.8], &[false, false], &[true, true], 0.0);
        assert_eq!(fit.threshold, None);
        assert_eq!(fit.passed_on, 1.0);
    }
}
