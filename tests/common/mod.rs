//! Helpers shared by the integration test binaries.

use std::path::{Path, PathBuf};

/// The Python interpreter with torch, transformers and huggingface_hub:
/// `CANDOR_PYTHON`, else the cached environment `scripts/python-env.sh` makes.
/// Tests that need it fail (never skip) without it.
#[allow(dead_code)]
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CANDOR_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let default = Path::new(&home).join(".cache/candor/venv/bin/python");
    assert!(
        default.is_file(),
        "no Python with transformers and huggingface_hub: run scripts/python-env.sh or set CANDOR_PYTHON"
    );
    default
}

/// Runs a script of `tests/python/` with [`python`], fails the test if it
/// fails, and returns what it printed (stdout then stderr).
#[allow(dead_code)]
pub fn run_python_script(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

/// The committed fixture model, `tests/fixtures/tiny-trec6`.
#[allow(dead_code)]
pub fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-trec6")
}

/// A copy of the model directory `model` in `dir/name`, for a test to change.
#[allow(dead_code)]
pub fn model_copy(model: &Path, dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

/// The first `n` lines of a shipped data set (`data/<data>`), as a file of
/// that name in `dir`.
#[allow(dead_code)]
pub fn subset(dir: &Path, data: &str, n: usize) -> PathBuf {
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

/// Lines `from..to` (counted from 0, `to` excluded) of the shipped trec6
/// data, as texts and their labels.
#[allow(dead_code)]
pub fn trec6_questions(from: usize, to: usize) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/trec6.jsonl"))
            .unwrap();
    text.lines()
        .skip(from)
        .take(to - from)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["text"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Trains a model of the two-layer test architecture (hidden size 32, four
/// heads, feed-forward width 64, 40 positions, no MC evaluation) on `data`
/// into `out`, with `options` (vocabulary and schedule) added.
#[allow(dead_code)]
pub fn train_two_layers(data: &Path, out: &Path, options: &[&str]) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(["train", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args([
            "--layers",
            "2",
            "--hidden",
            "32",
            "--heads",
            "4",
            "--intermediate",
            "64",
        ])
        .args([
            "--max-length",
            "40",
            "--max-positions",
            "40",
            "--mc-samples",
            "0",
            "--quiet",
        ])
        .args(options)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A two-layer model trained for a moment on 400 questions of the shipped
/// trec6 data (labels ABBR, DESC, HUM there), in `dir/candor-model`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn train_tiny(dir: &Path) -> PathBuf {
    let data = subset(dir, "trec6.jsonl", 400);
    let out = dir.join("candor-model");
    train_two_layers(&data, &out, &["--vocab-size", "400", "--epochs", "2"]);
    out
}
