//! From predictions to the report's figures: each predictor's metrics,
//! selective prediction and OOD separation per score, `full` MC dropout
//! against T, and the conformal sets of the calibrated predictors.

use serde::{Deserialize, Serialize};

use super::predictors::Predictions;
use super::OodSet;
use crate::uncertainty::calibration::{conformal_rows, Calibration, ConformalRow};
use crate::uncertainty::metrics::{
    adaptive_calibration_error, classification_report, ClassificationReport, ECE_BINS,
};
use crate::uncertainty::selective::{aupr, aurc, auroc, fpr_at_tpr, risk_at_coverage, Score};
use crate::uncertainty::{summarize, McSummary, Predictor, SamplingMode};

/// Selective prediction under one score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelectiveRow {
    /// The score examples are ranked by.
    pub score: Score,
    /// Area under the risk–coverage curve (lower is better).
    pub aurc: f64,
    /// Error rate on the 80% most confident examples.
    pub risk_at_80: f64,
    /// Error rate on the 90% most confident examples.
    pub risk_at_90: f64,
}

/// Separating one OOD set from the labelled data under one score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OodRow {
    /// The OOD set.
    pub set: String,
    /// The score (higher uncertainty = more likely OOD).
    pub score: Score,
    /// Area under the ROC curve, OOD as the positive class.
    pub auroc: f64,
    /// Average precision, OOD as the positive class.
    pub aupr: f64,
    /// False-positive rate (in-distribution flagged) at 95% of OOD caught.
    pub fpr_at_95_tpr: f64,
}

/// Everything measured of one predictor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictorReport {
    /// The predictor (`"name"` in JSON).
    #[serde(rename = "name")]
    pub predictor: Predictor,
    /// Accuracy, macro-F1, NLL, Brier, ECE, per class, confusion.
    pub metrics: ClassificationReport,
    /// ECE over equal-count bins.
    pub adaptive_ece: f64,
    /// Per score.
    pub selective: Vec<SelectiveRow>,
    /// Per OOD set and score.
    pub ood: Vec<OodRow>,
    /// Wall-clock seconds to predict the labelled data.
    pub seconds: f64,
}

/// Accuracy and calibration of MC dropout with T samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Samples T.
    pub samples: usize,
    /// Accuracy of the mean prediction.
    pub accuracy: f64,
    /// Its NLL.
    pub nll: f64,
    /// Its ECE.
    pub ece: f64,
}

/// Measures one predictor: its mean probabilities are scored against
/// `targets`, its uncertainties rank the labelled data and each OOD set.
pub(super) fn measure(
    p: &Predictions,
    targets: &[usize],
    labels: &[String],
    ood: &[OodSet],
) -> PredictorReport {
    let means = p.means();
    PredictorReport {
        predictor: p.predictor,
        metrics: classification_report(&means, targets, labels),
        adaptive_ece: adaptive_calibration_error(&means, targets, ECE_BINS),
        selective: selective_rows(p, &p.correct(targets)),
        ood: ood_rows(p, ood),
        seconds: p.seconds,
    }
}

/// Scores that mean something for a predictor: mutual information needs samples.
fn scores_of(p: &Predictions) -> Vec<Score> {
    Score::ALL
        .into_iter()
        .filter(|&s| p.sampled || s != Score::MutualInformation)
        .collect()
}

/// The uncertainty of each summary under `score`.
fn uncertainties(summaries: &[McSummary], score: Score) -> Vec<f64> {
    summaries.iter().map(|s| score.uncertainty(s)).collect()
}

/// Selective prediction on the labelled data, ranked by each of the predictor's scores.
fn selective_rows(p: &Predictions, correct: &[bool]) -> Vec<SelectiveRow> {
    scores_of(p)
        .into_iter()
        .map(|score| {
            let u = uncertainties(&p.labelled, score);
            SelectiveRow {
                score,
                aurc: aurc(&u, correct),
                risk_at_80: risk_at_coverage(&u, correct, 0.8),
                risk_at_90: risk_at_coverage(&u, correct, 0.9),
            }
        })
        .collect()
}

