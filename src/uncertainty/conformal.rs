//! Split-conformal prediction sets (Vovk et al., 2005; Angelopoulos & Bates, 2021).
//!
//! On a calibration split the nonconformity of each example is
//! `1 − p(true label)`. With `n` calibration scores, the threshold is the
//! `⌈(n+1)(1−α)⌉`-th smallest; the set of a new input is every label whose
//! nonconformity is at most the threshold. If calibration and test examples
//! are exchangeable, a set holds the true label with probability at least
//! `1 − α`, and (when scores do not tie) at most `1 − α + 1/(n+1)`.
//!
//! Like [`super::metrics`], the functions never panic: a missing or non-finite
//! probability counts as 0, and a NaN calibration score reads as +∞ (the most
//! nonconforming), which can only widen the sets and so keeps the guarantee.

use super::metrics::{argmax, prob};
use super::selective::smallest_count_reaching;

/// The conformal threshold at miscoverage `alpha`: the `⌈(n+1)(1−α)⌉`-th
/// smallest of the `n` calibration scores (the finite-sample correction).
///
/// Returns `None` when `alpha` is not strictly between 0 and 1 (or is NaN).
/// Returns `Some(f64::INFINITY)`, meaning "every label", when the rank exceeds
/// `n`: the calibration split is too small for that `alpha` (fewer than
/// `1/α − 1` examples, including none at all). Ties need no special rule: the
/// rank picks a value, and sets include every label at most that value.
pub fn conformal_threshold(calibration_scores: &[f64], alpha: f64) -> Option<f64> {
    if alpha.is_nan() || alpha <= 0.0 || alpha >= 1.0 {
        return None;
    }
    let n = calibration_scores.len();
    // The smallest k with k / (n+1) ≥ 1 − α, i.e. ⌈(n+1)(1−α)⌉ without the
    // product's rounding; at least 1 because α < 1.
    let rank = smallest_count_reaching(1.0 - alpha, n + 1);
    if rank > n {
        return Some(f64::INFINITY);
    }
    let mut sorted: Vec<f64> = calibration_scores
        .iter()
        .map(|&s| if s.is_nan() { f64::INFINITY } else { s })
        .collect();
    sorted.sort_by(f64::total_cmp);
    sorted.get(rank.saturating_sub(1)).copied()
}

/// Nonconformity of `label` under one probability vector: `1 − p[label]`,
/// with a missing or non-finite probability read as 0 (score 1).
pub fn nonconformity(probs: &[f32], label: usize) -> f64 {
    1.0 - prob(probs, label)
}

/// The prediction set: every label whose [`nonconformity`] is at most
/// `threshold`, most probable first (equal probabilities in label order).
///
/// The theory allows an empty set (a threshold below `1 − max p`); we return
/// the [`argmax`] alone instead, since a caller always needs some answer and
/// adding a label can only raise coverage. Only an empty `probs` gives an
/// empty set. A threshold of +∞ gives every label.
pub fn prediction_set(probs: &[f32], threshold: f64) -> Vec<usize> {
    let mut set: Vec<usize> = (0..probs.len())
        .filter(|&label| nonconformity(probs, label) <= threshold)
        .collect();
    if set.is_empty() && !probs.is_empty() {
        set.push(argmax(probs));
    }
    // Stable, so equal scores stay in label order.
    set.sort_by(|&a, &b| nonconformity(probs, a).total_cmp(&nonconformity(probs, b)));
    set
}

