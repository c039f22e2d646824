//! `candor compress` on the small fixture model: what each step keeps, and
//! every bad input refused with nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use candor::compress::{compress, CompressError, CompressSettings, LayerChoice};
use candor::model::{Classifier, DropoutMode};

mod common;
use common::{fixture_model, subset, train_tiny, train_two_layers, trec6_questions};

/// Lines `from..to` of the shipped trec6 data, as texts and labels.
fn trec6(from: usize, to: usize) -> (Vec<String>, Vec<String>) {
    trec6_questions(from, to).into_iter().unzip()
}

fn settings() -> CompressSettings {
    CompressSettings {
        prune_to: None,
        held_out: None,
        data_labels: Vec::new(),
        layers: LayerChoice::All,
        intermediate: None,
        half: false,
        force: false,
    }
}

fn logits(model: &Path, texts: &[String]) -> Vec<Vec<f32>> {
    let classifier = Classifier::load(model).unwrap();
    texts
        .iter()
        .map(|t| {
            let ids = classifier.encoder.encode(t, true).unwrap().ids;
            classifier
                .logits(&[&ids], DropoutMode::Off)
                .unwrap()
                .remove(0)
        })
        .collect()
}

fn largest_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn pruning_keeps_the_logits_of_the_texts_it_kept_and_shrinks_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned");
    let (texts, labels) = trec6(0, 300);
    let (held_out, _) = trec6(300, 500);
    let report = compress(
        &fixture_model(),
        &out,
        &CompressSettings {
            prune_to: Some(texts.clone()),
            held_out: Some(held_out),
            data_labels: labels,
            ..settings()
        },
    )
    .unwrap();
    assert!(report.vocab_size[1] < report.vocab_size[0], "{report:?}");
    let cost = report.held_out.unwrap();
    assert!(
        cost.pieces_per_text[1] >= cost.pieces_per_text[0],
        "{cost:?}"
    );
    let difference = largest_difference(&logits(&fixture_model(), &texts), &logits(&out, &texts));
    assert!(difference <= 1e-4, "logits moved by {difference}");
    assert!(out.join("compression.json").is_file());
}

#[test]
fn f16_storage_halves_the_weights_and_keeps_probabilities_within_1e_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("half");
    let report = compress(
        &fixture_model(),
        &out,
        &CompressSettings {
            half: true,
            ..settings()
        },
    )
    .unwrap();
    assert!(
        report.weights_bytes[1] * 10 < report.weights_bytes[0] * 6,
        "{report:?}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "float16");
    let (texts, _) = trec6(0, 100);
    let softmax = |rows: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|l| candor::model::softmax(l, 1.0))
            .collect()
    };
    let difference = largest_difference(
        &softmax(logits(&fixture_model(), &texts)),
        &softmax(logits(&out, &texts)),
    );
    assert!(difference <= 1e-2, "probabilities moved by {difference}");
}

#[test]
fn keeping_fewer_layers_writes_a_model_of_that_many_layers_with_the_kept_weights() {
    let dir = tempfile::tempdir().unwrap();
    let full = train_tiny(dir.path());
    let out = dir.path().join("one-layer");
    let report = compress(
        &full,
        &out,
        &CompressSettings {
            layers: LayerChoice::Count(1),
            ..settings()
        },
    )
    .unwrap();
    assert_eq!(report.layers, (2, vec![1]));
    let small = Classifier::load(&out).unwrap();
    assert_eq!(small.config.num_hidden_layers, 1);
    let read = |dir: &Path, name: &str| {
        let (weights, _) = candor::model::read_weights(dir, &candle_core::Device::Cpu).unwrap();
        weights[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(
        read(&full, "bert.encoder.layer.1.output.dense.weight"),
        read(&out, "bert.encoder.layer.0.output.dense.weight")
    );
}

#[test]
fn narrowing_the_feed_forward_layers_writes_a_model_of_that_width_that_classifies() {
    let dir = tempfile::tempdir().unwrap();
    let full = train_tiny(dir.path());
    let out = dir.path().join("narrow");
    let report = compress(
        &full,
        &out,
        &CompressSettings {
            intermediate: Some(16),
            ..settings()
        },
    )
    .unwrap();
    assert_eq!(report.intermediate_size, [64, 16]);
    let narrow = Classifier::load(&out).unwrap();
    assert_eq!(narrow.config.intermediate_size, 16);
    let (texts, _) = trec6(0, 20);
    let rows = logits(&out, &texts);
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().flatten().all(|x| x.is_finite()));
    // Keeping every neuron keeps the model.
    let whole = dir.path().join("whole");
    compress(
        &full,
        &whole,
        &CompressSettings {
            intermediate: Some(64),
            ..settings()
        },
    )
    .unwrap();
    assert_eq!(
        largest_difference(&logits(&full, &texts), &logits(&whole, &texts)),
        0.0
    );
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let not_a_model = dir.path().join("empty");
    std::fs::create_dir_all(&not_a_model).unwrap();
    let error = compress(&not_a_model, &out, &settings()).unwrap_err();
    assert!(matches!(error, CompressError::NotAModel(..)), "{error}");

    let (texts, _) = trec6(0, 20);
    let reviews = CompressSettings {
        prune_to: Some(texts),
        data_labels: vec!["positive".into(), "negative".into()],
        ..settings()
    };
    let error = compress(&fixture_model(), &out, &reviews).unwrap_err();
    assert!(
        error.to_string().contains("\"negative\", \"positive\""),
        "{error}"
    );

    let too_many = CompressSettings {
        layers: LayerChoice::Count(5),
        ..settings()
    };
    let error = compress(&fixture_model(), &out, &too_many).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot keep 5 layers of a model with 1"),
        "{error}"
    );
    let too_wide = CompressSettings {
        intermediate: Some(100_000),
        ..settings()
    };
    let error = compress(&fixture_model(), &out, &too_wide).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("feed-forward neurons of a layer"),
        "{error}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the empty folder: {leftovers:?}");

    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let error = compress(&fixture_model(), &out, &settings()).unwrap_err();
    assert!(matches!(error, CompressError::OutputExists(_)), "{error}");
    assert!(out.join("keep.txt").is_file());
    compress(
        &fixture_model(),
        &out,
        &CompressSettings {
            force: true,
            ..settings()
        },
    )
    .unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(Classifier::load(&out).is_ok());
}

