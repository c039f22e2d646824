//! `POST /v1/classify` naming a cascade: each model answers the texts it is
//! sure of and passes the rest on; the last answers whatever reaches it.
//! Every prediction says which model answered, and is logged under it.

use std::sync::Arc;

use axum::Json;

use super::api::{AbstainOption, ClassifyRequest, ClassifyResponse, Prediction};
use super::classify::{check_top_k, logits_for, ranked};
use super::error::ApiError;
use super::inference::{validate_texts, within_deadline};
use super::models::CascadePlan;
use super::record::{log_deterministic, RequestContext};
use super::AppState;
use crate::model::softmax;

/// One text's answer: the stage that gave it, the probabilities shown and its id.
struct Answer {
    stage: usize,
    shown: Vec<f32>,
    id: String,
}

/// Runs the cascade over the request's texts.
pub async fn classify(
    state: &Arc<AppState>,
    context: &RequestContext,
    plan: CascadePlan,
    req: ClassifyRequest,
) -> Result<Json<ClassifyResponse>, ApiError> {
    let asks_decisions = req.alpha.is_some()
        || matches!(
            req.abstain,
            Some(AbstainOption::Policy(_) | AbstainOption::Default(true))
        );
    if asks_decisions {
        return Err(ApiError::Validation(format!(
            "'{}' is a cascade: it answers without prediction sets or abstention; ask one of its models ({}) for those",
            plan.name,
            stage_names(&plan).join(", ")
        )));
    }
    let labels = plan.stages[0].0.labels().to_vec();
    let k = check_top_k(req.top_k, labels.len())?;
    let texts = req.inputs.into_texts();
    validate_texts(&texts, state.settings.limits.max_inputs)?;
    tracing::Span::current().record("inputs", texts.len());
    let answers = within_deadline(
        state,
        run(
            state,
            context,
            &plan,
            &texts,
            Shown {
                raw: req.raw_scores,
                truncate: req.truncate,
            },
        ),
    )
    .await?;
    let names = stage_names(&plan);
    let predictions = answers
        .into_iter()
        .map(|a| {
            state
                .metrics
                .cascade_answers
                .with_label_values(&[&plan.name, &names[a.stage]])
                .inc();
            let mut scores = ranked(&labels, &a.shown);
            scores.truncate(k);
            Prediction {
                id: a.id,
                label: scores[0].label.clone(),
                score: scores[0].score,
                scores,
                answered_by: Some(names[a.stage].clone()),
                decision: Default::default(),
            }
        })
        .collect();
    Ok(Json(ClassifyResponse {
        model: plan.name.clone(),
        rules: Default::default(),
        predictions,
    }))
}

fn stage_names(plan: &CascadePlan) -> Vec<String> {
    plan.stages.iter().map(|(m, _)| m.name.clone()).collect()
}

/// How the request wants its texts read and its probabilities shown.
#[derive(Clone, Copy)]
struct Shown {
    /// Plain softmax instead of the calibrated one (`raw_scores`).
    raw: bool,
    /// Cut over-long texts.
    truncate: bool,
}

/// Passes the texts down the stages; each answers those it is sure of.
async fn run(
    state: &AppState,
    context: &RequestContext,
    plan: &CascadePlan,
    texts: &[String],
    how: Shown,
) -> Result<Vec<Answer>, ApiError> {
    let mut answers: Vec<Option<Answer>> = texts.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..texts.len()).collect();
    for (stage, (model, threshold)) in plan.stages.iter().enumerate() {
        if pending.is_empty() {
            break;
        }
        let last = stage + 1 == plan.stages.len();
        let batch: Vec<String> = pending.iter().map(|&i| texts[i].clone()).collect();
        let logits = logits_for(state, model, batch, how.truncate).await?;
        let mut passed_on = Vec::new();
        let (mut kept, mut kept_texts, mut kept_probabilities) =
            (Vec::new(), Vec::new(), Vec::new());
        for (&i, l) in pending.iter().zip(&logits) {
            let calibrated = softmax(l, model.temperature());
            let top = calibrated.iter().copied().fold(0.0f32, f32::max) as f64;
            let sure = last || threshold.is_some_and(|t| top >= t);
            if !sure {
                passed_on.push(i);
                continue;
            }
            let shown = if how.raw { softmax(l, 1.0) } else { calibrated };
            kept.push(i);
            kept_texts.push(texts[i].clone());
            kept_probabilities.push(shown);
        }
        let ids = log_deterministic(
            state,
            model,
            context,
            "classify",
            &kept_texts,
            &kept_probabilities,
            &[],
        );
        for ((i, shown), id) in kept.into_iter().zip(kept_probabilities).zip(ids) {
            answers[i] = Some(Answer { stage, shown, id });
        }
        pending = passed_on;
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| ApiError::Internal("a cascade left a text unanswered".into())))
        .collect()
}
