//! Running the binary, the data its tests train on, and the models they share.

use std::fs::File;
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
        LazyLock::new(|| train_tiny_with(&shared_dir("tiny-model"), &[]));
    &TRAINED
}

/// A new directory `name` for what the tests of this run share, in the
/// run's directory under `target/tmp`. It outlives the run (a static is never
/// dropped, so nothing could remove it at the right time), to be looked at
/// when a test failed; the next run removes it.
pub fn shared_dir(name: &str) -> PathBuf {
    let dir = this_run().join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// How the directories of runs of this binary under `target/tmp` begin.
const RUN_PREFIX: &str = "cli-run-";

/// This run's directory under `target/tmp`, made when a test first asks for
/// it, after removing those of runs that have ended. A run holds a lock on
/// its directory's `lock` file as long as its process lives (the static keeps
/// the file open; the system lets go when the process exits), so a run going
/// on beside this one, another `cargo test`, keeps its directory.
fn this_run() -> &'static Path {
    static RUN: LazyLock<(PathBuf, File)> = LazyLock::new(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_ended_runs(tmp);
        start_run(tmp)
    });
    &RUN.0
}

/// Removes the run directories in `tmp` whose lock no process holds.
fn remove_ended_runs(tmp: &Path) {
    for entry in std::fs::read_dir(tmp).unwrap() {
        let path = entry.unwrap().path();
        let is_run = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(RUN_PREFIX));
        let ended = || File::open(path.join("lock")).is_ok_and(|lock| lock.try_lock().is_ok());
        if is_run && ended() {
            // A run starting beside this one may be removing it too.
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A new run directory in `tmp` and its `lock` file, locked. The directory
/// is named like a run only once locked, so no other run takes it for ended.
fn start_run(tmp: &Path) -> (PathBuf, File) {
    let starting = tempfile::Builder::new()
        .prefix("cli-starting-")
        .tempdir_in(tmp)
        .unwrap()
        .keep();
    let lock = File::create(starting.join("lock")).unwrap();
    lock.lock().unwrap();
    let unique = starting.file_name().unwrap().to_str().unwrap();
    let run = tmp.join(unique.replacen("cli-starting-", RUN_PREFIX, 1));
    std::fs::rename(&starting, &run).unwrap();
    (run, lock)
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
