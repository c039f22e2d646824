//! A cascade: the first model answers what it is sure of, the next the rest,
//! each answer saying which model gave it; and the checks that keep a
//! cascade from serving without a fit for its models.

use candor::model::{softmax, Classifier};
use candor::serve::models::{CascadeSpec, ModelSpec};
use candor::uncertainty::calibration::Calibration;
use candor::uncertainty::cascade::{CascadeAccuracy, CascadeStep};
use serde_json::{json, Value};

use crate::helpers::{
    fixture_copy, fixture_variant, negate_classifier, spawn_app_serving, test_settings, TestApp,
};

const TEXTS: [&str; 8] = [
    "Who wrote Hamlet?",
    "How far is the moon?",
    "What is a tsunami?",
    "When did the war end?",
    "Where is Timbuktu?",
    "What does NASA stand for?",
    "How many legs does a spider have?",
    "Why is the sky blue?",
];

/// `small` (the fixture) and `big` (its variant) in `dir`, with a fit in
/// small's calibration that passes on the half of TEXTS it is least sure of.
fn fitted_pair(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, f64) {
    let small = fixture_copy(dir, "small");
    let big = fixture_variant(dir, "big");
    let model = Classifier::load(&small).unwrap();
    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let rows = model.encoder.encode_all(&texts).unwrap();
    let mut tops: Vec<f64> = model
        .logits_for_all(&rows, 8)
        .unwrap()
        .iter()
        .map(|l| {
            let p = softmax(l, model.config.candor.temperature);
            p.iter().copied().fold(0.0f32, f32::max) as f64
        })
        .collect();
    tops.sort_by(f64::total_cmp);
    let threshold = (tops[3] + tops[4]) / 2.0;
    let next = Classifier::load(&big).unwrap();
    let mut calibration = Calibration::load(&small).unwrap().unwrap();
    calibration.cascade.push(CascadeStep {
        next_weights_sha256: next.weights_sha256.clone(),
        next_name: "big".into(),
        score: "max_probability".into(),
        threshold: Some(threshold),
        margin_points: 0.5,
        examples: TEXTS.len(),
        passed_on: 0.5,
        accuracy: CascadeAccuracy {
            first: 0.0,
            next: 0.0,
            cascade: 0.0,
        },
        trade_off: Vec::new(),
    });
    calibration.save(&small).unwrap();
    (small, big, threshold)
}

fn specs(small: &std::path::Path, big: &std::path::Path) -> Vec<ModelSpec> {
    vec![ModelSpec::of_dir(small), ModelSpec::of_dir(big)]
}

fn auto() -> Vec<CascadeSpec> {
    vec!["auto=small,big".parse().unwrap()]
}

async fn classify(app: &TestApp, model: &str) -> Value {
    let body = json!({"inputs": TEXTS, "model": model});
    let response = app.post("/v1/classify", body).await;
    assert_eq!(response.status(), 200, "{model}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_model_answers_what_it_is_sure_of_and_the_next_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big, threshold) = fitted_pair(dir.path());
    let mut settings = test_settings();
    settings.cascades = auto();
    let app = spawn_app_serving(specs(&small, &big), settings).await;
    let cascade = classify(&app, "auto").await;
    let alone = [classify(&app, "small").await, classify(&app, "big").await];
    assert_eq!(cascade["model"], "auto");
    let mut answered_by = Vec::new();
    for (i, prediction) in cascade["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let small_top = alone[0]["predictions"][i]["score"].as_f64().unwrap();
        let expected = if small_top >= threshold {
            "small"
        } else {
            "big"
        };
        assert_eq!(prediction["answered_by"], expected, "text {i}");
        let own = &alone[usize::from(expected == "big")]["predictions"][i];
        assert_eq!(prediction["scores"], own["scores"], "text {i}");
        answered_by.push(expected);
    }
    assert_eq!(answered_by.iter().filter(|&&m| m == "big").count(), 4);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"candor_cascade_answers_total{answered_by="big",cascade="auto"} 4"#),
        "{metrics}"
    );
    let listed = app.get_json("/v1/models").await;
    assert_eq!(listed["cascades"][0]["models"], json!(["small", "big"]));
    assert_eq!(listed["cascades"][0]["thresholds"], json!([threshold]));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_answers_classify_only_and_without_decision_tools() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big, _) = fitted_pair(dir.path());
    let mut settings = test_settings();
    settings.cascades = auto();
    let app = spawn_app_serving(specs(&small, &big), settings).await;
    for (path, body) in [
        (
            "/v1/classify/uncertainty",
            json!({"inputs": "Why?", "model": "auto", "samples": 2}),
        ),
        (
            "/v1/classify",
            json!({"inputs": "Why?", "model": "auto", "alpha": 0.1}),
        ),
    ] {
        let response = app.post(path, body).await;
        assert_eq!(response.status(), 422, "{path}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("cascade"),
            "{error}"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_would_leave_a_cascade_without_a_fit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big, _) = fitted_pair(dir.path());
    let mut settings = test_settings();
    settings.cascades = auto();
    let app = spawn_app_serving(specs(&small, &big), settings).await;
    let before = app.get_json("/v1/models/big").await;
    negate_classifier(&big);
    let response = app
        .client
        .post(format!("{}/v1/admin/reload", app.address))
        .json(&json!({"model": "big"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("--cascade-to"),
        "{error}"
    );
    let after = app.get_json("/v1/models/big").await;
    assert_eq!(after["weights_sha256"], before["weights_sha256"]);
    assert_eq!(classify(&app, "auto").await["model"], "auto");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_cascade_of_unknown_or_unfitted_models_or_of_itself_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big, _) = fitted_pair(dir.path());
    let start = |cascade: &str| {
        let (small, big) = (small.clone(), big.clone());
        let cascade: CascadeSpec = cascade.parse().unwrap();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut settings = test_settings();
            settings.cascades = vec![cascade];
            candor::serve::run(listener, specs(&small, &big), settings, async {})
                .await
                .expect_err("the server started")
                .to_string()
        }
    };
    for (cascade, says) in [
        ("auto=small,huge", "'huge', which is not a served model"),
        ("auto=small,auto", "names itself"),
        ("auto=big,small", "candor calibrate --model"),
        ("small=small,big", "the name of another model"),
    ] {
        let error = start(cascade).await;
        assert!(error.contains(says), "{cascade}: {error}");
    }
}
