//! `POST /v1/classify` and `POST /v1/classify/uncertainty`.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};

use super::api::{
    ClassifyRequest, ClassifyResponse, LabelMoments, LabelScore, Prediction, UncertainPrediction,
    UncertaintyRequest, UncertaintyResponse,
};
use super::decide::Decider;
use super::engine::{Classified, ClassifyWork, SampleWork, Sampled};
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::inference::{compute, tokenize, validate_texts, within_deadline};
use super::models::ServedModel;
use super::record::{log_deterministic, log_predictions, Answered, RequestContext};
use super::AppState;
use crate::model::{softmax, Truncation};
use crate::uncertainty::{summarize, McSummary, SamplingMode};

/// Labels with scores, high to low.
pub fn ranked(labels: &[String], probs: &[f32]) -> Vec<LabelScore> {
    let mut scores: Vec<LabelScore> = labels
        .iter()
        .zip(probs)
        .map(|(label, &score)| LabelScore {
            label: label.clone(),
            score,
        })
        .collect();
    scores.sort_by(|a, b| b.score.total_cmp(&a.score));
    scores
}

/// The largest `top_k` (and `top_layers`) a request may give, as the
/// OpenAPI document states it.
pub const MAX_TOP: usize = u32::MAX as usize;

/// How many labels to return: `top_k` (1 to [`MAX_TOP`]; more than the
/// model has is all of them, as the Hugging Face pipeline does), or all.
pub fn check_top_k(top_k: Option<usize>, labels: usize) -> Result<usize, ApiError> {
    match top_k {
        None => Ok(labels),
        Some(k) if (1..=MAX_TOP).contains(&k) => Ok(k.min(labels)),
        Some(k) => Err(ApiError::Validation(format!(
            "top_k must be from 1 to {MAX_TOP}, got {k}"
        ))),
    }
}

/// Deterministic logits for texts: validate, tokenize, queue, wait.
pub async fn logits_for(
    state: &AppState,
    model: &ServedModel,
    texts: Vec<String>,
    truncation: impl Into<Truncation>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    Ok(
        deterministic_for(state, model, texts, truncation.into(), false)
            .await?
            .logits,
    )
}

/// Deterministic logits and, with `features`, the mean last hidden states.
async fn deterministic_for(
    state: &AppState,
    model: &ServedModel,
    texts: Vec<String>,
    truncation: Truncation,
    features: bool,
) -> Result<Classified, ApiError> {
    validate_texts(&texts, state.settings.limits.max_inputs)?;
    within_deadline(state, async {
        let rows = tokenize(state, model, texts, truncation).await?;
        compute(state, model, ClassifyWork { rows, features }).await
    })
    .await
}

