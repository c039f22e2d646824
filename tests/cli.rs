//! The `candor` binary end to end: train on a small subset, then eval and predict
//! on what it wrote; and the errors a user meets with bad data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn candor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(args)
        .env("CANDOR_THREADS", "1")
        .output()
        .expect("the candor binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The first `n` lines of a shipped data set, as a file in `dir`.
fn subset(dir: &Path, data: &str, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(data),
    )
    .unwrap();
    let path = dir.join(data);
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// The JSON document in `path`.
fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn train_tiny(dir: &Path) -> PathBuf {
    train_tiny_with(dir, &[])
}

/// The tiny model's architecture flags.
const TINY_SIZES: [&str; 8] = [
    "--layers",
    "1",
    "--hidden",
    "32",
    "--heads",
    "2",
    "--intermediate",
    "64",
];

/// Trains the tiny model with `extra` options added to the command line.
fn train_tiny_with(dir: &Path, extra: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let data = subset(dir, "trec6.jsonl", 600);
    let out = dir.join("model");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--vocab-size",
        "500",
        "--max-length",
        "32",
        "--max-positions",
        "32",
        "--epochs",
        "3",
        "--mc-samples",
        "4",
        "--quiet",
    ];
    args.extend_from_slice(&TINY_SIZES);
    args.extend_from_slice(extra);
    let o = candor(&args);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    out
}

