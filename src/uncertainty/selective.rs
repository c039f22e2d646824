//! Selective prediction and out-of-distribution detection: how well an
//! uncertainty score separates the examples worth trusting from the rest.
//!
//! Selective prediction ranks examples by uncertainty, keeps the most
//! confident and measures the error rate (risk) among those kept. Detection
//! treats a score as a detector of a positive class (for OOD detection: the
//! uncertainty of out-of-distribution examples as positives, that of
//! in-distribution examples as negatives) and measures it with AUROC, AUPR
//! and the false-positive rate at a fixed true-positive rate.
//!
//! Conventions, shared with [`super::metrics`]:
//! - The functions are total: nothing panics or returns NaN. Empty inputs give
//!   the value each function documents; if `uncertainty` and `correct` differ
//!   in length only the pairs they share are scored.
//! - A NaN score reads as +∞: an example whose score could not be computed is
//!   the first to be rejected and the first to be flagged as out of
//!   distribution, never silently trusted.
//! - Ties are decided by value, never by input order: examples with equal
//!   scores are kept or flagged together, and where a count falls inside a
//!   tied group the risk is the expectation over a uniformly random order of
//!   the group (the same rule that makes a tie count 1/2 in the AUROC).

use serde::{Deserialize, Serialize};

use super::metrics::{argmax, ratio};
use super::McSummary;

/// A per-example uncertainty (or confidence) score read off an [`McSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Probability of the most probable class of the mean distribution;
    /// higher means more confident.
    MaxProbability,
    /// Entropy of the mean distribution (total uncertainty, nats); higher
    /// means more uncertain.
    PredictiveEntropy,
    /// Predictive minus expected entropy (epistemic uncertainty, BALD);
    /// higher means more uncertain.
    MutualInformation,
    /// Best minus second-best mean probability; higher means more confident.
    Margin,
}

impl Score {
    /// Every score, in a fixed order for reports.
    pub const ALL: [Score; 4] = [
        Score::MaxProbability,
        Score::PredictiveEntropy,
        Score::MutualInformation,
        Score::Margin,
    ];

    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Score::MaxProbability => "max_probability",
            Score::PredictiveEntropy => "predictive_entropy",
            Score::MutualInformation => "mutual_information",
            Score::Margin => "margin",
        }
    }

    /// Whether a higher value means more uncertain (entropy, mutual
    /// information) rather than more confident (max probability, margin).
    pub fn higher_is_more_uncertain(self) -> bool {
        match self {
            Score::PredictiveEntropy | Score::MutualInformation => true,
            Score::MaxProbability | Score::Margin => false,
        }
    }

    /// The raw value of this score for one summarised input.
    pub fn value(self, summary: &McSummary) -> f64 {
        match self {
            Score::MaxProbability => summary
                .mean
                .get(argmax(&summary.mean))
                .map_or(0.0, |&p| f64::from(p)),
            Score::PredictiveEntropy => summary.predictive_entropy,
            Score::MutualInformation => summary.mutual_information,
            Score::Margin => summary.margin,
        }
    }

    /// Turns a raw value of this score into an uncertainty, where higher
    /// always means more uncertain.
    ///
    /// Confidence scores are negated rather than subtracted from 1: negation
    /// reverses the order exactly, while `1 - x` rounds distinct tiny values
    /// (a margin of 1e-20 and one of 2e-20) to the same number and would
    /// invent ties. Every metric here depends only on the order.
    pub fn as_uncertainty(self, value: f64) -> f64 {
        if self.higher_is_more_uncertain() {
            value
        } else {
            -value
        }
    }

    /// [`Score::as_uncertainty`] of [`Score::value`]: the uncertainty of one
    /// summarised input under this score.
    pub fn uncertainty(self, summary: &McSummary) -> f64 {
        self.as_uncertainty(self.value(summary))
    }
}

impl std::str::FromStr for Score {
    type Err = String;

    /// Parses a [`Score::name`].
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Score::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown score '{name}'; expected one of max_probability, predictive_entropy, mutual_information, margin"
                )
            })
    }
}

