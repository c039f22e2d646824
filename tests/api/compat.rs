use serde_json::json;

use crate::common::run_python_script;
use crate::helpers::spawn_app;

#[tokio::test]
async fn predict_answers_like_text_embeddings_inference() {
    let app = spawn_app().await;
    let single = app
        .post_json("/predict", json!({"inputs": "Who wrote Hamlet ?"}))
        .await;
    let single = single.as_array().unwrap();
    assert_eq!(single.len(), 6);
    assert!(single[0]["label"].is_string() && single[0]["score"].is_number());
    let batch = app
        .post_json(
            "/predict",
            json!({"inputs": ["Who wrote Hamlet ?", "Where is Lima ?"], "raw_scores": true}),
        )
        .await;
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert_eq!(batch[0].as_array().unwrap().len(), 6);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn predict_with_raw_scores_answers_the_logits_as_text_embeddings_inference_does() {
    let app = spawn_app().await;
    let text = "Who wrote Hamlet ?";
    let raw = app
        .post_json("/predict", json!({"inputs": text, "raw_scores": true}))
        .await;
    let logits = app
        .post_json(
            "/",
            json!({"inputs": text, "parameters": {"function_to_apply": "none"}}),
        )
        .await;
    assert_eq!(raw, logits[0], "raw scores are the logits");
    let sum: f64 = raw
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() > 1e-3, "raw scores summed to 1: {raw}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_root_route_answers_like_the_hugging_face_inference_api() {
    let app = spawn_app().await;
    let body = app
        .post_json(
            "/",
            json!({"inputs": "Who wrote Hamlet ?", "parameters": {"top_k": 2}}),
        )
        .await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0].as_array().unwrap().len(), 2);
    let logits = app
        .post_json(
            "/",
            json!({"inputs": ["a", "b"], "parameters": {"function_to_apply": "none"}}),
        )
        .await;
    assert_eq!(logits.as_array().unwrap().len(), 2);
    let bad = app
        .post(
            "/",
            json!({"inputs": "a", "parameters": {"function_to_apply": "cube"}}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_hugging_face_client_works_unchanged() {
    let app = spawn_app().await;
    let address = app.address.clone();
    let text = tokio::task::spawn_blocking(move || run_python_script("hf_client.py", &[&address]))
        .await
        .unwrap();
    assert!(text.contains("label="), "{text}");
    app.stop().await.unwrap();
}
