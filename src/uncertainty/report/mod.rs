//! The full uncertainty report of `candor eval`: how good the uncertainty is,
//! predictor by predictor, on labelled in-distribution data and, optionally,
//! on unrelated (out-of-distribution) texts.
//!
//! Predictors: the deterministic model, the same with the fitted temperature,
//! MC dropout at every site (`full`), in the top k layers (`top`, for each k
//! asked) and on the classifier input only (`head`). For each: accuracy, macro-F1, NLL, Brier, ECE and adaptive
//! ECE; selective prediction (AURC, risk at 80% and 90% coverage) ranking by
//! each score; and OOD separation (AUROC, AUPR, FPR at 95% TPR) per score,
//! and by distance to the training data (see [`super::distance_report`]).
//! Accuracy and calibration as a function of the number of samples T come
//! from the prefixes of one long run: sample t's masks depend only on the seed
//! and t, so the first T samples of a 100-sample run are a T-sample run.
//!
//! Running the predictors is in `predictors`, turning their predictions into
//! figures in `measures`; `tables` lays the report out as text and
//! `pictures` draws it.

mod measures;
mod pictures;
mod predictors;
mod tables;

use serde::{Deserialize, Serialize};

pub use measures::{OodRow, PredictorReport, SelectiveRow, SweepPoint};
pub use pictures::draw_pictures;
pub use predictors::Predictions;
pub use tables::render_tables;

use super::calibration::{Calibration, ConformalRow};
use super::distance_report::{distance_rows, DistanceRow};
use super::evaluate::{targets, EvalError};
use super::neighbours::NeighbourSettings;
use crate::data::Example;
use crate::model::Classifier;
use measures::{conformal, measure};
use predictors::{deterministic_predictions, sampled_predictions, sweep, Encoded};

/// What to compute.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// MC-dropout samples T of the `full` and `head` predictors.
    pub samples: usize,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Sample counts for the accuracy/calibration-against-T table.
    pub sweep: Vec<usize>,
    /// Training examples to fit the distances on (none: not measured).
    pub reference: Vec<Example>,
    /// The numbers of top layers of the `top` predictors (`mc_top1`, …).
    pub top_layers: Vec<usize>,
    /// The kNN score's k and how many training vectors it may search
    /// (its representation is each one the model offers in turn).
    pub neighbours: NeighbourSettings,
    /// The model's calibration, to measure its conformal sets (none: not measured).
    pub calibration: Option<Calibration>,
}

/// Unlabelled texts to tell apart from the labelled data.
#[derive(Debug, Clone)]
pub struct OodSet {
    /// Name in the report (the file name).
    pub name: String,
    /// The texts.
    pub texts: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UncertaintyReport {
    /// Labelled examples.
    pub examples: usize,
    /// MC samples of the sampled predictors.
    pub samples: usize,
    /// Seed of the masks.
    pub seed: u64,
    /// Per predictor.
    pub predictors: Vec<PredictorReport>,
    /// `full` MC dropout against T.
    pub sweep: Vec<SweepPoint>,
    /// OOD separation by distance to the training data: Mahalanobis, and
    /// kNN in each representation (empty without reference data).
    pub feature_distance: Vec<DistanceRow>,
    /// The k of the kNN rows.
    #[serde(default)]
    pub neighbours_k: usize,
    /// Conformal sets per predictor and alpha, from the model's
    /// calibration.json (empty without one).
    #[serde(default)]
    pub conformal: Vec<ConformalRow>,
}

/// Predicts with every predictor and measures them.
pub fn uncertainty_report(
    classifier: &Classifier,
    examples: &[Example],
    ood: &[OodSet],
    settings: &ReportSettings,
) -> Result<(UncertaintyReport, Vec<Predictions>), EvalError> {
    let targets = targets(classifier, examples)?;
    let texts = Encoded::new(classifier, examples, ood)?;
    let mut all = deterministic_predictions(classifier, &texts)?;
    let mut sweep_points = Vec::new();
    if settings.samples > 0 {
        // The long run serves the sweep; the T-sample predictors are timed on their own.
        sweep_points = sweep(classifier, &texts.labelled, &targets, settings)?;
        all.extend(sampled_predictions(classifier, &texts, settings)?);
    }
    let predictors = all
        .iter()
        .map(|p| measure(p, &targets, &classifier.labels, ood))
        .collect();
    let conformal = match &settings.calibration {
        Some(calibration) => conformal(calibration, &all, &targets),
        None => Vec::new(),
    };
    let feature_distance = feature_distance(classifier, ood, &texts, settings)?;
    let report = UncertaintyReport {
        examples: examples.len(),
        samples: settings.samples,
        seed: settings.seed,
        predictors,
        sweep: sweep_points,
        feature_distance,
        neighbours_k: settings.neighbours.k,
        conformal,
    };
    Ok((report, all))
}

/// How far each OOD set lies from the reference (training) data, against
/// the labelled data; nothing without reference data.
fn feature_distance(
    classifier: &Classifier,
    ood: &[OodSet],
    texts: &Encoded,
    settings: &ReportSettings,
) -> Result<Vec<DistanceRow>, EvalError> {
    if settings.reference.is_empty() {
        return Ok(Vec::new());
    }
    let named: Vec<(String, Vec<Vec<u32>>)> = ood
        .iter()
        .zip(&texts.ood)
        .map(|(set, rows)| (set.name.clone(), rows.clone()))
        .collect();
    distance_rows(
        classifier,
        &settings.reference,
        &texts.labelled,
        &named,
        &settings.neighbours,
    )
}
