//! What `candor train` refuses to train on, and how it says so: the file,
//! the line, the option.

use crate::common::subset;
use crate::helpers::candor_fails;

#[test]
fn training_on_a_missing_file_names_the_file() {
    let err = candor_fails(&[
        "train",
        "--data",
        "/nonexistent/data.jsonl",
        "--out",
        "/tmp/never",
    ]);
    assert!(err.contains("/nonexistent/data.jsonl"), "{err}");
}

#[test]
fn a_csv_row_without_a_label_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "body,tag\ngreat film,pos\nawful film,\nfine,neg\n").unwrap();
    let err = candor_fails(&[
        "train",
        "--data",
        path.to_str().unwrap(),
        "--text-field",
        "body",
        "--label-field",
        "tag",
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(err.contains("bad.csv") && err.contains(":3"), "{err}");
}

#[test]
fn a_file_with_a_single_class_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.jsonl");
    let rows: Vec<String> = (0..20)
        .map(|i| format!("{{\"text\": \"text {i}\", \"label\": 1}}"))
        .collect();
    std::fs::write(&path, rows.join("\n")).unwrap();
    let err = candor_fails(&[
        "train",
        "--data",
        path.to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(err.contains("one class"), "{err}");
}

#[test]
fn an_auxiliary_label_field_with_a_single_value_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = candor_fails(&[
        "train",
        "--data",
        subset(dir.path(), "trec6.jsonl", 100).to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
        "--aux-label-field",
        "label_that_is_not_there",
        "--quiet",
    ]);
    assert!(
        err.contains("label_that_is_not_there") && err.contains("at least 2"),
        "{err}"
    );
}

#[test]
fn pretraining_texts_without_pretraining_epochs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(dir.path(), "trec6.jsonl", 100);
    let err = candor_fails(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
        "--pretrain-data",
        data.to_str().unwrap(),
    ]);
    assert!(err.contains("--pretrain-epochs"), "{err}");
}
