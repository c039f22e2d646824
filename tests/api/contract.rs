//! The OpenAPI document is the contract: schemathesis (from PyPI) generates
//! requests from `docs/openapi.json`, valid and invalid, and checks that the
//! server accepts every valid one, refuses every invalid one, and answers
//! only with the statuses and bodies the document states.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::common::python;
use crate::database::settings_with_database;
use crate::helpers::{fixture_with_calibration, spawn_app_for};

/// The `schemathesis` command installed beside [`python`].
fn schemathesis() -> PathBuf {
    let command = python().with_file_name("schemathesis");
    assert!(
        command.is_file(),
        "no schemathesis beside {}: run scripts/python-env.sh",
        python().display()
    );
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_the_openapi_document_does_not_state() {
    // `"abstain": true` asks for the model's default policy, so the model
    // served has one (a model without one refuses it, as the document says).
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_with_calibration(dir.path(), |mut c| {
        c["abstention"] = json!({"score": "max_probability", "coverage": 0.9});
        Some(c)
    });
    // The limits the document states are the server's defaults.
    let database = format!("sqlite://{}", dir.path().join("candor.db").display());
    let mut settings = settings_with_database(&database);
    settings.limits.max_inputs = 64;
    settings.limits.max_body_bytes = 1 << 20;
    let app = spawn_app_for(model, settings).await;
    let document = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let url = app.address.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis())
            .arg("--config-file")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml"))
            .arg("run")
            .arg(&document)
            .args(["--url", &url, "--checks", "all", "--max-examples", "40"])
            .args(["--workers", "1", "--seed", "1", "--no-color"])
            // No examples kept between runs: every machine runs the same cases.
            .args(["--generation-database", "none"])
            .current_dir(std::env::temp_dir())
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found:\n{printed}");
    assert!(printed.contains("passed"), "{printed}");
    app.stop().await.unwrap();
}