/// Classify texts with the deterministic model (dropout off).
#[utoipa::path(post, path = "/v1/classify", request_body = ClassifyRequest,
    responses((status = 200, body = ClassifyResponse), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn classify(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Json<ClassifyResponse>, ApiError> {
    if let Some(cascade) = req.model.as_deref().and_then(|n| state.models.cascade(n)) {
        return super::cascade::classify(&state, &context, cascade, req).await;
    }
    let model = state.models.get(req.model.as_deref())?;
    let labels = model.labels();
    let k = check_top_k(req.top_k, labels.len())?;
    let texts = req.inputs.into_texts();
    tracing::Span::current().record("inputs", texts.len());
    let temperature = if req.raw_scores {
        1.0
    } else {
        model.temperature()
    };
    let decider = Decider::new(&model, req.alpha, req.abstain.as_ref(), None)?;
    let Classified { logits, features } = deterministic_for(
        &state,
        &model,
        texts.clone(),
        req.truncate.into(),
        decider.wants_features(),
    )
    .await?;
    let probabilities: Vec<Vec<f32>> = logits.iter().map(|l| softmax(l, temperature)).collect();
    // Sets and abstention use what they were calibrated on: the calibrated
    // softmax, whatever `raw_scores` shows.
    let calibrated: Vec<Vec<f32>> = if req.raw_scores {
        let t = model.temperature();
        logits.iter().map(|l| softmax(l, t)).collect()
    } else {
        probabilities.clone()
    };
    let summaries: Vec<McSummary> = calibrated
        .iter()
        .map(|p| summarize(std::slice::from_ref(p)))
        .collect();
    let abstained = decider.abstained(&summaries);
    let ids = log_deterministic(
        &state,
        &model,
        &context,
        "classify",
        &texts,
        &probabilities,
        &abstained,
    );
    let predictions = probabilities
        .iter()
        .zip(&calibrated)
        .zip(&summaries)
        .zip(ids)
        .enumerate()
        .map(|(i, (((p, c), s), id))| {
            let mut scores = ranked(labels, p);
            scores.truncate(k);
            Prediction {
                id,
                label: scores[0].label.clone(),
                score: scores[0].score,
                scores,
                answered_by: None,
                decision: decider.decide(labels, c, s, features.get(i)),
            }
        })
        .collect();
    Ok(Json(ClassifyResponse {
        model: model.name.clone(),
        rules: decider.rules(),
        predictions,
    }))
}

/// What an MC-dropout job asks of the engine.
#[derive(Debug, Clone, Copy)]
pub struct SampleJob {
    /// Samples T.
    pub samples: usize,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Where dropout applies.
    pub mode: SamplingMode,
    /// Also compute each text's feature vector.
    pub features: bool,
}

/// Each text's T sampled probability rows (and feature vectors when the job
/// asks): validate, tokenize, queue, wait, within the request timeout.
pub async fn samples_for(
    state: &AppState,
    model: &ServedModel,
    texts: Vec<String>,
    truncate: bool,
    job: SampleJob,
) -> Result<Sampled, ApiError> {
    validate_texts(&texts, state.settings.limits.max_inputs)?;
    within_deadline(state, async {
        let rows = tokenize(state, model, texts, truncate).await?;
        let work = SampleWork {
            rows,
            samples: job.samples,
            seed: job.seed,
            mode: job.mode,
            features: job.features,
        };
        compute(state, model, work).await
    })
    .await
}

/// Classify texts with MC dropout: T stochastic passes and their uncertainty.
#[utoipa::path(post, path = "/v1/classify/uncertainty", request_body = UncertaintyRequest,
    responses((status = 200, body = UncertaintyResponse), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn uncertainty(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    JsonBody(req): JsonBody<UncertaintyRequest>,
) -> Result<Json<UncertaintyResponse>, ApiError> {
    let model = state.models.get(req.model.as_deref())?;
    let labels = model.labels();
    let k = check_top_k(req.top_k, labels.len())?;
    let samples = check_samples(&state, req.samples)?;
    let seed = req.seed.unwrap_or_else(rand_seed);
    let mode = model
        .sampling_mode(req.mode, req.top_layers.as_ref())
        .map_err(ApiError::Validation)?;
    let texts = req.inputs.into_texts();
    let span = tracing::Span::current();
    span.record("inputs", texts.len());
    span.record("samples", samples);
    span.record("seed", seed);
    validate_texts(&texts, state.settings.limits.max_inputs)?;
    let decider = Decider::new(&model, req.alpha, req.abstain.as_ref(), Some(mode))?;
    let job = SampleJob {
        samples,
        seed,
        mode,
        features: decider.wants_features(),
    };
    let Sampled {
        probabilities: per_input,
        features,
    } = samples_for(&state, &model, texts.clone(), req.truncate, job).await?;
    let summaries: Vec<McSummary> = per_input.iter().map(|s| summarize(s)).collect();
    let abstained = decider.abstained(&summaries);
    let answered: Vec<Answered> = texts
        .iter()
        .zip(&summaries)
        .zip(&abstained)
        .map(|((text, s), &abstained)| Answered::sampled(text, s, mode, seed, abstained))
        .collect();
    let ids = log_predictions(&state, &model, &context, "uncertainty", &answered);
    let predictions = summaries
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (s, id))| {
            let sampled = req.return_samples.then(|| per_input[i].as_slice());
            let mut p = uncertain_prediction(id.to_string(), labels, s, sampled, k, seed);
            p.decision = decider.decide(labels, &s.mean, s, features.get(i));
            p
        })
        .collect();
    Ok(Json(UncertaintyResponse {
        model: model.name.clone(),
        samples,
        seed,
        mode: req.mode,
        top_layers: match mode {
            SamplingMode::Top(k) => Some(k),
            _ => None,
        },
        rules: decider.rules(),
        predictions,
    }))
}

/// One input's answer; `sampled` (T rows of probabilities in class order)
/// adds each label's samples.
fn uncertain_prediction(
    id: String,
    labels: &[String],
    s: &McSummary,
    sampled: Option<&[Vec<f32>]>,
    k: usize,
    seed: u64,
) -> UncertainPrediction {
    let mut scores: Vec<LabelMoments> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| LabelMoments {
            label: label.clone(),
            mean: s.mean[i],
            std: s.std[i],
            samples: sampled.map(|rows| rows.iter().map(|row| row[i]).collect()),
        })
        .collect();
    scores.sort_by(|a, b| b.mean.total_cmp(&a.mean));
    scores.truncate(k);
    UncertainPrediction {
        id,
        label: scores[0].label.clone(),
        score: scores[0].mean,
        scores,
        predictive_entropy: s.predictive_entropy,
        expected_entropy: s.expected_entropy,
        mutual_information: s.mutual_information,
        variation_ratio: s.variation_ratio,
        margin: s.margin,
        samples: s.samples,
        seed,
        decision: Default::default(),
    }
}

/// The samples a request asked for (or the server's default), within the server's maximum.
pub fn check_samples(state: &AppState, asked: Option<usize>) -> Result<usize, ApiError> {
    let sampling = state.settings.sampling;
    let samples = asked.unwrap_or(sampling.default_samples);
    if !(1..=sampling.max_samples).contains(&samples) {
        return Err(ApiError::Validation(format!(
            "samples must be between 1 and {}, got {samples}",
            sampling.max_samples
        )));
    }
    Ok(samples)
}

/// A fresh seed for requests that give none (returned, so the answer can be reproduced).
pub fn rand_seed() -> u64 {
    let uuid = uuid::Uuid::new_v4();
    let (high, _) = uuid.as_u64_pair();
    high
}
