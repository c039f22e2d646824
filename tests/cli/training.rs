//! `candor train`: the model directory it writes, the calibration and split
//! behind it, reproducibility, and the options that change how it trains.

use crate::common::subset;
use crate::helpers::{
    at_each_alpha, candor_succeeds, conformal_rows, read_json, tiny_model, train_tiny_with,
};

#[test]
fn training_writes_the_weights_tokenizer_config_metrics_calibration_readme_and_pictures() {
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.json",
        "training_curves.png",
        "reliability.png",
        "README.md",
        "calibration.json",
    ] {
        assert!(tiny_model().join(file).is_file(), "{file} is missing");
    }
}

#[test]
fn the_written_config_is_a_bert_sequence_classifier_of_six_labels_with_a_temperature() {
    let config = read_json(&tiny_model().join("config.json"));
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 6);
    assert!(config["candor"]["temperature"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_written_metrics_give_each_splits_accuracy_and_the_test_splits_calibration_and_confusion() {
    let metrics = read_json(&tiny_model().join("metrics.json"));
    for split in ["train", "val", "test"] {
        let accuracy = metrics[split]["deterministic"]["accuracy"]
            .as_f64()
            .unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{split}: {accuracy}");
    }
    let test = &metrics["test"];
    assert!(test["mc_dropout"]["ece"].is_number());
    assert_eq!(
        test["deterministic"]["confusion"].as_array().unwrap().len(),
        6
    );
}

#[test]
fn training_calibrates_on_its_own_calibration_split() {
    let metrics = read_json(&tiny_model().join("metrics.json"));
    let calibration = read_json(&tiny_model().join("calibration.json"));
    let examples = metrics["examples"]["calibration"].as_u64().unwrap();
    assert!(examples > 0);
    assert_eq!(calibration["examples"].as_u64().unwrap(), examples);
    assert_eq!(calibration["mc_samples"], 4);
    let sorted = calibration["deterministic"]["nonconformity"]
        .as_array()
        .unwrap();
    assert_eq!(sorted.len() as u64, examples);
    assert!(sorted.windows(2).all(|w| w[0].as_f64() <= w[1].as_f64()));
    assert!(calibration["full"]["mutual_information"].is_array());
    assert!(calibration["abstention"].is_null());
}

#[test]
fn training_reports_conformal_sets_on_the_test_split_for_two_predictors_at_three_alphas() {
    let metrics = read_json(&tiny_model().join("metrics.json"));
    assert_eq!(
        conformal_rows(&metrics["conformal"]),
        at_each_alpha(&["temperature-scaled", "MC full"])
    );
    assert!(std::fs::read_to_string(tiny_model().join("README.md"))
        .unwrap()
        .contains("Conformal prediction sets on the test split"));
}

#[test]
fn split_writes_the_very_split_training_used() {
    let dir = tempfile::tempdir().unwrap();
    let same_data = subset(dir.path(), "trec6.jsonl", 600);
    candor_succeeds(&[
        "split",
        "--data",
        same_data.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let metrics = read_json(&tiny_model().join("metrics.json"));
    for name in ["train", "val", "calibration", "test"] {
        let lines = std::fs::read_to_string(dir.path().join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .count();
        assert_eq!(metrics["examples"][name], lines, "{name} split differs");
    }
}

#[test]
fn training_again_with_the_same_seed_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let again = train_tiny_with(dir.path(), &[]);
    for file in ["tokenizer.json", "model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(tiny_model().join(file)).unwrap(),
            std::fs::read(again.join(file)).unwrap(),
            "{file} differs"
        );
    }
}

#[test]
fn weight_averaging_label_smoothing_r_drop_and_extra_pretraining_texts_train_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let unlabelled = subset(dir.path(), "sms_spam.jsonl", 200);
    let model = train_tiny_with(
        dir.path(),
        &[
            "--ema-decay",
            "0.9",
            "--label-smoothing",
            "0.1",
            "--rdrop",
            "1",
            "--pretrain-epochs",
            "1",
            "--pretrain-data",
            unlabelled.to_str().unwrap(),
        ],
    );
    let metrics = read_json(&model.join("metrics.json"));
    assert!(metrics["best_epoch"].as_u64().unwrap() >= 1);
    candor_succeeds(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "Who wrote Hamlet?",
    ]);
}

#[test]
fn an_auxiliary_fine_label_trains_a_model_that_still_predicts_the_main_labels() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny_with(
        dir.path(),
        &["--aux-label-field", "fine_label", "--aux-weight", "1"],
    );
    let config = read_json(&model.join("config.json"));
    let labels: Vec<&str> = config["id2label"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 6, "{labels:?}");
    assert!(labels.contains(&"NUM"));
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&weights).unwrap();
    assert!(
        header.tensors().keys().all(|name| !name.contains("aux")),
        "the auxiliary head is not saved"
    );
}
