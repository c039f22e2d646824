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
