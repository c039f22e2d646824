use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, test_settings, without_ids};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_seed_is_bit_identical_whatever_shares_its_batch_under_concurrent_load() {
    let app = spawn_app().await;
    let probe = json!({"inputs": "What is the capital of Peru ?", "samples": 12, "seed": 99});
    let reference = app
        .post_json("/v1/classify/uncertainty", probe.clone())
        .await;
    let others = [
        "Who painted the Mona Lisa and when did he live ?",
        "How far is it ?",
        "Name a Russian composer .",
    ];
    let requests = (0..24).map(|i| {
        let body = if i % 3 == 0 {
            probe.clone()
        } else {
            json!({"inputs": [others[i % 3], "What is the capital of Peru ?", others[(i + 1) % 3]], "samples": 12, "seed": 99})
        };
        app.post("/v1/classify/uncertainty", body)
    });
    for (i, r) in join_all(requests).await.into_iter().enumerate() {
        let body: Value = r.json().await.unwrap();
        let peru = if i % 3 == 0 {
            &body["predictions"][0]
        } else {
            &body["predictions"][1]
        };
        assert_eq!(
            without_ids(peru.clone()),
            without_ids(reference["predictions"][0].clone()),
            "request {i} differs"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_predictions_are_coalesced_into_shared_batches() {
    let mut settings = test_settings();
    settings.batch.max_batch_wait = Duration::from_millis(20);
    let app = spawn_app_with(settings).await;
    let requests = (0..32).map(|i| {
        app.post(
            "/v1/classify",
            json!({"inputs": format!("Who is person number {i} ?")}),
        )
    });
    assert!(join_all(requests).await.iter().all(|r| r.status() == 200));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let passes = value("candor_batch_rows_count");
    let rows = value("candor_batch_rows_sum");
    assert_eq!(rows, 32.0);
    assert!(
        passes < 32.0,
        "32 concurrent requests took {passes} passes: no batching"
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after_and_the_server_keeps_serving() {
    let mut settings = test_settings();
    settings.batch.queue_capacity = 1;
    settings.batch.max_batch_size = 4;
    let app = spawn_app_with(settings).await;
    let heavy = json!({"inputs": vec!["What is the population of the largest city in the world today ?"; 16], "samples": 100});
    let responses =
        join_all((0..12).map(|_| app.post("/v1/classify/uncertainty", heavy.clone()))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let busy = responses
        .iter()
        .find(|r| r.status() == 429)
        .expect("some request was refused");
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(
        app.post("/v1/classify", json!({"inputs": "Who ?"}))
            .await
            .status(),
        200
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_past_its_timeout_gets_503_without_blocking_the_server() {
    let mut settings = test_settings();
    settings.limits.request_timeout = Duration::from_millis(30);
    // The cost budget would refuse this request up front; the timeout is the subject here.
    settings.limits.max_request_cost = usize::MAX;
    settings.batch.max_batch_size = 4;
    let app = spawn_app_with(settings).await;
    let heavy = json!({"inputs": vec!["What is the population of the largest city in the world today ?"; 16], "samples": 100});
    let r = app.post("/v1/classify/uncertainty", heavy).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "timeout");
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_the_requests_in_flight() {
    let mut app = spawn_app().await;
    let body =
        json!({"inputs": vec!["What is the tallest mountain in Africa ?"; 8], "samples": 60});
    let url = format!("{}/v1/classify/uncertainty", app.address);
    let in_flight: Vec<_> = (0..6)
        .map(|_| tokio::spawn(reqwest::Client::new().post(url.clone()).json(&body).send()))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.begin_shutdown();
    for r in join_all(in_flight).await {
        let r = r.unwrap().expect("in-flight request answered");
        assert_eq!(r.status(), 200);
    }
    app.finished().await.expect("server stops cleanly");
}
