//! Logging predictions: batched inserts, one transaction per batch.

use std::time::SystemTime;

use super::dialect::timestamp;
use super::records::{PredictionRecord, SampledFigures};
use super::{finite, malformed, Store, StoreError};

/// Rows per insert statement.
pub(super) const ROWS_PER_STATEMENT: usize = 32;

/// How a column's placeholder is written: as is, or cast to the column's
/// type where the dialects differ.
#[derive(Debug, Clone, Copy)]
enum Cast {
    Plain,
    Uuid,
    Timestamp,
    Json,
}

/// The columns an insert writes, in the order [`bind_row`] binds them, each
/// with its placeholder's cast.
const PREDICTION_COLUMNS: [(&str, Cast); 21] = [
    ("id", Cast::Uuid),
    ("model_id", Cast::Plain),
    ("created_at", Cast::Timestamp),
    ("endpoint", Cast::Plain),
    ("text", Cast::Plain),
    ("text_sha256", Cast::Plain),
    ("label", Cast::Plain),
    ("score", Cast::Plain),
    ("probabilities", Cast::Json),
    ("predictive_entropy", Cast::Plain),
    ("margin", Cast::Plain),
    ("samples", Cast::Plain),
    ("mode", Cast::Plain),
    ("seed", Cast::Plain),
    ("expected_entropy", Cast::Plain),
    ("mutual_information", Cast::Plain),
    ("variation_ratio", Cast::Plain),
    ("latency_ms", Cast::Plain),
    ("abstained", Cast::Plain),
    ("text_truncated", Cast::Plain),
    ("request_id", Cast::Plain),
];

impl Store {
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
                query = bind_row(query, model_id, row)?;
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
        let width = PREDICTION_COLUMNS.len();
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let cells: Vec<String> = PREDICTION_COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(c, (_, cast))| {
                        let n = r * width + c + 1;
                        match cast {
                            Cast::Plain => format!("${n}"),
                            Cast::Uuid => d.uuid(n),
                            Cast::Timestamp => d.timestamp(n),
                            Cast::Json => d.json(n),
                        }
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let names: Vec<&str> = PREDICTION_COLUMNS.iter().map(|(name, _)| *name).collect();
        format!(
            "insert into predictions ({}) values {}",
            names.join(", "),
            values.join(", ")
        )
    }
}

/// Binds one row's values, one per [`PREDICTION_COLUMNS`] entry in order.
fn bind_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    model_id: i64,
    row: &PredictionRecord,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, StoreError> {
    let probabilities = serde_json::to_string(&row.probabilities).map_err(malformed)?;
    let sampled = row.sampled.as_ref();
    let double = |figure: fn(&SampledFigures) -> f64| sampled.map(|s| finite(figure(s)));
    Ok(query
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
        .bind(row.request_id.clone()))
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