/// How well each score tells each OOD set (the positives) from the labelled data.
fn ood_rows(p: &Predictions, ood: &[OodSet]) -> Vec<OodRow> {
    let mut rows = Vec::new();
    for (set, summaries) in ood.iter().zip(&p.ood) {
        for score in scores_of(p) {
            let inside = uncertainties(&p.labelled, score);
            let outside = uncertainties(summaries, score);
            rows.push(OodRow {
                set: set.name.clone(),
                score,
                auroc: auroc(&outside, &inside),
                aupr: aupr(&outside, &inside),
                fpr_at_95_tpr: fpr_at_tpr(&outside, &inside, 0.95),
            });
        }
    }
    rows
}

/// Accuracy, NLL and ECE of the mean of the first T samples of `long` (one
/// list of sample probabilities per example), for each T in `counts`.
pub(super) fn sweep_points(
    long: &[Vec<Vec<f32>>],
    counts: &[usize],
    targets: &[usize],
    labels: &[String],
) -> Vec<SweepPoint> {
    counts
        .iter()
        .map(|&t| {
            let means: Vec<Vec<f32>> = long.iter().map(|s| summarize(&s[..t]).mean).collect();
            let r = classification_report(&means, targets, labels);
            SweepPoint {
                samples: t,
                accuracy: r.accuracy,
                nll: r.nll,
                ece: r.ece,
            }
        })
        .collect()
}

