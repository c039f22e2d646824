//! Starting the real server on 127.0.0.1:0 with the fixture model.

use std::path::PathBuf;
use std::time::Duration;

use candor::model::Precision;
use candor::serve::engine::BatchSettings;
use candor::serve::listen::ConnectionSettings;
use candor::serve::models::ModelSpec;
use candor::serve::{Limits, SamplingLimits, ServeSettings};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::common::{fixture_model, model_copy};

/// Settings tests start from.
pub fn test_settings() -> ServeSettings {
    ServeSettings {
        limits: Limits {
            max_inputs: 16,
            max_body_bytes: 64 * 1024,
            max_input_chars: 0,
            max_request_cost: 0,
            request_timeout: Duration::from_secs(20),
        },
        batch: BatchSettings {
            max_batch_size: 32,
            max_batch_tokens: 4096,
            max_batch_wait: Duration::from_millis(5),
            queue_capacity: 64,
        },
        sampling: SamplingLimits {
            default_samples: 30,
            max_samples: 100,
        },
        connections: ConnectionSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1_024,
            shutdown_grace: Duration::from_secs(15),
        },
        api_key: None,
        insecure_no_auth: false,
        precision: Precision::F32,
        persistence: None,
        cascades: Vec::new(),
    }
}

/// A running server.
pub struct TestApp {
    /// `http://127.0.0.1:port`.
    pub address: String,
    /// A client for it.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs JSON to `path` and reads the answer as JSON.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        json_of(self.post(path, body).await).await
    }

    /// GETs `path` and reads the answer as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        json_of(self.get(path).await).await
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.await?
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for a server whose shutdown has begun.
    pub async fn finished(self) -> anyhow::Result<()> {
        self.server.await?
    }
}

/// The body of `response` as JSON.
pub async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Sends `request` and reads the answer as JSON: for the requests
/// [`TestApp`]'s methods do not make (with an API key, to a `candor serve`
/// process, to chromedriver).
pub async fn json_answer(request: reqwest::RequestBuilder) -> Value {
    json_of(request.send().await.expect("request sent")).await
}

/// A refused request's status, error `type` and message; fails the test
/// unless the body is the service's JSON error, with both.
pub async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("errors are JSON");
    let text = |field: &str| match body[field].as_str() {
        Some(text) => text.to_string(),
        None => panic!("a {status} error without `{field}`: {body}"),
    };
    (status, text("type"), text("error"))
}

/// A refused request's status and error `type` (see [`error_of`]).
pub async fn status_and_type(response: reqwest::Response) -> (u16, String) {
    let (status, kind, _) = error_of(response).await;
    (status, kind)
}

/// Starts a server with `settings` and waits until it is ready.
pub async fn spawn_app_with(settings: ServeSettings) -> TestApp {
    spawn_app_for(fixture_model(), settings).await
}

/// Starts a server on another model directory.
pub async fn spawn_app_for(model: PathBuf, settings: ServeSettings) -> TestApp {
    spawn_app_serving(vec![ModelSpec::of_dir(&model)], settings).await
}

/// Starts a server on several models (the first the default).
pub async fn spawn_app_serving(models: Vec<ModelSpec>, settings: ServeSettings) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        candor::serve::run(listener, models, settings, async {
            let _ = rx.await;
        })
        .await
    });
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{address}/readyz")).send().await {
            if r.status() == 200 {
                return TestApp {
                    address,
                    client,
                    shutdown: Some(tx),
                    server,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not become ready");
}

/// Starts a server with the test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

/// An answer with its prediction ids removed: every prediction gets a fresh
/// id, so reproducibility is about everything else.
pub fn without_ids(mut answer: Value) -> Value {
    if let Some(object) = answer.as_object_mut() {
        object.remove("id");
    }
    if let Some(predictions) = answer.get_mut("predictions").and_then(|p| p.as_array_mut()) {
        for p in predictions {
            if let Some(object) = p.as_object_mut() {
                object.remove("id");
            }
        }
    }
    answer
}

/// Lines `from..to` (1-based, inclusive) of `data/trec6.jsonl` as examples.
pub fn trec6_lines(from: usize, to: usize) -> Vec<candor::data::Example> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/trec6.jsonl");
    let all = candor::data::read_examples(&path, &candor::data::FieldNames::default())
        .expect("trec6 reads");
    all[from - 1..to].to_vec()
}

/// A copy of the fixture model in `dir` whose calibration also scores the
/// distance to its training texts (lines 1–800) by their nearest
/// neighbours in `layer`, as `candor calibrate --neighbour-layer` does.
pub fn fixture_with_neighbours(
    dir: &std::path::Path,
    layer: candor::model::Representation,
) -> PathBuf {
    use candor::uncertainty::calibration::Calibration;
    use candor::uncertainty::neighbours::{NeighbourCalibration, NeighbourSettings};
    let model = fixture_copy(dir, "tiny-trec6");
    let classifier = candor::model::Classifier::load(&model).expect("fixture loads");
    let mut calibration = Calibration::load(&model)
        .expect("reads")
        .expect("the fixture is calibrated");
    let texts: Vec<String> = trec6_lines(801, 1300).into_iter().map(|e| e.text).collect();
    let rows = classifier.encoder.encode_all(&texts).expect("tokenizes");
    let settings = NeighbourSettings {
        representation: Some(layer),
        ..NeighbourSettings::default()
    };
    calibration.neighbours = Some(
        NeighbourCalibration::fit(&classifier, &trec6_lines(1, 800), &rows, &settings)
            .expect("fits"),
    );
    calibration.save(&model).expect("writes");
    model
}

/// A copy of the fixture model in `dir/name` (so a test may change it).
pub fn fixture_copy(dir: &std::path::Path, name: &str) -> PathBuf {
    model_copy(&fixture_model(), dir, name)
}

/// A copy of the fixture model in `dir/tiny-trec6` whose calibration.json
/// is changed by `edit` (or removed when `edit` returns `None`).
pub fn fixture_with_calibration(
    dir: &std::path::Path,
    edit: impl Fn(Value) -> Option<Value>,
) -> PathBuf {
    let model = fixture_copy(dir, "tiny-trec6");
    let path = model.join("calibration.json");
    let calibration: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    match edit(calibration) {
        Some(v) => std::fs::write(&path, v.to_string()).unwrap(),
        None => std::fs::remove_file(&path).unwrap(),
    }
    model
}

/// Rewrites the model in `model` with its classifier's weights negated:
/// the same labels and files, other weights and other answers.
pub fn negate_classifier(model: &std::path::Path) {
    let path = model.join("model.safetensors");
    let mut tensors =
        candle_core::safetensors::load(&path, &candle_core::Device::Cpu).expect("weights load");
    let weight = tensors["classifier.weight"].neg().expect("negates");
    tensors.insert("classifier.weight".into(), weight);
    candle_core::safetensors::save(&tensors, &path).expect("weights save");
}

/// The fixture's copy in `dir/name` with its classifier negated.
pub fn fixture_variant(dir: &std::path::Path, name: &str) -> PathBuf {
    let model = fixture_copy(dir, name);
    negate_classifier(&model);
    model
}
