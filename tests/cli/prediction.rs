//! `candor predict`: one JSON line per text, MC-dropout uncertainty, the
//! precisions, and a directory that is not a model.

use serde_json::Value;

use crate::common::fixture_model;
use crate::helpers::{candor_fails, candor_succeeds, column, stdout, tiny_model};

#[test]
fn predict_prints_a_json_line_per_text_with_its_label_and_a_score_per_label() {
    let texts = ["How many people live in Paris ?", "Who wrote Hamlet ?"];
    let o = candor_succeeds(
        &[
            &["predict", "--model", tiny_model().to_str().unwrap()][..],
            &texts,
        ]
        .concat(),
    );
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let lines = Value::from(lines);
    assert_eq!(column(&lines, "text"), texts, "a line per text, in order");
    let labels = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];
    for line in lines.as_array().unwrap() {
        assert!(labels.contains(&line["label"].as_str().unwrap()), "{line}");
        assert_eq!(line["scores"].as_array().unwrap().len(), 6, "{line}");
    }
}

/// What `candor predict` prints for one question with 8 MC-dropout samples
/// drawn from `seed`.
fn sampled_prediction(seed: &str) -> String {
    let o = candor_succeeds(&[
        "predict",
        "--model",
        tiny_model().to_str().unwrap(),
        "--mc-samples",
        "8",
        "--seed",
        seed,
        "What is a kiwi ?",
    ]);
    stdout(&o)
}

#[test]
fn predict_with_mc_samples_reports_the_samples_and_their_mutual_information() {
    let line: Value = serde_json::from_str(&sampled_prediction("1")).unwrap();
    assert_eq!(line["uncertainty"]["samples"], 8);
    assert!(line["uncertainty"]["mutual_information"].as_f64().unwrap() >= 0.0);
}

#[test]
fn predict_with_mc_samples_repeats_its_answer_for_a_seed_and_changes_it_for_another() {
    assert_eq!(sampled_prediction("1"), sampled_prediction("1"));
    assert_ne!(sampled_prediction("1"), sampled_prediction("2"));
}

#[test]
fn an_unknown_precision_is_refused_naming_the_ones_there_are() {
    let err = candor_fails(&[
        "--precision",
        "int4",
        "predict",
        "--model",
        fixture_model().to_str().unwrap(),
        "Who wrote Hamlet ?",
    ]);
    assert!(err.contains("f32, bf16 or int8"), "{err}");
}

#[test]
fn predict_at_bf16_gives_the_f32_label_where_the_cpu_has_it() {
    if !candor::model::Precision::Bf16.available() {
        return;
    }
    let model = fixture_model();
    let label = |precision: &str| {
        let o = candor_succeeds(&[
            "--precision",
            precision,
            "predict",
            "--model",
            model.to_str().unwrap(),
            "How many people live in Tokyo ?",
        ]);
        let line: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        line["label"].clone()
    };
    assert_eq!(label("bf16"), label("f32"));
}

#[test]
fn a_model_directory_without_weights_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = candor_fails(&["predict", "--model", dir.path().to_str().unwrap(), "hello"]);
    assert!(err.contains("config.json"), "{err}");
}
