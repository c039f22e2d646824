//! `candor train --init-from`: starting from the tiny model, on other labels
//! (a fresh head) or the same ones (its classifier kept).

use std::path::Path;

use crate::common::subset;
use crate::helpers::{candor_succeeds, read_json, tiny_model};

/// Trains one epoch on `data` from the tiny model into `out`, with `extra`
/// options.
fn fine_tune(data: &Path, out: &Path, extra: &[&str]) {
    let args = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--init-from",
        tiny_model().to_str().unwrap(),
        "--epochs",
        "1",
        "--mc-samples",
        "0",
        "--quiet",
    ];
    candor_succeeds(&[&args[..], extra].concat());
}

#[test]
fn init_from_reuses_a_checkpoints_tokenizer_and_encoder_with_a_fresh_head() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(dir.path(), "sms_spam.jsonl", 300);
    let out = dir.path().join("fine-tuned");
    fine_tune(&data, &out, &[]);
    assert_eq!(
        std::fs::read_to_string(tiny_model().join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(out.join("tokenizer.json")).unwrap()
    );
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["id2label"]["0"], "ham");
    assert_eq!(config["hidden_size"], 32);
}

#[test]
fn init_from_a_model_of_the_same_labels_keeps_its_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(dir.path(), "trec6.jsonl", 600);
    let out = dir.path().join("continued");
    fine_tune(&data, &out, &["--learning-rate", "1e-9"]);
    let moved = classifier_weights(tiny_model())
        .iter()
        .zip(classifier_weights(&out))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved < 1e-4,
        "the classifier moved by {moved}: it was not kept"
    );
}

/// The classifier's weight matrix of the model in `dir`, flattened.
fn classifier_weights(dir: &Path) -> Vec<f32> {
    let (weights, _) = candor::model::read_weights(dir, &candle_core::Device::Cpu).unwrap();
    weights["classifier.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}
