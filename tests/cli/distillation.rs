//! `candor train --teacher`: a student distilled from the tiny model, and
//! the distillation options refused before anything is written.

use std::path::Path;

use crate::common::subset;
use crate::helpers::{candor_fails, candor_succeeds, tiny_model, train_tiny_with, TINY_SIZES};

#[test]
fn a_student_distilled_from_its_teachers_with_masked_copies_differs_from_them_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = tiny_model().to_str().unwrap();
    // Same data, flags and seed as the teacher: only the soft targets differ,
    // and a run with one seed is otherwise identical (see training.rs).
    let student = train_tiny_with(
        dir.path(),
        &[
            "--teacher",
            teacher,
            "--teacher",
            teacher,
            "--distill-weight",
            "1",
            "--distill-temperature",
            "2",
            "--distill-copies",
            "2",
        ],
    );
    let weights = |m: &Path| std::fs::read(m.join("model.safetensors")).unwrap();
    assert_ne!(weights(&student), weights(tiny_model()));
    candor_succeeds(&[
        "predict",
        "--model",
        student.to_str().unwrap(),
        "Who wrote Hamlet?",
    ]);
}

/// What `candor train` on 200 text messages into `dir/spam` says when it
/// refuses `options`, after checking it wrote no model.
fn refusal_of_training_on_spam(dir: &Path, options: &[&str]) -> String {
    let spam = subset(dir, "sms_spam.jsonl", 200);
    let out = dir.join("spam");
    let args = [
        "train",
        "--data",
        spam.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let err = candor_fails(&[&args[..], options].concat());
    assert!(!out.exists(), "a failed run writes no model");
    err
}

/// The options of a one-epoch tiny student of the tiny model (whose labels
/// are trec6's).
fn student_of_the_tiny_model() -> Vec<&'static str> {
    let teacher = ["--epochs", "1", "--quiet", "--teacher"];
    [&teacher[..], &[tiny_model().to_str().unwrap()], &TINY_SIZES].concat()
}

#[test]
fn a_teacher_of_other_labels_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = refusal_of_training_on_spam(dir.path(), &student_of_the_tiny_model());
    assert!(err.contains("predicts the labels"), "{err}");
}

#[test]
fn a_distillation_weight_over_one_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let options = [
        &student_of_the_tiny_model()[..],
        &["--distill-weight", "1.5"],
    ]
    .concat();
    let err = refusal_of_training_on_spam(dir.path(), &options);
    assert!(
        err.contains("distillation weight must be in [0, 1]"),
        "{err}"
    );
}

#[test]
fn masked_copies_without_a_teacher_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = refusal_of_training_on_spam(dir.path(), &["--distill-copies", "2"]);
    assert!(
        err.contains("--distill-copies needs at least one --teacher"),
        "{err}"
    );
}
