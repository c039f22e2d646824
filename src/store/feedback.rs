//! Feedback: what a prediction said, corrections stored and exported, and
//! the figures over them.

use sqlx::Row;
use uuid::Uuid;

use super::dialect::timestamp;
use super::records::{
    Correction, Corrections, FeedbackRecord, LabelStats, PredictionTarget, Stats,
};
use super::{malformed, Store, StoreError};

impl Store {
    /// The predicted label and the model's labels of a logged prediction.
    pub async fn prediction_target(
        &self,
        id: Uuid,
    ) -> Result<Option<PredictionTarget>, StoreError> {
        let d = self.dialect;
        let sql = format!(
            "select p.label as predicted, {} as labels from predictions p join models m on m.id = p.model_id where p.id = {}",
            d.text("m.labels"),
            d.uuid(1)
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let labels: String = row.try_get("labels")?;
            Ok(PredictionTarget {
                predicted: row.try_get("predicted")?,
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
            "select count(*) as predictions, count(p.mutual_information) as sampled, \
             avg(p.predictive_entropy) as mean_entropy, avg(p.mutual_information) as mean_information \
             from predictions p join models m on m.id = p.model_id where m.name = $1",
        )
        .bind(model)
        .fetch_one(&self.pool)
        .await?;
        let groups = sqlx::query(
            "select f.label, count(*) as feedback, sum(case when f.label = p.label then 1 else 0 end) as correct \
             from feedback f join predictions p on p.id = f.prediction_id join models m on m.id = p.model_id \
             where m.name = $1 group by f.label",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        let labels_sql = format!(
            "select {} as labels from models where name = $1 order by last_seen desc limit 1",
            self.dialect.text("labels")
        );
        let labels: Vec<String> = match sqlx::query(&labels_sql)
            .bind(model)
            .fetch_optional(&self.pool)
            .await?
        {
            Some(row) => {
                serde_json::from_str(&row.try_get::<String, _>("labels")?).map_err(malformed)?
            }
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
            let label: String = row.try_get("label")?;
            let feedback: i64 = row.try_get("feedback")?;
            let correct: i64 = row.try_get("correct")?;
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
            predictions: totals.try_get("predictions")?,
            sampled_predictions: totals.try_get("sampled")?,
            feedback,
            accuracy: ratio(correct, feedback),
            per_label,
            mean_predictive_entropy: totals.try_get("mean_entropy")?,
            mean_mutual_information: totals.try_get("mean_information")?,
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
            let text: Option<String> = row.try_get("text")?;
            let label: String = row.try_get("label")?;
            let text_truncated = row.try_get::<i32, _>("text_truncated")? != 0;
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
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}
