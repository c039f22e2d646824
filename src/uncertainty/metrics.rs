//! Classification and calibration metrics over predicted probability vectors.
//!
//! Every function takes one probability vector per example and the index of
//! its true class. Inputs come from models and files we do not control, so the
//! functions are total: an empty input gives zeros, a missing or non-finite
//! probability counts as 0, a target outside the vector counts as a class the
//! model gave no mass, and if `probs` and `targets` differ in length only the
//! pairs they share are scored. Nothing here panics or returns NaN, which
//! matters because reports are written as JSON, where NaN cannot round-trip.

use serde::{Deserialize, Serialize};

/// Number of equal-width bins used for the expected calibration error in
/// reports. Fifteen is the convention since Guo et al. (2017), so our numbers
/// compare with published ones.
pub const ECE_BINS: usize = 15;

/// Smallest probability fed to the logarithm, so a confident mistake costs
/// about 27.6 nats instead of infinity.
const NLL_FLOOR: f64 = 1e-12;

/// Precision, recall and F1 of one class, treating it as the positive class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassScores {
    /// Human-readable name of the class.
    pub label: String,
    /// Share of examples predicted as this class that truly are (0 if none predicted).
    pub precision: f64,
    /// Share of examples of this class that were predicted as it (0 if none exist).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of examples whose true class is this one.
    pub support: usize,
}

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Exclusive lower edge of the confidence range (inclusive for the first bin).
    pub lower: f64,
    /// Inclusive upper edge of the confidence range.
    pub upper: f64,
    /// Number of examples whose confidence falls in the bin.
    pub count: usize,
    /// Mean confidence (top probability) of those examples, 0 when empty.
    pub mean_confidence: f64,
    /// Share of those examples predicted correctly, 0 when empty.
    pub accuracy: f64,
}

/// Everything we report about a classifier on one labelled set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Number of examples scored.
    pub examples: usize,
    /// Share of examples whose most probable class is the true one.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores, so rare classes count as much as common ones.
    pub macro_f1: f64,
    /// Scores for each class, in class-index order.
    pub per_class: Vec<ClassScores>,
    /// Mean negative log-likelihood of the true class, in nats.
    pub nll: f64,
    /// Mean multi-class Brier score (0 is perfect, 2 is the worst).
    pub brier: f64,
    /// Expected calibration error over [`ECE_BINS`] equal-width bins.
    pub ece: f64,
    /// Counts indexed as `confusion[true_class][predicted_class]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Computes accuracy, per-class and macro F1, NLL, Brier, ECE and the
/// confusion matrix in one call.
///
/// The classes are those named in `labels` or given a probability, whichever
/// are more; classes without a label are named by their index. A target
/// outside them still counts as an example (always wrong) in the accuracy,
/// NLL, Brier and ECE, but has no row in the confusion matrix: sizing the
/// matrix by the largest target would let one corrupt label allocate without
/// bound.
pub fn classification_report(
    probs: &[Vec<f32>],
    targets: &[usize],
    labels: &[String],
) -> ClassificationReport {
    let widest = probs.iter().map(Vec::len).max().unwrap_or(0);
    let n_classes = labels.len().max(widest);
    let confusion = confusion_matrix(probs, targets, n_classes);
    let per_class: Vec<ClassScores> = (0..n_classes)
        .map(|class| class_scores(&confusion, class, class_label(labels, class)))
        .collect();
    let macro_f1 = mean(per_class.iter().map(|scores| scores.f1));
    ClassificationReport {
        examples: scored_pairs(probs, targets).count(),
        accuracy: accuracy(probs, targets),
        macro_f1,
        per_class,
        nll: negative_log_likelihood(probs, targets),
        brier: brier_score(probs, targets),
        ece: expected_calibration_error(probs, targets, ECE_BINS),
        confusion,
    }
}

/// Share of examples whose [`argmax`] equals the target; 0 for no examples.
pub fn accuracy(probs: &[Vec<f32>], targets: &[usize]) -> f64 {
    mean(scored_pairs(probs, targets).map(|(p, target)| f64::from(u8::from(argmax(p) == target))))
}