/// The risk–coverage curve: examples sorted by uncertainty, most confident
/// first, and for each number `k` kept the point `(k / n, errors among the k / k)`.
///
/// Points are emitted only at the boundaries between distinct uncertainty
/// values, since examples with equal uncertainty are kept or rejected
/// together; with no ties there are `n` points. The result does not depend
/// on the input order. Empty input gives no points.
pub fn risk_coverage_curve(uncertainty: &[f64], correct: &[bool]) -> Vec<(f64, f64)> {
    let groups = tie_groups(uncertainty, correct);
    let n = groups.iter().map(TieGroup::size).sum::<usize>() as f64;
    let (mut kept, mut errors) = (0usize, 0usize);
    groups
        .iter()
        .map(|group| {
            kept += group.size();
            errors += group.misses;
            (kept as f64 / n, errors as f64 / kept as f64)
        })
        .collect()
}

/// Area under the risk–coverage curve: the mean of the risk over all `n`
/// coverage levels `k / n`, `k = 1..=n` (lower is better).
///
/// Where `k` falls inside a group of tied uncertainties, its risk is the
/// expected risk under a uniformly random order of the group:
/// `(errors before the group + j · group errors / group size) / k` for the
/// `j`-th level inside the group. The AURC is therefore the mean AURC over
/// all ways of breaking the ties, agrees with [`risk_at_coverage`] at every
/// level, and equals the curve's risk at each of its points. With no ties it
/// is the usual `(1/n) Σ_k risk(k)`. Empty input gives 0.
pub fn aurc(uncertainty: &[f64], correct: &[bool]) -> f64 {
    let groups = tie_groups(uncertainty, correct);
    let (mut before, mut errors_before, mut sum) = (0usize, 0usize, 0.0);
    for group in &groups {
        for j in 1..=group.size() {
            sum += tied_risk(errors_before, group, j, before + j);
        }
        before += group.size();
        errors_before += group.misses;
    }
    ratio(sum, before as f64)
}

/// The risk (error rate) when keeping the most confident fraction `coverage`
/// of the examples.
///
/// The number kept is the smallest `k` with `k / n ≥ coverage` (so 0.95 of
/// 20 keeps 19, and 0.5 of 3 keeps 2). If the `k`-th example is tied with
/// examples beyond it, the risk is the expectation over a random order of the
/// tied group, as in [`aurc`]. `coverage` is clamped to [0, 1], NaN reads as
/// 0, and keeping nothing (or empty input) gives 0.
pub fn risk_at_coverage(uncertainty: &[f64], correct: &[bool], coverage: f64) -> f64 {
    let groups = tie_groups(uncertainty, correct);
    let n = groups.iter().map(TieGroup::size).sum();
    let kept = smallest_count_reaching(coverage, n);
    let (mut before, mut errors_before) = (0usize, 0usize);
    for group in &groups {
        if kept <= before + group.size() {
            return tied_risk(errors_before, group, kept - before, kept);
        }
        before += group.size();
        errors_before += group.misses;
    }
    0.0
}

/// Area under the ROC curve: the probability that a positive scores higher
/// than a negative, a tie counting 1/2 (the Mann–Whitney U over `p · q`).
///
/// Higher scores mean more positive. O(n log n): ties are counted per group of
/// equal scores rather than per pair. With no positives or no negatives the
/// ranking is undefined and the result is 0.5, the value of a chance ranking.
pub fn auroc(scores_positive: &[f64], scores_negative: &[f64]) -> f64 {
    let (p, q) = (scores_positive.len(), scores_negative.len());
    if p == 0 || q == 0 {
        return 0.5;
    }
    let (mut negatives_above, mut wins) = (0usize, 0.0);
    for group in detection_groups(scores_positive, scores_negative) {
        let negatives_below = q - negatives_above - group.misses;
        wins += group.hits as f64 * (negatives_below as f64 + 0.5 * group.misses as f64);
        negatives_above += group.misses;
    }
    wins / (p as f64 * q as f64)
}

/// Area under the precision–recall curve as average precision, positives
/// being the positive class and higher scores meaning more positive.
///
/// `AP = Σ_t (R_t − R_{t−1}) · P_t` over the distinct scores `t` in
/// decreasing order, where everything scoring at least `t` is flagged: a
/// group of tied scores is one threshold, entering with its positives and
/// negatives together (as scikit-learn's `average_precision_score`). No
/// positives gives 0; no negatives gives 1.
pub fn aupr(scores_positive: &[f64], scores_negative: &[f64]) -> f64 {
    let total_positive = scores_positive.len() as f64;
    let (mut true_positives, mut flagged, mut area) = (0usize, 0usize, 0.0);
    for group in detection_groups(scores_positive, scores_negative) {
        true_positives += group.hits;
        flagged += group.size();
        let precision = true_positives as f64 / flagged as f64;
        area += ratio(group.hits as f64, total_positive) * precision;
    }
    area
}

