//! The review queue: logged predictions nobody has labelled yet, most
//! uncertain first, one per model and distinct text.
//!
//! It is served from `review_items` (see migration 0004), which the insert
//! and feedback transactions keep up to date, rather than from a scan of
//! every prediction ever logged: a page is an index range scan whatever the
//! number of predictions. Each item's place in the queue is a [`QueuePlace`],
//! a tuple of keys that all sort ascending; a page resumes after the last
//! place of the previous one (keyset pagination), through an opaque
//! [`ReviewCursor`].

use std::cmp::Ordering;
use std::collections::HashMap;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::predictions::ROWS_PER_STATEMENT;
use super::{malformed, PredictionRecord, Store, StoreError};

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
    /// True when `text` is only the start of the input (`--max-stored-text-chars`); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub text_truncated: bool,
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

/// One page of the review queue.
#[derive(Debug, Clone)]
pub struct ReviewPage {
    /// The items, most uncertain first.
    pub items: Vec<ReviewItem>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ReviewCursor>,
}

/// A prediction's place in the review queue: compared as a tuple, smaller
/// comes first. The fields mirror the ordering columns of `review_items`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePlace {
    /// 0 when the answer abstained, else 1.
    not_abstained: i32,
    /// 0 with MC-dropout figures, 1 without.
    without_information: i32,
    /// Minus the mutual information, 0 without.
    negated_information: f64,
    /// Minus the predictive entropy.
    negated_entropy: f64,
    /// The predicted label's probability.
    score: f64,
    /// The prediction's id: the last tie-break, so places are unique.
    id: Uuid,
}

impl QueuePlace {
    /// The place of a prediction about to be logged. The floats are the
    /// values the insert binds (non-finite ones stored as 0).
    fn of(record: &PredictionRecord) -> Self {
        let information = record
            .sampled
            .as_ref()
            .map(|s| super::finite(s.mutual_information));
        QueuePlace {
            not_abstained: i32::from(record.abstained != Some(true)),
            without_information: i32::from(information.is_none()),
            negated_information: -information.unwrap_or(0.0),
            negated_entropy: -super::finite(record.predictive_entropy),
            score: record.score,
            id: record.id,
        }
    }

    /// The order the database applies (floats by value, ids by their text).
    fn cmp(&self, other: &Self) -> Ordering {
        let floats = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        self.not_abstained
            .cmp(&other.not_abstained)
            .then(self.without_information.cmp(&other.without_information))
            .then(floats(self.negated_information, other.negated_information))
            .then(floats(self.negated_entropy, other.negated_entropy))
            .then(floats(self.score, other.score))
            .then(self.id.cmp(&other.id))
    }
}

/// Where a page of the review queue resumes: after this place. Opaque to
/// clients, who get it as `next` and send it back as `after`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewCursor(QueuePlace);

/// A string that is not a cursor this server handed out.
#[derive(Debug, thiserror::Error)]
#[error("not a review-queue cursor")]
pub struct MalformedCursor;

impl std::fmt::Display for ReviewCursor {
    /// The place's fields joined by `_`: two integers, three decimals
    /// (Rust writes the shortest digits that read back exactly, never with
    /// an exponent) and the id, e.g. `1_0_-0.0123_-0.6931_0.51_0190…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.0;
        write!(
            f,
            "{}_{}_{}_{}_{}_{}",
            p.not_abstained,
            p.without_information,
            p.negated_information,
            p.negated_entropy,
            p.score,
            p.id.hyphenated()
        )
    }
}

/// What `after` may be, as the OpenAPI document states it: empty (the
/// first page) or exactly the strings [`ReviewCursor::from_str`] reads.
pub const AFTER_PATTERN: &str = concat!(
    "^((-?[0-9]{1,9}_){2}(-?[0-9]{1,20}(\\.[0-9]{1,400})?_){3}",
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
);

