//! Zero-downtime reload: new weights load beside the old, requests switch
//! when they are warm, a directory that fails leaves the old model serving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use candor::serve::models::ModelSpec;
use serde_json::{json, Value};

use crate::durability::ServerProcess;
use crate::helpers::{
    fixture_copy, json_answer, json_of, negate_classifier, spawn_app_serving, test_settings,
    TestApp,
};

const QUESTION: &str = "Who wrote Hamlet?";

async fn sha(app: &TestApp) -> Value {
    app.get_json("/v1/model").await["weights_sha256"].clone()
}

async fn reload(app: &TestApp) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/admin/reload", app.address))
        .send()
        .await
        .unwrap()
}

/// A server on a copy of the fixture that the test may change.
async fn serving_a_copy(dir: &std::path::Path) -> (TestApp, std::path::PathBuf) {
    let model = fixture_copy(dir, "m");
    let app = spawn_app_serving(vec![ModelSpec::of_dir(&model)], test_settings()).await;
    (app, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_answers_to_the_weights_now_in_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (app, model) = serving_a_copy(dir.path()).await;
    let before = sha(&app).await;
    let classify = || app.post_json("/v1/classify", json!({"inputs": QUESTION}));
    let old_answer = classify().await["predictions"][0]["scores"].clone();
    negate_classifier(&model);
    let response = reload(&app).await;
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    let reloaded = &answer["reloaded"][0];
    assert_eq!(reloaded["name"], "m");
    assert_eq!(reloaded["previous_weights_sha256"], before);
    assert_ne!(reloaded["weights_sha256"], before);
    assert_eq!(sha(&app).await, reloaded["weights_sha256"]);
    let new_answer = classify().await["predictions"][0]["scores"].clone();
    assert_ne!(old_answer, new_answer);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_fails_to_load_leaves_the_old_model_serving_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (app, model) = serving_a_copy(dir.path()).await;
    let before = sha(&app).await;
    std::fs::write(model.join("model.safetensors"), b"not weights").unwrap();
    let response = reload(&app).await;
    assert_eq!(response.status(), 422);
    let error = json_of(response).await;
    assert_eq!(error["type"], "reload_failed");
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("model 'm'") && message.contains("keep serving"),
        "{message}"
    );
    assert_eq!(sha(&app).await, before);
    let answer = app.post("/v1/classify", json!({"inputs": QUESTION})).await;
    assert_eq!(answer.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_one_model_by_name_needs_a_served_name_and_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_copy(dir.path(), "m");
    let mut settings = test_settings();
    settings.api_key = Some("secret".into());
    let app = spawn_app_serving(vec![ModelSpec::of_dir(&model)], settings).await;
    let url = format!("{}/v1/admin/reload", app.address);
    let unauthorised = app.client.post(&url).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    let with_key = |body: Value| {
        app.client
            .post(&url)
            .bearer_auth("secret")
            .json(&body)
            .send()
    };
    let unknown = with_key(json!({"model": "other"})).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let named = with_key(json!({"model": "m"})).await.unwrap();
    assert_eq!(named.status(), 200);
    assert_eq!(json_of(named).await["reloaded"][0]["name"], "m");
    let wrong_field = with_key(json!({"models": "m"})).await.unwrap();
    assert_eq!(wrong_field.status(), 422);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_sending_throughout_reloads_see_no_failure_and_end_on_the_new_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (app, model) = serving_a_copy(dir.path()).await;
    let app = Arc::new(app);
    let before = sha(&app).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (app, stop) = (app.clone(), stop.clone());
            let (answered, failed) = (answered.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let body = json!({"inputs": [QUESTION, format!("Question {i}?")]});
                    let response = app.post("/v1/classify", body).await;
                    if response.status() == 200 {
                        answered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let mut shas = vec![before];
    for _ in 0..4 {
        negate_classifier(&model);
        let response = reload(&app).await;
        assert_eq!(response.status(), 200);
        let reloaded = json_of(response).await["reloaded"][0].clone();
        assert_eq!(&reloaded["previous_weights_sha256"], shas.last().unwrap());
        shas.push(reloaded["weights_sha256"].clone());
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(
        answered.load(Ordering::SeqCst) > 20,
        "too few requests to tell"
    );
    // Each reload switched to new weights, and the last is what serves.
    assert!(shas.windows(2).all(|w| w[0] != w[1]), "{shas:?}");
    assert_eq!(sha(&app).await, shas[4]);
    Arc::into_inner(app).unwrap().stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_every_model_from_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_copy(dir.path(), "m");
    let server = ServerProcess::start_with(&model, &["--no-database"]);
    let client = reqwest::Client::new();
    let sha = || async {
        let info = json_answer(client.get(format!("{}/v1/model", server.address))).await;
        info["weights_sha256"].clone()
    };
    let before = sha().await;
    negate_classifier(&model);
    server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sha().await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload the model"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
