//! Helpers shared by the integration test binaries.

use std::path::{Path, PathBuf};

/// The Python interpreter with torch, transformers and huggingface_hub:
/// `CANDOR_PYTHON`, else the cached environment `scripts/python-env.sh` makes.
/// Tests that need it fail (never skip) without it.
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