impl FromStr for ReviewCursor {
    type Err = MalformedCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('_').collect();
        let [abstained, information, negated_information, negated_entropy, score, id] = parts[..]
        else {
            return Err(MalformedCursor);
        };
        let place = QueuePlace {
            not_abstained: cursor_integer(abstained)?,
            without_information: cursor_integer(information)?,
            negated_information: cursor_decimal(negated_information)?,
            negated_entropy: cursor_decimal(negated_entropy)?,
            score: cursor_decimal(score)?,
            id: cursor_id(id)?,
        };
        Ok(ReviewCursor(place))
    }
}

/// `-?[0-9]{1,9}`.
fn cursor_integer(s: &str) -> Result<i32, MalformedCursor> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().map_err(|_| MalformedCursor)
    } else {
        Err(MalformedCursor)
    }
}

/// `-?[0-9]{1,20}(\.[0-9]{1,400})?`: always a finite number.
fn cursor_decimal(s: &str) -> Result<f64, MalformedCursor> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits = |d: &str, most: usize| {
        (1..=most).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
    };
    if digits(whole, 20) && fraction.is_none_or(|f| digits(f, 400)) {
        s.parse().map_err(|_| MalformedCursor)
    } else {
        Err(MalformedCursor)
    }
}

/// A hyphenated UUID, as the pattern has it.
fn cursor_id(s: &str) -> Result<Uuid, MalformedCursor> {
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    let hex = s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
    if hex && groups == [8, 4, 4, 4, 12] {
        Uuid::parse_str(s).map_err(|_| MalformedCursor)
    } else {
        Err(MalformedCursor)
    }
}

/// The ordering columns of `review_items`, in order.
const PLACE_COLUMNS: &str =
    "not_abstained, without_information, negated_information, negated_entropy, score, prediction_id";

