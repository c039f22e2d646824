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

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::calibration::{conformal_rows, Calibration, ConformalRow};
use super::distance_report::{self, distance_rows, DistanceRow};
use super::evaluate::{targets, EvalError, MC_BUDGET};
use super::metrics::{
    adaptive_calibration_error, argmax, classification_report, reliability_bins,
    ClassificationReport, ECE_BINS,
};
use super::neighbours::NeighbourSettings;
use super::selective::{
    aupr, aurc, auroc, fpr_at_tpr, risk_at_coverage, risk_coverage_curve, Score,
};
use super::{sample_probabilities, summarize, McSummary, SamplingMode};
use crate::charts::{self, ChartError};
use crate::data::Example;
use crate::model::{softmax, Classifier};

/// Rows per deterministic forward pass.
const BATCH: usize = 64;

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
    /// `deterministic`, `temperature`, `mc_full`, `mc_head` or `mc_topK`.
    pub name: String,
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

/// One predictor's per-example summaries on the labelled data and each OOD set.
pub struct Predictions {
    /// Predictor name: `deterministic`, `temperature`, `mc_full`, `mc_head`, `mc_top1`, ….
    pub name: String,
    /// Whether it samples dropout (so mutual information means something).
    pub sampled: bool,
    /// One summary per labelled example.
    pub labelled: Vec<McSummary>,
    /// One summary per text, per OOD set.
    pub ood: Vec<Vec<McSummary>>,
    /// Wall-clock seconds to predict the labelled data.
    pub seconds: f64,
}