/// Index of the largest probability; ties go to the lowest index.
///
/// NaN entries are never chosen, and an empty or all-NaN vector gives 0, so a
/// malformed prediction still has a class rather than a panic.
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (index, &value) in p.iter().enumerate() {
        // Strict `>` keeps the first of equal maxima and skips NaN.
        if value > best_value {
            best = index;
            best_value = value;
        }
    }
    best
}

/// Mean of `-ln(max(p[target], 1e-12))`; 0 for no examples.
pub fn negative_log_likelihood(probs: &[Vec<f32>], targets: &[usize]) -> f64 {
    mean(scored_pairs(probs, targets).map(|(p, target)| -prob(p, target).max(NLL_FLOOR).ln()))
}

/// Mean over examples of `sum_k (p_k - onehot_k)^2`; 0 for no examples.
///
/// A target beyond the vector adds 1, the cost of giving the true class no mass.
pub fn brier_score(probs: &[Vec<f32>], targets: &[usize]) -> f64 {
    mean(scored_pairs(probs, targets).map(|(p, target)| {
        // When the true class has no entry, its one-hot term (0 - 1)^2 is still owed.
        let missing_target_cost = if target < p.len() { 0.0 } else { 1.0 };
        let squared_errors: f64 = (0..p.len())
            .map(|k| {
                let onehot = if k == target { 1.0 } else { 0.0 };
                (prob(p, k) - onehot).powi(2)
            })
            .sum();
        squared_errors + missing_target_cost
    }))
}

/// Groups examples into `n_bins` equal-width bins of confidence (the top
/// probability) and reports each bin's size, mean confidence and accuracy.
///
/// Bin `i` covers `(i/n, (i+1)/n]`, with a confidence of exactly 0 in the
/// first bin. Empty bins are kept, with zeros, so diagrams share an x-axis.
/// `n_bins == 0` gives no bins.
pub fn reliability_bins(
    probs: &[Vec<f32>],
    targets: &[usize],
    n_bins: usize,
) -> Vec<ReliabilityBin> {
    let mut totals = vec![BinTotals::default(); n_bins];
    for (p, target) in scored_pairs(probs, targets) {
        let confidence = confidence(p);
        if let Some(totals) = totals.get_mut(bin_index(confidence, n_bins)) {
            totals.add(confidence, argmax(p) == target);
        }
    }
    totals
        .iter()
        .enumerate()
        .map(|(index, totals)| {
            let (lower, upper) = bin_edges(index, n_bins);
            totals.to_bin(lower, upper)
        })
        .collect()
}

/// The points of a reliability diagram: `(mean confidence, accuracy)` of each
/// non-empty bin of [`reliability_bins`]. An empty bin has no confidence to be
/// placed at, so it is left out rather than drawn at 0.
pub fn reliability_points(probs: &[Vec<f32>], targets: &[usize], n_bins: usize) -> Vec<(f64, f64)> {
    reliability_bins(probs, targets, n_bins)
        .iter()
        .filter(|bin| bin.count > 0)
        .map(|bin| (bin.mean_confidence, bin.accuracy))
        .collect()
}

/// Expected calibration error: `sum_b (n_b / N) |accuracy_b - confidence_b|`
/// over `n_bins` equal-width bins (use [`ECE_BINS`] by convention).
///
/// 0 for no examples or no bins.
pub fn expected_calibration_error(probs: &[Vec<f32>], targets: &[usize], n_bins: usize) -> f64 {
    weighted_gap(&reliability_bins(probs, targets, n_bins))
}