/// The false-positive rate when flagging everything scoring at least the
/// highest threshold whose true-positive rate is at least `tpr` (e.g. 0.95).
///
/// Lowering the threshold from the top, this is the first point reaching the
/// target, hence the lowest false-positive rate that achieves it; tied scores
/// are flagged together. `tpr` is clamped to [0, 1] and NaN reads as 0; a
/// target of 0 is met by flagging nothing (rate 0). No positives gives 0 and
/// no negatives gives 0.
pub fn fpr_at_tpr(scores_positive: &[f64], scores_negative: &[f64], tpr: f64) -> f64 {
    let (p, q) = (scores_positive.len(), scores_negative.len());
    let needed = smallest_count_reaching(tpr, p);
    let (mut true_positives, mut false_positives) = (0usize, 0usize);
    for group in detection_groups(scores_positive, scores_negative) {
        if true_positives >= needed {
            break;
        }
        true_positives += group.hits;
        false_positives += group.misses;
    }
    ratio(false_positives as f64, q as f64)
}

/// The smallest `k` in `0..=total` with `k / total ≥ fraction`.
///
/// Computed by comparing the rounded quotient `k / total` with `fraction`
/// rather than rounding `fraction · total` up, because the product can land
/// just above an integer (0.07 · 100 = 7.000000000000001) and keep one too
/// many. `fraction` above 1 gives `total`; 0, below 0 or NaN give 0.
pub(super) fn smallest_count_reaching(fraction: f64, total: usize) -> usize {
    if total == 0 || fraction.is_nan() || fraction <= 0.0 {
        return 0;
    }
    let share = |k: usize| k as f64 / total as f64;
    let mut k = ((fraction * total as f64).ceil() as usize).min(total);
    while k > 0 && share(k - 1) >= fraction {
        k -= 1;
    }
    while k < total && share(k) < fraction {
        k += 1;
    }
    k
}

/// Examples sharing one score: how many are hits (correct, or positive) and
/// how many misses (wrong, or negative).
#[derive(Debug, Clone, Copy, Default)]
struct TieGroup {
    hits: usize,
    misses: usize,
}

impl TieGroup {
    fn size(&self) -> usize {
        self.hits + self.misses
    }
}

/// Groups of equal uncertainty in increasing order, misses being errors.
fn tie_groups(uncertainty: &[f64], correct: &[bool]) -> Vec<TieGroup> {
    group_ties(
        uncertainty
            .iter()
            .copied()
            .zip(correct.iter().copied())
            .collect(),
    )
}

/// Groups of equal score in decreasing order, hits being positives.
fn detection_groups(positive: &[f64], negative: &[f64]) -> Vec<TieGroup> {
    let keyed = positive
        .iter()
        .map(|&score| (score, true))
        .chain(negative.iter().map(|&score| (score, false)))
        .collect();
    let mut groups = group_ties(keyed);
    groups.reverse();
    groups
}

