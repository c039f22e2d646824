//! The prediction log's limits: rows the database refuses are set aside
//! without holding up the rest, the backlog is bounded in bytes, and long
//! texts are stored cut, on a real SQLite file and a real PostgreSQL database.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use candor::store::log::{LogCounters, LogSettings, LogWriter, PredictionLog};
use candor::store::{ModelRecord, PredictionRecord, Store};
use prometheus::{IntCounter, IntGauge};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::spawn_app_with;
use crate::on_both_databases;

fn counters() -> LogCounters {
    let counter = |name: &str| IntCounter::new(name, name).unwrap();
    LogCounters {
        written: counter("written"),
        unlogged: counter("unlogged"),
        rejected: counter("rejected"),
        write_errors: counter("write_errors"),
        backlog: IntGauge::new("backlog", "backlog").unwrap(),
    }
}

fn prediction(text: &str) -> PredictionRecord {
    PredictionRecord {
        id: Uuid::now_v7(),
        created_at: SystemTime::now(),
        endpoint: "classify",
        text: Some(text.to_string()),
        text_truncated: false,
        text_sha256: format!("sha of {text}"),
        label: "HUM".into(),
        score: 0.6,
        probabilities: vec![0.0, 0.0, 0.0, 0.6, 0.0, 0.4],
        predictive_entropy: 0.7,
        margin: 0.2,
        sampled: None,
        latency_ms: 1.0,
        request_id: None,
        abstained: None,
    }
}

/// A running log of a model `m`; the writer runs while the returned
/// [`LogWriter`] is held.
async fn started_log(store: &Store, counters: LogCounters) -> (PredictionLog, LogWriter) {
    let model = store
        .register_model(&ModelRecord {
            name: "m".into(),
            weights_sha256: "abc".into(),
            labels: ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
                .map(String::from)
                .to_vec(),
            metrics: None,
        })
        .await
        .unwrap();
    let settings = LogSettings {
        capacity: 100,
        max_backlog_bytes: 1 << 20,
        batch_rows: 256,
        drain_timeout: Duration::from_secs(10),
    };
    PredictionLog::start(store.clone(), model, settings, counters)
}

async fn stored_ids(store: &Store) -> HashSet<Uuid> {
    store.prediction_ids().await.unwrap().into_iter().collect()
}

on_both_databases!(
    a_batch_with_a_row_the_database_refuses_lands_every_other_row_and_logging_goes_on,
    refused_row_body
);
async fn refused_row_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    let counters = counters();
    let (log, _writer) = started_log(&store, counters.clone()).await;
    let flush = || log.flush(Duration::from_secs(10));
    let first = prediction("Who is Bach ?");
    log.record(vec![first.clone()]);
    flush().await.unwrap();

    // One batch: two good rows around a reused id (a primary-key violation
    // on both databases) and, on PostgreSQL, a text with a NUL it refuses.
    let reused = PredictionRecord {
        id: first.id,
        ..prediction("Where is Lima ?")
    };
    let mut batch = vec![
        prediction("What is a fjord ?"),
        reused,
        prediction("Who is Liszt ?"),
    ];
    if backend == Backend::Postgres {
        batch.insert(1, prediction("What is \u{0} ?"));
    }
    let refused = batch.len() as u64 - 2;
    let good: Vec<Uuid> = [&batch[0], batch.last().unwrap()].map(|r| r.id).to_vec();
    log.record(batch);
    flush().await.unwrap();
    let later = prediction("How far is the Moon ?");
    log.record(vec![later.clone()]);
    flush().await.unwrap();

    let expected: HashSet<Uuid> = good.into_iter().chain([first.id, later.id]).collect();
    assert_eq!(stored_ids(&store).await, expected);
    assert_eq!(counters.rejected.get(), refused);
    assert_eq!(counters.unlogged.get(), refused);
    assert_eq!(counters.written.get(), 4);
    assert_eq!(counters.backlog.get(), 0);
    assert_eq!(log.backlog_bytes(), 0);
    assert!(
        !log.is_failing(),
        "a refused row is not the database failing"
    );
    let queued = store.review_queue(Some("m"), 10).await.unwrap();
    assert_eq!(
        queued.len(),
        4,
        "refused rows do not reach the review queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_the_database_refuses_is_a_422_not_a_retryable_503() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let app = spawn_app_with(settings_with_database(&db.url)).await;
    let answer = app
        .post_json("/v1/classify", json!({"inputs": "Who is Bach ?"}))
        .await;
    // PostgreSQL refuses a NUL in text (SQLSTATE 22021).
    let response = app
        .post(
            "/v1/feedback",
            json!({"prediction_id": answer["predictions"][0]["id"], "label": "HUM", "source": "by\u{0}hand"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.headers().get("retry-after").is_none());
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predictions_past_the_backlogs_byte_bound_are_answered_and_counted_unlogged() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut settings = settings_with_database(&db.url);
    settings.persistence.as_mut().unwrap().log.max_backlog_bytes = 1;
    let app = spawn_app_with(settings).await;
    let answer = app
        .post(
            "/v1/classify",
            json!({"inputs": ["Who is Bach ?", "Where is Lima ?"]}),
        )
        .await;
    assert_eq!(answer.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("candor_predictions_unlogged_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("candor_predictions_rejected_total 0"),
        "{metrics}"
    );
    app.stop().await.unwrap();
    assert!(db.store().await.prediction_ids().await.unwrap().is_empty());
}

on_both_databases!(
    a_long_text_is_stored_cut_and_marked_truncated_but_hashed_whole,
    truncated_body
);
async fn truncated_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut settings = settings_with_database(&db.url);
    settings.persistence.as_mut().unwrap().max_stored_text_chars = 13;
    let app = spawn_app_with(settings).await;
    let long = "Who composed Der Ring des Nibelungen ?";
    app.post("/v1/classify", json!({"inputs": [long, "Who is Bach ?"]}))
        .await;
    let queue = app.get_json("/v1/review-queue").await;
    let items = queue["items"].as_array().unwrap();
    let cut = items.iter().find(|i| i["text"] == "Who composed ").unwrap();
    assert_eq!(cut["text_truncated"], true);
    let short = items.iter().find(|i| i["text"] == "Who is Bach ?").unwrap();
    assert!(short.get("text_truncated").is_none(), "{short}");
    app.stop().await.unwrap();

    let store = db.store().await;
    let sha: String = sqlx::query("select text_sha256 from predictions where text_truncated = 1")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sha,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(long))
    );
}

on_both_databases!(
    predictions_with_and_without_mc_figures_share_their_statements,
    alternating_body
);
async fn alternating_body(backend: Backend) {
    // A statement first prepared with the MC figures missing (NULL) must
    // still take them later: the same one-row insert, alternating.
    let db = TestDatabase::new(backend).await;
    let store = db.store().await;
    let (log, _writer) = started_log(&store, counters()).await;
    drop(log);
    let model: i64 = sqlx::query("select id from models")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    for i in 0..12 {
        let row = PredictionRecord {
            sampled: (i % 2 == 1).then(|| candor::store::SampledFigures {
                samples: 8,
                mode: "full".into(),
                seed: 1,
                expected_entropy: 0.1,
                mutual_information: 0.2,
                variation_ratio: 0.3,
            }),
            ..prediction(&format!("question {i} ?"))
        };
        store.insert_predictions(model, &[row]).await.unwrap();
    }
    assert_eq!(store.prediction_ids().await.unwrap().len(), 12);
}
