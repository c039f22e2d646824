//! When to withhold an answer: a policy names a score and either a threshold
//! on it or a coverage of the calibration split, and resolves to a rule that
//! says, for one prediction, whether and why to abstain.

use serde::{Deserialize, Serialize};

use super::calibration::CalibrationScores;
use super::selective::Score;
use super::McSummary;

/// When to abstain: a score and either a threshold on it or a target
/// coverage on the calibration split (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbstentionPolicy {
    /// `max_probability`, `predictive_entropy`, `mutual_information` or `margin`.
    #[schema(value_type = String, example = "predictive_entropy")]
    pub score: Score,
    /// Abstain when the score is beyond this value: above it for entropy and
    /// mutual information, below it for max probability and margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Abstain on the least confident `1 − coverage` share, as measured on
    /// the calibration split, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
}

impl AbstentionPolicy {
    /// Checks that exactly one of threshold and coverage is given and valid.
    pub fn check(&self) -> Result<(), String> {
        match (self.threshold, self.coverage) {
            (Some(t), None) if t.is_finite() => Ok(()),
            (Some(t), None) => Err(format!("threshold must be a finite number, got {t}")),
            (None, Some(c)) if c > 0.0 && c <= 1.0 => Ok(()),
            (None, Some(c)) => Err(format!("coverage must be in (0, 1], got {c}")),
            (None, None) => Err("give a threshold or a coverage".into()),
            (Some(_), Some(_)) => Err("give a threshold or a coverage, not both".into()),
        }
    }

    /// The concrete rule: the threshold as given, or the one that reaches
    /// the coverage on `scores` (which a coverage policy needs).
    pub fn resolve(&self, scores: Option<&CalibrationScores>) -> Result<AbstentionRule, String> {
        self.check()?;
        let (threshold, coverage) = match (self.threshold, self.coverage) {
            (Some(t), _) => (t, None),
            (None, Some(c)) => {
                let scores = scores.ok_or("a coverage needs calibration scores for this predictor; give a threshold instead or recalibrate with `candor calibrate`")?;
                let t = scores
                    .threshold_for_coverage(self.score, c)
                    .ok_or("the calibration split has no scores")?;
                (t, Some(c))
            }
            (None, None) => return Err("give a threshold or a coverage".into()),
        };
        Ok(AbstentionRule {
            score: self.score,
            threshold,
            coverage,
        })
    }
}

/// A resolved abstention rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AbstentionRule {
    /// The score compared.
    #[schema(value_type = String, example = "predictive_entropy")]
    pub score: Score,
    /// The threshold; a value at it (to f32 precision) is answered, not abstained on.
    pub threshold: f64,
    /// The calibration coverage the threshold was chosen for, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
}

impl AbstentionRule {
    /// Why to abstain on this prediction, or `None` to answer it.
    pub fn reason(&self, summary: &McSummary) -> Option<String> {
        let value = self.score.value(summary);
        // Compared at f32 precision, that of the probabilities: a response
        // shows max probability as an f32, and a client that sends that very
        // number back as the threshold must find the prediction at it.
        let at_f32 = |v: f64| f64::from(self.score.as_uncertainty(v) as f32);
        // NaN reads as the most uncertain, as everywhere in this module.
        let uncertainty = if value.is_nan() {
            f64::INFINITY
        } else {
            at_f32(value)
        };
        if uncertainty <= at_f32(self.threshold) {
            return None;
        }
        let side = if self.score.higher_is_more_uncertain() {
            "above"
        } else {
            "below"
        };
        let origin = match self.coverage {
            Some(c) => format!(
                ", the threshold for {}% coverage on the calibration split",
                c * 100.0
            ),
            None => String::new(),
        };
        Some(format!(
            "{} {value:.4} is {side} {:.4}{origin}",
            self.score.name(),
            self.threshold
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uncertainty::summarize;

    fn summary(p: &[f32]) -> McSummary {
        summarize(&[p.to_vec()])
    }

    fn scores_of(probabilities: &[[f32; 2]], targets: &[usize]) -> CalibrationScores {
        let p: Vec<Vec<f32>> = probabilities.iter().map(|p| p.to_vec()).collect();
        CalibrationScores::deterministic(&p, targets)
    }

    #[test]
    fn the_abstention_rule_answers_at_its_threshold_and_abstains_just_beyond_it() {
        let rule = AbstentionRule {
            score: Score::MaxProbability,
            threshold: 0.75,
            coverage: None,
        };
        assert_eq!(rule.reason(&summary(&[0.75, 0.25])), None);
        assert_eq!(rule.reason(&summary(&[0.8, 0.2])), None);
        let reason = rule
            .reason(&summary(&[0.7, 0.3]))
            .expect("below the threshold");
        assert!(
            reason.starts_with("max_probability 0.7000 is below 0.7500"),
            "{reason}"
        );

        let entropy_of = |p: f32| summary(&[p, 1.0 - p]).predictive_entropy;
        let rule = AbstentionRule {
            score: Score::PredictiveEntropy,
            threshold: entropy_of(0.8),
            coverage: Some(0.9),
        };
        assert_eq!(rule.reason(&summary(&[0.8, 0.2])), None);
        assert_eq!(rule.reason(&summary(&[0.9, 0.1])), None);
        let reason = rule
            .reason(&summary(&[0.6, 0.4]))
            .expect("above the threshold");
        assert!(
            reason.contains("is above") && reason.contains("90% coverage"),
            "{reason}"
        );
    }

    #[test]
    fn a_nan_score_is_abstained_on() {
        let rule = AbstentionRule {
            score: Score::MaxProbability,
            threshold: 0.1,
            coverage: None,
        };
        assert!(rule.reason(&summary(&[f32::NAN, f32::NAN])).is_some());
    }

    #[test]
    fn a_policy_needs_exactly_one_of_threshold_and_coverage() {
        let policy = |threshold, coverage| AbstentionPolicy {
            score: Score::PredictiveEntropy,
            threshold,
            coverage,
        };
        assert!(policy(Some(0.5), None).check().is_ok());
        assert!(policy(None, Some(0.9)).check().is_ok());
        assert!(policy(None, None).check().is_err());
        assert!(policy(Some(0.5), Some(0.9)).check().is_err());
        assert!(policy(None, Some(0.0)).check().is_err());
        assert!(policy(Some(f64::NAN), None).check().is_err());
        let coverage = policy(None, Some(0.9));
        assert!(coverage.resolve(None).is_err(), "a coverage needs scores");
        let s = scores_of(&[[0.9, 0.1], [0.6, 0.4]], &[0, 0]);
        let rule = coverage.resolve(Some(&s)).expect("resolves");
        assert_eq!(rule.coverage, Some(0.9));
        assert_eq!(rule.threshold, s.predictive_entropy[1]);
    }
}
