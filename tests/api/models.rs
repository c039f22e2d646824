//! Several models in one server: per-request choice, their descriptions,
//! their own logs and metrics, and the start-up checks on the list.

use candor::serve::models::ModelSpec;
use serde_json::{json, Value};

use crate::common::fixture_model;
use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::{fixture_variant, json_of, spawn_app_serving, test_settings, TestApp};
use crate::on_both_databases;

const QUESTION: &str = "Who wrote Hamlet?";

/// The fixture as `tiny` (the default) and its negated variant as `flipped`.
async fn two_models(dir: &std::path::Path, settings: candor::serve::ServeSettings) -> TestApp {
    let flipped = fixture_variant(dir, "variant");
    let models = vec![
        ModelSpec {
            name: "tiny".into(),
            dir: fixture_model(),
        },
        format!("flipped={}", flipped.display()).parse().unwrap(),
    ];
    spawn_app_serving(models, settings).await
}

async fn scores(app: &TestApp, model: Option<&str>) -> Value {
    let mut body = json!({"inputs": QUESTION});
    if let Some(model) = model {
        body["model"] = json!(model);
    }
    let answer = app.post_json("/v1/classify", body).await;
    json!({"model": answer["model"], "scores": answer["predictions"][0]["scores"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_answers_with_the_model_it_names_and_with_the_first_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let app = two_models(dir.path(), test_settings()).await;
    let default = scores(&app, None).await;
    let tiny = scores(&app, Some("tiny")).await;
    let flipped = scores(&app, Some("flipped")).await;
    assert_eq!(default, tiny);
    assert_eq!(tiny["model"], "tiny");
    assert_eq!(flipped["model"], "flipped");
    assert_ne!(
        tiny["scores"], flipped["scores"],
        "the two models answered alike"
    );
    let sampled = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": QUESTION, "model": "flipped", "samples": 4, "seed": 1}),
        )
        .await;
    assert_eq!(sampled["model"], "flipped");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_a_404_that_names_the_models_served() {
    let dir = tempfile::tempdir().unwrap();
    let app = two_models(dir.path(), test_settings()).await;
    for (path, body) in [
        ("/v1/classify", json!({"inputs": QUESTION, "model": "nope"})),
        (
            "/v1/classify/uncertainty",
            json!({"inputs": QUESTION, "model": "nope", "samples": 2}),
        ),
    ] {
        let response = app.post(path, body).await;
        assert_eq!(response.status(), 404, "{path}");
        let error = json_of(response).await;
        assert_eq!(error["type"], "unknown_model");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains("tiny, flipped"), "{message}");
    }
    assert_eq!(app.get("/v1/models/nope").await.status(), 404);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_route_lists_every_model_with_its_labels_size_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let app = two_models(dir.path(), test_settings()).await;
    let list = app.get_json("/v1/models").await;
    assert_eq!(list["default"], "tiny");
    let models = list["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tiny", "flipped"]);
    for model in models {
        assert_eq!(model["labels"].as_array().unwrap().len(), 6);
        assert!(model["weights_bytes"].as_u64().unwrap() > 10_000);
        assert_eq!(model["weights_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(model["ready"], true);
    }
    assert_ne!(models[0]["weights_sha256"], models[1]["weights_sha256"]);
    let one = app.get_json("/v1/models/flipped").await;
    assert_eq!(one["name"], "flipped");
    assert_eq!(one["weights_sha256"], models[1]["weights_sha256"]);
    let default = app.get_json("/v1/model").await;
    assert_eq!(default["weights_sha256"], models[0]["weights_sha256"]);
    app.stop().await.unwrap();
}

on_both_databases!(
    each_models_predictions_are_logged_and_counted_under_its_name,
    logged_by_model_body
);
async fn logged_by_model_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let app = two_models(dir.path(), settings_with_database(&db.url)).await;
    for model in ["tiny", "flipped", "flipped"] {
        let body = json!({"inputs": [QUESTION, "How far is the moon?"], "model": model});
        assert_eq!(app.post("/v1/classify", body).await.status(), 200);
    }
    let queue = app
        .get_json("/v1/review-queue?model=flipped&limit=10")
        .await;
    assert_eq!(queue["model"], "flipped");
    assert_eq!(queue["items"].as_array().unwrap().len(), 2, "{queue}");
    let stats = |model: &'static str| {
        let app = &app;
        async move { app.get_json(&format!("/v1/stats?model={model}")).await }
    };
    assert_eq!(stats("flipped").await["predictions"], 4);
    assert_eq!(stats("tiny").await["predictions"], 2);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"candor_inputs_total{model="flipped",route="classify"} 4"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"candor_batch_rows_count{model="tiny"}"#));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_models_of_one_name_or_a_missing_directory_stop_the_start_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let start = |models: Vec<ModelSpec>| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        candor::serve::run(listener, models, test_settings(), async {})
            .await
            .expect_err("the server started")
            .to_string()
    };
    let twice = vec![
        ModelSpec::of_dir(fixture_model()),
        format!("tiny-trec6={}", dir.path().display())
            .parse()
            .unwrap(),
    ];
    let error = start(twice).await;
    assert!(
        error.contains("two models are named 'tiny-trec6'"),
        "{error}"
    );
    let missing = vec![
        ModelSpec::of_dir(fixture_model()),
        ModelSpec::of_dir(dir.path().join("absent")),
    ];
    let error = format!("{:#}", start(missing).await);
    assert!(error.contains("absent"), "{error}");
}
