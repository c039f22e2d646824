//! Bodies of feedback and the review queue.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/feedback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `id` of a prediction this server logged.
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub prediction_id: String,
    /// The correct label (one of the model's labels).
    #[schema(min_length = 1, pattern = r"^[^\u0000]*$")]
    pub label: String,
    /// Who or what gave the label, e.g. a reviewer's name (at most 200 characters).
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000]*$")]
    pub source: Option<String>,
}

/// `POST /v1/feedback` answer (201): what is now stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedbackReceipt {
    /// The prediction corrected.
    pub prediction_id: String,
    /// The correct label stored.
    pub label: String,
    /// The label the model had predicted.
    pub predicted_label: String,
    /// Whether the model was right.
    pub correct: bool,
    /// Source, as given.
    pub source: Option<String>,
}

/// `GET /v1/review-queue` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewQueue {
    /// Model name the queue is for.
    pub model: String,
    /// Predictions without feedback, most uncertain first.
    pub items: Vec<crate::store::ReviewItem>,
    /// Send as `?after=` for the next page; null on the last page.
    pub next: Option<String>,
}
