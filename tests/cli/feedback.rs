//! `candor db migrate` and `candor feedback export` on a SQLite file.

use candor::store::{FeedbackRecord, ModelRecord, PredictionRecord, Store};

use crate::helpers::{candor_fails, candor_succeeds, stderr, stdout};

/// The URL of a new SQLite database in `dir`.
fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("loop.db").display())
}

#[test]
fn db_migrate_can_run_twice_on_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    for _ in 0..2 {
        candor_succeeds(&["db", "migrate", "--database-url", &url]);
    }
}

#[test]
fn db_migrate_refuses_a_database_it_does_not_support() {
    let err = candor_fails(&["db", "migrate", "--database-url", "mysql://nope"]);
    assert!(err.contains("unsupported database URL"), "{err}");
}

#[tokio::test]
async fn feedback_export_writes_corrections_of_stored_texts_as_jsonl_and_counts_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    candor_succeeds(&["db", "migrate", "--database-url", &url]);
    let store = Store::connect(&url).await.unwrap();
    let rows = [prediction(Some("a \"quoted\" film")), prediction(None)];
    correct_as_negative(&store, &rows).await;
    store.close().await;
    let exported = candor_succeeds(&["feedback", "export", "--database-url", &url]);
    assert_eq!(
        stdout(&exported),
        "{\"text\":\"a \\\"quoted\\\" film\",\"label\":\"negative\"}\n"
    );
    assert!(stderr(&exported).contains("exported 1 corrections"));
    assert!(stderr(&exported).contains("skipped 1 feedback rows"));
}

/// A `positive` prediction of `text` (`None`: only its hash was stored).
fn prediction(text: Option<&str>) -> PredictionRecord {
    PredictionRecord {
        id: uuid::Uuid::now_v7(),
        created_at: std::time::SystemTime::now(),
        endpoint: "classify",
        text: text.map(str::to_string),
        text_truncated: false,
        text_sha256: "x".into(),
        label: "positive".into(),
        score: 0.6,
        probabilities: vec![0.4, 0.6],
        predictive_entropy: 0.67,
        margin: 0.2,
        sampled: None,
        latency_ms: 1.0,
        request_id: None,
        abstained: None,
    }
}

/// Stores `rows` as predictions of a two-label model, each corrected to
/// `negative`.
async fn correct_as_negative(store: &Store, rows: &[PredictionRecord]) {
    let model = store
        .register_model(&ModelRecord {
            name: "m".into(),
            weights_sha256: "abc".into(),
            labels: vec!["negative".into(), "positive".into()],
            metrics: None,
        })
        .await
        .unwrap();
    store.insert_predictions(model, rows).await.unwrap();
    for row in rows {
        store
            .save_feedback(&FeedbackRecord {
                prediction_id: row.id,
                label: "negative".into(),
                source: None,
                created_at: std::time::SystemTime::now(),
            })
            .await
            .unwrap();
    }
}
