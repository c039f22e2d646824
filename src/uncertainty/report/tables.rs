//! The report as plain-text tables for people: one row per predictor, and
//! per score a group of three columns where a table compares scores.

use std::fmt::Write;

use super::UncertaintyReport;
use crate::uncertainty::distance_report;
use crate::uncertainty::selective::Score;
use crate::uncertainty::Predictor;

/// The report as plain-text tables for people.
pub fn render_tables(report: &UncertaintyReport, data: &str, temperature: f64) -> String {
    let names = DisplayNames {
        samples: report.samples,
        temperature,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} examples from {data}; MC seed {}",
        report.examples, report.seed
    );
    metrics_table(&mut out, report, &names);
    selective_table(&mut out, report, &names);
    for set in ood_sets(report) {
        ood_table(&mut out, report, set, &names);
    }
    if !report.feature_distance.is_empty() {
        out.push_str(&distance_report::render(
            &report.feature_distance,
            report.neighbours_k,
        ));
    }
    if !report.conformal.is_empty() {
        conformal_table(&mut out, report, &names);
    }
    if !report.sweep.is_empty() {
        sweep_table(&mut out, report);
    }
    out
}

/// How the tables name predictors: with the temperature and the number of samples.
struct DisplayNames {
    /// MC samples T of the sampled predictors.
    samples: usize,
    /// The model's fitted temperature.
    temperature: f64,
}

impl DisplayNames {
    /// `temperature 1.500`, `MC dropout (T=30) full`: see [`Predictor::table_label`].
    fn of(&self, predictor: Predictor) -> String {
        predictor.table_label(self.samples, self.temperature)
    }
}

/// Accuracy, macro-F1, NLL, Brier, both ECEs and time, per predictor.
fn metrics_table(out: &mut String, report: &UncertaintyReport, names: &DisplayNames) {
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
            names.of(p.predictor),
            m.accuracy * 100.0,
            m.macro_f1,
            m.nll,
            m.brier,
            m.ece,
            p.adaptive_ece,
            p.seconds
        );
    }
}

/// AURC and the risks at 80% and 90% coverage, per predictor and score.
fn selective_table(out: &mut String, report: &UncertaintyReport, names: &DisplayNames) {
    score_header(
        out,
        "selective prediction: AURC / risk at 80% / risk at 90% coverage",
    );
    for p in &report.predictors {
        let _ = write!(out, "{:<30}", names.of(p.predictor));
        for s in Score::ALL {
            let row = p.selective.iter().find(|r| r.score == s);
            out.push_str(&score_cell(
                row.map(|r| [r.aurc, r.risk_at_80, r.risk_at_90]),
            ));
        }
        out.push('\n');
    }
}

/// The OOD sets measured, in the order they first appear.
fn ood_sets(report: &UncertaintyReport) -> Vec<&str> {
    let mut sets: Vec<&str> = Vec::new();
    for row in report.predictors.iter().flat_map(|p| &p.ood) {
        if !sets.contains(&row.set.as_str()) {
            sets.push(&row.set);
        }
    }
    sets
}

/// AUROC, AUPR and FPR at 95% TPR on one OOD set, per predictor and score.
fn ood_table(out: &mut String, report: &UncertaintyReport, set: &str, names: &DisplayNames) {
    score_header(
        out,
        &format!("out of distribution, {set}: AUROC / AUPR / FPR at 95% TPR"),
    );
    for p in &report.predictors {
        let _ = write!(out, "{:<30}", names.of(p.predictor));
        for s in Score::ALL {
            let row = p.ood.iter().find(|r| r.score == s && r.set == set);
            out.push_str(&score_cell(row.map(|r| [r.auroc, r.aupr, r.fpr_at_95_tpr])));
        }
        out.push('\n');
    }
}

/// A table's title and its header: the predictor column, then one per score.
fn score_header(out: &mut String, title: &str) {
    let _ = write!(out, "\n{title}\n{:<30}", "predictor");
    for s in Score::ALL {
        let _ = write!(out, " {:>26}", s.name());
    }
    out.push('\n');
}

/// Three figures under one score's header, or a dash where the score was not measured.
fn score_cell(values: Option<[f64; 3]>) -> String {
    match values {
        Some([a, b, c]) => format!(" {:>8.4} {:>8.4} {:>8.4}", a, b, c),
        None => format!(" {:>26}", "-"),
    }
}

/// Coverage, mean size and share of single labels of the conformal sets.
fn conformal_table(out: &mut String, report: &UncertaintyReport, names: &DisplayNames) {
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
            names.of(row.predictor),
            row.alpha,
            row.coverage * 100.0,
            row.mean_set_size,
            row.singletons * 100.0
        );
    }
}

/// `full` MC dropout's accuracy, NLL and ECE against T.
fn sweep_table(out: &mut String, report: &UncertaintyReport) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictors_are_shown_with_their_temperature_or_samples() {
        let names = DisplayNames {
            samples: 30,
            temperature: 1.5,
        };
        let of = |name: &str| names.of(name.parse().unwrap());
        assert_eq!(of("temperature"), "temperature 1.500");
        assert_eq!(of("mc_top2"), "MC dropout (T=30) top2");
        assert_eq!(of("deterministic"), "deterministic");
    }

    #[test]
    fn an_unmeasured_score_is_a_dash_as_wide_as_three_figures() {
        let measured = score_cell(Some([0.1, 0.2, 0.3]));
        let missing = score_cell(None);
        assert_eq!(measured, "   0.1000   0.2000   0.3000");
        assert_eq!(missing.len(), measured.len());
        assert_eq!(missing.trim(), "-");
    }
}
