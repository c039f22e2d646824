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

pub mod log;

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};
use uuid::Uuid;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error(
        "unsupported database URL '{0}': use sqlite://FILE or postgres://USER:PASSWORD@HOST/DB"
    )]
    UnsupportedUrl(String),
    /// The driver failed (connection, query, constraint).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed or the applied ones differ from the shipped ones.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value cannot be read back.
    #[error("malformed value in the database: {0}")]
    Malformed(String),
}

impl StoreError {
    /// True when retrying cannot help: the data itself is refused (a
    /// constraint) rather than the database being away or busy.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                !matches!(e.kind(), sqlx::error::ErrorKind::Other)
            }
            StoreError::UnsupportedUrl(_) | StoreError::Malformed(_) => true,
            _ => false,
        }
    }
}

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
    /// `full` or `head`.
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
    /// The input, unless the server keeps hashes only.
    pub text: Option<String>,
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

/// One entry of the review queue.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReviewItem {
    /// Prediction id (send it back with the feedback).
    pub id: String,
    /// When it was predicted (RFC 3339, UTC).
    pub created_at: String,
    /// Model name.
    pub model: String,
    /// The route that answered.
    pub endpoint: String,
    /// The input (null when the server keeps hashes only).
    pub text: Option<String>,
    /// Predicted label.
    pub label: String,
    /// Its probability.
    pub score: f64,
    /// Probabilities in the model's class order.
    pub probabilities: Vec<f32>,
    /// Entropy of the probabilities (nats).
    pub predictive_entropy: f64,
    /// Mutual information (nats), when MC dropout was used.
    pub mutual_information: Option<f64>,
    /// Best minus second-best probability.
    pub margin: f64,
    /// MC-dropout samples, when used.
    pub samples: Option<i64>,
    /// Whether the answer abstained, when an abstention policy applied.
    pub abstained: Option<bool>,
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

const PREDICTION_COLUMNS: [&str; 19] = [
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

    /// Inserts predictions of `model_id` in one transaction (all or none).
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
                    .bind(sampled.map(|s| finite(s.expected_entropy)))
                    .bind(sampled.map(|s| finite(s.mutual_information)))
                    .bind(sampled.map(|s| finite(s.variation_ratio)))
                    .bind(row.latency_ms)
                    .bind(row.abstained.map(i32::from))
                    .bind(row.request_id.clone());
            }
            query.execute(&mut *transaction).await?;
        }
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

    /// Stores feedback, replacing any earlier feedback on the same prediction.
    pub async fn save_feedback(&self, feedback: &FeedbackRecord) -> Result<(), StoreError> {
        let d = self.dialect;
        let sql = format!(
            "insert into feedback (prediction_id, label, source, created_at) values ({}, $2, $3, {}) \
             on conflict (prediction_id) do update \
             set label = excluded.label, source = excluded.source, created_at = excluded.created_at",
            d.uuid(1),
            d.timestamp(4)
        );
        sqlx::query(&sql)
            .bind(feedback.prediction_id.to_string())
            .bind(&feedback.label)
            .bind(feedback.source.clone())
            .bind(timestamp(feedback.created_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Logged predictions nobody has labelled yet, most uncertain first:
    /// those the service abstained on, then highest mutual information (predictions without MC figures after those
    /// with), then highest predictive entropy, then lowest score. A text
    /// logged several times appears once, and not at all once any of its
    /// predictions by the same model has feedback.
    pub async fn review_queue(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let d = self.dialect;
        let order =
            "coalesce(p.abstained, 0) desc, p.mutual_information desc nulls last, p.predictive_entropy desc, p.score asc, p.id";
        let sql = format!(
            "select {id}, {created}, p.model, p.endpoint, p.text, p.label, p.score, {probabilities}, \
                    p.predictive_entropy, p.mutual_information, p.margin, p.samples, p.abstained \
             from ( \
                 select p.*, m.name as model, \
                        row_number() over (partition by p.model_id, p.text_sha256 order by {order}) as duplicate_rank \
                 from predictions p join models m on m.id = p.model_id \
                 where ($1 is null or m.name = $1) \
                   and not exists ( \
                       select 1 from feedback f join predictions q on q.id = f.prediction_id \
                       where q.model_id = p.model_id and q.text_sha256 = p.text_sha256) \
             ) p \
             where p.duplicate_rank = 1 \
             order by {order} \
             limit $2",
            id = d.text("p.id"),
            created = d.timestamp_text("p.created_at"),
            probabilities = d.text("p.probabilities"),
        );
        let rows = sqlx::query(&sql)
            .bind(model.map(str::to_string))
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let probabilities: String = row.try_get(7)?;
                Ok(ReviewItem {
                    id: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    model: row.try_get(2)?,
                    endpoint: row.try_get(3)?,
                    text: row.try_get(4)?,
                    label: row.try_get(5)?,
                    score: row.try_get(6)?,
                    probabilities: serde_json::from_str(&probabilities).map_err(malformed)?,
                    predictive_entropy: row.try_get(8)?,
                    mutual_information: row.try_get(9)?,
                    margin: row.try_get(10)?,
                    samples: row.try_get::<Option<i32>, _>(11)?.map(i64::from),
                    abstained: row.try_get::<Option<i32>, _>(12)?.map(|a| a != 0),
                })
            })
            .collect()
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
            "select p.text, f.label from feedback f \
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
            match text {
                None => out.without_text += 1,
                Some(text) => {
                    let correction = Correction { text, label };
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
