//! Persistence: the models served, every logged prediction and the human
//! feedback on them, in SQLite (the embedded default, one instance) or
//! PostgreSQL (what several replicas share).
//!
//! - [`Store`] owns the connection pool and every query. The SQL is written
//!   once with `$n` placeholders, which both drivers accept; the few places
//!   where the dialects differ (uuids, timestamps, json) go through
//!   [`Dialect`], and the schema lives in one migration folder per dialect.
//! - [`log`] is the [`PredictionLog`](log::PredictionLog): a bounded queue and
//!   one writer task, so inserts never run on the request path.
//! - The review queue ([`ReviewPage`]) is kept ready in its own table by the
//!   insert and feedback transactions, and read a page at a time.
//! - [`StoreError`] says whether a failure is the data's (permanent) or the
//!   database's (transient).

mod error;
pub mod log;
mod review;

pub use error::StoreError;
pub use review::{MalformedCursor, ReviewCursor, ReviewItem, ReviewPage, AFTER_PATTERN};

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};
use uuid::Uuid;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQL dialect behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Dialect {
    /// The dialect a database URL names.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    /// Placeholder `$n` for a uuid given as text.
    fn uuid(self, n: usize) -> String {
        self.cast(n, "uuid")
    }

    /// Placeholder `$n` for an RFC 3339 timestamp given as text.
    fn timestamp(self, n: usize) -> String {
        self.cast(n, "timestamptz")
    }

    /// Placeholder `$n` for a JSON document given as text.
    fn json(self, n: usize) -> String {
        self.cast(n, "jsonb")
    }

    fn cast(self, n: usize, postgres_type: &str) -> String {
        match self {
            // SQLite stores all three as text.
            Dialect::Sqlite => format!("${n}"),
            Dialect::Postgres => format!("${n}::{postgres_type}"),
        }
    }

    /// A uuid or json column read back as text.
    fn text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => format!("{column}::text"),
        }
    }

    /// A timestamp column read back as RFC 3339 text in UTC, as SQLite stores it.
    fn timestamp_text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => {
                format!("to_char({column} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
            }
        }
    }
}

/// A database URL with any password replaced, fit for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// RFC 3339 in UTC with milliseconds: sorts as text, and PostgreSQL casts it.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A model as registered when a server starts.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    /// Display name (the model directory's name).
    pub name: String,
    /// Hex sha256 of `model.safetensors`: what identifies the model.
    pub weights_sha256: String,
    /// Labels in class order.
    pub labels: Vec<String>,
    /// The model's `metrics.json`, when it has one.
    pub metrics: Option<serde_json::Value>,
}

/// The MC-dropout figures of a prediction made with sampling.
#[derive(Debug, Clone)]
pub struct SampledFigures {
    /// Samples T.
    pub samples: usize,
    /// `full`, `head` or `top-K` (K top layers sampled).
    pub mode: String,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Mean entropy of the samples (aleatoric).
    pub expected_entropy: f64,
    /// Predictive − expected entropy (epistemic, BALD).
    pub mutual_information: f64,
    /// Share of samples disagreeing with the modal label.
    pub variation_ratio: f64,
}

/// One prediction to log.
#[derive(Debug, Clone)]
pub struct PredictionRecord {
    /// The id returned to the client.
    pub id: Uuid,
    /// When it was answered.
    pub created_at: SystemTime,
    /// The route that answered (`classify`, `uncertainty`, `predict`, `inference_api`).
    pub endpoint: &'static str,
    /// The input, unless the server keeps hashes only; at most
    /// `--max-stored-text-chars` characters of it.
    pub text: Option<String>,
    /// True when `text` is only the start of the input.
    pub text_truncated: bool,
    /// Hex sha256 of the input.
    pub text_sha256: String,
    /// Predicted label.
    pub label: String,
    /// Its probability.
    pub score: f64,
    /// Probabilities in class order (means over the samples under MC dropout).
    pub probabilities: Vec<f32>,
    /// Entropy of `probabilities` (nats).
    pub predictive_entropy: f64,
    /// Best minus second-best probability.
    pub margin: f64,
    /// Present when MC dropout was used.
    pub sampled: Option<SampledFigures>,
    /// Time from receiving the request to answering it, in milliseconds.
    pub latency_ms: f64,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// Whether the answer abstained, when an abstention policy applied.
    pub abstained: Option<bool>,
}