impl Store {
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
        Ok(self.review_page(model, None, limit).await?.items)
    }

    /// Up to `limit` items of the review queue of the models named `model`
    /// (every model when `None`), starting after `after`.
    pub async fn review_page(
        &self,
        model: Option<&str>,
        after: Option<&ReviewCursor>,
        limit: usize,
    ) -> Result<ReviewPage, StoreError> {
        let model_ids = self.model_ids(model).await?;
        if model_ids.is_empty() || limit == 0 {
            return Ok(ReviewPage {
                items: Vec::new(),
                next: None,
            });
        }
        let sql = self.review_page_sql(model_ids.len(), after.is_some());
        // One more than asked says whether there is a next page.
        let mut query =
            sqlx::query(&sql).bind(limit.saturating_add(1).min(i64::MAX as usize) as i64);
        if let Some(ReviewCursor(place)) = after {
            query = query
                .bind(place.not_abstained)
                .bind(place.without_information)
                .bind(place.negated_information)
                .bind(place.negated_entropy)
                .bind(place.score)
                .bind(place.id.to_string());
        }
        for id in &model_ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut page = rows
            .iter()
            .map(|row| Ok((review_item(row)?, queue_place(row)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().map(|(_, place)| ReviewCursor(place.clone()))
        });
        Ok(ReviewPage {
            items: page.into_iter().map(|(item, _)| item).collect(),
            next: next.flatten(),
        })
    }

    /// Ids of the models named `name` (a name may cover several weights),
    /// or of every model.
    async fn model_ids(&self, name: Option<&str>) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("select id from models where ($1 is null or name = $1) order by id")
            .bind(name.map(str::to_string))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<i64, _>("id")?))
            .collect()
    }

    /// One index range scan per model id, merged: `$1` is the limit,
    /// `$2`–`$7` the cursor's place when there is one, then the model ids.
    fn review_page_sql(&self, models: usize, with_cursor: bool) -> String {
        let d = self.dialect;
        let first_model = if with_cursor { 8 } else { 2 };
        let resume = if with_cursor {
            format!(
                "and ({PLACE_COLUMNS}) > ($2, $3, $4, $5, $6, {})",
                d.uuid(7)
            )
        } else {
            String::new()
        };
        let per_model: Vec<String> = (0..models)
            .map(|m| {
                format!(
                    "select * from (select model_id, {PLACE_COLUMNS} from review_items \
                     where model_id = ${} and labelled = 0 {resume} \
                     order by {PLACE_COLUMNS} limit $1) pending",
                    first_model + m
                )
            })
            .collect();
        format!(
            "with page as ({pending}) \
             select {id} as id, {created} as created_at, m.name as model, p.endpoint, p.text, \
                    p.text_truncated, p.label, p.score, {probabilities} as probabilities, \
                    p.predictive_entropy, p.mutual_information, p.margin, p.samples, p.abstained, \
                    r.not_abstained, r.without_information, r.negated_information, \
                    r.negated_entropy, r.score as place_score \
             from page r join predictions p on p.id = r.prediction_id join models m on m.id = r.model_id \
             order by {order} \
             limit $1",
            pending = per_model.join(" union all "),
            id = d.text("p.id"),
            created = d.timestamp_text("p.created_at"),
            probabilities = d.text("p.probabilities"),
            order = PLACE_COLUMNS
                .split(", ")
                .map(|c| format!("r.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// Puts the texts of freshly inserted predictions in the review queue,
    /// or moves them up when a new prediction is more uncertain than the one
    /// there; labelled texts stay out. Part of the insert's transaction.
    pub(super) async fn queue_for_review(
        &self,
        transaction: &mut Transaction<'static, Any>,
        model_id: i64,
        rows: &[PredictionRecord],
    ) -> Result<(), StoreError> {
        // One statement may not touch a row twice (PostgreSQL refuses it):
        // keep the most uncertain prediction of each text in the batch.
        let mut first: HashMap<&str, QueuePlace> = HashMap::new();
        for row in rows {
            let place = QueuePlace::of(row);
            first
                .entry(row.text_sha256.as_str())
                .and_modify(|kept| {
                    if place.cmp(kept) == Ordering::Less {
                        *kept = place.clone();
                    }
                })
                .or_insert(place);
        }
        // In one order everywhere, so replicas upserting the same texts at
        // once wait for each other rather than deadlock.
        let mut items: Vec<(&str, QueuePlace)> = first.into_iter().collect();
        items.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            let sql = self.queue_for_review_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for (text_sha256, place) in chunk {
                query = query
                    .bind(model_id)
                    .bind(text_sha256.to_string())
                    .bind(place.not_abstained)
                    .bind(place.without_information)
                    .bind(place.negated_information)
                    .bind(place.negated_entropy)
                    .bind(place.score)
                    .bind(place.id.to_string());
            }
            query.execute(&mut **transaction).await?;
        }
        Ok(())
    }

    /// An upsert of `rows` review items that keeps the earlier place.
    fn queue_for_review_sql(&self, rows: usize) -> String {
        const WIDTH: usize = 8;
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let mut cells: Vec<String> =
                    (1..=WIDTH).map(|c| format!("${}", r * WIDTH + c)).collect();
                cells[WIDTH - 1] = self.dialect.uuid(r * WIDTH + WIDTH);
                format!("({})", cells.join(", "))
            })
            .collect();
        let excluded: Vec<String> = PLACE_COLUMNS
            .split(", ")
            .map(|c| format!("excluded.{c}"))
            .collect();
        let current: Vec<String> = PLACE_COLUMNS
            .split(", ")
            .map(|c| format!("review_items.{c}"))
            .collect();
        let assignments: Vec<String> = PLACE_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            "insert into review_items (model_id, text_sha256, {PLACE_COLUMNS}) values {} \
             on conflict (model_id, text_sha256) do update set {} \
             where review_items.labelled = 0 and ({}) < ({})",
            values.join(", "),
            assignments.join(", "),
            excluded.join(", "),
            current.join(", "),
        )
    }

    /// Takes the text of a prediction out of its model's review queue for
    /// good, because it has feedback. Part of the feedback's transaction.
    pub(super) async fn mark_labelled(
        &self,
        transaction: &mut Transaction<'static, Any>,
        prediction_id: Uuid,
    ) -> Result<(), StoreError> {
        // An upsert, not an update: a text logged before its queue row
        // existed still stays out of the queue once labelled.
        let sql = format!(
            "insert into review_items (model_id, text_sha256, {PLACE_COLUMNS}, labelled) \
             select p.model_id, p.text_sha256, 1 - coalesce(p.abstained, 0), \
                    case when p.mutual_information is null then 1 else 0 end, \
                    -coalesce(p.mutual_information, 0), -p.predictive_entropy, p.score, p.id, 1 \
             from predictions p where p.id = {} \
             on conflict (model_id, text_sha256) do update set labelled = 1",
            self.dialect.uuid(1)
        );
        sqlx::query(&sql)
            .bind(prediction_id.to_string())
            .execute(&mut **transaction)
            .await?;
        Ok(())
    }
}

