//! The decision tools of a request: a conformal prediction set at `alpha`
//! and an abstention rule, resolved against the model's `calibration.json`
//! for the predictor that answers (the deterministic model, or MC dropout in
//! one mode), since a guarantee only holds for the predictor it was
//! calibrated on.

use super::api::{AbstainOption, Decision, DecisionRules};
use super::error::ApiError;
use super::models::ServedModel;
use crate::uncertainty::calibration::{AbstentionRule, Calibration, CalibrationScores};
use crate::uncertainty::conformal::prediction_set;
use crate::uncertainty::selective::Score;
use crate::uncertainty::{McSummary, SamplingMode};

/// A conformal prediction set's miscoverage and the threshold that gives it.
#[derive(Debug, Clone, Copy)]
struct Conformal {
    /// The miscoverage asked for.
    alpha: f64,
    /// The nonconformity threshold calibrated for `alpha`.
    threshold: f64,
}

impl Conformal {
    /// Checks `alpha` and finds its threshold among the calibration `scores`
    /// of the predictor `mode`.
    fn resolve(
        alpha: f64,
        calibration: Option<&Calibration>,
        scores: Option<&CalibrationScores>,
        mode: Option<SamplingMode>,
    ) -> Result<Self, ApiError> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(ApiError::Validation(format!(
                "alpha must be between 0 and 1 (exclusive), got {alpha}"
            )));
        }
        let scores = scores.ok_or_else(|| missing(calibration, mode))?;
        let threshold = scores
            .conformal_threshold(alpha)
            .ok_or_else(|| ApiError::Validation(format!("no threshold for alpha {alpha}")))?;
        Ok(Self { alpha, threshold })
    }
}

/// What a request asked for, ready to apply to each prediction.
#[derive(Debug, Default)]
pub struct Decider<'a> {
    /// The conformal prediction set asked for.
    conformal: Option<Conformal>,
    /// The abstention rule in force.
    rule: Option<AbstentionRule>,
    /// The model's calibration when it scores distances to the training
    /// data: every answer carries one.
    distances: Option<&'a Calibration>,
}

impl<'a> Decider<'a> {
    /// Resolves `alpha` and `abstain` for the predictor `mode` (`None`: the
    /// deterministic model). The model's default policy applies when
    /// `abstain` is absent, except one on mutual information for the
    /// deterministic model, which has none.
    pub fn new(
        model: &'a ServedModel,
        alpha: Option<f64>,
        abstain: Option<&AbstainOption>,
        mode: Option<SamplingMode>,
    ) -> Result<Self, ApiError> {
        let calibration = model.calibration.as_ref();
        let scores = calibration.and_then(|c| c.scores(mode));
        let conformal = alpha
            .map(|alpha| Conformal::resolve(alpha, calibration, scores, mode))
            .transpose()?;
        let default = calibration.and_then(|c| c.abstention.as_ref());
        let policy = match abstain {
            None => default.filter(|p| mode.is_some() || p.score != Score::MutualInformation),
            Some(AbstainOption::Default(false)) => None,
            Some(AbstainOption::Default(true)) => Some(default.ok_or_else(|| {
                ApiError::Validation(
                    "abstain: true asks for the model's default policy, and this model has none; send a policy instead".into(),
                )
            })?),
            Some(AbstainOption::Policy(policy)) => {
                if mode.is_none() && policy.score == Score::MutualInformation {
                    return Err(ApiError::Validation(
                        "mutual_information needs MC dropout: use /v1/classify/uncertainty".into(),
                    ));
                }
                Some(policy)
            }
        };
        let rule = match policy {
            None => None,
            Some(policy) => Some(
                policy
                    .resolve(scores)
                    .map_err(|e| ApiError::Validation(format!("abstain: {e}")))?,
            ),
        };
        Ok(Self {
            conformal,
            rule,
            distances: calibration.filter(|c| c.scores_distances()),
        })
    }

    /// Whether answers need each input's feature vector.
    pub fn wants_features(&self) -> bool {
        self.distances.is_some()
    }

    /// The rules, echoed in the response.
    pub fn rules(&self) -> DecisionRules {
        DecisionRules {
            alpha: self.conformal.map(|c| c.alpha),
            abstention: self.rule,
        }
    }

    /// Whether each prediction abstained, for the prediction log (`None`
    /// where no rule applied).
    pub fn abstained(&self, summaries: &[McSummary]) -> Vec<Option<bool>> {
        summaries
            .iter()
            .map(|s| self.rule.map(|rule| rule.reason(s).is_some()))
            .collect()
    }

    /// The decision on one prediction: `probabilities` are those the
    /// predictor was calibrated on (calibrated softmax, or MC means).
    pub fn decide(
        &self,
        labels: &[String],
        probabilities: &[f32],
        summary: &McSummary,
        feature: Option<&Vec<f32>>,
    ) -> Decision {
        let prediction_set = self.conformal.map(|c| {
            prediction_set(probabilities, c.threshold)
                .into_iter()
                .filter_map(|i| labels.get(i).cloned())
                .collect()
        });
        let reason = self.rule.and_then(|rule| rule.reason(summary));
        let distance = self
            .distances
            .zip(feature)
            .and_then(|(calibration, feature)| calibration.distance(feature));
        Decision {
            prediction_set,
            abstain: self.rule.map(|_| reason.is_some()),
            abstain_reason: reason,
            feature_distance: distance.map(|(d, _)| d),
            distance_percentile: distance.map(|(_, p)| p),
        }
    }
}

fn missing(calibration: Option<&Calibration>, mode: Option<SamplingMode>) -> ApiError {
    match (calibration, mode) {
        (None, _) => ApiError::Validation(
            "this model has no calibration.json (train it with a calibration split, or run `candor calibrate`), so it cannot give prediction sets".into(),
        ),
        (Some(c), Some(mode)) => ApiError::Validation(format!(
            "this model's calibration.json has no MC-dropout scores for mode {} (it was fitted with T = {}); run `candor calibrate --mc-samples 30`",
            mode.as_str(),
            c.mc_samples
        )),
        (Some(_), None) => ApiError::Internal("calibration without deterministic scores".into()),
    }
}
