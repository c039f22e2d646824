//! The uncertainty endpoint's sampling modes, `top` among them, and the
//! nearest-neighbour distance the fixture's calibration carries.

use serde_json::json;

use candor::model::{Pooling, Representation};

use crate::helpers::{fixture_with_neighbours, json_of, spawn_app, spawn_app_for, test_settings};

#[tokio::test]
async fn top_mode_samples_the_calibrated_number_of_top_layers_and_says_so() {
    let app = spawn_app().await;
    let body = json!({"inputs": ["What is the capital of Peru ?", "Who wrote Hamlet ?"],
                      "mode": "top", "seed": 3, "alpha": 0.1});
    let r = app.post("/v1/classify/uncertainty", body.clone()).await;
    assert_eq!(r.status(), 200);
    let first = json_of(r).await;
    assert_eq!(first["mode"], "top");
    assert_eq!(first["top_layers"], 1);
    assert_eq!(first["samples"], 30);
    for p in first["predictions"].as_array().unwrap() {
        assert!(p["mutual_information"].as_f64().unwrap() >= 0.0, "{p}");
        assert!(!p["prediction_set"].as_array().unwrap().is_empty(), "{p}");
    }
    // Seeded: the same request gives the same samples, bit for bit.
    let again = app.post_json("/v1/classify/uncertainty", body).await;
    assert_eq!(
        first["predictions"][0]["scores"],
        again["predictions"][0]["scores"]
    );
    // Named explicitly, the same layers give the same answer.
    let named = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": ["What is the capital of Peru ?", "Who wrote Hamlet ?"],
                   "mode": "top", "top_layers": 1, "seed": 3, "alpha": 0.1}),
        )
        .await;
    assert_eq!(
        first["predictions"][1]["scores"],
        named["predictions"][1]["scores"]
    );
    // Other modes say nothing of top layers.
    let full = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": "Who wrote Hamlet ?", "samples": 4}),
        )
        .await;
    assert_eq!(full["mode"], "full");
    assert!(full.get("top_layers").is_none(), "{full}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn more_top_layers_than_the_model_has_samples_them_all() {
    let app = spawn_app().await;
    // The fixture has one layer.
    let ask = |top_layers: u64| {
        json!({"inputs": "Who wrote Hamlet ?", "samples": 4, "seed": 9,
               "mode": "top", "top_layers": top_layers})
    };
    let all = app.post_json("/v1/classify/uncertainty", ask(1)).await;
    let beyond = app.post_json("/v1/classify/uncertainty", ask(7)).await;
    assert_eq!(beyond["top_layers"], 1, "{beyond}");
    assert_eq!(
        beyond["predictions"][0]["scores"],
        all["predictions"][0]["scores"]
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_top_layers_are_422s_that_say_what_to_send() {
    let app = spawn_app().await;
    // The fixture has one layer.
    let cases = [
        (
            json!({"mode": "top", "top_layers": 0}),
            "top_layers must be a whole number from 1 to",
        ),
        (
            json!({"mode": "top", "top_layers": 1.5}),
            "top_layers must be a whole number from 1 to",
        ),
        (
            json!({"mode": "top", "top_layers": "one"}),
            "top_layers must be a whole number from 1 to",
        ),
        (
            json!({"mode": "top", "top_layers": -1}),
            "top_layers must be a whole number from 1 to",
        ),
        (
            json!({"top_layers": 1}),
            "top_layers applies to mode \"top\" only",
        ),
        (
            json!({"mode": "head", "top_layers": 1}),
            "top_layers applies to mode \"top\" only",
        ),
        (json!({"mode": "middle"}), "mode"),
    ];
    for (extra, expected) in cases {
        let mut body = json!({"inputs": "Who wrote Hamlet ?", "samples": 3});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.post("/v1/classify/uncertainty", body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let message = json_of(r).await["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains(expected), "{body}: {message}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_model_route_lists_the_modes_and_how_distance_is_measured() {
    let app = spawn_app().await;
    let info = app.get_json("/v1/model").await;
    assert_eq!(
        info["sampling"],
        json!({"modes": ["full", "head", "top"], "max_top_layers": 1, "default_top_layers": 1})
    );
    assert_eq!(
        info["calibration"]["distance"],
        json!({"score": "mahalanobis", "representation": "last layer mean"})
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_model_calibrated_with_neighbours_answers_with_their_cosine_distance() {
    let dir = tempfile::tempdir().unwrap();
    let embeddings = Representation {
        layer: 0,
        pooling: Pooling::Mean,
    };
    let model = fixture_with_neighbours(dir.path(), embeddings);
    let app = spawn_app_for(model, test_settings()).await;
    let info = app.get_json("/v1/model").await;
    assert_eq!(
        info["calibration"]["distance"],
        json!({"score": "knn", "representation": "layer 0 mean", "k": 10, "stored": 800})
    );
    let texts = json!([
        "Who wrote Hamlet ?",
        "Who wrote Hamlet ?",
        "ok lor... call me when u r free 2nite"
    ]);
    let plain = app
        .post_json("/v1/classify", json!({"inputs": texts}))
        .await;
    let sampled = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": texts, "mode": "top", "samples": 4}),
        )
        .await;
    for answer in [&plain, &sampled] {
        let p = answer["predictions"].as_array().unwrap();
        let distance = |i: usize| p[i]["feature_distance"].as_f64().unwrap();
        // A cosine distance lies in [0, 2]; the same text lies equally far.
        assert!((0.0..=2.0).contains(&distance(0)), "{answer}");
        assert_eq!(distance(0), distance(1));
        assert!(
            p[2]["distance_percentile"].as_f64().unwrap() <= 1.0,
            "{answer}"
        );
    }
    // Both endpoints measure the same representation of the same text.
    assert_eq!(
        plain["predictions"][2]["feature_distance"],
        sampled["predictions"][2]["feature_distance"]
    );
    app.stop().await.unwrap();
}