fn review_item(row: &AnyRow) -> Result<ReviewItem, StoreError> {
    let probabilities: String = row.try_get("probabilities")?;
    Ok(ReviewItem {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        model: row.try_get("model")?,
        endpoint: row.try_get("endpoint")?,
        text: row.try_get("text")?,
        text_truncated: row.try_get::<i32, _>("text_truncated")? != 0,
        label: row.try_get("label")?,
        score: row.try_get("score")?,
        probabilities: serde_json::from_str(&probabilities).map_err(malformed)?,
        predictive_entropy: row.try_get("predictive_entropy")?,
        mutual_information: row.try_get("mutual_information")?,
        margin: row.try_get("margin")?,
        samples: row.try_get::<Option<i32>, _>("samples")?.map(i64::from),
        abstained: row.try_get::<Option<i32>, _>("abstained")?.map(|a| a != 0),
    })
}

fn queue_place(row: &AnyRow) -> Result<QueuePlace, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(QueuePlace {
        not_abstained: row.try_get("not_abstained")?,
        without_information: row.try_get("without_information")?,
        negated_information: row.try_get("negated_information")?,
        negated_entropy: row.try_get("negated_entropy")?,
        score: row.try_get("place_score")?,
        id: Uuid::parse_str(&id).map_err(malformed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(not_abstained: i32, information: Option<f64>, entropy: f64, score: f64) -> QueuePlace {
        QueuePlace {
            not_abstained,
            without_information: i32::from(information.is_none()),
            negated_information: -information.unwrap_or(0.0),
            negated_entropy: -entropy,
            score,
            id: Uuid::nil(),
        }
    }

    #[test]
    fn a_cursor_reads_back_as_the_place_it_was_made_from() {
        let cursor = ReviewCursor(QueuePlace {
            id: Uuid::now_v7(),
            ..place(1, Some(0.1 + 0.2), 1.0 / 3.0, 0.7)
        });
        assert_eq!(cursor.to_string().parse::<ReviewCursor>().unwrap(), cursor);
        let extreme = ReviewCursor(place(0, Some(f64::MIN_POSITIVE / 1e10), 1e-300, 1.0));
        assert_eq!(
            extreme.to_string().parse::<ReviewCursor>().unwrap(),
            extreme
        );
    }

    #[test]
    fn anything_else_is_not_a_cursor() {
        let id = "0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b";
        for text in [
            "",
            "zz",
            "7b7d",
            &format!("1_0_0_0_0_{id}_"),
            &format!("1_0_0_0_{id}"),
            &format!("1_0_1e5_0_0_{id}"),
            &format!("1_0_inf_0_0_{id}"),
            &format!("1_0_1._0_0_{id}"),
            &format!("1_0_+1_0_0_{id}"),
            &format!("1234567890_0_0_0_0_{id}"),
            &format!("1_0_0_0_0_{}", id.replace('-', "")),
            &format!("1_0_0_0_0_{{{id}}}"),
        ] {
            assert!(text.parse::<ReviewCursor>().is_err(), "{text}");
        }
        assert!(format!("1_0_-0.5_-1_0.25_{id}")
            .parse::<ReviewCursor>()
            .is_ok());
    }

    #[test]
    fn places_order_abstentions_then_information_then_entropy_then_score() {
        let ordered = [
            place(0, None, 0.1, 0.9),
            place(1, Some(0.3), 0.1, 0.9),
            place(1, Some(0.1), 0.9, 0.9),
            place(1, None, 1.2, 0.5),
            place(1, None, 0.8, 0.4),
            place(1, None, 0.8, 0.6),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(pair[0].cmp(&pair[1]), Ordering::Less, "{pair:?}");
        }
    }
}