/// Sorts `(score, hit)` pairs by score (NaN as +∞) and counts hits and misses
/// per run of equal scores, in increasing order of score.
fn group_ties(mut keyed: Vec<(f64, bool)>) -> Vec<TieGroup> {
    for (score, _) in &mut keyed {
        if score.is_nan() {
            *score = f64::INFINITY;
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<TieGroup> = Vec::new();
    let mut previous: Option<f64> = None;
    for (score, hit) in keyed {
        // `==`, not `total_cmp`, so that -0.0 and 0.0 (adjacent after the sort) tie.
        if previous != Some(score) {
            groups.push(TieGroup::default());
        }
        if let Some(group) = groups.last_mut() {
            group.hits += usize::from(hit);
            group.misses += usize::from(!hit);
        }
        previous = Some(score);
    }
    groups
}

/// Expected risk when `kept` examples are kept, the last `taken` of them drawn
/// at random from `group`, after `errors_before` errors in earlier groups.
fn tied_risk(errors_before: usize, group: &TieGroup, taken: usize, kept: usize) -> f64 {
    // `taken · misses / size` in this order is exact when the group is taken whole.
    let expected =
        errors_before as f64 + ratio(taken as f64 * group.misses as f64, group.size() as f64);
    ratio(expected, kept as f64)
}

#[cfg(test)]
mod tests {
    use super::super::summarize;
    use super::*;
    use crate::uncertainty::test_support::assert_close;

    fn assert_curve(actual: &[(f64, f64)], expected: &[(f64, f64)]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?}");
        for (&(c, r), &(ec, er)) in actual.iter().zip(expected) {
            assert_close(c, ec);
            assert_close(r, er);
        }
    }

    #[test]
    fn score_names_are_distinct_and_match_their_json() {
        let names: Vec<&str> = Score::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "max_probability",
                "predictive_entropy",
                "mutual_information",
                "margin"
            ]
        );
        for score in Score::ALL {
            let json = serde_json::to_string(&score).unwrap();
            assert_eq!(json, format!("\"{}\"", score.name()));
            assert_eq!(serde_json::from_str::<Score>(&json).unwrap(), score);
        }
    }

    #[test]
    fn every_score_finds_disagreeing_samples_more_uncertain() {
        let confident = summarize(&[vec![0.875, 0.125], vec![0.875, 0.125]]);
        let unsure = summarize(&[vec![0.875, 0.125], vec![0.125, 0.875]]);
        for score in Score::ALL {
            assert!(
                score.uncertainty(&confident) < score.uncertainty(&unsure),
                "{}",
                score.name()
            );
        }
        assert_close(Score::MaxProbability.value(&confident), 0.875);
        assert_close(Score::MaxProbability.uncertainty(&confident), -0.875);
        assert_close(Score::Margin.value(&unsure), 0.0);
        assert!(Score::PredictiveEntropy.higher_is_more_uncertain());
        assert!(Score::MutualInformation.higher_is_more_uncertain());
        assert!(!Score::MaxProbability.higher_is_more_uncertain());
        assert!(!Score::Margin.higher_is_more_uncertain());
    }

    #[test]
    fn risk_coverage_of_distinct_uncertainties_matches_hand_computation() {
        // Sorted: 0.1 right, 0.2 wrong, 0.3 right, 0.4 wrong.
        let uncertainty = [0.3, 0.1, 0.4, 0.2];
        let correct = [true, true, false, false];
        let expected = [(0.25, 0.0), (0.5, 0.5), (0.75, 1.0 / 3.0), (1.0, 0.5)];
        assert_curve(&risk_coverage_curve(&uncertainty, &correct), &expected);
        // (0 + 1/2 + 1/3 + 1/2) / 4.
        assert_close(aurc(&uncertainty, &correct), 1.0 / 3.0);
    }

    #[test]
    fn a_perfect_ranking_has_the_least_area_and_the_reverse_the_most() {
        let uncertainty = [0.1, 0.2, 0.3, 0.4];
        // Errors last: risks 0, 0, 1/3, 1/2.
        assert_close(aurc(&uncertainty, &[true, true, false, false]), 5.0 / 24.0);
        // Errors first: risks 1, 1, 2/3, 1/2.
        assert_close(aurc(&uncertainty, &[false, false, true, true]), 19.0 / 24.0);
        assert_close(aurc(&uncertainty, &[true; 4]), 0.0);
        assert_close(aurc(&uncertainty, &[false; 4]), 1.0);
    }

    #[test]
    fn tied_uncertainties_are_kept_together_whatever_the_input_order() {
        // Groups: {0.1: right}, {0.2: wrong, right}, {0.3: right}.
        let uncertainty = [0.1, 0.2, 0.2, 0.3];
        let correct = [true, false, true, true];
        let expected = [(0.25, 0.0), (0.75, 1.0 / 3.0), (1.0, 0.25)];
        assert_curve(&risk_coverage_curve(&uncertainty, &correct), &expected);
        // Levels 0, (0 + 1/2)/2, 1/3, 1/4: the mean of the two tie orders'
        // AURCs (0 + 1/2 + 1/3 + 1/4 and 0 + 0 + 1/3 + 1/4, over 4).
        assert_close(aurc(&uncertainty, &correct), 5.0 / 24.0);

        let reversed_u: Vec<f64> = uncertainty.iter().rev().copied().collect();
        let reversed_c: Vec<bool> = correct.iter().rev().copied().collect();
        assert_curve(&risk_coverage_curve(&reversed_u, &reversed_c), &expected);
        assert_close(aurc(&reversed_u, &reversed_c), 5.0 / 24.0);
        assert_close(risk_at_coverage(&reversed_u, &reversed_c, 0.5), 0.25);
    }

    #[test]
    fn all_tied_uncertainties_give_the_overall_error_rate() {
        let uncertainty = [0.5; 4];
        let correct = [true, false, false, true];
        assert_curve(&risk_coverage_curve(&uncertainty, &correct), &[(1.0, 0.5)]);
        assert_close(aurc(&uncertainty, &correct), 0.5);
        assert_close(risk_at_coverage(&uncertainty, &correct, 0.25), 0.5);
        // -0.0 and 0.0 are the same uncertainty.
        assert_eq!(risk_coverage_curve(&[0.0, -0.0], &[true, false]).len(), 1);
    }

    #[test]
    fn risk_at_coverage_keeps_the_smallest_count_reaching_the_fraction() {
        let uncertainty = [0.1, 0.2, 0.2, 0.3];
        let correct = [true, false, true, true];
        assert_close(risk_at_coverage(&uncertainty, &correct, 0.25), 0.0);
        // Two kept: 0.1 and one of the tied pair, expected errors 1/2.
        assert_close(risk_at_coverage(&uncertainty, &correct, 0.5), 0.25);
        // 0.6 of 4 = 2.4: keep 3.
        assert_close(risk_at_coverage(&uncertainty, &correct, 0.6), 1.0 / 3.0);
        assert_close(risk_at_coverage(&uncertainty, &correct, 1.0), 0.25);
        assert_close(risk_at_coverage(&uncertainty, &correct, 7.0), 0.25);
        assert_close(risk_at_coverage(&uncertainty, &correct, 0.0), 0.0);
        assert_close(risk_at_coverage(&uncertainty, &correct, f64::NAN), 0.0);
        // The AURC is the mean of the risk at every level k / n.
        let mean_level = (1..=4)
            .map(|k| risk_at_coverage(&uncertainty, &correct, k as f64 / 4.0))
            .sum::<f64>()
            / 4.0;
        assert_close(aurc(&uncertainty, &correct), mean_level);
    }

    #[test]
    fn counts_reaching_a_fraction_are_not_fooled_by_rounding() {
        // 0.07 · 100 rounds to 7.000000000000001.
        assert_eq!(smallest_count_reaching(0.07, 100), 7);
        assert_eq!(smallest_count_reaching(0.95, 20), 19);
        assert_eq!(smallest_count_reaching(0.9, 101), 91);
        assert_eq!(smallest_count_reaching(0.5, 3), 2);
        assert_eq!(smallest_count_reaching(1.5, 3), 3);
        assert_eq!(smallest_count_reaching(-1.0, 3), 0);
        assert_eq!(smallest_count_reaching(0.5, 0), 0);
    }

    #[test]
    fn a_single_example_and_empty_input_do_not_panic() {
        assert_curve(&risk_coverage_curve(&[0.3], &[false]), &[(1.0, 1.0)]);
        assert_close(aurc(&[0.3], &[false]), 1.0);
        assert_close(risk_at_coverage(&[0.3], &[true], 0.95), 0.0);
        assert!(risk_coverage_curve(&[], &[]).is_empty());
        assert_eq!(aurc(&[], &[]), 0.0);
        assert_eq!(risk_at_coverage(&[], &[], 0.5), 0.0);
        assert_eq!(auroc(&[], &[]), 0.5);
        assert_eq!(auroc(&[0.3], &[]), 0.5);
        assert_eq!(aupr(&[], &[0.3]), 0.0);
        assert_eq!(fpr_at_tpr(&[], &[0.3], 0.95), 0.0);
        assert_close(auroc(&[0.7], &[0.2]), 1.0);
        assert_close(aupr(&[0.7], &[]), 1.0);
        assert_close(fpr_at_tpr(&[0.2], &[0.7], 0.95), 1.0);
    }

    #[test]
    fn mismatched_lengths_score_only_shared_pairs() {
        assert_curve(
            &risk_coverage_curve(&[0.1, 0.2, 0.3], &[false]),
            &[(1.0, 1.0)],
        );
        assert_close(aurc(&[0.1], &[true, false]), 0.0);
    }

    #[test]
    fn a_nan_uncertainty_is_rejected_first() {
        let uncertainty = [f64::NAN, 0.1];
        let correct = [false, true];
        assert_curve(
            &risk_coverage_curve(&uncertainty, &correct),
            &[(0.5, 0.0), (1.0, 0.5)],
        );
        assert_close(aurc(&uncertainty, &correct), 0.25);
        // And flagged first as out of distribution.
        assert_close(auroc(&[f64::NAN], &[f64::INFINITY, 1.0]), 0.75);
    }

    #[test]
    fn auroc_counts_pairs_with_ties_as_half() {
        assert_close(auroc(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        assert_close(auroc(&[0.1, 0.2], &[0.9, 0.8]), 0.0);
        assert_close(auroc(&[0.5], &[0.5]), 0.5);
        // Pairs: 0.3<0.5, 0.3<0.7, 0.7>0.5, 0.7=0.7: (0 + 0 + 1 + 1/2) / 4.
        assert_close(auroc(&[0.3, 0.7], &[0.5, 0.7]), 0.375);
        // 0.8 beats 4; 0.6 beats 0.5, 0.3 and ties 0.6; 0.4 beats 0.3: 7.5 / 12.
        assert_close(auroc(&[0.8, 0.6, 0.4], &[0.7, 0.5, 0.3, 0.6]), 0.625);
    }

    #[test]
    fn aupr_matches_hand_computed_average_precision() {
        assert_close(aupr(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        // 0.9 positive: P 1, ΔR 1/2; 0.8 negative; 0.6 positive: P 2/3, ΔR 1/2.
        assert_close(aupr(&[0.9, 0.6], &[0.8, 0.3]), 0.5 + 1.0 / 3.0);
        // Worst: 0.2 at P 1/3 and 0.1 at P 1/2, each ΔR 1/2.
        assert_close(aupr(&[0.1, 0.2], &[0.8, 0.9]), 1.0 / 6.0 + 0.25);
        // Tied 0.7 enters as one threshold: P 1/2, ΔR 1/2; then 0.3 at P 2/4.
        assert_close(aupr(&[0.3, 0.7], &[0.5, 0.7]), 0.5);
        // All tied: the base rate.
        assert_close(aupr(&[0.5, 0.5], &[0.5]), 2.0 / 3.0);
    }

    #[test]
    fn fpr_at_tpr_takes_the_first_threshold_reaching_the_target() {
        // Descending: 0.9 P, 0.85 N, 0.8 P, 0.7 P, 0.6 N, 0.5 N, 0.2 P, 0.1 N.
        let positive = [0.9, 0.8, 0.7, 0.2];
        let negative = [0.85, 0.6, 0.5, 0.1];
        assert_close(fpr_at_tpr(&positive, &negative, 0.25), 0.0);
        assert_close(fpr_at_tpr(&positive, &negative, 0.5), 0.25);
        assert_close(fpr_at_tpr(&positive, &negative, 0.75), 0.25);
        assert_close(fpr_at_tpr(&positive, &negative, 0.95), 0.75);
        assert_close(fpr_at_tpr(&positive, &negative, 1.0), 0.75);
        assert_close(fpr_at_tpr(&positive, &negative, 0.0), 0.0);
        assert_close(fpr_at_tpr(&positive, &negative, f64::NAN), 0.0);
        // A perfect detector and a reversed one.
        assert_close(fpr_at_tpr(&[0.9, 0.8], &[0.1, 0.2], 0.95), 0.0);
        assert_close(fpr_at_tpr(&[0.1, 0.2], &[0.9, 0.8], 0.95), 1.0);
    }

    #[test]
    fn tied_scores_are_flagged_together() {
        // Reaching the second positive means flagging the whole 0.5 group.
        assert_close(fpr_at_tpr(&[0.5, 0.9], &[0.5, 0.5], 0.5), 0.0);
        assert_close(fpr_at_tpr(&[0.5, 0.9], &[0.5, 0.5], 0.95), 1.0);
        assert_close(fpr_at_tpr(&[0.9, 0.5], &[0.5, 0.5], 0.95), 1.0);
    }
}
