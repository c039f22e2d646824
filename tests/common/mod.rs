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

/// A two-layer model trained for a moment on 400 questions of the shipped
/// trec6 data (labels ABBR, DESC, HUM there), in `dir/candor-model`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn train_tiny(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/trec6.jsonl"))
            .unwrap();
    let data = dir.join("data.jsonl");
    std::fs::write(&data, text.lines().take(400).collect::<Vec<_>>().join("\n")).unwrap();
    let out = dir.join("candor-model");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
        .args([
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--layers",
            "2",
            "--hidden",
            "32",
            "--heads",
            "4",
            "--intermediate",
            "64",
            "--vocab-size",
            "400",
        ])
        .args([
            "--max-length",
            "40",
            "--max-positions",
            "40",
            "--epochs",
            "2",
            "--mc-samples",
            "0",
            "--quiet",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    out
}
