//! `candor eval` of the tiny model: the printed table, and the JSON report
//! with everything asked for (an OOD file, a sweep of T, pictures, reference
//! texts), read by predictor, score and set.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde_json::Value;

use crate::common::subset;
use crate::helpers::{
    at_each_alpha, candor_succeeds, column, conformal_rows, row, shared_dir, stdout, tiny_model,
};

#[test]
fn eval_prints_a_table_of_the_deterministic_and_mc_dropout_predictors() {
    let dir = tempfile::tempdir().unwrap();
    let table = eval_tiny(dir.path(), &[]);
    assert!(
        table.contains("deterministic") && table.contains("MC dropout (T=3)"),
        "{table}"
    );
}

#[test]
fn eval_can_print_the_tables_and_write_the_json_report_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("eval.json");
    let table = eval_tiny(dir.path(), &["--json-out", report.to_str().unwrap()]);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(table.contains("deterministic"), "{table}");
    assert_eq!(json["examples"], 50, "{json}");
}

/// Runs `candor eval` of the tiny model with 3 MC-dropout samples and
/// `options` on the first 50 questions of trec6 (written in `dir`); returns
/// what it printed.
fn eval_tiny(dir: &Path, options: &[&str]) -> String {
    let data = subset(dir, "trec6.jsonl", 50);
    let mut args = vec!["eval", "--model", tiny_model().to_str().unwrap()];
    args.extend(["--data", data.to_str().unwrap(), "--mc-samples", "3"]);
    args.extend_from_slice(options);
    stdout(&candor_succeeds(&args))
}

/// `candor eval --json` with every part of the report asked for, and the
/// directory its pictures went to.
struct FullReport {
    json: Value,
    plots: PathBuf,
}

/// The full report of the tiny model on 50 questions, with 40 text messages
/// as the OOD set and `candor split`'s training split as reference texts; run
/// once for the tests that read it.
static FULL_REPORT: LazyLock<FullReport> = LazyLock::new(|| {
    let dir = shared_dir("full-report");
    let unrelated = subset(&dir, "sms_spam.jsonl", 40);
    let reference = training_split(&dir.join("split"));
    let plots = dir.join("plots");
    let printed = eval_tiny(
        &dir,
        &[
            "--ood",
            unrelated.to_str().unwrap(),
            "--sweep",
            "1,3,5",
            "--plots",
            plots.to_str().unwrap(),
            "--reference",
            reference.to_str().unwrap(),
            "--json",
        ],
    );
    FullReport {
        json: serde_json::from_str(&printed).unwrap(),
        plots,
    }
});

/// The training split `candor split` makes, in `dir`, of the data the tiny
/// model was trained on.
fn training_split(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let data = subset(dir, "trec6.jsonl", 600);
    candor_succeeds(&[
        "split",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    dir.join("train.jsonl")
}

/// The report's measures of the predictor `name`.
fn predictor(name: &str) -> &'static Value {
    row(&FULL_REPORT.json["predictors"], "name", name)
}

#[test]
fn the_report_measures_the_plain_temperature_scaled_and_both_mc_dropout_predictors() {
    assert_eq!(
        column(&FULL_REPORT.json["predictors"], "name"),
        ["deterministic", "temperature", "mc_full", "mc_head"]
    );
}

#[test]
fn mc_dropout_is_measured_under_every_score_for_selective_prediction_and_the_ood_set() {
    let scores = [
        "max_probability",
        "predictive_entropy",
        "mutual_information",
        "margin",
    ];
    let mc = predictor("mc_full");
    assert_eq!(column(&mc["selective"], "score"), scores);
    assert_eq!(column(&mc["ood"], "score"), scores);
    assert_eq!(column(&mc["ood"], "set"), ["sms_spam"; 4]);
    let separation = row(&mc["ood"], "score", "max_probability");
    assert!(separation["auroc"].as_f64().unwrap() >= 0.0);
}

#[test]
fn a_predictor_without_samples_has_no_mutual_information_to_separate_the_ood_set_by() {
    assert_eq!(
        column(&predictor("deterministic")["ood"], "score"),
        ["max_probability", "predictive_entropy", "margin"],
        "no mutual information without samples"
    );
}

#[test]
fn the_report_sweeps_the_sample_counts_asked_for() {
    let sweep: Vec<u64> = FULL_REPORT.json["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point["samples"].as_u64().unwrap())
        .collect();
    assert_eq!(sweep, [1, 3, 5]);
}

#[test]
fn the_report_separates_the_ood_set_by_mahalanobis_and_knn_distances_to_the_reference_texts() {
    let rows = &FULL_REPORT.json["feature_distance"];
    let scores = column(rows, "score");
    assert!(
        scores.contains(&"mahalanobis") && scores.contains(&"knn"),
        "{scores:?}"
    );
    for distance in rows.as_array().unwrap() {
        assert_eq!(distance["set"], "sms_spam");
        let auroc = distance["auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auroc), "{distance}");
    }
}

#[test]
fn eval_draws_the_reliability_risk_coverage_and_ood_pictures() {
    for picture in ["reliability.png", "risk_coverage.png", "ood_sms_spam.png"] {
        assert!(
            FULL_REPORT.plots.join(picture).exists(),
            "{picture} missing"
        );
    }
}

#[test]
fn the_report_has_conformal_sets_of_each_predictor_the_calibration_scores_at_each_alpha() {
    let rows = &FULL_REPORT.json["conformal"];
    assert_eq!(
        conformal_rows(rows),
        at_each_alpha(&["temperature", "mc_full", "mc_head"])
    );
    for row in rows.as_array().unwrap() {
        assert!(row["mean_set_size"].as_f64().unwrap() >= 1.0, "{row}");
        assert!(
            (0.0..=1.0).contains(&row["coverage"].as_f64().unwrap()),
            "{row}"
        );
    }
}
