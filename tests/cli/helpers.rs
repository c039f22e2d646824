//! Running the binary, the data its tests train on, and the models they share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::LazyLock;

use serde_json::Value;

use crate::common::subset;

/// Runs `candor` with `args` on one compute thread.
fn candor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(args)
        .env("CANDOR_THREADS", "1")
        .output()
        .expect("the candor binary runs")
}

/// Runs `candor` with `args`, fails the test unless it succeeds, and returns
/// what it printed.
pub fn candor_succeeds(args: &[&str]) -> Output {
    let o = candor(args);
    assert!(o.status.success(), "candor {args:?} failed: {}", stderr(&o));
    o
}

/// Runs `candor` with `args`, fails the test if it succeeds, and returns its
/// error output.
pub fn candor_fails(args: &[&str]) -> String {
    let o = candor(args);
    assert!(!o.status.success(), "candor {args:?} succeeded");
    stderr(&o)
}

/// What a command printed to stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a command printed to stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON document in `path`.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The element of the array `rows` whose `key` is `value`.
pub fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|row| row[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {rows}"))
}

/// The string `key` of each element of the array `rows`, in order.
pub fn column<'a>(rows: &'a Value, key: &str) -> Vec<&'a str> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row[key].as_str().unwrap())
        .collect()
}

/// The tiny model's architecture flags.
pub const TINY_SIZES: [&str; 8] = [
    "--layers",
    "1",
    "--hidden",
    "32",
    "--heads",
    "2",
    "--intermediate",
    "64",
];

/// Trains the tiny model on the first 600 questions of trec6 in `dir`, with
/// `extra` options added to the command line; returns `dir/model`.
pub fn train_tiny_with(dir: &Path, extra: &[&str]) -> PathBuf {
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
    candor_succeeds(&args);
    out
}

/// The tiny model trained with no extra options, once per run of this test
/// binary: the first test to ask trains it, tests running meanwhile wait for
/// it. Only read it; a test that changes a model changes a copy
/// ([`crate::common::model_copy`]).
pub fn tiny_model() -> &'static Path {
    static TRAINED: LazyLock<PathBuf> =
        LazyLock::new(|| train_tiny_with(&shared_dir("tiny-model-"), &[]));
    &TRAINED
}

/// A new directory under `target/tmp` for what the tests of one run share.
/// It is kept after the run (a static is never dropped, so nothing could
/// remove it at the right time), to be looked at when a test failed;
/// `cargo clean` removes it.
pub fn shared_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep()
}

/// The predictor and alpha of each conformal row in `rows`, in order.
pub fn conformal_rows(rows: &Value) -> Vec<(&str, f64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["predictor"].as_str().unwrap(),
                row["alpha"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Each of `predictors` at each alpha reported (0.05, 0.1 and 0.2), in the
/// order reports list them.
pub fn at_each_alpha<'a>(predictors: &[&'a str]) -> Vec<(&'a str, f64)> {
    predictors
        .iter()
        .flat_map(|&p| [0.05, 0.1, 0.2].map(|alpha| (p, alpha)))
        .collect()
}
