//! The review queue kept in its own table: paging through it, labelled
//! texts staying out, and the migration that fills it from an existing log,
//! on a real SQLite file and a real PostgreSQL database.

use std::time::SystemTime;

use candor::store::{FeedbackRecord, ModelRecord, PredictionRecord, SampledFigures, Store};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::spawn_app_with;
use crate::on_both_databases;

/// The `i`-th of a varied log: repeated texts, tied uncertainties, with
/// and without MC figures, some abstentions.
fn varied(i: usize) -> PredictionRecord {
    let information = [Some(0.2), None, Some(0.05), None][i % 4];
    let text = format!("question {} ?", i % 17);
    PredictionRecord {
        id: Uuid::now_v7(),
        created_at: SystemTime::now(),
        endpoint: "classify",
        text: Some(text.clone()),
        text_truncated: false,
        text_sha256: text,
        label: "HUM".into(),
        score: [0.4, 0.6, 0.5][i % 3],
        probabilities: vec![0.0, 0.0, 0.0, 0.5, 0.0, 0.5],
        predictive_entropy: [0.5, 0.8, 1.2, 0.8, 0.5][i % 5],
        margin: 0.1,
        sampled: information.map(|mi| SampledFigures {
            samples: 8,
            mode: "full".into(),
            seed: 1,
            expected_entropy: 0.1,
            mutual_information: mi,
            variation_ratio: 0.1,
        }),
        latency_ms: 1.0,
        request_id: None,
        abstained: [None, Some(false), None, None, None, None, Some(true)][i % 7],
    }
}

/// Registers a model named `name` with its own weights.
async fn model(store: &Store, name: &str, weights: &str) -> i64 {
    store
        .register_model(&ModelRecord {
            name: name.into(),
            weights_sha256: weights.into(),
            labels: ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
                .map(String::from)
                .to_vec(),
            metrics: None,
        })
        .await
        .unwrap()
}

async fn label(store: &Store, prediction: &PredictionRecord) {
    store
        .save_feedback(&FeedbackRecord {
            prediction_id: prediction.id,
            label: "HUM".into(),
            source: None,
            created_at: SystemTime::now(),
        })
        .await
        .unwrap();
}

/// Two models under one name (retrained weights), a varied log in several
/// batches, and feedback on two texts.
async fn fill(store: &Store) {
    let first = model(store, "m", "weights-1").await;
    let second = model(store, "m", "weights-2").await;
    let rows: Vec<PredictionRecord> = (0..60).map(varied).collect();
    for (n, chunk) in rows.chunks(9).enumerate() {
        let model = if n % 2 == 0 { first } else { second };
        store.insert_predictions(model, chunk).await.unwrap();
    }
    label(store, &rows[3]).await;
    label(store, &rows[40]).await;
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

on_both_databases!(
    paging_through_the_review_queue_by_twos_yields_exactly_the_one_big_page,
    paging_body
);
async fn paging_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = spawn_app_with(settings_with_database(&db.url)).await;
    fill(&db.store().await).await;
    let whole = app.get_json("/v1/review-queue?model=m&limit=1000").await;
    assert_eq!(whole["next"], Value::Null);
    let whole = whole["items"].as_array().unwrap().clone();
    assert!(whole.len() > 10, "{}", whole.len());

    let mut paged = Vec::new();
    let mut path = "/v1/review-queue?model=m&limit=2".to_string();
    loop {
        let page = app.get_json(&path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        paged.extend(items.iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/review-queue?model=m&limit=2&after={next}"),
            None => break,
        }
        assert!(paged.len() <= whole.len(), "paging does not end");
    }
    assert_eq!(ids(&paged), ids(&whole));
    assert_eq!(paged, whole);
    app.stop().await.unwrap();
}

on_both_databases!(
    a_cursor_the_server_did_not_hand_out_is_rejected_naming_the_parameter,
    bad_cursor_body
);
async fn bad_cursor_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = spawn_app_with(settings_with_database(&db.url)).await;
    for after in ["nonsense", "7b7d", "00"] {
        let response = app.get(&format!("/v1/review-queue?after={after}")).await;
        assert_eq!(response.status(), 422, "{after}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "validation");
        assert!(body["error"].as_str().unwrap().contains("after"), "{body}");
    }
    app.stop().await.unwrap();
}

on_both_databases!(
    a_labelled_text_logged_again_stays_out_of_the_review_queue,
    labelled_again_body
);
async fn labelled_again_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    let model = model(&store, "m", "weights").await;
    let first = varied(0);
    store
        .insert_predictions(model, std::slice::from_ref(&first))
        .await
        .unwrap();
    label(&store, &first).await;
    let again = PredictionRecord {
        predictive_entropy: 2.0,
        ..varied(0)
    };
    store
        .insert_predictions(model, &[again, varied(1)])
        .await
        .unwrap();
    let queue = store.review_queue(Some("m"), 10).await.unwrap();
    let texts: Vec<_> = queue.iter().map(|i| i.text.clone().unwrap()).collect();
    assert_eq!(texts, ["question 1 ?"]);
}

/// The queue as the store reads it: ids in order.
async fn queue_ids(store: &Store) -> Vec<String> {
    let queue = store.review_queue(None, 1000).await.unwrap();
    queue.into_iter().map(|i| i.id).collect()
}

on_both_databases!(
    the_migration_fills_the_review_queue_from_what_was_logged_before_it,
    backfill_body
);
async fn backfill_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    fill(&store).await;
    let kept = queue_ids(&store).await;
    // Back to before the migration, then forward again.
    let version: i64 =
        sqlx::query("select version from _sqlx_migrations where description like '%review items%'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0);
    sqlx::query("drop table review_items")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(&format!(
        "delete from _sqlx_migrations where version = {version}"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(queue_ids(&store).await, kept);
}
