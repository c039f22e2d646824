//! `--precision`: the arithmetic of the dense layers.

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, test_settings};
use candor::model::Precision;

const TEXTS: [&str; 4] = [
    "How many people live in Tokyo ?",
    "Who wrote Hamlet ?",
    "What does NASA stand for ?",
    "Where is the Eiffel Tower ?",
];

/// Each label's probability for each text, in label order.
async fn probabilities(app: &crate::helpers::TestApp) -> Vec<Vec<(String, f64)>> {
    let body = app
        .post_json("/v1/classify", json!({"inputs": TEXTS}))
        .await;
    body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut scores: Vec<(String, f64)> = p["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["label"].as_str().unwrap().to_string(),
                        s["score"].as_f64().unwrap(),
                    )
                })
                .collect();
            scores.sort_by(|a, b| a.0.cmp(&b.0));
            scores
        })
        .collect()
}

#[tokio::test]
async fn a_server_computes_in_f32_unless_told_otherwise_and_says_so() {
    let app = spawn_app().await;
    let info = app.get_json("/v1/model").await;
    assert_eq!(info["precision"], "f32");
}

/// A server at `precision` says so, answers as the f32 server does within
/// `tolerance` (and not identically: the arithmetic is in use), and samples
/// reproducibly.
async fn answers_as_f32_does(precision: Precision, tolerance: f64) {
    if !precision.available() {
        eprintln!("this CPU cannot compute at {precision}: nothing to compare");
        return;
    }
    let f32_app = spawn_app().await;
    let app = spawn_app_with(candor::serve::ServeSettings {
        precision,
        ..test_settings()
    })
    .await;
    let info = app.get_json("/v1/model").await;
    assert_eq!(info["precision"], precision.to_string());
    let (exact, reduced) = (probabilities(&f32_app).await, probabilities(&app).await);
    let mut largest = 0f64;
    for (a, b) in exact.iter().zip(&reduced) {
        for ((label_a, p), (label_b, q)) in a.iter().zip(b) {
            assert_eq!(label_a, label_b);
            largest = largest.max((p - q).abs());
        }
    }
    assert!(
        largest < tolerance,
        "{precision}: probabilities moved by {largest}"
    );
    assert!(
        largest > 0.0,
        "{precision} arithmetic changed nothing: is it in use?"
    );
    let ask = json!({"inputs": TEXTS[0], "samples": 8, "seed": 3});
    let once = app.post_json("/v1/classify/uncertainty", ask.clone()).await;
    let again = app.post_json("/v1/classify/uncertainty", ask).await;
    assert_eq!(
        crate::helpers::without_ids(once),
        crate::helpers::without_ids(again)
    );
}

#[tokio::test]
async fn a_bf16_server_says_so_and_answers_as_f32_does_within_bf16_rounding() {
    answers_as_f32_does(Precision::Bf16, 0.02).await;
}

#[tokio::test]
async fn an_int8_server_says_so_and_answers_as_f32_does_within_int8_steps() {
    answers_as_f32_does(Precision::Int8, 0.05).await;
}
