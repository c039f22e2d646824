//! What `serve` refuses to start with: an open service on the network, and
//! model directories whose parts do not fit together. Each would otherwise
//! start and then fail requests (or expose stored texts).

use std::path::{Path, PathBuf};

use candor::serve::models::ModelSpec;
use candor::serve::ServeSettings;

use candor::model::{Pooling, Representation};

use crate::common::fixture_model;
use crate::helpers::{fixture_copy, fixture_with_neighbours, test_settings};

/// Runs the server on `addr` with `model` until it fails or is stopped
/// (after it became ready); returns the error it stopped with, if any.
async fn start_on(addr: &str, model: &Path, settings: ServeSettings) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let port = listener.local_addr().unwrap().port();
    let model = model.to_path_buf();
    let server = tokio::spawn(async move {
        candor::serve::run(listener, vec![ModelSpec::of_dir(&model)], settings, async {
            let _ = stopped.await;
        })
        .await
    });
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if server.is_finished() {
            break;
        }
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            let _ = stop.send(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.await.unwrap().map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn without_an_api_key_serving_beyond_loopback_is_refused_unless_insecure_no_auth() {
    let refused = start_on("0.0.0.0:0", &fixture_model(), test_settings()).await;
    let message = refused.expect_err("no key on 0.0.0.0 must be refused");
    assert!(message.contains("--insecure-no-auth"), "{message}");
    assert!(message.contains("--api-key"), "{message}");

    let mut open = test_settings();
    open.insecure_no_auth = true;
    start_on("0.0.0.0:0", &fixture_model(), open)
        .await
        .expect("serves openly when told to");

    let mut keyed = test_settings();
    keyed.api_key = Some("s3cret".into());
    start_on("0.0.0.0:0", &fixture_model(), keyed)
        .await
        .expect("serves with a key");

    start_on("127.0.0.1:0", &fixture_model(), test_settings())
        .await
        .expect("loopback needs no key");
}

/// Starts the server on `model` and fails the test unless it refuses,
/// saying `expected`.
async fn assert_refused_naming(model: &Path, expected: &str) {
    let error = start_on("127.0.0.1:0", model, test_settings())
        .await
        .expect_err(expected);
    assert!(
        error.contains(expected),
        "expected '{expected}' in: {error}"
    );
}

/// Applies `change` to the JSON file `file` of the model in `model`.
fn edit_json(model: &Path, file: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let path = model.join(file);
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    change(&mut value);
    std::fs::write(&path, value.to_string()).unwrap();
}

/// A copy of the fixture model with `change` applied to one of its JSON
/// files, and the directory that holds it (removed when dropped).
fn broken_model(
    file: &str,
    change: impl FnOnce(&mut serde_json::Value),
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_copy(dir.path(), "tiny-trec6");
    edit_json(&model, file, change);
    (dir, model)
}

#[tokio::test]
async fn a_config_at_odds_with_the_tokenizer_or_itself_is_refused_at_start_naming_the_problem() {
    let cases = [
        (
            "vocab_size is 100",
            broken_model("config.json", |c| c["vocab_size"] = 100.into()),
        ),
        (
            "layer_norm_eps must be positive",
            broken_model("config.json", |c| c["layer_norm_eps"] = (-1.0).into()),
        ),
        (
            "names the label 'ABBR' more than once",
            broken_model("config.json", |c| c["id2label"]["1"] = "ABBR".into()),
        ),
    ];
    for (expected, (_dir, model)) in cases {
        assert_refused_naming(&model, expected).await;
    }
}

#[tokio::test]
async fn a_calibration_that_does_not_fit_the_model_is_refused_at_start_naming_the_problem() {
    let cases = [
        (
            "not of the model's hidden size 32",
            broken_model("calibration.json", |c| {
                for mean in c["feature_distance"]["fitted"]["means"]
                    .as_array_mut()
                    .unwrap()
                {
                    mean.as_array_mut().unwrap().push(0.0.into());
                }
            }),
        ),
        (
            "top-layer scores sample 3 layers of a model of 1",
            broken_model("calibration.json", |c| c["top"]["layers"] = 3.into()),
        ),
    ];
    for (expected, (_dir, model)) in cases {
        assert_refused_naming(&model, expected).await;
    }
}

/// Fails the test unless the fixture with nearest-neighbour vectors (of
/// layer 1's mean), changed by `change`, is refused at start saying `expected`.
async fn assert_neighbours_refused(change: impl FnOnce(&Path), expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layer_one = Representation {
        layer: 1,
        pooling: Pooling::Mean,
    };
    let model = fixture_with_neighbours(dir.path(), layer_one);
    change(&model);
    assert_refused_naming(&model, expected).await;
}

#[tokio::test]
async fn neighbour_vectors_missing_or_unlike_their_record_are_refused_at_start_naming_the_problem()
{
    assert_neighbours_refused(
        |m| std::fs::remove_file(m.join("neighbours.safetensors")).unwrap(),
        "neighbours.safetensors",
    )
    .await;
    assert_neighbours_refused(
        |m| {
            edit_json(m, "calibration.json", |c| {
                c["neighbours"]["representation"]["pooling"] = "cls".into()
            })
        },
        "holds the layer 1 mean, but calibration.json says the layer 1 cls",
    )
    .await;
    assert_neighbours_refused(
        |m| {
            edit_json(m, "calibration.json", |c| {
                c["neighbours"]["stored"] = 700.into()
            })
        },
        "holds 800 vectors of width 32; expected 700",
    )
    .await;
}
