//! What one request may cost: characters read per input, the cost budget,
//! and a large request sharing the engine with small ones.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{error_of, spawn_app_with, test_settings};

#[tokio::test]
async fn a_megabyte_text_is_cut_to_the_character_limit_or_refused_without_truncation() {
    let mut settings = test_settings();
    settings.limits.max_body_bytes = 2 << 20;
    let app = spawn_app_with(settings).await;
    let model = app.get_json("/v1/model").await;
    let max_chars = model["limits"]["max_input_chars"].as_u64().unwrap();
    assert_eq!(max_chars, 20 * model["max_length"].as_u64().unwrap());
    let huge = "a ".repeat(1 << 19);
    let r = app.post("/v1/classify", json!({"inputs": huge})).await;
    assert_eq!(r.status(), 200);
    let (status, kind, message) = error_of(
        app.post("/v1/classify", json!({"inputs": huge, "truncate": false}))
            .await,
    )
    .await;
    assert_eq!((status, kind.as_str()), (422, "input_too_long"));
    assert!(
        message.contains(&format!("{} characters", 1 << 20)),
        "{message}"
    );
    assert!(
        message.contains(&format!("limit of {max_chars}")),
        "{message}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_character_limit_is_configurable_and_counts_characters_not_bytes() {
    let mut settings = test_settings();
    settings.limits.max_input_chars = 10;
    let app = spawn_app_with(settings).await;
    let ten = "héhéhéhéhé";
    let ok = app
        .post("/v1/classify", json!({"inputs": ten, "truncate": false}))
        .await;
    assert_eq!(ok.status(), 200);
    let (status, _, message) = error_of(
        app.post(
            "/v1/classify",
            json!({"inputs": format!("{ten}é"), "truncate": false}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        message.contains("11 characters, more than the limit of 10"),
        "{message}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_over_the_cost_budget_is_refused_naming_the_limit() {
    let mut settings = test_settings();
    settings.limits.max_request_cost = 5_000;
    let app = spawn_app_with(settings).await;
    let text = "what is the name of the longest river in the whole wide world";
    let small = json!({"inputs": [text, text], "samples": 30, "seed": 1});
    assert_eq!(
        app.post("/v1/classify/uncertainty", small).await.status(),
        200
    );
    let large = json!({"inputs": vec![text; 16], "samples": 100, "seed": 1});
    let (status, kind, message) = error_of(app.post("/v1/classify/uncertainty", large).await).await;
    assert_eq!((status, kind.as_str()), (413, "request_too_costly"));
    assert!(message.contains("more than the 5000"), "{message}");
    // Head mode runs the encoder once per input: the same request fits.
    let head = json!({"inputs": vec![text; 16], "samples": 100, "seed": 1, "mode": "head"});
    assert_eq!(
        app.post("/v1/classify/uncertainty", head).await.status(),
        200
    );
    let model = app.get_json("/v1/model").await;
    assert_eq!(model["limits"]["max_request_cost"], 5_000);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_derived_budget_refuses_what_the_engine_cannot_finish_within_the_timeout() {
    let mut settings = test_settings();
    settings.limits.request_timeout = Duration::from_millis(50);
    let app = spawn_app_with(settings).await;
    let model = app.get_json("/v1/model").await;
    let budget = model["limits"]["max_request_cost"].as_u64().unwrap();
    // 16 inputs × 48 tokens × (100 samples + 1 pass for the feature distance).
    let maximal_cost = 16 * 48 * 101;
    assert!(budget > 0 && budget < maximal_cost, "{model}");
    let long = "what is the name of the longest river in the world ".repeat(10);
    let maximal = json!({"inputs": vec![long; 16], "samples": 100});
    let (status, kind, _) = error_of(app.post("/v1/classify/uncertainty", maximal).await).await;
    assert_eq!((status, kind.as_str()), (413, "request_too_costly"));
    app.stop().await.unwrap();
}

/// A large uncertainty request is computed an input at a time, interleaved
/// with everything else: small requests sent while it runs are answered
/// before it is, instead of waiting for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_requests_are_answered_while_a_large_one_is_still_computing() {
    let mut settings = test_settings();
    settings.limits.max_inputs = 64;
    settings.limits.max_request_cost = usize::MAX;
    settings.limits.request_timeout = Duration::from_secs(120);
    settings.sampling.max_samples = 1_000;
    let app = spawn_app_with(settings).await;
    let long = "what is the name of the longest river in the world ".repeat(10);
    let one = json!({"inputs": [long.clone()], "samples": 1_000, "seed": 1});
    let started = Instant::now();
    assert_eq!(
        app.post("/v1/classify/uncertainty", one).await.status(),
        200
    );
    let per_input = started.elapsed();

    let large = json!({"inputs": vec![long; 64], "samples": 1_000, "seed": 2});
    let url = format!("{}/v1/classify/uncertainty", app.address);
    let client = app.client.clone();
    let large = tokio::spawn(async move { client.post(url).json(&large).send().await });
    // Let it start: a few inputs' worth of its 64.
    tokio::time::sleep(per_input * 4).await;
    let classify = app
        .post("/v1/classify", json!({"inputs": "who wrote hamlet"}))
        .await;
    assert_eq!(classify.status(), 200);
    let sampled = json!({"inputs": "who wrote hamlet", "samples": 10, "seed": 3});
    assert_eq!(
        app.post("/v1/classify/uncertainty", sampled).await.status(),
        200
    );
    assert!(
        !large.is_finished(),
        "the large request ({per_input:?} per input) finished before the small ones were answered"
    );
    let large = tokio::time::timeout(Duration::from_secs(120), large)
        .await
        .expect("the large request finishes")
        .unwrap()
        .unwrap();
    assert_eq!(large.status(), 200);
    app.stop().await.unwrap();
}
