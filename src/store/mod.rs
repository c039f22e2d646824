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

mod dialect;
mod error;
mod feedback;
pub mod log;
mod predictions;
mod records;
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

pub use dialect::{redact, timestamp, Dialect};
pub use records::{
    Correction, Corrections, FeedbackRecord, LabelStats, ModelRecord, PredictionRecord,
    PredictionTarget, SampledFigures, Stats,
};

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
        Ok(row.try_get::<i64, _>("id")?)
    }

    /// Ids of every logged prediction, for checks and tests.
    pub async fn prediction_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        let sql = format!("select {} as id from predictions", self.dialect.text("id"));
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Uuid::parse_str(&id).map_err(malformed)
            })
            .collect()
    }

    /// The pool, for checks the store has no query for (tests, `db` commands).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
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
