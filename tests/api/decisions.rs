//! Conformal prediction sets and abstention on the real server.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::trec6_questions;
use crate::helpers::{fixture_with_calibration, json_of, spawn_app, spawn_app_for, test_settings};

/// Questions the fixture model never saw (lines 1301–1500 of trec6; it was
/// trained on lines 1–800 and calibrated on 801–1300).
fn unseen_questions() -> Vec<(String, String)> {
    trec6_questions(1300, 1500)
}

/// The first `n` unseen questions, without their labels.
fn unseen_texts(n: usize) -> Vec<String> {
    unseen_questions()
        .into_iter()
        .take(n)
        .map(|(t, _)| t)
        .collect()
}

#[tokio::test]
async fn prediction_sets_at_alpha_cover_about_one_minus_alpha_of_unseen_questions() {
    let app = spawn_app().await;
    let questions = unseen_questions();
    let mut covered = 0;
    let mut sizes = 0;
    for chunk in questions.chunks(16) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        let answer = app
            .post_json("/v1/classify", json!({"inputs": texts, "alpha": 0.1}))
            .await;
        assert_eq!(answer["alpha"], 0.1);
        for ((_, label), p) in chunk.iter().zip(answer["predictions"].as_array().unwrap()) {
            let set: Vec<&str> = p["prediction_set"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            assert!(!set.is_empty());
            assert_eq!(set[0], p["label"], "the most probable label comes first");
            covered += usize::from(set.contains(&label.as_str()));
            sizes += set.len();
        }
    }
    let coverage = covered as f64 / questions.len() as f64;
    let mean_size = sizes as f64 / questions.len() as f64;
    // The guarantee is ≥ 90% in expectation; 200 examples scatter by about
    // 2 points around it. The model alone is right only about half the time,
    // so the sets must widen to get there.
    assert!((0.85..=0.97).contains(&coverage), "coverage {coverage}");
    assert!(
        mean_size > 1.2 && mean_size < 6.0,
        "mean set size {mean_size}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_smaller_alpha_never_gives_a_smaller_set_and_sets_are_for_each_mode() {
    let app = spawn_app().await;
    let text = "What is the capital of Peru ?";
    let mut previous = 0;
    for alpha in [0.5, 0.2, 0.1, 0.02] {
        let answer = app
            .post_json("/v1/classify", json!({"inputs": text, "alpha": alpha}))
            .await;
        let size = answer["predictions"][0]["prediction_set"]
            .as_array()
            .unwrap()
            .len();
        assert!(size >= previous, "alpha {alpha}: {size} < {previous}");
        previous = size;
    }
    for mode in ["full", "head"] {
        let answer = app
            .post_json(
                "/v1/classify/uncertainty",
                json!({"inputs": text, "alpha": 0.1, "mode": mode, "samples": 10, "seed": 3}),
            )
            .await;
        assert_eq!(answer["alpha"], 0.1, "{mode}");
        assert!(!answer["predictions"][0]["prediction_set"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    // Without alpha there is no set, and no abstention without a policy.
    let plain = app.post_json("/v1/classify", json!({"inputs": text})).await;
    assert!(plain.get("alpha").is_none());
    assert!(plain["predictions"][0].get("prediction_set").is_none());
    assert!(plain["predictions"][0].get("abstain").is_none());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_threshold_policy_abstains_exactly_where_the_score_crosses_it() {
    let app = spawn_app().await;
    let texts: Vec<String> = unseen_texts(16);
    let plain = app
        .post_json("/v1/classify", json!({"inputs": texts}))
        .await;
    let mut scores: Vec<f64> = plain["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    scores.sort_by(f64::total_cmp);
    // The median score itself: the prediction exactly at the threshold is answered.
    let threshold = scores[8];
    let policy = json!({"score": "max_probability", "threshold": threshold});
    let answer = app
        .post_json("/v1/classify", json!({"inputs": texts, "abstain": policy}))
        .await;
    assert_eq!(answer["abstention"]["score"], "max_probability");
    assert_eq!(answer["abstention"]["threshold"], threshold);
    let mut abstained = 0;
    for p in answer["predictions"].as_array().unwrap() {
        let below = p["score"].as_f64().unwrap() < threshold;
        assert_eq!(p["abstain"], below, "{p}");
        if below {
            abstained += 1;
            let reason = p["abstain_reason"].as_str().unwrap();
            assert!(
                reason.starts_with("max_probability 0.")
                    && reason.contains(&format!("is below {threshold:.4}")),
                "{reason}"
            );
        } else {
            assert!(p.get("abstain_reason").is_none());
        }
    }
    let strictly_below = scores.iter().filter(|&&s| s < threshold).count();
    assert_eq!(abstained, strictly_below);
    assert!(
        abstained > 0 && abstained < 16,
        "{abstained} of 16 abstained"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_coverage_policy_resolves_to_a_threshold_from_the_calibration_split() {
    let app = spawn_app().await;
    let texts: Vec<String> = unseen_texts(16);
    let answer = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": texts, "samples": 10, "seed": 1,
                   "abstain": {"score": "predictive_entropy", "coverage": 0.7}}),
        )
        .await;
    let rule = &answer["abstention"];
    assert_eq!(rule["coverage"], 0.7);
    let threshold = rule["threshold"].as_f64().unwrap();
    assert!(threshold > 0.0);
    for p in answer["predictions"].as_array().unwrap() {
        let above = p["predictive_entropy"].as_f64().unwrap() > threshold;
        assert_eq!(p["abstain"], above, "{p}");
    }
    // The same policy for the deterministic model uses its own calibration scores.
    let deterministic = app
        .post_json(
            "/v1/classify",
            json!({"inputs": texts, "abstain": {"score": "predictive_entropy", "coverage": 0.7}}),
        )
        .await;
    assert_ne!(deterministic["abstention"]["threshold"], rule["threshold"]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_alphas_and_policies_are_clear_422s() {
    let app = spawn_app().await;
    let cases = [
        (
            "/v1/classify",
            json!({"inputs": "Who ?", "alpha": 1.5}),
            "alpha must be between 0 and 1",
        ),
        (
            "/v1/classify",
            json!({"inputs": "Who ?", "alpha": 0}),
            "alpha must be between 0 and 1",
        ),
        (
            "/v1/classify",
            json!({"inputs": "Who ?", "abstain": {"score": "mutual_information", "threshold": 0.1}}),
            "mutual_information needs MC dropout",
        ),
        (
            "/v1/classify",
            json!({"inputs": "Who ?", "abstain": true}),
            "this model has none",
        ),
        (
            "/v1/classify/uncertainty",
            json!({"inputs": "Who ?", "abstain": {"score": "margin"}}),
            "give a threshold or a coverage",
        ),
        (
            "/v1/classify/uncertainty",
            json!({"inputs": "Who ?", "abstain": {"score": "margin", "threshold": 0.1, "coverage": 0.9}}),
            "not both",
        ),
        (
            "/v1/classify",
            json!({"inputs": "Who ?", "abstain": {"score": "margin", "coverage": 1.2}}),
            "coverage must be in (0, 1]",
        ),
        (
            "/v1/classify",
            json!({"inputs": "Who ?", "abstain": {"score": "vibes", "threshold": 0.1}}),
            "\"abstain\" must be true, false or a policy",
        ),
    ];
    for (path, body, expected) in cases {
        let r = app.post(path, body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let error = json_of(r).await;
        let message = error["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(expected), "{body}: {message}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_model_without_calibration_refuses_sets_and_says_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_with_calibration(dir.path(), |_| None);
    let app = spawn_app_for(model, test_settings()).await;
    let info = app.get_json("/v1/model").await;
    assert!(info["calibration"].is_null(), "{}", info["calibration"]);
    let r = app
        .post("/v1/classify", json!({"inputs": "Who ?", "alpha": 0.1}))
        .await;
    assert_eq!(r.status(), 422);
    let message = json_of(r).await["error"].as_str().unwrap().to_string();
    assert!(message.contains("candor calibrate"), "{message}");
    // A threshold policy needs no calibration.
    let r = app
        .post(
            "/v1/classify",
            json!({"inputs": "Who ?", "abstain": {"score": "max_probability", "threshold": 0.99}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_models_default_policy_applies_unless_the_request_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_with_calibration(dir.path(), |mut c| {
        c["abstention"] = json!({"score": "max_probability", "threshold": 0.999});
        Some(c)
    });
    let app = spawn_app_for(model, test_settings()).await;
    let info = app.get_json("/v1/model").await;
    assert_eq!(
        info["calibration"],
        json!({"examples": 500, "mc_samples": 10, "modes": ["full", "head", "top"], "feature_distance": true,
               "distance": {"score": "mahalanobis", "representation": "last layer mean"},
               "top_layers": 1,
               "abstention": {"score": "max_probability", "threshold": 0.999}})
    );
    let text = "What does NASA stand for ?";
    let by_default = app.post_json("/v1/classify", json!({"inputs": text})).await;
    assert_eq!(by_default["abstention"]["threshold"], 0.999);
    assert_eq!(by_default["predictions"][0]["abstain"], true);
    let asked = app
        .post_json("/v1/classify", json!({"inputs": text, "abstain": true}))
        .await;
    assert_eq!(asked["predictions"][0]["abstain"], true);
    let off = app
        .post_json("/v1/classify", json!({"inputs": text, "abstain": false}))
        .await;
    assert!(off.get("abstention").is_none());
    assert!(off["predictions"][0].get("abstain").is_none());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_answer_says_how_far_the_text_lies_from_the_training_data() {
    let app = spawn_app().await;
    let sms: Vec<String> = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sms_spam.jsonl"),
    )
    .unwrap()
    .lines()
    .take(64)
    .map(|line| {
        serde_json::from_str::<Value>(line).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    let questions: Vec<String> = unseen_texts(64);
    let mean_percentile = |texts: Vec<String>| {
        let app = &app;
        async move {
            let mut percentiles = Vec::new();
            for chunk in texts.chunks(16) {
                let answer = app
                    .post_json("/v1/classify", json!({"inputs": chunk}))
                    .await;
                for p in answer["predictions"].as_array().unwrap() {
                    assert!(p["feature_distance"].as_f64().unwrap() >= 0.0, "{p}");
                    percentiles.push(p["distance_percentile"].as_f64().unwrap());
                }
            }
            percentiles.iter().sum::<f64>() / percentiles.len() as f64
        }
    };
    let inside = mean_percentile(questions).await;
    let outside = mean_percentile(sms.clone()).await;
    // Unseen questions sit among the calibration questions (about the
    // middle); text messages lie farther out (the fixture is a 1-layer,
    // width-32 model, so only modestly: the shipped models separate better).
    assert!((0.3..0.7).contains(&inside), "questions at {inside}");
    assert!(
        outside > inside + 0.05,
        "messages at {outside}, questions at {inside}"
    );

    // The uncertainty endpoint gives the same distance (one deterministic pass).
    let sampled = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": sms[0], "samples": 5, "seed": 1, "mode": "head"}),
        )
        .await;
    let plain = app
        .post_json("/v1/classify", json!({"inputs": sms[0]}))
        .await;
    assert_eq!(
        sampled["predictions"][0]["feature_distance"],
        plain["predictions"][0]["feature_distance"]
    );
    app.stop().await.unwrap();
}