#[test]
fn the_command_line_prints_the_report_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["compress", "--model", fixture_model().to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let done = run(&["--f16"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(report["dtype"], "float16");
    let again = run(&["--f16"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

/// Mean total-variation distance between two models' probabilities over
/// `texts` (0: identical predictions, 1: disjoint), and the share of texts
/// on which they predict the same label.
fn distance_and_agreement(a: &Path, b: &Path, texts: &[String]) -> (f64, f64) {
    let probabilities = |row: &Vec<f32>| candor::model::softmax(row, 1.0);
    let argmax = |p: &[f32]| (0..p.len()).max_by(|&i, &j| p[i].total_cmp(&p[j])).unwrap();
    let (mut distance, mut same) = (0.0, 0);
    for (x, y) in logits(a, texts).iter().zip(&logits(b, texts)) {
        let (p, q) = (probabilities(x), probabilities(y));
        distance += p
            .iter()
            .zip(&q)
            .map(|(u, v)| (u - v).abs() as f64)
            .sum::<f64>()
            / 2.0;
        same += usize::from(argmax(&p) == argmax(&q));
    }
    let n = texts.len() as f64;
    (distance / n, same as f64 / n)
}

/// A two-layer model that has learned something from `data` (1,200
/// questions, 8 epochs), in `dir/teacher`.
fn train_a_teacher(data: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("teacher");
    let options = [
        "--vocab-size",
        "600",
        "--epochs",
        "8",
        "--learning-rate",
        "2e-3",
    ];
    train_two_layers(data, &out, &options);
    out
}

#[test]
fn distilling_the_full_model_into_fewer_layers_brings_it_back_to_its_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(dir.path(), "trec6.jsonl", 1200);
    let teacher = train_a_teacher(&data, dir.path());
    let small = dir.path().join("one-layer");
    compress(
        &teacher,
        &small,
        &CompressSettings {
            layers: LayerChoice::Count(1),
            ..settings()
        },
    )
    .unwrap();
    let student = dir.path().join("distilled");
    let status = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(["train", "--data"])
        .arg(&data)
        .arg("--init-from")
        .arg(&small)
        .arg("--teacher")
        .arg(&teacher)
        .args(["--distill-weight", "0.9", "--distill-temperature", "2"])
        .args([
            "--distill-copies",
            "2",
            "--epochs",
            "3",
            "--max-length",
            "40",
        ])
        .args(["--mc-samples", "0", "--quiet", "--out"])
        .arg(&student)
        .status()
        .unwrap();
    assert!(status.success());

    let (held_out, _) = trec6(400, 800);
    let (before, agreed_before) = distance_and_agreement(&small, &teacher, &held_out);
    let (after, agreed_after) = distance_and_agreement(&student, &teacher, &held_out);
    eprintln!(
        "distance to the teacher on held-out questions: {before:.4} before distillation, {after:.4} after; \
         same label {agreed_before:.3} / {agreed_after:.3}"
    );
    assert!(
        after < before / 2.0,
        "distance to the teacher {before:.4} → {after:.4}"
    );
    assert!(
        agreed_after >= 0.95,
        "the student agrees with its teacher on {agreed_after:.3}"
    );
}

#[test]
fn texts_to_keep_widen_the_pruned_vocabulary_whatever_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = subset(dir.path(), "trec6.jsonl", 200);
    let vocabulary = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let done = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["compress", "--model", fixture_model().to_str().unwrap()])
            .args([
                "--data",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        report["vocab_size"][1].as_u64().unwrap()
    };
    let sms = root.join("data/sms_spam.jsonl"); // labelled ham and spam
    let narrow = vocabulary("narrow", &[]);
    let wide = vocabulary("wide", &["--keep-texts", sms.to_str().unwrap()]);
    assert!(
        wide > narrow,
        "{narrow} pieces without the SMS texts, {wide} with them"
    );
}