/// Adaptive calibration error: like [`expected_calibration_error`] but with
/// equal-mass bins, so the score is not dominated by a few crowded bins near
/// confidence 1, where most examples of a trained model sit.
///
/// Examples are sorted by confidence and cut into `n_bins` consecutive groups
/// whose sizes differ by at most one (the first groups take the remainder).
/// With more bins than examples, each example is its own group.
pub fn adaptive_calibration_error(probs: &[Vec<f32>], targets: &[usize], n_bins: usize) -> f64 {
    let mut scored: Vec<(f64, bool)> = scored_pairs(probs, targets)
        .map(|(p, target)| (confidence(p), argmax(p) == target))
        .collect();
    if scored.is_empty() || n_bins == 0 {
        return 0.0;
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Groups past the number of examples would be empty and weigh nothing, so
    // they are not built (which also keeps a huge `n_bins` from allocating).
    let groups = n_bins.min(scored.len());
    let base = scored.len() / groups;
    let remainder = scored.len() % groups;
    let mut bins = Vec::with_capacity(groups);
    let mut rest = scored.as_slice();
    for group in 0..groups {
        let size = base + usize::from(group < remainder);
        let (members, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let mut totals = BinTotals::default();
        for &(confidence, correct) in members {
            totals.add(confidence, correct);
        }
        let lower = members.first().map_or(0.0, |member| member.0);
        let upper = members.last().map_or(0.0, |member| member.0);
        bins.push(totals.to_bin(lower, upper));
    }
    weighted_gap(&bins)
}

/// Running sums for one bin while examples are assigned.
#[derive(Debug, Clone, Default)]
struct BinTotals {
    count: usize,
    confidence_sum: f64,
    correct: usize,
}

impl BinTotals {
    fn add(&mut self, confidence: f64, correct: bool) {
        self.count += 1;
        self.confidence_sum += confidence;
        self.correct += usize::from(correct);
    }

    fn to_bin(&self, lower: f64, upper: f64) -> ReliabilityBin {
        ReliabilityBin {
            lower,
            upper,
            count: self.count,
            mean_confidence: ratio(self.confidence_sum, self.count as f64),
            accuracy: ratio(self.correct as f64, self.count as f64),
        }
    }
}

/// `sum_b (n_b / N) |accuracy_b - confidence_b|`, the calibration gap weighted by bin size.
fn weighted_gap(bins: &[ReliabilityBin]) -> f64 {
    let total: usize = bins.iter().map(|bin| bin.count).sum();
    let weighted: f64 = bins
        .iter()
        .map(|bin| bin.count as f64 * (bin.accuracy - bin.mean_confidence).abs())
        .sum();
    ratio(weighted, total as f64)
}

/// Edges of bin `index` out of `n_bins` equal-width bins over [0, 1].
fn bin_edges(index: usize, n_bins: usize) -> (f64, f64) {
    let n = n_bins as f64;
    (index as f64 / n, (index + 1) as f64 / n)
}

/// The bin whose `(lower, upper]` range holds `confidence`.
///
/// `ceil(c * n) - 1` can be off by one where `c * n` rounds across an integer,
/// so the guess is corrected against the very edges [`bin_edges`] reports;
/// the bin an example lands in then always matches the bin's stated range.
fn bin_index(confidence: f64, n_bins: usize) -> usize {
    if n_bins == 0 {
        return 0;
    }
    let last = n_bins - 1;
    let guess = ((confidence * n_bins as f64).ceil() as usize).saturating_sub(1);
    let mut index = guess.min(last);
    if index > 0 && confidence <= bin_edges(index, n_bins).0 {
        index -= 1;
    } else if index < last && confidence > bin_edges(index, n_bins).1 {
        index += 1;
    }
    index
}

/// Counts of `(true class, predicted class)` pairs, sized `n_classes` square.
fn confusion_matrix(probs: &[Vec<f32>], targets: &[usize], n_classes: usize) -> Vec<Vec<usize>> {
    let mut confusion = vec![vec![0; n_classes]; n_classes];
    for (p, target) in scored_pairs(probs, targets) {
        if let Some(cell) = confusion
            .get_mut(target)
            .and_then(|row| row.get_mut(argmax(p)))
        {
            *cell += 1;
        }
    }
    confusion
}

/// One-vs-rest precision, recall and F1 of `class`, read off the confusion matrix.
fn class_scores(confusion: &[Vec<usize>], class: usize, label: String) -> ClassScores {
    let true_positives = confusion
        .get(class)
        .and_then(|row| row.get(class))
        .copied()
        .unwrap_or(0);
    let support: usize = confusion.get(class).map_or(0, |row| row.iter().sum());
    let predicted: usize = confusion.iter().filter_map(|row| row.get(class)).sum();
    let precision = ratio(true_positives as f64, predicted as f64);
    let recall = ratio(true_positives as f64, support as f64);
    ClassScores {
        label,
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
        support,
    }
}

/// The caller's label for `class`, or its index when the caller gave none.
fn class_label(labels: &[String], class: usize) -> String {
    labels
        .get(class)
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

/// The `(probabilities, target)` pairs that are scored: those present in both inputs.
fn scored_pairs<'a>(
    probs: &'a [Vec<f32>],
    targets: &'a [usize],
) -> impl Iterator<Item = (&'a [f32], usize)> + 'a {
    probs.iter().map(Vec::as_slice).zip(targets.iter().copied())
}

/// Probability of class `k`, with missing and non-finite entries read as 0.
pub(super) fn prob(p: &[f32], k: usize) -> f64 {
    p.get(k)
        .map(|&value| f64::from(value))
        .filter(|value| value.is_finite())
        .unwrap_or(0.0)
}

/// The top probability, clamped to [0, 1] so it always lands in a bin.
fn confidence(p: &[f32]) -> f64 {
    prob(p, argmax(p)).clamp(0.0, 1.0)
}

/// `numerator / denominator`, or 0 when the denominator is 0 (the 0/0 convention).
pub(super) fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// Arithmetic mean, 0 for an empty sequence.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    ratio(sum, count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-9;

    fn assert_close(actual: f64, expected: f64) {
        crate::uncertainty::test_support::assert_within(actual, expected, EPS);
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    /// Confidences 1.0 (right), 0.875 (wrong), 0.75 (right), 0.625 (wrong):
    /// all exactly representable, so bin edges are unambiguous.
    fn four_examples() -> (Vec<Vec<f32>>, Vec<usize>) {
        let probs = vec![
            vec![1.0, 0.0],
            vec![0.875, 0.125],
            vec![0.25, 0.75],
            vec![0.375, 0.625],
        ];
        (probs, vec![0, 1, 1, 0])
    }

    #[test]
    fn a_perfect_predictor_scores_perfectly() {
        let probs = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]];
        let targets = [0, 1, 0];
        let report = classification_report(&probs, &targets, &labels(&["neg", "pos"]));
        assert_eq!(report.examples, 3);
        assert_close(report.accuracy, 1.0);
        assert_close(report.macro_f1, 1.0);
        assert_close(report.nll, 0.0);
        assert_close(report.brier, 0.0);
        assert_close(report.ece, 0.0);
        assert_eq!(report.confusion, vec![vec![2, 0], vec![0, 1]]);
        assert_eq!(report.per_class[0].label, "neg");
        assert_eq!(report.per_class[1].support, 1);
    }

    #[test]
    fn a_confidently_wrong_predictor_scores_worst() {
        let probs = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        let targets = [0, 1];
        let report = classification_report(&probs, &targets, &labels(&["a", "b"]));
        assert_close(report.accuracy, 0.0);
        assert_close(report.macro_f1, 0.0);
        assert_close(report.nll, -(1e-12f64).ln());
        assert_close(report.brier, 2.0);
        assert_close(report.ece, 1.0);
        assert_eq!(report.confusion, vec![vec![0, 1], vec![1, 0]]);
        assert!(report
            .per_class
            .iter()
            .all(|c| c.precision == 0.0 && c.recall == 0.0));
    }

    #[test]
    fn argmax_breaks_ties_towards_the_lowest_index() {
        assert_eq!(argmax(&[0.4, 0.4, 0.2]), 0);
        assert_eq!(argmax(&[0.1, 0.45, 0.45]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        // A tie counts as predicting the first class, so this one is wrong.
        assert_close(accuracy(&[vec![0.5, 0.5]], &[1]), 0.0);
    }

    #[test]
    fn argmax_survives_empty_and_nan_vectors() {
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NAN, 0.3, 0.7]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
    }

    #[test]
    fn nll_and_brier_match_hand_computation() {
        let probs = vec![vec![0.5, 0.25, 0.25], vec![0.25, 0.5, 0.25]];
        let targets = [0, 2];
        // -(ln 0.5 + ln 0.25) / 2
        assert_close(
            negative_log_likelihood(&probs, &targets),
            -(0.5f64.ln() + 0.25f64.ln()) / 2.0,
        );
        // (0.25 + 0.0625 + 0.0625) and (0.0625 + 0.25 + 0.5625), averaged.
        assert_close(brier_score(&probs, &targets), (0.375 + 0.875) / 2.0);
    }

    #[test]
    fn a_three_class_confusion_matrix_gives_hand_computed_scores() {
        let class = |k: usize| {
            let mut p = vec![0.1f32; 3];
            p[k] = 0.8;
            p
        };
        let predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2];
        let targets = [0, 0, 0, 1, 1, 2, 2, 2, 2];
        let probs: Vec<Vec<f32>> = predicted.iter().map(|&k| class(k)).collect();
        let report = classification_report(&probs, &targets, &labels(&["x", "y", "z"]));

        assert_eq!(
            report.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![1, 0, 3]]
        );
        assert_close(report.accuracy, 6.0 / 9.0);
        let expected = [(2.0 / 3.0, 2.0 / 3.0, 3), (0.5, 0.5, 2), (0.75, 0.75, 4)];
        for (scores, (precision, recall, support)) in report.per_class.iter().zip(expected) {
            assert_close(scores.precision, precision);
            assert_close(scores.recall, recall);
            assert_close(scores.f1, precision); // precision == recall here
            assert_eq!(scores.support, support);
        }
        assert_close(report.macro_f1, (2.0 / 3.0 + 0.5 + 0.75) / 3.0);
    }

    #[test]
    fn a_class_never_predicted_has_zero_precision_not_nan() {
        let probs = vec![vec![0.9, 0.1], vec![0.8, 0.2]];
        let report = classification_report(&probs, &[0, 1], &labels(&["a", "b"]));
        let b = &report.per_class[1];
        assert_eq!((b.precision, b.recall, b.f1, b.support), (0.0, 0.0, 0.0, 1));
        // Class a: precision 1/2, recall 1, F1 2/3; class b: 0.
        assert_close(report.macro_f1, (2.0 / 3.0) / 2.0);
    }

    #[test]
    fn a_target_outside_the_classes_is_wrong_but_not_in_the_matrix() {
        let probs = vec![vec![0.75, 0.25]];
        let report = classification_report(&probs, &[usize::MAX], &labels(&["a"]));
        assert_eq!(report.examples, 1);
        assert_eq!(report.per_class.len(), 2);
        assert_eq!(report.per_class[1].label, "1");
        assert_eq!(report.confusion, vec![vec![0, 0], vec![0, 0]]);
        assert_close(report.accuracy, 0.0);
        assert_close(report.brier, 0.5625 + 0.0625 + 1.0);
    }

    #[test]
    fn empty_input_gives_zeros() {
        let report = classification_report(&[], &[], &[]);
        assert_eq!(report.examples, 0);
        for value in [
            report.accuracy,
            report.macro_f1,
            report.nll,
            report.brier,
            report.ece,
        ] {
            assert_eq!(value, 0.0);
        }
        assert!(report.confusion.is_empty());
        assert_eq!(adaptive_calibration_error(&[], &[], 10), 0.0);
        let bins = reliability_bins(&[], &[], 5);
        assert_eq!(bins.len(), 5);
        assert!(bins.iter().all(|b| b.count == 0 && b.accuracy == 0.0));
    }

    #[test]
    fn zero_bins_give_zero_error() {
        let (probs, targets) = four_examples();
        assert!(reliability_bins(&probs, &targets, 0).is_empty());
        assert_eq!(expected_calibration_error(&probs, &targets, 0), 0.0);
        assert_eq!(adaptive_calibration_error(&probs, &targets, 0), 0.0);
    }

    #[test]
    fn a_single_bin_holds_everything() {
        let (probs, targets) = four_examples();
        let bins = reliability_bins(&probs, &targets, 1);
        assert_eq!(bins.len(), 1);
        assert_eq!((bins[0].lower, bins[0].upper, bins[0].count), (0.0, 1.0, 4));
        assert_close(bins[0].mean_confidence, 0.8125);
        assert_close(bins[0].accuracy, 0.5);
        assert_close(expected_calibration_error(&probs, &targets, 1), 0.3125);
    }

    #[test]
    fn all_examples_can_fall_in_one_of_many_bins() {
        let (probs, targets) = four_examples();
        // With 2 bins every confidence is above 0.5.
        let bins = reliability_bins(&probs, &targets, 2);
        assert_eq!(bins[0].count, 0);
        assert_eq!((bins[0].mean_confidence, bins[0].accuracy), (0.0, 0.0));
        assert_eq!(bins[1].count, 4);
        assert_close(expected_calibration_error(&probs, &targets, 2), 0.3125);
    }

    #[test]
    fn reliability_points_leave_out_the_empty_bins() {
        let (probs, targets) = four_examples();
        // Of 2 bins only (0.5, 1] holds examples: confidence 0.8125, half right.
        assert_eq!(reliability_points(&probs, &targets, 2), vec![(0.8125, 0.5)]);
        assert!(reliability_points(&[], &[], 5).is_empty());
    }

    #[test]
    fn bin_edges_are_upper_inclusive_and_zero_goes_first() {
        let probs = vec![vec![0.0], vec![0.5, 0.5], vec![0.75, 0.25], vec![1.0]];
        let bins = reliability_bins(&probs, &[0, 0, 0, 0], 4);
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        // 0 -> first bin; 0.5 -> (0.25, 0.5]; 0.75 -> (0.5, 0.75]; 1 -> (0.75, 1].
        assert_eq!(counts, vec![1, 1, 1, 1]);
        assert_close(bins[1].upper, 0.5);
    }

    #[test]
    fn ece_of_four_examples_matches_hand_computation() {
        let (probs, targets) = four_examples();
        // 4 bins: (0.75, 1] holds 1.0 and 0.875: |0.5 - 0.9375| * 2/4 = 0.21875;
        // (0.5, 0.75] holds 0.75 and 0.625: |0.5 - 0.6875| * 2/4 = 0.09375.
        assert_close(expected_calibration_error(&probs, &targets, 4), 0.3125);
        // 15 bins separate all four: (|1 - 1| + |0 - 0.875| + |1 - 0.75| + |0 - 0.625|) / 4.
        assert_close(
            expected_calibration_error(&probs, &targets, ECE_BINS),
            0.4375,
        );
    }

    #[test]
    fn adaptive_ece_uses_equal_mass_bins() {
        let (probs, targets) = four_examples();
        // Sorted: 0.625 (wrong), 0.75 (right) | 0.875 (wrong), 1.0 (right).
        // |0.5 - 0.6875| / 2 + |0.5 - 0.9375| / 2.
        assert_close(adaptive_calibration_error(&probs, &targets, 2), 0.3125);
        // Three examples into two bins: sizes 2 and 1.
        // {0.625 wrong, 0.75 right}: |0.5 - 0.6875| * 2/3; {1.0 right}: 0.
        let three = [probs[0].clone(), probs[2].clone(), probs[3].clone()];
        assert_close(adaptive_calibration_error(&three, &[0, 1, 0], 2), 0.125);
        // More bins than examples: one example per bin.
        assert_close(adaptive_calibration_error(&probs, &targets, 10), 0.4375);
        assert_close(
            adaptive_calibration_error(&probs, &targets, usize::MAX),
            0.4375,
        );
    }

    #[test]
    fn mismatched_lengths_score_only_shared_pairs() {
        let (probs, _) = four_examples();
        assert_close(accuracy(&probs, &[0]), 1.0);
        assert_eq!(classification_report(&probs, &[0, 1], &[]).examples, 2);
    }

    #[test]
    fn non_finite_probabilities_never_make_nan() {
        let probs = vec![vec![f32::NAN, f32::INFINITY], vec![f32::NAN, 0.5]];
        let report = classification_report(&probs, &[0, 1], &labels(&["a", "b"]));
        let values = [
            report.accuracy,
            report.nll,
            report.brier,
            report.ece,
            report.macro_f1,
        ];
        assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
        assert!(adaptive_calibration_error(&probs, &[0, 1], 3).is_finite());
    }

    #[test]
    fn reports_round_trip_through_json() {
        let (probs, targets) = four_examples();
        let report = classification_report(&probs, &targets, &labels(&["a", "b"]));
        let json = serde_json::to_string(&report).unwrap();
        let back: ClassificationReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.confusion, report.confusion);
        assert_close(back.ece, report.ece);
    }
}