impl PredictionRecord {
    /// Roughly the memory the record holds: itself and what its strings and
    /// vectors point to. What bounds the log's backlog in bytes.
    pub fn approximate_bytes(&self) -> usize {
        let strings = [
            self.text.as_deref(),
            Some(&self.text_sha256),
            Some(&self.label),
            self.request_id.as_deref(),
            self.sampled.as_ref().map(|s| s.mode.as_str()),
        ];
        std::mem::size_of::<Self>()
            + strings.iter().flatten().map(|s| s.len()).sum::<usize>()
            + std::mem::size_of_val(self.probabilities.as_slice())
    }
}

/// What feedback refers to: the prediction and its model's labels.
#[derive(Debug, Clone)]
pub struct PredictionTarget {
    /// The label the model predicted.
    pub predicted: String,
    /// Every label the model knows.
    pub labels: Vec<String>,
}

/// A human's correct label for a prediction.
#[derive(Debug, Clone)]
pub struct FeedbackRecord {
    /// The prediction it is about.
    pub prediction_id: Uuid,
    /// The correct label.
    pub label: String,
    /// Who or what gave it (free text).
    pub source: Option<String>,
    /// When it was given.
    pub created_at: SystemTime,
}

/// Feedback figures for one correct label.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LabelStats {
    /// The label people gave.
    pub label: String,
    /// Feedback rows with this label.
    pub feedback: i64,
    /// How many of those the model had predicted.
    pub correct: i64,
    /// `correct / feedback` (the model's recall on this label), null without feedback.
    pub accuracy: Option<f64>,
}

/// What `GET /v1/stats` answers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Stats {
    /// The model name the figures are about.
    pub model: String,
    /// Logged predictions.
    pub predictions: i64,
    /// Of those, made with MC dropout.
    pub sampled_predictions: i64,
    /// Predictions with feedback.
    pub feedback: i64,
    /// Share of feedback agreeing with the prediction, null without feedback.
    pub accuracy: Option<f64>,
    /// Per correct label, in the model's class order.
    pub per_label: Vec<LabelStats>,
    /// Mean predictive entropy over the logged predictions (nats).
    pub mean_predictive_entropy: Option<f64>,
    /// Mean mutual information over the MC-dropout predictions (nats).
    pub mean_mutual_information: Option<f64>,
}

/// A `{"text", "label"}` row of exported corrections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Correction {
    /// The input.
    pub text: String,
    /// The label a person gave.
    pub label: String,
    /// True when `text` is only the start of the input (`--max-stored-text-chars`); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub text_truncated: bool,
}

/// Corrections and how many feedback rows had no stored text.
#[derive(Debug, Clone)]
pub struct Corrections {
    /// Distinct `(text, label)` pairs, oldest feedback first.
    pub rows: Vec<Correction>,
    /// Feedback on predictions logged with `--store-text=false`.
    pub without_text: usize,
}

/// Rows per insert statement.
const ROWS_PER_STATEMENT: usize = 32;

const PREDICTION_COLUMNS: [&str; 20] = [
    "id",
    "model_id",
    "created_at",
    "endpoint",
    "text",
    "text_sha256",
    "label",
    "score",
    "probabilities",
    "predictive_entropy",
    "margin",
    "samples",
    "mode",
    "seed",
    "expected_entropy",
    "mutual_information",
    "variation_ratio",
    "latency_ms",
    "abstained",
    "text_truncated",
];

