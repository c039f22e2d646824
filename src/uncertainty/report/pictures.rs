//! The report's pictures: a reliability diagram of every predictor,
//! risk–coverage curves of a few, and per OOD set the histograms of the
//! score that separates it best.

use std::path::Path;

use super::measures::OodRow;
use super::predictors::Predictions;
use super::{OodSet, UncertaintyReport};
use crate::charts::{self, ChartError};
use crate::uncertainty::metrics::{reliability_points, ECE_BINS};
use crate::uncertainty::selective::{risk_coverage_curve, Score};
use crate::uncertainty::{Predictor, SamplingMode};

/// Bins of each OOD histogram.
const HISTOGRAM_BINS: usize = 40;

/// Draws `reliability.png`, `risk_coverage.png` and one `ood_<set>.png` per
/// OOD set (histograms of the best-separating score) into `dir`.
pub fn draw_pictures(
    dir: &Path,
    report: &UncertaintyReport,
    predictions: &[Predictions],
    targets: &[usize],
    ood: &[OodSet],
) -> Result<(), ChartError> {
    std::fs::create_dir_all(dir).map_err(|e| ChartError::Draw {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    draw_reliability(dir, report, predictions, targets)?;
    draw_risk_coverage(dir, predictions, targets)?;
    for (i, set) in ood.iter().enumerate() {
        draw_ood_histograms(dir, report, predictions, set, i)?;
    }
    Ok(())
}

/// `reliability.png`: every predictor, its ECE in the legend.
fn draw_reliability(
    dir: &Path,
    report: &UncertaintyReport,
    predictions: &[Predictions],
    targets: &[usize],
) -> Result<(), ChartError> {
    let points: Vec<(String, Vec<(f64, f64)>)> = predictions
        .iter()
        .zip(&report.predictors)
        .map(|(p, r)| {
            (
                format!("{} (ECE {:.3})", p.predictor, r.metrics.ece),
                reliability_points(&p.means(), targets, ECE_BINS),
            )
        })
        .collect();
    let series: Vec<(&str, &[(f64, f64)])> = points
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_slice()))
        .collect();
    charts::reliability_diagram(&dir.join("reliability.png"), "Reliability", &series)
}

/// `risk_coverage.png`: the curves of the predictors and scores worth comparing.
fn draw_risk_coverage(
    dir: &Path,
    predictions: &[Predictions],
    targets: &[usize],
) -> Result<(), ChartError> {
    // Four curves stay readable: the deterministic confidence, and MC
    // dropout's total (entropy) and epistemic (mutual information) scores.
    let shown = [
        (Predictor::Deterministic, Score::MaxProbability),
        (
            Predictor::McDropout(SamplingMode::Full),
            Score::PredictiveEntropy,
        ),
        (
            Predictor::McDropout(SamplingMode::Full),
            Score::MutualInformation,
        ),
        (
            Predictor::McDropout(SamplingMode::Head),
            Score::MutualInformation,
        ),
    ];
    let curves: Vec<(String, Vec<(f64, f64)>)> = shown
        .iter()
        .filter_map(|&(predictor, score)| {
            let p = predictions.iter().find(|p| p.predictor == predictor)?;
            let u: Vec<f64> = p.labelled.iter().map(|s| score.uncertainty(s)).collect();
            Some((
                format!("{} / {}", p.predictor, score.name()),
                risk_coverage_curve(&u, &p.correct(targets)),
            ))
        })
        .collect();
    let series: Vec<(&str, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(n, c)| (n.as_str(), c.clone()))
        .collect();
    charts::curves(
        &dir.join("risk_coverage.png"),
        "Risk against coverage (most confident kept first)",
        "coverage",
        "risk (error rate)",
        &series,
    )
}

/// `ood_<set>.png`: the labelled data and OOD set `index` under the
/// predictor and score separating them best; nothing when none was measured.
fn draw_ood_histograms(
    dir: &Path,
    report: &UncertaintyReport,
    predictions: &[Predictions],
    set: &OodSet,
    index: usize,
) -> Result<(), ChartError> {
    let Some((p, row)) = best_ood_row(predictions, report, &set.name) else {
        return Ok(());
    };
    let inside: Vec<f64> = p.labelled.iter().map(|s| row.score.value(s)).collect();
    let outside: Vec<f64> = p.ood[index].iter().map(|s| row.score.value(s)).collect();
    let file = format!("ood_{}.png", file_stem(&set.name));
    charts::histograms(
        &dir.join(file),
        &format!(
            "{} {} (AUROC {:.3})",
            p.predictor,
            row.score.name(),
            row.auroc
        ),
        row.score.name(),
        &[
            ("labelled data", inside.as_slice()),
            (set.name.as_str(), outside.as_slice()),
        ],
        HISTOGRAM_BINS,
    )
}

/// The predictor and score separating `set` best (highest AUROC).
fn best_ood_row<'a>(
    predictions: &'a [Predictions],
    report: &'a UncertaintyReport,
    set: &str,
) -> Option<(&'a Predictions, &'a OodRow)> {
    predictions
        .iter()
        .zip(&report.predictors)
        .flat_map(|(p, r)| r.ood.iter().filter(|o| o.set == set).map(move |o| (p, o)))
        .max_by(|a, b| a.1.auroc.total_cmp(&b.1.auroc))
}

/// `name` with every character but ASCII letters and digits replaced by `_`.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