/// Share of sets holding their target, and mean set size, over the pairs
/// present in both inputs; `(0, 0)` when there are none.
pub fn coverage_and_size(sets: &[Vec<usize>], targets: &[usize]) -> (f64, f64) {
    let pairs = sets.len().min(targets.len());
    if pairs == 0 {
        return (0.0, 0.0);
    }
    let (covered, total_size) =
        sets.iter()
            .zip(targets)
            .fold((0usize, 0usize), |(covered, size), (set, target)| {
                (
                    covered + usize::from(set.contains(target)),
                    size + set.len(),
                )
            });
    (
        covered as f64 / pairs as f64,
        total_size as f64 / pairs as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::softmax;
    use crate::rng::SeededRng;
    use crate::uncertainty::test_support::assert_close;

    #[test]
    fn nonconformity_is_one_minus_the_label_probability() {
        assert_close(nonconformity(&[0.25, 0.75], 1), 0.25);
        assert_close(nonconformity(&[0.25, 0.75], 0), 0.75);
        assert_close(nonconformity(&[0.25, 0.75], 5), 1.0);
        assert_close(nonconformity(&[f32::NAN, 1.0], 0), 1.0);
        assert_close(nonconformity(&[], 0), 1.0);
    }

    #[test]
    fn the_threshold_is_the_corrected_rank_of_the_calibration_scores() {
        let scores = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6];
        // n = 9, α = 0.2: ⌈10 · 0.8⌉ = 8th smallest.
        assert_eq!(conformal_threshold(&scores, 0.2), Some(0.8));
        // α = 0.5: ⌈10 · 0.5⌉ = 5th smallest.
        assert_eq!(conformal_threshold(&scores, 0.5), Some(0.5));
        // n = 4, α = 0.5: ⌈2.5⌉ = 3rd smallest.
        assert_eq!(conformal_threshold(&[0.4, 0.1, 0.3, 0.2], 0.5), Some(0.3));
        // α = 0.1 with n = 9: ⌈9⌉ = 9th, the largest.
        assert_eq!(conformal_threshold(&scores, 0.1), Some(0.9));
    }

    #[test]
    fn too_few_calibration_scores_give_every_label() {
        // n = 1, α = 0.1: ⌈1.8⌉ = 2 > 1.
        assert_eq!(conformal_threshold(&[0.3], 0.1), Some(f64::INFINITY));
        // n = 1, α = 0.5: ⌈1⌉ = 1, the single score.
        assert_eq!(conformal_threshold(&[0.3], 0.5), Some(0.3));
        // n = 8, α = 0.1: ⌈8.1⌉ = 9 > 8.
        assert_eq!(conformal_threshold(&[0.5; 8], 0.1), Some(f64::INFINITY));
        assert_eq!(conformal_threshold(&[], 0.5), Some(f64::INFINITY));
        assert_eq!(
            prediction_set(&[0.5, 0.25, 0.25], f64::INFINITY),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn alpha_outside_the_open_unit_interval_is_rejected() {
        for alpha in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert_eq!(conformal_threshold(&[0.1, 0.2], alpha), None, "{alpha}");
        }
    }

    #[test]
    fn tied_and_nan_calibration_scores_are_ranked_by_value() {
        // ⌈5 · 0.5⌉ = 3rd smallest of 0.3, 0.3, 0.3, 0.5.
        assert_eq!(conformal_threshold(&[0.5, 0.3, 0.3, 0.3], 0.5), Some(0.3));
        // A label scoring exactly the threshold is in the set: 1 − 0.375 = 0.625.
        assert_eq!(prediction_set(&[0.5, 0.375, 0.125], 0.625), vec![0, 1]);
        // NaN sorts as +∞: ⌈5 · 0.2⌉ = 1st smallest stays 0.1, 4th is +∞.
        let scores = [f64::NAN, 0.1, 0.2, 0.3];
        assert_eq!(conformal_threshold(&scores, 0.8), Some(0.1));
        assert_eq!(conformal_threshold(&scores, 0.2), Some(f64::INFINITY));
    }

    #[test]
    fn prediction_sets_hold_labels_up_to_the_threshold_most_probable_first() {
        let probs = [0.5, 0.25, 0.125, 0.125];
        // 1 − p ≤ 0.75 means p ≥ 0.25.
        assert_eq!(prediction_set(&probs, 0.75), vec![0, 1]);
        // p ≥ 0.125: every label, the tied pair in label order.
        assert_eq!(prediction_set(&probs, 0.875), vec![0, 1, 2, 3]);
        assert_eq!(prediction_set(&[0.125, 0.5, 0.375], 0.9), vec![1, 2, 0]);
    }

    #[test]
    fn an_empty_prediction_set_falls_back_to_the_argmax() {
        assert_eq!(prediction_set(&[0.125, 0.5, 0.375], 0.1), vec![1]);
        assert_eq!(prediction_set(&[0.5, 0.5], f64::NAN), vec![0]);
        assert!(prediction_set(&[], 0.5).is_empty());
    }

    #[test]
    fn coverage_and_size_match_hand_computation() {
        let sets = vec![vec![0], vec![1, 2], vec![0, 1, 2]];
        let (coverage, size) = coverage_and_size(&sets, &[0, 0, 2]);
        assert_close(coverage, 2.0 / 3.0);
        assert_close(size, 2.0);
        // Only the shared pair is scored.
        assert_eq!(coverage_and_size(&sets, &[1]), (0.0, 1.0));
        assert_eq!(coverage_and_size(&[], &[]), (0.0, 0.0));
        assert_eq!(coverage_and_size(&[vec![3]], &[3]), (1.0, 1.0));
    }

    /// One synthetic example: a 4-class probability vector and a label drawn
    /// from a softer distribution than the model's, so the model is
    /// overconfident (the guarantee must not depend on calibration).
    fn synthetic_example(rng: &mut SeededRng) -> (Vec<f32>, usize) {
        let logits: Vec<f32> = (0..4).map(|_| (2.0 * rng.normal()) as f32).collect();
        let truth = softmax(&logits, 2.0);
        let u = rng.next_f64();
        let mut cumulative = 0.0;
        let label = truth
            .iter()
            .position(|&p| {
                cumulative += f64::from(p);
                u < cumulative
            })
            .unwrap_or(truth.len() - 1);
        (softmax(&logits, 1.0), label)
    }

    /// Average coverage of split conformal over 200 trials, each calibrating
    /// on 100 fresh examples and testing on 1000.
    ///
    /// With continuous scores the coverage of one trial, given its
    /// calibration split, is Beta(k, n + 1 − k) with k = ⌈(n+1)(1−α)⌉ = 91:
    /// mean 91/101 ≈ 0.9010, inside [0.9, 0.9099], and standard deviation
    /// ≈ 0.030 (plus ≈ 0.009 from 1000 test draws). The mean of 200 trials
    /// thus has a standard error of ≈ 0.0022, a quarter of the width of the
    /// theoretical interval, so the test allows the interval widened by three
    /// standard errors, estimated from the trials themselves (and checks that
    /// estimate is as small as the theory says, so the test stays sharp).
    #[test]
    fn coverage_on_exchangeable_data_stays_within_the_theoretical_bounds() {
        const TRIALS: usize = 200;
        const CALIBRATION: usize = 100;
        const TEST: usize = 1000;
        const ALPHA: f64 = 0.1;
        let mut rng = SeededRng::new(20_240_601);
        let mut coverages = Vec::with_capacity(TRIALS);
        let mut sizes = Vec::with_capacity(TRIALS);
        for _ in 0..TRIALS {
            let calibration: Vec<f64> = (0..CALIBRATION)
                .map(|_| {
                    let (probs, label) = synthetic_example(&mut rng);
                    nonconformity(&probs, label)
                })
                .collect();
            let threshold = conformal_threshold(&calibration, ALPHA).unwrap();
            let (sets, targets): (Vec<Vec<usize>>, Vec<usize>) = (0..TEST)
                .map(|_| {
                    let (probs, label) = synthetic_example(&mut rng);
                    (prediction_set(&probs, threshold), label)
                })
                .unzip();
            let (coverage, size) = coverage_and_size(&sets, &targets);
            coverages.push(coverage);
            sizes.push(size);
        }
        let trials = TRIALS as f64;
        let mean = coverages.iter().sum::<f64>() / trials;
        let variance = coverages.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (trials - 1.0);
        let standard_error = (variance / trials).sqrt();
        let lower = 1.0 - ALPHA;
        let upper = 1.0 - ALPHA + 1.0 / (CALIBRATION as f64 + 1.0);
        assert!(standard_error < 0.004, "standard error {standard_error}");
        assert!(
            mean >= lower - 3.0 * standard_error && mean <= upper + 3.0 * standard_error,
            "mean coverage {mean} outside [{lower}, {upper}] ± 3 × {standard_error}"
        );
        // Sets are informative: bigger than a single label, smaller than all four.
        let mean_size = sizes.iter().sum::<f64>() / trials;
        assert!(mean_size > 1.0 && mean_size < 4.0, "mean size {mean_size}");
    }
}