/// Predicts with every predictor and measures them.
pub fn uncertainty_report(
    classifier: &Classifier,
    examples: &[Example],
    ood: &[OodSet],
    settings: &ReportSettings,
) -> Result<(UncertaintyReport, Vec<Predictions>), EvalError> {
    let targets = targets(classifier, examples)?;
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let rows = classifier.encoder.encode_all(&texts)?;
    let ood_rows = ood
        .iter()
        .map(|set| classifier.encoder.encode_all(&set.texts))
        .collect::<Result<Vec<_>, _>>()?;
    let temperature = classifier.config.candor.temperature;
    let longest = settings
        .sweep
        .iter()
        .copied()
        .chain([settings.samples])
        .max()
        .unwrap_or(0);

    let started = Instant::now();
    let logits = classifier.logits_for_all(&rows, BATCH)?;
    let deterministic_seconds = started.elapsed().as_secs_f64();
    let ood_logits = ood_rows
        .iter()
        .map(|r| classifier.logits_for_all(r, BATCH))
        .collect::<Result<Vec<_>, _>>()?;
    let at = |logits: &[Vec<f32>], t: f64| -> Vec<McSummary> {
        logits.iter().map(|l| summarize(&[softmax(l, t)])).collect()
    };
    let mut all = vec![
        Predictions {
            name: "deterministic".into(),
            sampled: false,
            labelled: at(&logits, 1.0),
            ood: ood_logits.iter().map(|l| at(l, 1.0)).collect(),
            seconds: deterministic_seconds,
        },
        Predictions {
            name: "temperature".into(),
            sampled: false,
            labelled: at(&logits, temperature),
            ood: ood_logits.iter().map(|l| at(l, temperature)).collect(),
            seconds: deterministic_seconds,
        },
    ];

    let mut sweep = Vec::new();
    if settings.samples > 0 {
        let sample = |rows: &[Vec<u32>], t: usize, mode| {
            sample_probabilities(classifier, rows, t, settings.seed, MC_BUDGET, mode)
        };
        // The long run serves the sweep; the T-sample predictor is timed on its own.
        let long = sample(&rows, longest, SamplingMode::Full)?;
        for &t in &settings.sweep {
            let means: Vec<Vec<f32>> = long.iter().map(|s| summarize(&s[..t]).mean).collect();
            let r = classification_report(&means, &targets, &classifier.labels);
            sweep.push(SweepPoint {
                samples: t,
                accuracy: r.accuracy,
                nll: r.nll,
                ece: r.ece,
            });
        }
        let modes = [SamplingMode::Full, SamplingMode::Head]
            .into_iter()
            .chain(settings.top_layers.iter().map(|&k| SamplingMode::Top(k)));
        for mode in modes {
            let started = Instant::now();
            let labelled: Vec<McSummary> = sample(&rows, settings.samples, mode)?
                .iter()
                .map(|s| summarize(s))
                .collect();
            let seconds = started.elapsed().as_secs_f64();
            let ood = ood_rows
                .iter()
                .map(|r| {
                    Ok(sample(r, settings.samples, mode)?
                        .iter()
                        .map(|s| summarize(s))
                        .collect())
                })
                .collect::<Result<Vec<_>, EvalError>>()?;
            all.push(Predictions {
                name: predictor_name(mode),
                sampled: true,
                labelled,
                ood,
                seconds,
            });
        }
    }

    let predictors = all
        .iter()
        .map(|p| measure(p, &targets, &classifier.labels, ood))
        .collect();
    let mut conformal = Vec::new();
    if let Some(calibration) = &settings.calibration {
        let top = calibration
            .top
            .as_ref()
            .map(|t| SamplingMode::Top(t.layers));
        let modes = [Some(SamplingMode::Full), Some(SamplingMode::Head), top];
        let sampled = modes
            .into_iter()
            .flatten()
            .map(|m| (predictor_name(m), Some(m)));
        for (p, mode) in [("temperature".to_string(), None)]
            .into_iter()
            .chain(sampled)
        {
            let scores = calibration.scores(mode);
            let (Some(predictions), Some(scores)) = (all.iter().find(|a| a.name == p), scores)
            else {
                continue;
            };
            let means: Vec<Vec<f32>> = predictions
                .labelled
                .iter()
                .map(|s| s.mean.clone())
                .collect();
            conformal.extend(conformal_rows(&p, scores, &means, &targets));
        }
    }
    let feature_distance = if settings.reference.is_empty() {
        Vec::new()
    } else {
        let named: Vec<(String, Vec<Vec<u32>>)> = ood
            .iter()
            .zip(&ood_rows)
            .map(|(set, rows)| (set.name.clone(), rows.clone()))
            .collect();
        distance_rows(
            classifier,
            &settings.reference,
            &rows,
            &named,
            &settings.neighbours,
        )?
    };
    Ok((
        UncertaintyReport {
            examples: examples.len(),
            samples: settings.samples,
            seed: settings.seed,
            predictors,
            sweep,
            feature_distance,
            neighbours_k: settings.neighbours.k,
            conformal,
        },
        all,
    ))
}

/// The report's name of MC dropout in `mode`.
fn predictor_name(mode: SamplingMode) -> String {
    match mode {
        SamplingMode::Top(k) => format!("mc_top{k}"),
        other => format!("mc_{}", other.as_str()),
    }
}

/// Scores that mean something for a predictor: mutual information needs samples.
fn scores_of(p: &Predictions) -> Vec<Score> {
    Score::ALL
        .into_iter()
        .filter(|&s| p.sampled || s != Score::MutualInformation)
        .collect()
}

