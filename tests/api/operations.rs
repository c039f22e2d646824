use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_model_route_describes_the_served_model() {
    let app = spawn_app().await;
    let info = app.get_json("/v1/model").await;
    assert_eq!(info["name"], "tiny-trec6");
    assert_eq!(info["labels"].as_array().unwrap().len(), 6);
    assert_eq!(info["hidden_size"], 32);
    assert_eq!(info["weights_sha256"].as_str().unwrap().len(), 64);
    assert!(info["temperature"].as_f64().unwrap() > 0.0);
    assert!(info["training_metrics"]["test"]["deterministic"]["accuracy"].is_number());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn health_readiness_openapi_and_docs_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["ready"], true);
    let spec = app.get_json("/openapi.json").await;
    for path in [
        "/v1/classify",
        "/v1/classify/uncertainty",
        "/predict",
        "/",
        "/v1/model",
        "/v1/feedback",
        "/v1/review-queue",
        "/v1/stats",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI spec"
        );
    }
    for schema in ["ReviewItem", "Stats", "FeedbackRequest", "FeedbackReceipt"] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema} missing from the OpenAPI spec"
        );
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app.get("/healthz").await;
    assert_eq!(r.headers()["x-request-id"].to_str().unwrap().len(), 36);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.post("/v1/classify", json!({"inputs": "Who ?"})).await;
    app.post("/v1/classify", json!({"inputs": ""})).await;
    app.post(
        "/v1/classify/uncertainty",
        json!({"inputs": "Who ?", "samples": 5}),
    )
    .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"candor_http_requests_total{method="POST",route="/v1/classify",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"candor_http_requests_total{method="POST",route="/v1/classify",status="422"} 1"#
    ));
    assert!(text.contains("candor_http_request_duration_seconds_bucket"));
    assert!(text.contains("candor_queue_depth"));
    // Per model: a server may serve several.
    assert!(text.contains(r#"candor_mc_samples_total{model="tiny-trec6"} 5"#));
    assert!(text.contains("candor_batch_rows_count"));
    app.stop().await.unwrap();
}

/// `docs/openapi.json` is the contract as committed; regenerate it with
/// `CANDOR_UPDATE_OPENAPI=1 cargo test --release --test api committed_openapi`.
#[tokio::test]
async fn the_committed_openapi_document_is_what_the_server_serves() {
    let app = spawn_app().await;
    let served = app.get_json("/openapi.json").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("CANDOR_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&served).unwrap() + "\n").unwrap();
    }
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/openapi.json")).unwrap();
    assert!(
        committed == served,
        "docs/openapi.json differs from what the server serves: regenerate it with \
         CANDOR_UPDATE_OPENAPI=1 cargo test --release --test api committed_openapi"
    );
    app.stop().await.unwrap();
}
