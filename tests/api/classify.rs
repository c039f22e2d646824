use serde_json::{json, Value};

use crate::helpers::{spawn_app, without_ids};

const LABELS: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

#[tokio::test]
async fn classify_answers_one_prediction_per_input_in_order_with_sorted_scores() {
    let app = spawn_app().await;
    let texts = [
        "How many people live in Tokyo ?",
        "Who wrote Hamlet ?",
        "What does NASA stand for ?",
    ];
    let r = app.post("/v1/classify", json!({"inputs": texts})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "tiny-trec6");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for p in predictions {
        let scores: Vec<f64> = p["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["score"].as_f64().unwrap())
            .collect();
        assert_eq!(scores.len(), 6);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        assert_eq!(p["label"], p["scores"][0]["label"]);
        assert!(LABELS.contains(&p["label"].as_str().unwrap()));
    }
    // Each input alone gets the same label as in the batch.
    for (text, p) in texts.iter().zip(predictions) {
        let alone = app.post_json("/v1/classify", json!({"inputs": text})).await;
        assert_eq!(alone["predictions"][0]["label"], p["label"]);
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn top_k_limits_the_scores_and_raw_scores_skips_the_temperature() {
    let app = spawn_app().await;
    let body = app
        .post_json(
            "/v1/classify",
            json!({"inputs": "Where is Rome ?", "top_k": 2}),
        )
        .await;
    assert_eq!(
        body["predictions"][0]["scores"].as_array().unwrap().len(),
        2
    );
    let calibrated = app
        .post_json("/v1/classify", json!({"inputs": "Where is Rome ?"}))
        .await;
    let raw = app
        .post_json(
            "/v1/classify",
            json!({"inputs": "Where is Rome ?", "raw_scores": true}),
        )
        .await;
    // The fixture's temperature is not 1, so the two must differ while agreeing on the label.
    assert_eq!(
        calibrated["predictions"][0]["label"],
        raw["predictions"][0]["label"]
    );
    assert_ne!(
        calibrated["predictions"][0]["score"],
        raw["predictions"][0]["score"]
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn uncertainty_reports_every_figure_with_the_samples_and_seed_used() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/classify/uncertainty",
            json!({"inputs": ["Who is the president of France ?", "What is a kiwi ?"], "seed": 7}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["samples"], 30);
    assert_eq!(body["seed"], 7);
    for p in body["predictions"].as_array().unwrap() {
        let means: Vec<f64> = p["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["mean"].as_f64().unwrap())
            .collect();
        assert!((means.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        assert!(means.windows(2).all(|w| w[0] >= w[1]));
        assert!(p["scores"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["std"].as_f64().unwrap() >= 0.0));
        let predictive = p["predictive_entropy"].as_f64().unwrap();
        let expected = p["expected_entropy"].as_f64().unwrap();
        let mi = p["mutual_information"].as_f64().unwrap();
        assert!(mi >= 0.0 && (mi - (predictive - expected).max(0.0)).abs() < 1e-9);
        assert!(predictive <= 6f64.ln() + 1e-9);
        assert!((0.0..=1.0).contains(&p["variation_ratio"].as_f64().unwrap()));
        assert!((p["margin"].as_f64().unwrap() - (means[0] - means[1])).abs() < 1e-5);
        assert_eq!(p["samples"], 30);
        assert_eq!(p["seed"], 7);
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_same_seed_gives_bit_identical_answers_and_another_seed_does_not() {
    let app = spawn_app().await;
    let ask = |seed: u64| {
        app.post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": "What is the speed of light ?", "samples": 20, "seed": seed}),
        )
    };
    let a = ask(11).await;
    let b = ask(11).await;
    let c = ask(12).await;
    assert_eq!(without_ids(a.clone()), without_ids(b));
    assert_ne!(a["predictions"][0]["scores"], c["predictions"][0]["scores"]);
    let unseeded = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": "What is the speed of light ?"}),
        )
        .await;
    assert!(
        unseeded["seed"].is_u64(),
        "a random seed is chosen and returned"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn head_mode_samples_only_the_classifier_and_is_reproducible_too() {
    let app = spawn_app().await;
    let ask = |mode: &str, seed: u64| {
        app.post_json("/v1/classify/uncertainty", json!({"inputs": "What is the speed of light ?", "samples": 40, "seed": seed, "mode": mode}))
    };
    let head = ask("head", 3).await;
    assert_eq!(head["mode"], "head");
    assert_eq!(without_ids(head.clone()), without_ids(ask("head", 3).await));
    let full = ask("full", 3).await;
    assert_eq!(full["mode"], "full");
    assert_ne!(
        head["predictions"][0]["scores"],
        full["predictions"][0]["scores"]
    );
    let spread: f64 = head["predictions"][0]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["std"].as_f64().unwrap())
        .sum();
    assert!(spread > 0.0, "head dropout still varies the samples");
    let bad = app
        .post(
            "/v1/classify/uncertainty",
            json!({"inputs": "x", "mode": "tail"}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_server_and_the_command_line_sample_identically_for_one_seed() {
    let app = spawn_app().await;
    let text = "Which river is the longest ?";
    let served = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": text, "samples": 12, "seed": 5}),
        )
        .await;
    let model = crate::common::fixture_model();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
        .args([
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--mc-samples",
            "12",
            "--seed",
            "5",
            text,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["uncertainty"]["mutual_information"],
        served["predictions"][0]["mutual_information"]
    );
    assert_eq!(printed["score"], served["predictions"][0]["score"]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn return_samples_adds_each_labels_sampled_probabilities_whose_mean_is_the_mean() {
    let app = spawn_app().await;
    let body =
        json!({"inputs": "Who wrote Hamlet ?", "samples": 6, "seed": 3, "return_samples": true});
    let answer = app.post_json("/v1/classify/uncertainty", body).await;
    for score in answer["predictions"][0]["scores"].as_array().unwrap() {
        let samples: Vec<f64> = score["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(samples.len(), 6);
        let mean = samples.iter().sum::<f64>() / 6.0;
        assert!(
            (mean - score["mean"].as_f64().unwrap()).abs() < 1e-5,
            "{score}"
        );
    }
    let without = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": "Who ?", "samples": 2}),
        )
        .await;
    assert!(without["predictions"][0]["scores"][0]
        .get("samples")
        .is_none());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_top_k_beyond_the_labels_returns_every_label() {
    let app = spawn_app().await;
    let answer = app
        .post_json("/v1/classify", json!({"inputs": "Who ?", "top_k": 50}))
        .await;
    assert_eq!(
        answer["predictions"][0]["scores"].as_array().unwrap().len(),
        6
    );
    app.stop().await.unwrap();
}