fn measure(
    p: &Predictions,
    targets: &[usize],
    labels: &[String],
    ood: &[OodSet],
) -> PredictorReport {
    let means: Vec<Vec<f32>> = p.labelled.iter().map(|s| s.mean.clone()).collect();
    let correct: Vec<bool> = means
        .iter()
        .zip(targets)
        .map(|(m, &t)| argmax(m) == t)
        .collect();
    let uncertainty = |summaries: &[McSummary], score: Score| -> Vec<f64> {
        summaries.iter().map(|s| score.uncertainty(s)).collect()
    };
    let selective = scores_of(p)
        .into_iter()
        .map(|score| {
            let u = uncertainty(&p.labelled, score);
            SelectiveRow {
                score,
                aurc: aurc(&u, &correct),
                risk_at_80: risk_at_coverage(&u, &correct, 0.8),
                risk_at_90: risk_at_coverage(&u, &correct, 0.9),
            }
        })
        .collect();
    let mut ood_rows = Vec::new();
    for (set, summaries) in ood.iter().zip(&p.ood) {
        for score in scores_of(p) {
            let inside = uncertainty(&p.labelled, score);
            let outside = uncertainty(summaries, score);
            ood_rows.push(OodRow {
                set: set.name.clone(),
                score,
                auroc: auroc(&outside, &inside),
                aupr: aupr(&outside, &inside),
                fpr_at_95_tpr: fpr_at_tpr(&outside, &inside, 0.95),
            });
        }
    }
    PredictorReport {
        name: p.name.to_string(),
        metrics: classification_report(&means, targets, labels),
        adaptive_ece: adaptive_calibration_error(&means, targets, ECE_BINS),
        selective,
        ood: ood_rows,
        seconds: p.seconds,
    }
}

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
    let bins: Vec<(String, Vec<_>)> = predictions
        .iter()
        .zip(&report.predictors)
        .map(|(p, r)| {
            let means: Vec<Vec<f32>> = p.labelled.iter().map(|s| s.mean.clone()).collect();
            (
                format!("{} (ECE {:.3})", p.name, r.metrics.ece),
                reliability_bins(&means, targets, ECE_BINS),
            )
        })
        .collect();
    let series: Vec<(&str, &[_])> = bins
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    charts::reliability_diagram(&dir.join("reliability.png"), "Reliability", &series)?;

    // Four curves stay readable: the deterministic confidence, and MC
    // dropout's total (entropy) and epistemic (mutual information) scores.
    let shown = [
        ("deterministic", Score::MaxProbability),
        ("mc_full", Score::PredictiveEntropy),
        ("mc_full", Score::MutualInformation),
        ("mc_head", Score::MutualInformation),
    ];
    let mut curves = Vec::new();
    for (name, score) in shown {
        let Some(p) = predictions.iter().find(|p| p.name == *name) else {
            continue;
        };
        let correct: Vec<bool> = p
            .labelled
            .iter()
            .zip(targets)
            .map(|(s, &t)| argmax(&s.mean) == t)
            .collect();
        let u: Vec<f64> = p.labelled.iter().map(|s| score.uncertainty(s)).collect();
        curves.push((
            format!("{} / {}", p.name, score.name()),
            risk_coverage_curve(&u, &correct),
        ));
    }
    let curve_series: Vec<(&str, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(n, c)| (n.as_str(), c.clone()))
        .collect();
    charts::curves(
        &dir.join("risk_coverage.png"),
        "Risk against coverage (most confident kept first)",
        "coverage",
        "risk (error rate)",
        &curve_series,
    )?;

    for (i, set) in ood.iter().enumerate() {
        let Some((p, row)) = best_ood_row(predictions, report, &set.name) else {
            continue;
        };
        let inside: Vec<f64> = p.labelled.iter().map(|s| row.score.value(s)).collect();
        let outside: Vec<f64> = p.ood[i].iter().map(|s| row.score.value(s)).collect();
        let file = format!("ood_{}.png", file_stem(&set.name));
        charts::histograms(
            &dir.join(file),
            &format!("{} {} (AUROC {:.3})", p.name, row.score.name(), row.auroc),
            row.score.name(),
            &[
                ("labelled data", inside.as_slice()),
                (set.name.as_str(), outside.as_slice()),
            ],
            40,
        )?;
    }
    Ok(())
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

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The report as plain-text tables for people.
pub fn render_tables(report: &UncertaintyReport, data: &str, temperature: f64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let name = |n: &str| match n {
        "temperature" => format!("temperature {temperature:.3}"),
        other => match other.strip_prefix("mc_") {
            Some(mode) => format!("MC dropout (T={}) {mode}", report.samples),
            None => other.to_string(),
        },
    };
    let _ = writeln!(
        out,
        "{} examples from {data}; MC seed {}",
        report.examples, report.seed
    );
    let _ = writeln!(
        out,
        "\n{:<30} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "predictor", "accuracy", "macro-F1", "NLL", "Brier", "ECE", "adapt.ECE", "seconds"
    );
    for p in &report.predictors {
        let m = &p.metrics;
        let _ = writeln!(
            out,
            "{:<30} {:>8.2}% {:>9.4} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {:>8.2}",
            name(&p.name),
            m.accuracy * 100.0,
            m.macro_f1,
            m.nll,
            m.brier,
            m.ece,
            p.adaptive_ece,
            p.seconds
        );
    }
    let score_header = |out: &mut String, title: &str| {
        let _ = write!(out, "\n{title}\n{:<30}", "predictor");
        for s in Score::ALL {
            let _ = write!(out, " {:>26}", s.name());
        }
        out.push('\n');
    };
    let cell = |values: Option<[f64; 3]>| match values {
        Some([a, b, c]) => format!(" {:>8.4} {:>8.4} {:>8.4}", a, b, c),
        None => format!(" {:>26}", "-"),
    };
    score_header(
        &mut out,
        "selective prediction: AURC / risk at 80% / risk at 90% coverage",
    );
    for p in &report.predictors {
        let _ = write!(out, "{:<30}", name(&p.name));
        for s in Score::ALL {
            let row = p.selective.iter().find(|r| r.score == s);
            out.push_str(&cell(row.map(|r| [r.aurc, r.risk_at_80, r.risk_at_90])));
        }
        out.push('\n');
    }
    let mut sets: Vec<&str> = Vec::new();
    for row in report.predictors.iter().flat_map(|p| &p.ood) {
        if !sets.contains(&row.set.as_str()) {
            sets.push(&row.set);
        }
    }
    for set in sets {
        score_header(
            &mut out,
            &format!("out of distribution, {set}: AUROC / AUPR / FPR at 95% TPR"),
        );
        for p in &report.predictors {
            let _ = write!(out, "{:<30}", name(&p.name));
            for s in Score::ALL {
                let row = p.ood.iter().find(|r| r.score == s && r.set == set);
                out.push_str(&cell(row.map(|r| [r.auroc, r.aupr, r.fpr_at_95_tpr])));
            }
            out.push('\n');
        }
    }
    if !report.feature_distance.is_empty() {
        out.push_str(&distance_report::render(
            &report.feature_distance,
            report.neighbours_k,
        ));
    }
    if !report.conformal.is_empty() {
        let _ = writeln!(
            out,
            "\nconformal prediction sets, calibrated on the model's calibration split (guarantee: coverage at least 1 - alpha)"
        );
        let _ = writeln!(
            out,
            "{:<30} {:>6} {:>9} {:>9} {:>11}",
            "predictor", "alpha", "coverage", "mean size", "single-label"
        );
        for row in &report.conformal {
            let _ = writeln!(
                out,
                "{:<30} {:>6} {:>8.2}% {:>9.3} {:>10.1}%",
                name(&row.predictor),
                row.alpha,
                row.coverage * 100.0,
                row.mean_set_size,
                row.singletons * 100.0
            );
        }
    }
    if !report.sweep.is_empty() {
        let _ = writeln!(out, "\nMC dropout (full) against the number of samples T");
        let _ = writeln!(
            out,
            "{:>5} {:>9} {:>8} {:>8}",
            "T", "accuracy", "NLL", "ECE"
        );
        for point in &report.sweep {
            let _ = writeln!(
                out,
                "{:>5} {:>8.2}% {:>8.4} {:>8.4}",
                point.samples,
                point.accuracy * 100.0,
                point.nll,
                point.ece
            );
        }
    }
    out
}