/// Conformal sets of the predictors the calibration has scores of: the
/// temperature-scaled model, then MC dropout `full`, `head` and `top` (at the
/// calibrated depth) when the report ran them.
pub(super) fn conformal(
    calibration: &Calibration,
    all: &[Predictions],
    targets: &[usize],
) -> Vec<ConformalRow> {
    let top = calibration
        .top
        .as_ref()
        .map(|t| SamplingMode::Top(t.layers));
    let sampled = [Some(SamplingMode::Full), Some(SamplingMode::Head), top]
        .into_iter()
        .flatten()
        .map(|m| (Predictor::McDropout(m), Some(m)));
    let mut rows = Vec::new();
    for (predictor, mode) in [(Predictor::TemperatureScaled, None)]
        .into_iter()
        .chain(sampled)
    {
        let predictions = all.iter().find(|a| a.predictor == predictor);
        if let (Some(predictions), Some(scores)) = (predictions, calibration.scores(mode)) {
            rows.extend(conformal_rows(
                predictor,
                scores,
                &predictions.means(),
                targets,
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uncertainty::calibration::{CalibrationScores, TopScores};

    const EPS: f64 = 1e-6;

    fn assert_close(actual: f64, expected: f64) {
        crate::uncertainty::test_support::assert_within(actual, expected, EPS);
    }

    fn labels() -> Vec<String> {
        vec!["yes".into(), "no".into()]
    }

    /// A deterministic predictor whose mean on each example is `[p, 1 - p]`.
    fn deterministic(predictor: Predictor, first: &[f32], ood: &[&[f32]]) -> Predictions {
        let summaries = |ps: &[f32]| -> Vec<McSummary> {
            ps.iter().map(|&p| summarize(&[vec![p, 1.0 - p]])).collect()
        };
        Predictions {
            predictor,
            sampled: false,
            labelled: summaries(first),
            ood: ood.iter().map(|set| summaries(set)).collect(),
            seconds: 0.25,
        }
    }

    fn set(name: &str) -> OodSet {
        OodSet {
            name: name.into(),
            texts: Vec::new(),
        }
    }

    #[test]
    fn accuracy_counts_the_examples_whose_most_probable_class_is_the_target() {
        let p = deterministic(Predictor::Deterministic, &[0.9, 0.2, 0.6, 0.3], &[]);
        let report = measure(&p, &[0, 1, 1, 0], &labels(), &[]);
        assert_eq!(report.predictor.to_string(), "deterministic");
        assert_eq!(report.metrics.examples, 4);
        assert_close(report.metrics.accuracy, 0.5);
        assert_close(report.seconds, 0.25);
    }

    #[test]
    fn the_mc_row_averages_the_samples_before_scoring() {
        // Two of three samples favour "no", but the mean favours "yes" at 0.6.
        let samples = [vec![1.0, 0.0], vec![0.4, 0.6], vec![0.4, 0.6]];
        let p = Predictions {
            predictor: Predictor::McDropout(SamplingMode::Full),
            sampled: true,
            labelled: vec![summarize(&samples)],
            ood: Vec::new(),
            seconds: 0.0,
        };
        let report = measure(&p, &[0], &labels(), &[]);
        assert_close(report.metrics.accuracy, 1.0);
        assert_close(report.metrics.nll, -(0.6f64.ln()));
    }

    #[test]
    fn mutual_information_ranks_only_the_sampled_predictors() {
        let mut p = deterministic(Predictor::Deterministic, &[0.9, 0.2], &[&[0.5]]);
        let scores =
            |r: &PredictorReport| -> Vec<Score> { r.selective.iter().map(|s| s.score).collect() };
        let report = measure(&p, &[0, 1], &labels(), &[set("spam")]);
        let without = vec![
            Score::MaxProbability,
            Score::PredictiveEntropy,
            Score::Margin,
        ];
        assert_eq!(scores(&report), without);
        assert_eq!(report.ood.len(), 3);
        p.sampled = true;
        let report = measure(&p, &[0, 1], &labels(), &[set("spam")]);
        assert_eq!(scores(&report), Score::ALL.to_vec());
        assert_eq!(report.ood.len(), 4);
    }

    #[test]
    fn selective_rows_keep_the_most_confident_examples_first() {
        // By confidence: right, right, wrong, right, wrong.
        let p = deterministic(
            Predictor::Deterministic,
            &[0.95, 0.85, 0.75, 0.65, 0.55],
            &[],
        );
        let report = measure(&p, &[0, 0, 1, 0, 1], &labels(), &[]);
        let row = &report.selective[0];
        assert_eq!(row.score, Score::MaxProbability);
        // Risk after keeping 1..=5 examples: 0, 0, 1/3, 1/4, 2/5.
        assert_close(row.aurc, (1.0 / 3.0 + 0.25 + 0.4) / 5.0);
        assert_close(row.risk_at_80, 0.25);
        assert_close(row.risk_at_90, 0.4);
    }

    #[test]
    fn an_ood_set_less_confident_than_the_labelled_data_is_separated_perfectly() {
        let p = deterministic(
            Predictor::Deterministic,
            &[0.95, 0.9, 0.85],
            &[&[0.55, 0.6]],
        );
        let report = measure(&p, &[0, 0, 0], &labels(), &[set("spam")]);
        let row = &report.ood[0];
        assert_eq!(
            (row.set.as_str(), row.score),
            ("spam", Score::MaxProbability)
        );
        assert_close(row.auroc, 1.0);
        assert_close(row.aupr, 1.0);
        assert_close(row.fpr_at_95_tpr, 0.0);
    }

    #[test]
    fn the_sweep_scores_the_mean_of_the_first_t_samples() {
        // The first sample is right, the next two outvote it.
        let long = vec![vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0]]];
        let points = sweep_points(&long, &[1, 3], &[0], &labels());
        let figures: Vec<(usize, f64)> = points.iter().map(|p| (p.samples, p.accuracy)).collect();
        assert_eq!(figures, [(1, 1.0), (3, 0.0)]);
        assert_close(points[1].nll, -((1.0f64 / 3.0).ln()));
    }

    #[test]
    fn conformal_sets_are_measured_for_the_predictors_the_calibration_scored() {
        let first: Vec<f32> = (0..40).map(|i| 0.55 + 0.01 * i as f32).collect();
        let targets = vec![0; first.len()];
        let scores = CalibrationScores::new(
            &deterministic(Predictor::Deterministic, &first, &[]).labelled,
            &targets,
        );
        let calibration = Calibration {
            examples: first.len(),
            mc_samples: 3,
            seed: 0,
            deterministic: scores.clone(),
            full: None,
            head: Some(scores.clone()),
            abstention: None,
            top: Some(TopScores { layers: 2, scores }),
            feature_distance: None,
            neighbours: None,
            cascade: Vec::new(),
        };
        // `mc_full` has no calibration scores and `mc_top2` did not run.
        let all: Vec<Predictions> = [
            "deterministic",
            "temperature",
            "mc_full",
            "mc_head",
            "mc_top1",
        ]
        .into_iter()
        .map(|name| deterministic(name.parse().unwrap(), &first, &[]))
        .collect();
        let rows = conformal(&calibration, &all, &targets);
        let mut names: Vec<String> = rows.iter().map(|r| r.predictor.to_string()).collect();
        names.dedup();
        assert_eq!(names, ["temperature", "mc_head"]);
    }
}