/// The connection pool and every query.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects (creating a missing SQLite file) without migrating.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 8,
            })
            // A database that is away must not hold requests (feedback,
            // readiness) for long: they answer 503 instead.
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run beside the writer and, with
                        // synchronous=NORMAL, survives a killed process.
                        connection
                            .execute(
                                "pragma journal_mode = wal; pragma synchronous = normal; \
                                 pragma busy_timeout = 5000; pragma foreign_keys = on;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, dialect })
    }

    /// Connects, retrying for up to `patience` while the server is not up yet.
    pub async fn connect_patiently(url: &str, patience: Duration) -> Result<Self, StoreError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut wait = Duration::from_millis(200);
        loop {
            match Self::connect(url).await {
                Ok(store) => return Ok(store),
                Err(e) if !e.is_permanent() && tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(error = %e, url = %redact(url), "database not reachable yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Applies the migrations not yet applied (a no-op when all are).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A trivial query: is the database there?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records that `model` is being served and returns its id.
    pub async fn register_model(&self, model: &ModelRecord) -> Result<i64, StoreError> {
        let d = self.dialect;
        let sql = format!(
            "insert into models (name, weights_sha256, labels, metrics, first_seen, last_seen) \
             values ($1, $2, {}, {}, {}, {}) \
             on conflict (weights_sha256) do update set name = excluded.name, last_seen = excluded.last_seen \
             returning id",
            d.json(3),
            d.json(4),
            d.timestamp(5),
            d.timestamp(6)
        );
        let now = timestamp(SystemTime::now());
        let labels = serde_json::to_string(&model.labels).map_err(malformed)?;
        let metrics = model.metrics.as_ref().map(|m| m.to_string());
        let row = sqlx::query(&sql)
            .bind(&model.name)
            .bind(&model.weights_sha256)
            .bind(labels)
            .bind(metrics)
            .bind(&now)
            .bind(&now)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Inserts predictions of `model_id`, and their texts into the review
    /// queue, in one transaction (all or none).
    pub async fn insert_predictions(
        &self,
        model_id: i64,
        rows: &[PredictionRecord],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool.begin().await?;
        // Fixed-size statements are prepared once per connection and reused;
        // a statement per batch size would be prepared again and again.
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = self.insert_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for row in chunk {
                let probabilities = serde_json::to_string(&row.probabilities).map_err(malformed)?;
                let sampled = row.sampled.as_ref();
                let double =
                    |figure: fn(&SampledFigures) -> f64| sampled.map(|s| finite(figure(s)));
                query = query
                    .bind(row.id.to_string())
                    .bind(model_id)
                    .bind(timestamp(row.created_at))
                    .bind(row.endpoint)
                    .bind(row.text.clone())
                    .bind(row.text_sha256.clone())
                    .bind(row.label.clone())
                    .bind(row.score)
                    .bind(probabilities)
                    .bind(finite(row.predictive_entropy))
                    .bind(finite(row.margin))
                    .bind(sampled.map(|s| s.samples.min(i32::MAX as usize) as i32))
                    .bind(sampled.map(|s| s.mode.clone()))
                    .bind(sampled.map(|s| s.seed.to_string()))
                    .bind(NullableDouble(double(|s| s.expected_entropy)))
                    .bind(NullableDouble(double(|s| s.mutual_information)))
                    .bind(NullableDouble(double(|s| s.variation_ratio)))
                    .bind(row.latency_ms)
                    .bind(row.abstained.map(i32::from))
                    .bind(i32::from(row.text_truncated))
                    .bind(row.request_id.clone());
            }
            query.execute(&mut *transaction).await?;
        }
        self.queue_for_review(&mut transaction, model_id, rows)
            .await?;
        let touch = format!(
            "update models set last_seen = {} where id = $2",
            self.dialect.timestamp(1)
        );
        sqlx::query(&touch)
            .bind(timestamp(SystemTime::now()))
            .bind(model_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// `insert into predictions … values (…), (…)` for `rows` rows.
    fn insert_sql(&self, rows: usize) -> String {
        let d = self.dialect;
        let width = PREDICTION_COLUMNS.len() + 1;
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let n = |c: usize| r * width + c + 1;
                let mut cells: Vec<String> = (0..width).map(|c| format!("${}", n(c))).collect();
                cells[0] = d.uuid(n(0));
                cells[2] = d.timestamp(n(2));
                cells[8] = d.json(n(8));
                format!("({})", cells.join(", "))
            })
            .collect();
        format!(
            "insert into predictions ({}, request_id) values {}",
            PREDICTION_COLUMNS.join(", "),
            values.join(", ")
        )
    }

    /// The predicted label and the model's labels of a logged prediction.
    pub async fn prediction_target(
        &self,
        id: Uuid,
    ) -> Result<Option<PredictionTarget>, StoreError> {
        let d = self.dialect;
        let sql = format!(
            "select p.label, {} from predictions p join models m on m.id = p.model_id where p.id = {}",
            d.text("m.labels"),
            d.uuid(1)
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let labels: String = row.try_get(1)?;
            Ok(PredictionTarget {
                predicted: row.try_get(0)?,
                labels: serde_json::from_str(&labels).map_err(malformed)?,
            })
        })
        .transpose()
    }

    /// Stores feedback, replacing any earlier feedback on the same
    /// prediction, and takes its text out of the review queue.
    pub async fn save_feedback(&self, feedback: &FeedbackRecord) -> Result<(), StoreError> {
        let d = self.dialect;
        let sql = format!(
            "insert into feedback (prediction_id, label, source, created_at) values ({}, $2, $3, {}) \
             on conflict (prediction_id) do update \
             set label = excluded.label, source = excluded.source, created_at = excluded.created_at",
            d.uuid(1),
            d.timestamp(4)
        );
        let mut transaction = self.pool.begin().await?;
        sqlx::query(&sql)
            .bind(feedback.prediction_id.to_string())
            .bind(&feedback.label)
            .bind(feedback.source.clone())
            .bind(timestamp(feedback.created_at))
            .execute(&mut *transaction)
            .await?;
        self.mark_labelled(&mut transaction, feedback.prediction_id)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Prediction and feedback figures for the model named `model`.
    pub async fn stats(&self, model: &str) -> Result<Stats, StoreError> {
        let totals = sqlx::query(
            "select count(*), count(p.mutual_information), avg(p.predictive_entropy), avg(p.mutual_information) \
             from predictions p join models m on m.id = p.model_id where m.name = $1",
        )
        .bind(model)
        .fetch_one(&self.pool)
        .await?;
        let groups = sqlx::query(
            "select f.label, count(*), sum(case when f.label = p.label then 1 else 0 end) \
             from feedback f join predictions p on p.id = f.prediction_id join models m on m.id = p.model_id \
             where m.name = $1 group by f.label",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        let labels_sql = format!(
            "select {} from models where name = $1 order by last_seen desc limit 1",
            self.dialect.text("labels")
        );
        let labels: Vec<String> = match sqlx::query(&labels_sql)
            .bind(model)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(row) => serde_json::from_str(&row.try_get::<String, _>(0)?).map_err(malformed)?,
            None => Vec::new(),
        };
        let mut per_label: Vec<LabelStats> = labels
            .iter()
            .map(|label| LabelStats {
                label: label.clone(),
                feedback: 0,
                correct: 0,
                accuracy: None,
            })
            .collect();
        for row in &groups {
            let label: String = row.try_get(0)?;
            let feedback: i64 = row.try_get(1)?;
            let correct: i64 = row.try_get(2)?;
            let stats = LabelStats {
                accuracy: ratio(correct, feedback),
                label,
                feedback,
                correct,
            };
            // A label the model no longer has still counts, after the model's own.
            match per_label.iter_mut().find(|s| s.label == stats.label) {
                Some(entry) => *entry = stats,
                None => per_label.push(stats),
            }
        }
        let feedback: i64 = per_label.iter().map(|s| s.feedback).sum();
        let correct: i64 = per_label.iter().map(|s| s.correct).sum();
        Ok(Stats {
            model: model.to_string(),
            predictions: totals.try_get(0)?,
            sampled_predictions: totals.try_get(1)?,
            feedback,
            accuracy: ratio(correct, feedback),
            per_label,
            mean_predictive_entropy: totals.try_get(2)?,
            mean_mutual_information: totals.try_get(3)?,
        })
    }

    /// Every correction as `(text, label)`, oldest feedback first; with
    /// `model`, only that model's predictions.
    pub async fn corrections(&self, model: Option<&str>) -> Result<Corrections, StoreError> {
        let rows = sqlx::query(
            "select p.text, f.label, p.text_truncated from feedback f \
             join predictions p on p.id = f.prediction_id join models m on m.id = p.model_id \
             where ($1 is null or m.name = $1) order by f.created_at, f.prediction_id",
        )
        .bind(model.map(str::to_string))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Corrections {
            rows: Vec::new(),
            without_text: 0,
        };
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let text: Option<String> = row.try_get(0)?;
            let label: String = row.try_get(1)?;
            let text_truncated = row.try_get::<i32, _>(2)? != 0;
            match text {
                None => out.without_text += 1,
                Some(text) => {
                    let correction = Correction {
                        text,
                        label,
                        text_truncated,
                    };
                    if seen.insert(correction.clone()) {
                        out.rows.push(correction);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Ids of every logged prediction, for checks and tests.
    pub async fn prediction_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        let sql = format!("select {} from predictions", self.dialect.text("id"));
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                Uuid::parse_str(&id).map_err(malformed)
            })
            .collect()
    }

    /// The pool, for checks the store has no query for (tests, `db` commands).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// An optional `f64` to bind. sqlx 0.8.6's Any driver sends a NULL `f64` to
/// PostgreSQL as a `float4` (and a NULL `f32` as a `float8`); a cached
/// statement first prepared with such a NULL then refuses every later
/// value in that place (SQLSTATE 22P03, "incorrect binary data format").
/// So a missing value is bound as a NULL `f32`, which arrives as `float8`.
struct NullableDouble(Option<f64>);

impl sqlx::Type<sqlx::Any> for NullableDouble {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <f64 as sqlx::Type<sqlx::Any>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for NullableDouble {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self.0 {
            Some(x) => <f64 as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&x, buf),
            None => <Option<f32> as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&None, buf),
        }
    }
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// NaN and infinities are not valid in PostgreSQL's json nor meaningful here.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

fn malformed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed(e.to_string())
}
