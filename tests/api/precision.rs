//! `--precision`: the arithmetic of the dense layers.

use serde_json::{json, Value};

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
    let body: Value = app
        .post("/v1/classify", json!({"inputs": TEXTS}))
        .await
        .json()
        .await
        .unwrap();
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
    let info: Value = app.get("/v1/model").await.json().await.unwrap();
    assert_eq!(info["precision"], "f32");
}

#[tokio::test]
async fn a_bf16_server_says_so_and_answers_as_f32_does_within_bf16_rounding() {
    if !Precision::Bf16.available() {
        eprintln!("this CPU has no AVX-512 BF16: nothing to compare");
        return;
    }
    let f32_app = spawn_app().await;
    let bf16_app = spawn_app_with(candor::serve::ServeSettings {
        precision: Precision::Bf16,
        ..test_settings()
    })
    .await;
    let info: Value = bf16_app.get("/v1/model").await.json().await.unwrap();
    assert_eq!(info["precision"], "bf16");
    let (exact, rounded) = (
        probabilities(&f32_app).await,
        probabilities(&bf16_app).await,
    );
    let mut largest = 0f64;
    for (a, b) in exact.iter().zip(&rounded) {
        for ((label_a, p), (label_b, q)) in a.iter().zip(b) {
            assert_eq!(label_a, label_b);
            largest = largest.max((p - q).abs());
        }
    }
    assert!(largest < 0.02, "probabilities moved by {largest}");
    assert!(
        largest > 0.0,
        "bf16 arithmetic changed nothing: is it in use?"
    );
    // Seeded sampling stays reproducible at bf16.
    let ask = json!({"inputs": TEXTS[0], "samples": 8, "seed": 3});
    let once: Value = bf16_app
        .post("/v1/classify/uncertainty", ask.clone())
        .await
        .json()
        .await
        .unwrap();
    let again: Value = bf16_app
        .post("/v1/classify/uncertainty", ask)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::without_ids(once),
        crate::helpers::without_ids(again)
    );
}