#[test]
fn training_calibrates_on_its_own_split_and_calibrate_refits_with_a_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
    let read = |file: &str| read_json(&model.join(file));
    let metrics = read("metrics.json");
    let calibration = read("calibration.json");
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
    let rows = metrics["conformal"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "temperature and MC full at three alphas");
    assert!(std::fs::read_to_string(model.join("README.md"))
        .unwrap()
        .contains("Conformal prediction sets on the test split"));

    let held_out = subset(dir.path(), "trec6.jsonl", 80);
    let o = candor(&[
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        held_out.to_str().unwrap(),
        "--mc-samples",
        "0",
        "--abstain-on",
        "predictive_entropy",
        "--abstain-coverage",
        "0.9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recalibrated = read("calibration.json");
    assert_eq!(recalibrated["examples"], 80);
    assert!(recalibrated["full"].is_null());
    assert_eq!(
        recalibrated["abstention"],
        serde_json::json!({"score": "predictive_entropy", "coverage": 0.9})
    );

    for (flags, expected) in [
        (&["--abstain-coverage", "0.9"][..], "need --abstain-on"),
        (
            &["--abstain-on", "margin"][..],
            "give a threshold or a coverage",
        ),
        (
            &["--abstain-on", "vibes", "--abstain-threshold", "1"][..],
            "unknown score 'vibes'",
        ),
    ] {
        let mut args = vec![
            "calibrate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            held_out.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        let o = candor(&args);
        assert!(!o.status.success(), "{flags:?} succeeded");
        assert!(stderr(&o).contains(expected), "{flags:?}: {}", stderr(&o));
    }
}

#[test]
fn train_writes_a_complete_model_directory_that_eval_and_predict_use() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
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
        assert!(model.join(file).is_file(), "{file} is missing");
    }
    let config = read_json(&model.join("config.json"));
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 6);
    assert!(config["candor"]["temperature"].as_f64().unwrap() > 0.0);
    let metrics = read_json(&model.join("metrics.json"));
    for split in ["train", "val", "test"] {
        let acc = metrics[split]["deterministic"]["accuracy"]
            .as_f64()
            .unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    assert!(metrics["test"]["mc_dropout"]["ece"].is_number());
    assert_eq!(
        metrics["test"]["deterministic"]["confusion"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    let held_out = subset(dir.path(), "trec6.jsonl", 50);
    let o = candor(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        held_out.to_str().unwrap(),
        "--mc-samples",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains("deterministic") && table.contains("MC dropout (T=3)"),
        "{table}"
    );

    // `candor split` writes the very split training used.
    let split_dir = dir.path().join("split");
    std::fs::create_dir_all(&split_dir).unwrap();
    let same_data = subset(&split_dir, "trec6.jsonl", 600);
    let o = candor(&[
        "split",
        "--data",
        same_data.to_str().unwrap(),
        "--out",
        split_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = read_json(&model.join("metrics.json"));
    for name in ["train", "val", "calibration", "test"] {
        let lines = std::fs::read_to_string(split_dir.join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .count();
        assert_eq!(metrics["examples"][name], lines, "{name} split differs");
    }

    let unrelated = subset(dir.path(), "sms_spam.jsonl", 40);
    let plots = dir.path().join("plots");
    let o = candor(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        held_out.to_str().unwrap(),
        "--ood",
        unrelated.to_str().unwrap(),
        "--mc-samples",
        "3",
        "--sweep",
        "1,3,5",
        "--plots",
        plots.to_str().unwrap(),
        "--reference",
        split_dir.join("train.jsonl").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = report["predictors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["deterministic", "temperature", "mc_full", "mc_head"]
    );
    let mc = &report["predictors"][2];
    assert_eq!(mc["selective"].as_array().unwrap().len(), 4);
    assert_eq!(mc["ood"].as_array().unwrap().len(), 4);
    assert_eq!(
        report["predictors"][0]["ood"].as_array().unwrap().len(),
        3,
        "no mutual information without samples"
    );
    assert!(mc["ood"][0]["auroc"].as_f64().unwrap() >= 0.0);
    let sweep: Vec<u64> = report["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["samples"].as_u64().unwrap())
        .collect();
    assert_eq!(sweep, [1, 3, 5]);
    let distance = &report["feature_distance"][0];
    assert_eq!(distance["set"], "sms_spam");
    assert!((0.0..=1.0).contains(&distance["auroc"].as_f64().unwrap()));
    for picture in ["reliability.png", "risk_coverage.png", "ood_sms_spam.png"] {
        assert!(plots.join(picture).exists(), "{picture} missing");
    }
    // Conformal sets of every predictor the calibration has scores for, at each alpha.
    let conformal: Vec<(&str, f64)> = report["conformal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["predictor"].as_str().unwrap(),
                r["alpha"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(conformal.len(), 9, "{conformal:?}");
    assert_eq!(conformal[0], ("temperature", 0.05));
    assert_eq!(conformal[8], ("mc_head", 0.2));
    for row in report["conformal"].as_array().unwrap() {
        assert!(row["mean_set_size"].as_f64().unwrap() >= 1.0);
        assert!((0.0..=1.0).contains(&row["coverage"].as_f64().unwrap()));
    }

    let o = candor(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "How many people live in Paris ?",
        "Who wrote Hamlet ?",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let labels = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];
    assert!(labels.contains(&lines[0]["label"].as_str().unwrap()));
    assert_eq!(lines[0]["scores"].as_array().unwrap().len(), 6);
}

#[test]
fn predict_with_mc_samples_reports_uncertainty_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
    let run = |seed: &str| {
        let o = candor(&[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--mc-samples",
            "8",
            "--seed",
            seed,
            "What is a kiwi ?",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let first: serde_json::Value = serde_json::from_str(&run("1")).unwrap();
    assert_eq!(first["uncertainty"]["samples"], 8);
    assert!(first["uncertainty"]["mutual_information"].as_f64().unwrap() >= 0.0);
    assert_eq!(run("1"), run("1"));
    assert_ne!(run("1"), run("2"));
}

#[test]
fn an_unknown_precision_is_refused_naming_the_ones_there_are() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-trec6");
    let o = candor(&[
        "--precision",
        "int4",
        "predict",
        "--model",
        model.to_str().unwrap(),
        "Who wrote Hamlet ?",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("f32, bf16 or int8"), "{}", stderr(&o));
}

#[test]
fn predict_at_bf16_gives_the_f32_label_where_the_cpu_has_it() {
    if !candor::model::Precision::Bf16.available() {
        return;
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-trec6");
    let text = "How many people live in Tokyo ?";
    let label = |precision: &str| {
        let o = candor(&[
            "--precision",
            precision,
            "predict",
            "--model",
            model.to_str().unwrap(),
            text,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        line["label"].clone()
    };
    assert_eq!(label("bf16"), label("f32"));
}

#[test]
fn training_on_a_missing_file_names_the_file() {
    let o = candor(&[
        "train",
        "--data",
        "/nonexistent/data.jsonl",
        "--out",
        "/tmp/never",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/data.jsonl"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_csv_row_without_a_label_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "body,tag\ngreat film,pos\nawful film,\nfine,neg\n").unwrap();
    let o = candor(&[
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
    assert!(!o.status.success());
    let err = stderr(&o);
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
    let o = candor(&[
        "train",
        "--data",
        path.to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("one class"), "{}", stderr(&o));
}

#[test]
fn a_model_directory_without_weights_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = candor(&["predict", "--model", dir.path().to_str().unwrap(), "hello"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
}

#[test]
fn init_from_reuses_a_checkpoints_tokenizer_and_encoder_with_a_fresh_head() {
    let dir = tempfile::tempdir().unwrap();
    let base = train_tiny(dir.path());
    let data = subset(dir.path(), "sms_spam.jsonl", 300);
    let out = dir.path().join("fine-tuned");
    let o = candor(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--init-from",
        base.to_str().unwrap(),
        "--epochs",
        "1",
        "--mc-samples",
        "0",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(base.join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(out.join("tokenizer.json")).unwrap()
    );
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["id2label"]["0"], "ham");
    assert_eq!(config["hidden_size"], 32);
}

#[test]
fn init_from_a_model_of_the_same_labels_keeps_its_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let base = train_tiny(dir.path());
    let data = subset(dir.path(), "trec6.jsonl", 600);
    let out = dir.path().join("continued");
    let o = candor(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--init-from",
        base.to_str().unwrap(),
        "--epochs",
        "1",
        "--learning-rate",
        "1e-9",
        "--mc-samples",
        "0",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let classifier = |dir: &Path| {
        let (weights, _) = candor::model::read_weights(dir, &candle_core::Device::Cpu).unwrap();
        weights["classifier.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let moved = classifier(&base)
        .iter()
        .zip(classifier(&out))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved < 1e-4,
        "the classifier moved by {moved}: it was not kept"
    );
}

#[test]
fn training_twice_with_one_seed_gives_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = train_tiny(&dir.path().join("a"));
    let second = train_tiny(&dir.path().join("b"));
    for file in ["tokenizer.json", "model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(first.join(file)).unwrap(),
            std::fs::read(second.join(file)).unwrap(),
            "{file} differs"
        );
    }
}

#[tokio::test]
async fn db_migrate_is_repeatable_and_feedback_export_writes_corrections_as_jsonl() {
    use candor::store::{FeedbackRecord, ModelRecord, PredictionRecord, Store};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("loop.db").display());
    for _ in 0..2 {
        let migrated = candor(&["db", "migrate", "--database-url", &url]);
        assert!(migrated.status.success(), "{}", stderr(&migrated));
    }
    let store = Store::connect(&url).await.unwrap();
    let model = store
        .register_model(&ModelRecord {
            name: "m".into(),
            weights_sha256: "abc".into(),
            labels: vec!["negative".into(), "positive".into()],
            metrics: None,
        })
        .await
        .unwrap();
    let prediction = |text: Option<&str>| PredictionRecord {
        id: uuid::Uuid::now_v7(),
        created_at: std::time::SystemTime::now(),
        endpoint: "classify",
        text: text.map(str::to_string),
        text_truncated: false,
        text_sha256: "x".into(),
        label: "positive".into(),
        score: 0.6,
        probabilities: vec![0.4, 0.6],
        predictive_entropy: 0.67,
        margin: 0.2,
        sampled: None,
        latency_ms: 1.0,
        request_id: None,
        abstained: None,
    };
    let rows = [prediction(Some("a \"quoted\" film")), prediction(None)];
    store.insert_predictions(model, &rows).await.unwrap();
    for row in &rows {
        store
            .save_feedback(&FeedbackRecord {
                prediction_id: row.id,
                label: "negative".into(),
                source: None,
                created_at: std::time::SystemTime::now(),
            })
            .await
            .unwrap();
    }
    store.close().await;
    let exported = candor(&["feedback", "export", "--database-url", &url]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(
        stdout(&exported),
        "{\"text\":\"a \\\"quoted\\\" film\",\"label\":\"negative\"}\n"
    );
    assert!(stderr(&exported).contains("exported 1 corrections"));
    assert!(stderr(&exported).contains("skipped 1 feedback rows"));
    let bad = candor(&["db", "migrate", "--database-url", "mysql://nope"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("unsupported database URL"));
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
    let o = candor(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "Who wrote Hamlet?",
    ]);
    assert!(o.status.success(), "predict failed: {}", stderr(&o));
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

#[test]
fn an_auxiliary_label_field_with_a_single_value_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let o = candor(&[
        "train",
        "--data",
        subset(dir.path(), "trec6.jsonl", 100).to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
        "--aux-label-field",
        "label_that_is_not_there",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("label_that_is_not_there") && stderr(&o).contains("at least 2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pretraining_texts_without_pretraining_epochs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let data = subset(dir.path(), "trec6.jsonl", 100);
    let o = candor(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
        "--pretrain-data",
        data.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--pretrain-epochs"), "{}", stderr(&o));
}

#[test]
fn a_student_learns_from_its_teachers_and_a_teacher_of_other_labels_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = train_tiny(&dir.path().join("teacher"));
    let teacher_arg = teacher.to_str().unwrap();
    // Same data, flags and seed as the teacher: only the soft targets differ,
    // and a run with one seed is otherwise identical (see above).
    let student = train_tiny_with(
        &dir.path().join("student"),
        &[
            "--teacher",
            teacher_arg,
            "--teacher",
            teacher_arg,
            "--distill-weight",
            "1",
            "--distill-temperature",
            "2",
            "--distill-copies",
            "2",
        ],
    );
    let weights = |m: &Path| std::fs::read(m.join("model.safetensors")).unwrap();
    assert_ne!(weights(&student), weights(&teacher));
    let o = candor(&[
        "predict",
        "--model",
        student.to_str().unwrap(),
        "Who wrote Hamlet?",
    ]);
    assert!(o.status.success(), "predict failed: {}", stderr(&o));

    let spam = subset(dir.path(), "sms_spam.jsonl", 200);
    let out = dir.path().join("spam");
    let base = [
        &[
            "train",
            "--data",
            spam.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "1",
            "--quiet",
            "--teacher",
            teacher_arg,
        ][..],
        &TINY_SIZES,
    ]
    .concat();
    let o = candor(&base);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("predicts the labels"), "{}", stderr(&o));
    let o = candor(&[&base[..], &["--distill-weight", "1.5"]].concat());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("distillation weight must be in [0, 1]"),
        "{}",
        stderr(&o)
    );
    let o = candor(&[
        "train",
        "--data",
        spam.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--distill-copies",
        "2",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--distill-copies needs at least one --teacher"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "a failed run writes no model");
}

/// A copy of the committed fixture model in `dir/name`.
fn fixture_copy(dir: &Path, name: &str) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-trec6");
    let copy = dir.join(name);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

#[test]
fn calibrate_cascade_to_adds_a_fit_for_the_next_model_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (first, next) = (
        fixture_copy(dir.path(), "first"),
        fixture_copy(dir.path(), "next"),
    );
    let before = read_json(&first.join("calibration.json"));
    let data = subset(dir.path(), "trec6.jsonl", 120);
    let o = candor(&[
        "calibrate",
        "--model",
        first.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--cascade-to",
        next.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.contains("| margin (points) | threshold | passed on | cascade accuracy |"));
    let mut after = read_json(&first.join("calibration.json"));
    let step = after["cascade"][0].clone();
    let weights = std::fs::read(next.join("model.safetensors")).unwrap();
    use sha2::Digest;
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

#[test]
fn a_cascade_fit_without_a_calibration_or_with_a_bad_margin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, next) = (
        fixture_copy(dir.path(), "first"),
        fixture_copy(dir.path(), "next"),
    );
    let data = subset(dir.path(), "trec6.jsonl", 40);
    let fit = |extra: &[&str]| {
        let mut args = vec![
            "calibrate",
            "--model",
            first.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--cascade-to",
            next.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        candor(&args)
    };
    let o = fit(&["--cascade-margin", "150"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--cascade-margin"), "{}", stderr(&o));
    std::fs::remove_file(first.join("calibration.json")).unwrap();
    let o = fit(&[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run candor calibrate on it first"),
        "{}",
        stderr(&o)
    );
}
