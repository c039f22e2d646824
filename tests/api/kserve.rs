//! KServe's Open Inference Protocol (v2): the real `tritonclient` against
//! the server, and the protocol's errors for what it must refuse.

use serde_json::{json, Value};

use crate::common::run_python_script;
use crate::helpers::{json_of, spawn_app, TestApp};

const MODEL: &str = "tiny-trec6";

async fn infer(app: &TestApp, model: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/v2/models/{model}/infer"), body).await
}

fn texts(data: Value) -> Value {
    json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": data}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_classifies_and_samples_with_binary_and_json_tensors() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_string();
    let printed = tokio::task::spawn_blocking(move || {
        run_python_script("triton_client.py", &[&address, MODEL])
    })
    .await
    .unwrap();
    let line = |start: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(start))
            .unwrap_or_else(|| panic!("no '{start}' in:\n{printed}"))
            .to_string()
    };
    // The same texts through candor's own route give the same labels.
    let own = app
        .post_json(
            "/v1/classify",
            json!({"inputs": ["Who wrote Hamlet?", "How far is the moon?"]}),
        )
        .await;
    let own_labels: Vec<&str> = own["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(line("binary labels="), own_labels.join(","));
    assert_eq!(line("json labels="), own_labels.join(","));
    assert_eq!(line("ids=").split(',').count(), 2);
    let error = line("error: ");
    assert!(error.contains("must be BYTES"), "{error}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metadata_answer_as_the_protocol_says() {
    let app = spawn_app().await;
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/tiny-trec6/ready",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let metadata = app.get_json("/v2/models/tiny-trec6").await;
    assert_eq!(
        metadata["inputs"][0],
        json!({"name": "text", "datatype": "BYTES", "shape": [-1]})
    );
    assert_eq!(metadata["outputs"][1]["shape"], json!([-1, 6]));
    let server = app.get_json("/v2").await;
    assert_eq!(server["name"], "candor");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_tensors_answer_labels_probabilities_and_on_request_uncertainty() {
    let app = spawn_app().await;
    let plain =
        json_of(infer(&app, MODEL, texts(json!(["Who wrote Hamlet?", "Why?"]))).await).await;
    let outputs = plain["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["label", "probabilities"]);
    assert_eq!(outputs[1]["datatype"], "FP32");
    assert_eq!(outputs[1]["shape"], json!([2, 6]));
    let mut sampled = texts(json!([["Who wrote Hamlet?"], ["Why?"]]));
    sampled["inputs"][0]["shape"] = json!([2, 1]);
    sampled["parameters"] = json!({"samples": 5, "seed": 3});
    sampled["outputs"] = json!([{"name": "mutual_information"}, {"name": "std"}]);
    let answer = json_of(infer(&app, MODEL, sampled).await).await;
    let names: Vec<&str> = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mutual_information", "std"]);
    assert_eq!(answer["outputs"][1]["shape"], json!([2, 6]));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_datatypes_shapes_names_and_models_are_refused_in_the_protocols_shape() {
    let app = spawn_app().await;
    let mut wrong_type = texts(json!(["a", "b"]));
    wrong_type["inputs"][0]["datatype"] = json!("FP32");
    let mut wrong_shape = texts(json!(["a", "b"]));
    wrong_shape["inputs"][0]["shape"] = json!([3]);
    let mut wrong_name = texts(json!(["a", "b"]));
    wrong_name["inputs"][0]["name"] = json!("input_ids");
    let mut wrong_output = texts(json!(["a", "b"]));
    wrong_output["outputs"] = json!([{"name": "logits"}]);
    let mut unsampled_output = texts(json!(["a", "b"]));
    unsampled_output["outputs"] = json!([{"name": "std"}]);
    let mut numbers = texts(json!([1, 2]));
    numbers["inputs"][0]["datatype"] = json!("BYTES");
    for (body, says) in [
        (wrong_type, "must be BYTES"),
        (wrong_shape, "holds 2 texts"),
        (wrong_name, "unknown input 'input_ids'"),
        (wrong_output, "unknown output 'logits'"),
        (unsampled_output, "needs sampling"),
        (numbers, "holds texts"),
        (json!({"inputs": []}), "one input"),
    ] {
        let response = infer(&app, MODEL, body).await;
        assert_eq!(response.status(), 400, "{says}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(says), "{message} (expected: {says})");
    }
    let unknown = infer(&app, "nope", texts(json!(["a", "b"]))).await;
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("tiny-trec6"));
    app.stop().await.unwrap();
}
