//! What the edge refuses before any work is done: bodies not declared as
//! JSON, NUL characters, unknown fields; and how it reads keys and methods.

use serde_json::{json, Value};

use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::{spawn_app, spawn_app_with, status_and_type, test_settings};
use crate::on_both_databases;

#[tokio::test]
async fn a_body_not_declared_as_json_is_refused_so_browsers_cannot_post_cross_site() {
    let app = spawn_app().await;
    let url = format!("{}/v1/classify", app.address);
    let body = r#"{"inputs": "what is a river"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = app.client.post(&url).body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let r = request.send().await.unwrap();
        assert_eq!(
            status_and_type(r).await,
            (415, "unsupported_media_type".into()),
            "{content_type:?}"
        );
    }
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let r = app
            .client
            .post(&url)
            .header("content-type", accepted)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{accepted}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_fields_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/classify/uncertainty",
            json!({"inputs": "x", "sample": 1000}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `sample`"),
        "{body}"
    );
    for (path, body) in [
        ("/v1/classify", json!({"inputs": "x", "topk": 1})),
        ("/predict", json!({"inputs": "x", "raw_score": true})),
        ("/", json!({"inputs": "x", "parameter": {"top_k": 1}})),
    ] {
        assert_eq!(app.post(path, body).await.status(), 422, "{path}");
    }
    // What the compatible APIs define is accepted.
    let hf =
        json!({"inputs": "x", "parameters": {"top_k": 1}, "options": {"wait_for_model": true}});
    assert_eq!(app.post("/", hf).await.status(), 200);
    let tei = json!({"inputs": "x", "truncation_direction": "Right"});
    assert_eq!(app.post("/predict", tei).await.status(), 200);
    let left = json!({"inputs": "x", "truncation_direction": "Left"});
    assert_eq!(app.post("/predict", left).await.status(), 200);
    // As TEI (and the tokenizers library) spell them, and nothing else.
    let lower = json!({"inputs": "x", "truncation_direction": "right"});
    assert_eq!(app.post("/predict", lower).await.status(), 422);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn tei_left_truncation_reads_the_end_of_a_long_text_and_right_the_start() {
    let app = spawn_app().await;
    let tail = "where is the longest river ? ".repeat(60);
    let texts = [
        format!("{}{tail}", "who wrote hamlet ? ".repeat(60)),
        format!("{}{tail}", "how many people live in tokyo ? ".repeat(60)),
    ];
    let scores = |direction: &'static str| {
        let body = json!({"inputs": texts, "truncation_direction": direction});
        let app = &app;
        async move {
            let r = app.post("/predict", body).await;
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let left = scores("Left").await;
    assert_eq!(left[0], left[1], "the same ending reads the same");
    let right = scores("Right").await;
    assert_ne!(right[0], right[1], "different beginnings read differently");
    let refused = json!({"inputs": texts, "truncate": false, "truncation_direction": "Left"});
    assert_eq!(app.post("/predict", refused).await.status(), 422);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let mut settings = test_settings();
    settings.api_key = Some("s3cret".into());
    let app = spawn_app_with(settings).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = app
            .client
            .post(format!("{}/v1/classify", app.address))
            .header("authorization", format!("{scheme} s3cret"))
            .json(&json!({"inputs": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let basic = app
        .client
        .post(format!("{}/v1/classify", app.address))
        .header("authorization", "Basic s3cret")
        .json(&json!({"inputs": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn made_up_methods_share_one_metrics_label_and_create_no_new_series() {
    let app = spawn_app().await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("candor_http_requests_total"))
            .count()
    };
    let before = series(&app.get("/metrics").await.text().await.unwrap());
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("WHATEVER{i}").as_bytes()).unwrap();
        let r = app
            .client
            .request(method, format!("{}/v1/classify", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(series(&metrics) <= before + 2, "{metrics}");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    app.stop().await.unwrap();
}

// A NUL in any string a client sends is a 422 naming where it is, on both
// databases; the prediction log keeps writing what comes after it.
on_both_databases!(
    nul_characters_are_refused_at_the_edge_and_logging_goes_on,
    nul_body
);
async fn nul_body(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_with(settings_with_database(&database.url)).await;
    let r = app
        .post(
            "/v1/classify",
            json!({"inputs": ["fine", "nul \u{0} byte"]}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("inputs[1]"),
        "{body}"
    );
    let escaped_backslash = r#"{"inputs": "a literal \\u0000 is text, not NUL"}"#;
    let r = app
        .client
        .post(format!("{}/v1/classify", app.address))
        .header("content-type", "application/json")
        .body(escaped_backslash)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let id = answer["predictions"][0]["id"].as_str().unwrap().to_string();
    let source = json!({"prediction_id": id, "label": "ENTY", "source": "ali\u{0}ce"});
    assert_eq!(app.post("/v1/feedback", source).await.status(), 422);
    assert_eq!(app.get("/v1/review-queue?model=x%00y").await.status(), 422);
    assert_eq!(app.get("/v1/stats?model=%00").await.status(), 422);
    // Later predictions are logged: the review queue (which flushes the log) holds them.
    let after = app
        .post(
            "/v1/classify",
            json!({"inputs": "logged after the refusal"}),
        )
        .await;
    assert_eq!(after.status(), 200);
    let queue = app.get_json("/v1/review-queue?limit=10").await;
    let texts: Vec<&str> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["text"].as_str())
        .collect();
    assert!(texts.contains(&"logged after the refusal"), "{queue}");
    assert!(
        texts.contains(&"a literal \\u0000 is text, not NUL"),
        "{queue}"
    );
    let feedback = json!({"prediction_id": id, "label": "ENTY", "source": "alice"});
    assert_eq!(app.post("/v1/feedback", feedback).await.status(), 201);
    app.stop().await.unwrap();
}
