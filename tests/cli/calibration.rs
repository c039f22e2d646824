//! `candor calibrate`: refitting on other data with a default abstention
//! policy, fitting a cascade to the next model, and the options it refuses.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::common::{fixture_model, model_copy, subset};
use crate::helpers::{candor_fails, candor_succeeds, read_json, row, tiny_model};

/// The arguments of `candor calibrate` of `model` on `data` with `extra` options.
fn calibrate<'a>(model: &'a Path, data: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let paths = [
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    [&["calibrate"][..], &paths, extra].concat()
}

#[test]
fn calibrate_refits_on_other_data_with_a_default_abstention_policy() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(tiny_model(), dir.path(), "model");
    let data = subset(dir.path(), "trec6.jsonl", 80);
    candor_succeeds(&calibrate(
        &model,
        &data,
        &[
            "--mc-samples",
            "0",
            "--abstain-on",
            "predictive_entropy",
            "--abstain-coverage",
            "0.9",
        ],
    ));
    let recalibrated = read_json(&model.join("calibration.json"));
    assert_eq!(recalibrated["examples"], 80);
    assert!(recalibrated["full"].is_null());
    assert_eq!(
        recalibrated["abstention"],
        serde_json::json!({"score": "predictive_entropy", "coverage": 0.9})
    );
}

/// What `candor calibrate` with `options` says when it refuses them.
fn refusal_of(options: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(tiny_model(), dir.path(), "model");
    let data = subset(dir.path(), "trec6.jsonl", 80);
    candor_fails(&calibrate(&model, &data, options))
}

#[test]
fn an_abstention_coverage_without_a_score_is_refused() {
    let err = refusal_of(&["--abstain-coverage", "0.9"]);
    assert!(err.contains("need --abstain-on"), "{err}");
}

#[test]
fn an_abstention_score_without_a_threshold_or_a_coverage_is_refused() {
    let err = refusal_of(&["--abstain-on", "margin"]);
    assert!(err.contains("give a threshold or a coverage"), "{err}");
}

#[test]
fn an_unknown_abstention_score_is_refused_by_name() {
    let err = refusal_of(&["--abstain-on", "vibes", "--abstain-threshold", "1"]);
    assert!(err.contains("unknown score 'vibes'"), "{err}");
}

/// Two copies of the committed fixture model in `dir`: one to answer first
/// and the one it passes texts on to.
fn cascade_of_fixtures(dir: &Path) -> (PathBuf, PathBuf) {
    (
        model_copy(&fixture_model(), dir, "first"),
        model_copy(&fixture_model(), dir, "next"),
    )
}

#[test]
fn calibrate_cascade_to_adds_a_fit_for_the_next_model_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (first, next) = cascade_of_fixtures(dir.path());
    let before = read_json(&first.join("calibration.json"));
    let data = subset(dir.path(), "trec6.jsonl", 120);
    let o = candor_succeeds(&calibrate(
        &first,
        &data,
        &["--cascade-to", next.to_str().unwrap()],
    ));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.contains("| margin (points) | threshold | passed on | cascade accuracy |"));
    let mut after = read_json(&first.join("calibration.json"));
    let step = row(&after["cascade"], "next_name", "next").clone();
    let weights = std::fs::read(next.join("model.safetensors")).unwrap();
    assert_eq!(
        step["next_weights_sha256"],
        hex::encode(sha2::Sha256::digest(&weights))
    );
    assert_eq!(step["examples"], 120);
    // The same model as the next one: it can answer everything itself.
    assert_eq!(step["passed_on"], 0.0);
    assert_eq!(step["trade_off"].as_array().unwrap().len(), 6);
    let kept = after.as_object_mut().unwrap();
    kept.remove("cascade");
    assert_eq!(kept["deterministic"], before["deterministic"]);
    assert_eq!(kept["examples"], before["examples"]);
}

/// What `candor calibrate --cascade-to` with `extra` options says when it
/// refuses to fit the cascade from `first` to `next`.
fn cascade_refusal(dir: &Path, first: &Path, next: &Path, extra: &[&str]) -> String {
    let data = subset(dir, "trec6.jsonl", 40);
    let cascade = [&["--cascade-to", next.to_str().unwrap()][..], extra].concat();
    candor_fails(&calibrate(first, &data, &cascade))
}

#[test]
fn a_cascade_margin_beyond_100_accuracy_points_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, next) = cascade_of_fixtures(dir.path());
    let err = cascade_refusal(dir.path(), &first, &next, &["--cascade-margin", "150"]);
    assert!(err.contains("--cascade-margin"), "{err}");
}

#[test]
fn a_cascade_fit_from_a_model_without_a_calibration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, next) = cascade_of_fixtures(dir.path());
    std::fs::remove_file(first.join("calibration.json")).unwrap();
    let err = cascade_refusal(dir.path(), &first, &next, &[]);
    assert!(err.contains("run candor calibrate on it first"), "{err}");
}
