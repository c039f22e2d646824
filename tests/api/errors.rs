use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, status_and_type, test_settings};

#[tokio::test]
async fn every_bad_request_gets_a_json_error_with_a_stable_type() {
    let app = spawn_app().await;
    let url = format!("{}/v1/classify", app.address);
    let raw = |body: &'static [u8]| {
        app.client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        status_and_type(raw(b"{not json").await.unwrap()).await,
        (422, "invalid_json".into())
    );
    assert_eq!(
        status_and_type(raw(b"").await.unwrap()).await,
        (422, "invalid_json".into())
    );
    assert_eq!(
        status_and_type(raw(b"{\"inputs\": \"\xff\xfe\"}").await.unwrap()).await,
        (400, "invalid_encoding".into())
    );
    let cases = [
        (json!({}), 422, "invalid_json"),
        (json!({"inputs": 3}), 422, "invalid_json"),
        (json!({"inputs": [1, 2]}), 422, "invalid_json"),
        (json!({"inputs": "x", "top_k": "two"}), 422, "invalid_json"),
        (json!({"inputs": []}), 422, "validation"),
        (json!({"inputs": ""}), 422, "validation"),
        (json!({"inputs": ["fine", "   "]}), 422, "validation"),
        (json!({"inputs": "x", "top_k": 0}), 422, "validation"),
        (
            json!({"inputs": vec!["a text"; 17]}),
            413,
            "too_many_inputs",
        ),
    ];
    for (body, status, kind) in cases {
        assert_eq!(
            status_and_type(app.post("/v1/classify", body.clone()).await).await,
            (status, kind.into()),
            "{body}"
        );
    }
    for samples in [json!(0), json!(101), json!(-1), json!(1e30)] {
        let r = app
            .post(
                "/v1/classify/uncertainty",
                json!({"inputs": "x", "samples": samples}),
            )
            .await;
        assert_eq!(r.status(), 422, "samples {samples}");
    }
    let huge = "word ".repeat(20_000);
    assert_eq!(
        status_and_type(app.post("/v1/classify", json!({"inputs": huge})).await).await,
        (413, "body_too_large".into())
    );
    assert_eq!(
        status_and_type(app.get("/v2/nothing").await).await,
        (404, "not_found".into())
    );
    assert_eq!(
        status_and_type(app.get("/v1/classify").await).await,
        (405, "method_not_allowed".into())
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn long_texts_are_truncated_by_default_and_rejected_when_truncation_is_off() {
    let app = spawn_app().await;
    let long = "what is the name of the longest river in the world ".repeat(20);
    let r = app.post("/v1/classify", json!({"inputs": long})).await;
    assert_eq!(r.status(), 200);
    let (status, kind) = status_and_type(
        app.post(
            "/v1/classify",
            json!({"inputs": ["short", long], "truncate": false}),
        )
        .await,
    )
    .await;
    assert_eq!((status, kind.as_str()), (422, "input_too_long"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn with_an_api_key_the_api_needs_a_bearer_token_but_health_and_metrics_stay_open() {
    let mut settings = test_settings();
    settings.api_key = Some("s3cret".into());
    let app = spawn_app_with(settings).await;
    let (status, kind) =
        status_and_type(app.post("/v1/classify", json!({"inputs": "hi"})).await).await;
    assert_eq!((status, kind.as_str()), (401, "unauthorized"));
    let wrong = app
        .client
        .post(format!("{}/predict", app.address))
        .bearer_auth("nope")
        .json(&json!({"inputs": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .post(format!("{}/v1/classify", app.address))
        .bearer_auth("s3cret")
        .json(&json!({"inputs": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(open).await.status(), 200, "{open}");
    }
    app.stop().await.unwrap();
}
