//! Turning answered predictions into prediction-log records and ids.
//!
//! Every prediction gets an id (UUIDv7: time-ordered, so the primary-key
//! index grows at its end) whether or not a database is kept, so clients
//! can always quote it.

use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::models::ServedModel;
use super::AppState;
use crate::store::{PredictionRecord, SampledFigures};
use crate::uncertainty::{entropy, margin, McSummary, SamplingMode};

/// Set by the request middleware for handlers: who asked and since when.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's `x-request-id` (given or generated).
    pub id: String,
    /// When the request arrived.
    pub started: Instant,
}

/// What was predicted for one input, in the model's class order.
pub struct Answered<'a> {
    /// The input text.
    pub text: &'a str,
    /// Probabilities (means over the samples under MC dropout).
    pub probabilities: &'a [f32],
    /// How the answer was sampled, when dropout was sampled.
    pub sampled: Option<McSampling<'a>>,
    /// Whether the answer abstained, when an abstention policy applied.
    pub abstained: Option<bool>,
}

impl<'a> Answered<'a> {
    /// The answer for `text` sampled under MC dropout (`summary` over its
    /// samples, in `mode` with `seed`): the mean is its probabilities.
    pub fn sampled(
        text: &'a str,
        summary: &'a McSummary,
        mode: SamplingMode,
        seed: u64,
        abstained: Option<bool>,
    ) -> Self {
        Self {
            text,
            probabilities: &summary.mean,
            sampled: Some(McSampling {
                summary,
                mode,
                seed,
            }),
            abstained,
        }
    }
}

/// How an answer was sampled under MC dropout.
#[derive(Debug, Clone, Copy)]
pub struct McSampling<'a> {
    /// The summary of its samples.
    pub summary: &'a McSummary,
    /// Where dropout applied.
    pub mode: SamplingMode,
    /// The seed of the dropout masks.
    pub seed: u64,
}

impl McSampling<'_> {
    /// The sampling figures a prediction is logged with.
    fn figures(self) -> SampledFigures {
        SampledFigures {
            samples: self.summary.samples,
            mode: self.mode.label(),
            seed: self.seed,
            expected_entropy: self.summary.expected_entropy,
            mutual_information: self.summary.mutual_information,
            variation_ratio: self.summary.variation_ratio,
        }
    }
}

/// Ids for a request's predictions; queues their records when a log is kept.
pub fn log_predictions(
    state: &AppState,
    model: &ServedModel,
    context: &RequestContext,
    endpoint: &'static str,
    answered: &[Answered<'_>],
) -> Vec<Uuid> {
    let ids: Vec<Uuid> = answered.iter().map(|_| Uuid::now_v7()).collect();
    state
        .metrics
        .inputs
        .with_label_values(&[&model.name, endpoint])
        .inc_by(answered.len() as u64);
    if let Some(log) = &model.log {
        let latency_ms = context.started.elapsed().as_secs_f64() * 1e3;
        let created_at = SystemTime::now();
        let records = answered
            .iter()
            .zip(&ids)
            .map(|(a, &id)| {
                let (text, text_truncated) = stored_text(state, a.text);
                PredictionRecord {
                    id,
                    created_at,
                    endpoint,
                    text,
                    text_truncated,
                    text_sha256: hex::encode(Sha256::digest(a.text.as_bytes())),
                    label: top_label(model.labels(), a.probabilities),
                    score: a.probabilities.iter().copied().fold(0.0f32, f32::max) as f64,
                    probabilities: a.probabilities.to_vec(),
                    predictive_entropy: a.sampled.map_or_else(
                        || entropy(a.probabilities),
                        |s| s.summary.predictive_entropy,
                    ),
                    margin: a.sampled.map_or_else(
                        || margin(a.probabilities.iter().map(|&p| p as f64)),
                        |s| s.summary.margin,
                    ),
                    sampled: a.sampled.map(McSampling::figures),
                    latency_ms,
                    request_id: Some(context.id.clone()),
                    abstained: a.abstained,
                }
            })
            .collect();
        log.record(records);
    }
    ids
}

/// The text a prediction is logged with: none when the server keeps hashes
/// only, else at most `--max-stored-text-chars` characters of it (cut at a
/// character boundary), and whether it was cut.
fn stored_text(state: &AppState, text: &str) -> (Option<String>, bool) {
    if !state.store_text {
        return (None, false);
    }
    let (kept, truncated) = first_chars(text, state.max_stored_text_chars);
    (Some(kept.to_string()), truncated)
}

/// The first `max` characters of `text`, and whether that is less than all of it.
fn first_chars(text: &str, max: usize) -> (&str, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// Logs deterministic predictions and returns their ids as strings.
pub fn log_deterministic(
    state: &AppState,
    model: &ServedModel,
    context: &RequestContext,
    endpoint: &'static str,
    texts: &[String],
    probabilities: &[Vec<f32>],
    abstained: &[Option<bool>],
) -> Vec<String> {
    let answered: Vec<Answered> = texts
        .iter()
        .zip(probabilities)
        .enumerate()
        .map(|(i, (text, p))| Answered {
            text,
            probabilities: p,
            sampled: None,
            abstained: abstained.get(i).copied().flatten(),
        })
        .collect();
    log_predictions(state, model, context, endpoint, &answered)
        .into_iter()
        .map(|id| id.to_string())
        .collect()
}

fn top_label(labels: &[String], probabilities: &[f32]) -> String {
    let best = crate::uncertainty::metrics::argmax(probabilities);
    labels.get(best).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::first_chars;

    #[test]
    fn a_text_is_cut_after_so_many_characters_never_inside_one() {
        assert_eq!(first_chars("naïve café", 4), ("naïv", true));
        assert_eq!(first_chars("日本語", 2), ("日本", true));
        assert_eq!(first_chars("short", 5), ("short", false));
        assert_eq!(first_chars("short", 10), ("short", false));
        assert_eq!(first_chars("", 0), ("", false));
        assert_eq!(first_chars("a", 0), ("", true));
    }
}
