//! The prediction log, feedback, review queue, stats and export, each on a
//! real SQLite file and a real PostgreSQL database.

use std::time::SystemTime;

use candor::store::{PredictionRecord, SampledFigures};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::{json_of, spawn_app, spawn_app_with};
use crate::on_both_databases;

const LABELS: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

on_both_databases!(
    migrations_create_the_schema_and_running_them_again_changes_nothing,
    migrations_body
);
async fn migrations_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    store.migrate().await.expect("re-running the migrations");
    let applied: i64 = sqlx::query("select count(*) from _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    let shipped = std::fs::read_dir(format!(
        "{}/migrations/{}",
        env!("CARGO_MANIFEST_DIR"),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    ))
    .unwrap()
    .count();
    assert_eq!(applied as usize, shipped);
    let columns_sql = match backend {
        Backend::Sqlite => "select name from pragma_table_info($1) order by cid",
        Backend::Postgres => {
            "select column_name::text from information_schema.columns \
             where table_name = $1 and table_schema = 'public' order by ordinal_position"
        }
    };
    let mut schema = Vec::new();
    for table in ["models", "predictions", "feedback"] {
        let columns: Vec<String> = sqlx::query(columns_sql)
            .bind(table)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        schema.push((table, columns.join(",")));
    }
    assert_eq!(
        schema,
        [
            ("models", "id,name,weights_sha256,labels,metrics,first_seen,last_seen".to_string()),
            ("predictions", "id,model_id,created_at,endpoint,text,text_sha256,label,score,probabilities,predictive_entropy,margin,samples,mode,seed,expected_entropy,mutual_information,variation_ratio,latency_ms,request_id,abstained,text_truncated".to_string()),
            ("feedback", "prediction_id,label,source,created_at".to_string()),
        ]
    );
}

on_both_databases!(
    every_answered_prediction_is_logged_under_the_id_it_was_returned_with,
    logged_body
);
async fn logged_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = spawn_app_with(settings_with_database(&db.url)).await;
    let plain = app
        .post_json(
            "/v1/classify",
            json!({"inputs": ["Who wrote Hamlet ?", "How far is the Moon ?"]}),
        )
        .await;
    let sampled = app
        .post_json(
            "/v1/classify/uncertainty",
            json!({"inputs": "What is a fjord ?", "samples": 8, "seed": 7}),
        )
        .await;
    let tei = app
        .post("/predict", json!({"inputs": "Where is Lima ?"}))
        .await;
    let tei_id = tei.headers()["x-prediction-ids"]
        .to_str()
        .unwrap()
        .to_string();
    app.stop().await.unwrap();

    let store = db.store().await;
    let ids = store.prediction_ids().await.unwrap();
    let returned: Vec<String> = plain["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .chain(sampled["predictions"].as_array().unwrap())
        .map(|p| p["id"].as_str().unwrap().to_string())
        .chain([tei_id])
        .collect();
    assert_eq!(ids.len(), 4);
    for id in &returned {
        assert!(ids.contains(&Uuid::parse_str(id).unwrap()), "{id} missing");
    }
    let queue = store.review_queue(None, 10).await.unwrap();
    let fjord = queue
        .iter()
        .find(|i| i.text.as_deref() == Some("What is a fjord ?"))
        .expect("the sampled prediction is in the queue");
    assert_eq!(fjord.endpoint, "uncertainty");
    assert_eq!(fjord.samples, Some(8));
    assert!(fjord.mutual_information.is_some());
    assert_eq!(fjord.label, sampled["predictions"][0]["label"]);
    let hamlet = queue
        .iter()
        .find(|i| i.text.as_deref() == Some("Who wrote Hamlet ?"))
        .unwrap();
    assert_eq!(hamlet.endpoint, "classify");
    assert_eq!(hamlet.mutual_information, None);
    assert!((hamlet.score - plain["predictions"][0]["score"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(hamlet.probabilities.len(), LABELS.len());
}

on_both_databases!(
    feedback_is_stored_replaced_counted_and_exported,
    feedback_body
);
async fn feedback_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = spawn_app_with(settings_with_database(&db.url)).await;
    let answer = app
        .post_json(
            "/v1/classify",
            json!({"inputs": ["Who wrote Hamlet ?", "How far is the Moon ?"]}),
        )
        .await;
    let first = &answer["predictions"][0];
    let other = LABELS
        .iter()
        .find(|l| **l != first["label"].as_str().unwrap())
        .unwrap();
    // Sent at once: the prediction may still be on its way to the database.
    let given = app
        .post(
            "/v1/feedback",
            json!({"prediction_id": first["id"], "label": other, "source": "test"}),
        )
        .await;
    assert_eq!(given.status(), 201);
    let receipt = json_of(given).await;
    assert_eq!(receipt["correct"], false);
    assert_eq!(receipt["predicted_label"], first["label"]);
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(stats["predictions"], 2);
    assert_eq!(stats["feedback"], 1);
    assert_eq!(stats["accuracy"], 0.0);

    let replaced = app
        .post(
            "/v1/feedback",
            json!({"prediction_id": first["id"], "label": first["label"]}),
        )
        .await;
    assert_eq!(replaced.status(), 201);
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(stats["feedback"], 1, "feedback replaces, not adds");
    assert_eq!(stats["accuracy"], 1.0);
    let per_label = stats["per_label"].as_array().unwrap();
    assert_eq!(per_label.len(), LABELS.len());
    let row = per_label
        .iter()
        .find(|s| s["label"] == first["label"])
        .unwrap();
    assert_eq!(
        (row["feedback"].clone(), row["correct"].clone()),
        (json!(1), json!(1))
    );
    app.stop().await.unwrap();

    let corrections = db.store().await.corrections(None).await.unwrap();
    assert_eq!(corrections.rows.len(), 1);
    assert_eq!(corrections.rows[0].text, "Who wrote Hamlet ?");
    assert_eq!(corrections.rows[0].label, first["label"].as_str().unwrap());
}

on_both_databases!(
    feedback_on_an_unknown_prediction_or_with_an_unknown_label_is_rejected,
    feedback_errors_body
);
async fn feedback_errors_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = spawn_app_with(settings_with_database(&db.url)).await;
    let answer = app
        .post_json("/v1/classify", json!({"inputs": "Who is Bach ?"}))
        .await;
    let id = answer["predictions"][0]["id"].clone();
    let cases = [
        (
            json!({"prediction_id": Uuid::now_v7().to_string(), "label": "HUM"}),
            404,
            "prediction_not_found",
        ),
        (
            json!({"prediction_id": "not-a-uuid", "label": "HUM"}),
            422,
            "validation",
        ),
        (
            json!({"prediction_id": id, "label": "PERSON"}),
            422,
            "validation",
        ),
        (json!({"prediction_id": id}), 422, "invalid_json"),
        (
            json!({"prediction_id": id, "label": "HUM", "source": "x".repeat(201)}),
            422,
            "validation",
        ),
        (
            json!({"prediction_id": id, "label": "HUM", "extra": 1}),
            422,
            "invalid_json",
        ),
    ];
    for (body, status, kind) in cases {
        let response = app.post("/v1/feedback", body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(json_of(response).await["type"], kind, "{body}");
    }
    let bad_limit = app.get("/v1/review-queue?limit=0").await;
    assert_eq!(bad_limit.status(), 422);
    let not_a_number = app.get("/v1/review-queue?limit=many").await;
    assert_eq!(not_a_number.status(), 422);
    assert_eq!(json_of(not_a_number).await["type"], "validation");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_database_feedback_queue_and_stats_say_so() {
    let app = spawn_app().await;
    let answer = app
        .post_json("/v1/classify", json!({"inputs": "Who is Bach ?"}))
        .await;
    assert!(answer["predictions"][0]["id"].is_string());
    let feedback = app
        .post(
            "/v1/feedback",
            json!({"prediction_id": answer["predictions"][0]["id"], "label": "HUM"}),
        )
        .await;
    assert_eq!(feedback.status(), 501);
    assert_eq!(json_of(feedback).await["type"], "persistence_disabled");
    assert_eq!(app.get("/v1/review-queue").await.status(), 501);
    assert_eq!(app.get("/v1/stats").await.status(), 501);
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["database"], "off");
    app.stop().await.unwrap();
}

fn record(text: &str, score: f64, entropy: f64, information: Option<f64>) -> PredictionRecord {
    PredictionRecord {
        id: Uuid::now_v7(),
        created_at: SystemTime::now(),
        endpoint: if information.is_some() {
            "uncertainty"
        } else {
            "classify"
        },
        text: Some(text.to_string()),
        text_truncated: false,
        text_sha256: text.to_string(),
        label: "HUM".into(),
        score,
        probabilities: vec![0.0, 0.0, 0.0, score as f32, 0.0, 1.0 - score as f32],
        predictive_entropy: entropy,
        margin: 0.1,
        sampled: information.map(|mi| SampledFigures {
            samples: 30,
            mode: "full".into(),
            seed: u64::MAX,
            expected_entropy: entropy - mi,
            mutual_information: mi,
            variation_ratio: 0.2,
        }),
        latency_ms: 1.0,
        request_id: None,
        abstained: None,
    }
}

on_both_databases!(
    the_review_queue_puts_abstentions_then_the_most_uncertain_unlabelled_texts_first_once_each,
    review_queue_body
);
async fn review_queue_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    let model = store
        .register_model(&candor::store::ModelRecord {
            name: "m".into(),
            weights_sha256: "abc".into(),
            labels: LABELS.iter().map(|l| l.to_string()).collect(),
            metrics: None,
        })
        .await
        .unwrap();
    let records = vec![
        record("low information", 0.6, 0.9, Some(0.05)),
        record("high information", 0.7, 0.5, Some(0.30)),
        record("high information", 0.5, 0.9, Some(0.10)), // the same text, less uncertain
        record("no samples, high entropy", 0.5, 1.2, None),
        record("no samples, tie, low score", 0.4, 0.8, None),
        record("no samples, tie, high score", 0.6, 0.8, None),
        record("labelled", 0.3, 1.5, Some(0.9)),
        record("labelled", 0.3, 1.5, Some(0.8)), // another copy of a labelled text
        PredictionRecord {
            abstained: Some(true),
            ..record("abstained on, though fairly sure", 0.8, 0.3, None)
        },
        PredictionRecord {
            abstained: Some(false),
            ..record("answered under a policy", 0.9, 0.2, None)
        },
    ];
    store.insert_predictions(model, &records).await.unwrap();
    store
        .save_feedback(&candor::store::FeedbackRecord {
            prediction_id: records[6].id,
            label: "HUM".into(),
            source: None,
            created_at: SystemTime::now(),
        })
        .await
        .unwrap();
    let queue = store.review_queue(Some("m"), 10).await.unwrap();
    let order: Vec<&str> = queue.iter().map(|i| i.text.as_deref().unwrap()).collect();
    assert_eq!(
        order,
        [
            "abstained on, though fairly sure",
            "high information",
            "low information",
            "no samples, high entropy",
            "no samples, tie, low score",
            "no samples, tie, high score",
            "answered under a policy",
        ]
    );
    assert_eq!(queue[0].abstained, Some(true));
    assert_eq!(queue[1].id, records[1].id.to_string());
    assert_eq!(queue[6].abstained, Some(false));
    assert_eq!(queue[2].abstained, None);
    assert_eq!(queue[1].mutual_information, Some(0.30));
    assert_eq!(store.review_queue(Some("m"), 2).await.unwrap().len(), 2);
    assert!(store
        .review_queue(Some("other"), 10)
        .await
        .unwrap()
        .is_empty());
    // The seed, a u64, survives as text.
    let seed: String = sqlx::query("select seed from predictions where text = 'low information'")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(seed, u64::MAX.to_string());
}

on_both_databases!(
    with_store_text_off_only_the_hash_of_each_input_is_kept,
    hash_only_body
);
async fn hash_only_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut settings = settings_with_database(&db.url);
    settings.persistence.as_mut().unwrap().store_text = false;
    let app = spawn_app_with(settings).await;
    let answer = app
        .post_json("/v1/classify", json!({"inputs": "Who is Bach ?"}))
        .await;
    let queue = app.get_json("/v1/review-queue").await;
    assert_eq!(queue["items"][0]["id"], answer["predictions"][0]["id"]);
    assert_eq!(queue["items"][0]["text"], Value::Null);
    app.stop().await.unwrap();
    let row = sqlx::query("select text, text_sha256 from predictions")
        .fetch_one(db.store().await.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<Option<String>, _>(0), None);
    assert_eq!(row.get::<String, _>(1), hex_sha256("Who is Bach ?"));
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
