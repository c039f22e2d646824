//! What a model knows about its own scores: `calibration.json` beside the
//! model, fitted on the calibration split (never the one the temperature was
//! fitted on), and the two decision tools built on it.
//!
//! - **Conformal prediction sets.** The nonconformity `1 − p(true label)` of
//!   every calibration example is stored per predictor (the deterministic
//!   model with its temperature, MC dropout in `full`, `head` and `top` mode), so
//!   a request may ask for any `alpha`; see [`super::conformal`] for the
//!   guarantee. A set is only guaranteed for the predictor it was calibrated
//!   on, which is why each has its own scores.
//! - **Abstention.** "Abstain when predictive entropy exceeds 0.5", or "when
//!   it is among the 10% most uncertain of the calibration split": a
//!   [`AbstentionPolicy`] names a [`Score`] and either a threshold or a target
//!   coverage, which the stored calibration scores turn into a threshold.
//!
//! The file also carries the model's default policy, if it has one, and the
//! distances to the training data that turn into `distance_percentile`:
//! Mahalanobis, and nearest neighbours (whose vectors live in
//! [`crate::model::dir::NEIGHBOURS_FILE`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use super::abstention::{AbstentionPolicy, AbstentionRule};
use super::cascade::CascadeStep;
use super::conformal::{conformal_threshold, coverage_and_size, nonconformity, prediction_set};
use super::evaluate::{feature_distances, fit_feature_distance, targets, EvalError, MC_BUDGET};
use super::feature_distance::FeatureDistance;
use super::neighbours::{percentile, NeighbourCalibration, NeighbourSettings};
use super::selective::{smallest_count_reaching, Score};
use super::{sample_probabilities, summarize, McSummary, Predictor, SamplingMode};
use crate::data::Example;
use crate::model::{softmax, Classifier, ModelDir};

/// The contents of `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Calibration examples scored.
    pub examples: usize,
    /// MC-dropout samples T behind the `full` and `head` scores.
    pub mc_samples: usize,
    /// Seed of their dropout masks.
    pub seed: u64,
    /// The deterministic model with its fitted temperature (what `/v1/classify` returns).
    pub deterministic: CalibrationScores,
    /// MC dropout at every site (`mode: full`); absent when T was 0.
    #[serde(default)]
    pub full: Option<CalibrationScores>,
    /// MC dropout on the classifier input only (`mode: head`); absent when T was 0.
    #[serde(default)]
    pub head: Option<CalibrationScores>,
    /// The policy applied when a request names none.
    #[serde(default)]
    pub abstention: Option<AbstentionPolicy>,
    /// MC dropout in the top `layers` encoder layers (`mode: top`); absent
    /// when T was 0.
    #[serde(default)]
    pub top: Option<TopScores>,
    /// How far representations lie from the training data by Mahalanobis
    /// distance (absent when calibrated without reference data).
    #[serde(default)]
    pub feature_distance: Option<FeatureCalibration>,
    /// How far they lie by the nearest training texts; when present, this is
    /// the `feature_distance` answers carry.
    #[serde(default)]
    pub neighbours: Option<NeighbourCalibration>,
    /// When this model answers first in a cascade: when to pass a text on,
    /// one fit per next model (`candor calibrate --cascade-to`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cascade: Vec<CascadeStep>,
}

/// The scores of MC dropout over the top layers, for one number of layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopScores {
    /// Top encoder layers sampled (the default of `mode: top`).
    pub layers: usize,
    /// The scores.
    pub scores: CalibrationScores,
}

/// What `candor calibrate` computes besides the deterministic scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationSettings {
    /// MC-dropout samples T (0: deterministic scores only).
    pub mc_samples: usize,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Top layers sampled by the `top` mode's scores.
    pub top_layers: usize,
    /// The nearest-neighbour score, built when there is reference data.
    pub neighbours: Option<NeighbourSettings>,
}

/// The feature distance fitted on the training split, and the distances of
/// the calibration examples, which turn a distance into a percentile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCalibration {
    /// Class means and shared covariance of the mean last hidden states.
    pub fitted: FeatureDistance,
    /// Distances of the calibration examples, ascending.
    pub calibration_distances: Vec<f64>,
}

impl FeatureCalibration {
    /// The distance of one feature vector and the share of calibration
    /// examples strictly closer to the training data (0 to 1; a new text at
    /// 0.99 lies farther out than 99% of in-distribution texts).
    pub fn score(&self, feature: &[f32]) -> (f64, f64) {
        let distance = self.fitted.distance(feature);
        (distance, percentile(&self.calibration_distances, distance))
    }
}

/// One predictor's scores on the calibration split, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationScores {
    /// `1 − p(true label)`, the conformal nonconformity.
    pub nonconformity: Vec<f64>,
    /// Probability of the predicted label.
    pub max_probability: Vec<f64>,
    /// Entropy of the (mean) distribution, nats.
    pub predictive_entropy: Vec<f64>,
    /// BALD mutual information, nats (all 0 for the deterministic model).
    pub mutual_information: Vec<f64>,
    /// Best minus second-best probability.
    pub margin: Vec<f64>,
}

impl CalibrationScores {
    /// Scores of summarised predictions against their true labels.
    pub fn new(summaries: &[McSummary], targets: &[usize]) -> Self {
        let sorted = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values
        };
        let of = |score: Score| sorted(summaries.iter().map(|s| score.value(s)).collect());
        Self {
            nonconformity: sorted(
                summaries
                    .iter()
                    .zip(targets)
                    .map(|(s, &t)| nonconformity(&s.mean, t))
                    .collect(),
            ),
            max_probability: of(Score::MaxProbability),
            predictive_entropy: of(Score::PredictiveEntropy),
            mutual_information: of(Score::MutualInformation),
            margin: of(Score::Margin),
        }
    }

    /// Scores of single probability vectors (a deterministic model).
    pub fn deterministic(probabilities: &[Vec<f32>], targets: &[usize]) -> Self {
        let summaries: Vec<McSummary> = probabilities
            .iter()
            .map(|p| summarize(std::slice::from_ref(p)))
            .collect();
        Self::new(&summaries, targets)
    }

    /// The stored values of one score.
    pub fn values(&self, score: Score) -> &[f64] {
        match score {
            Score::MaxProbability => &self.max_probability,
            Score::PredictiveEntropy => &self.predictive_entropy,
            Score::MutualInformation => &self.mutual_information,
            Score::Margin => &self.margin,
        }
    }

    /// The conformal threshold at miscoverage `alpha` (see [`conformal_threshold`]).
    pub fn conformal_threshold(&self, alpha: f64) -> Option<f64> {
        conformal_threshold(&self.nonconformity, alpha)
    }

    /// The threshold on `score` that keeps (does not abstain on) the
    /// `coverage` share of the calibration examples, the most confident
    /// ones: the smallest share at least `coverage` that ties allow.
    ///
    /// `None` when `coverage` is not in (0, 1] or there are no scores.
    pub fn threshold_for_coverage(&self, score: Score, coverage: f64) -> Option<f64> {
        if coverage.is_nan() || coverage <= 0.0 || coverage > 1.0 {
            return None;
        }
        let mut uncertainty: Vec<f64> = self
            .values(score)
            .iter()
            .map(|&v| score.as_uncertainty(v))
            .collect();
        uncertainty.sort_by(f64::total_cmp);
        let keep = smallest_count_reaching(coverage, uncertainty.len());
        let last_kept = uncertainty.get(keep.checked_sub(1)?)?;
        // as_uncertainty is a negation or the identity: its own inverse.
        Some(score.as_uncertainty(*last_kept))
    }
}

impl Calibration {
    /// The scores of the predictor a request uses: `None` for the
    /// deterministic model, else the MC mode.
    pub fn scores(&self, mode: Option<SamplingMode>) -> Option<&CalibrationScores> {
        match mode {
            None => Some(&self.deterministic),
            Some(SamplingMode::Full) => self.full.as_ref(),
            Some(SamplingMode::Head) => self.head.as_ref(),
            Some(SamplingMode::Top(k)) => self
                .top
                .as_ref()
                .filter(|top| top.layers == k)
                .map(|top| &top.scores),
        }
    }

    /// Whether it scores how far a text lies from the training data.
    pub fn scores_distances(&self) -> bool {
        self.neighbours.is_some() || self.feature_distance.is_some()
    }

    /// The distance of a feature vector to the training data and its
    /// percentile among the calibration texts: by the nearest neighbours
    /// when calibrated with them, else by Mahalanobis distance.
    pub fn distance(&self, feature: &[f32]) -> Option<(f64, f64)> {
        match (&self.neighbours, &self.feature_distance) {
            (Some(neighbours), _) => Some(neighbours.score(feature)),
            (None, Some(mahalanobis)) => Some(mahalanobis.score(feature)),
            (None, None) => None,
        }
    }

    /// Reads `calibration.json` from a model directory; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, CalibrationError> {
        let path = ModelDir::new(dir).calibration();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CalibrationError::Read(path.display().to_string(), e)),
        };
        let calibration: Self = serde_json::from_str(&text)
            .map_err(|e| CalibrationError::Parse(path.display().to_string(), e))?;
        if let Some(policy) = &calibration.abstention {
            policy
                .check()
                .map_err(|e| CalibrationError::Policy(path.display().to_string(), e))?;
        }
        Ok(Some(calibration))
    }

    /// Checks that this calibration fits a model of `classes` labels,
    /// `layers` layers and hidden size `hidden` (a file copied from another
    /// model would otherwise fail requests instead of start-up), and reads
    /// the nearest-neighbour vectors it refers to.
    pub fn check_against(
        &mut self,
        dir: &Path,
        classes: usize,
        layers: usize,
        hidden: usize,
    ) -> Result<(), CalibrationError> {
        let mismatch = |m: String| {
            CalibrationError::Mismatch(ModelDir::new(dir).calibration().display().to_string(), m)
        };
        if let Some(distance) = &self.feature_distance {
            distance.fitted.check(hidden, classes).map_err(mismatch)?;
        }
        if let Some(top) = &self.top {
            if top.layers > layers {
                return Err(mismatch(format!(
                    "its top-layer scores sample {} layers of a model of {layers}",
                    top.layers
                )));
            }
        }
        if let Some(neighbours) = &mut self.neighbours {
            neighbours
                .load_index(dir, layers, hidden)
                .map_err(mismatch)?;
        }
        Ok(())
    }

    /// Writes `calibration.json` (and the nearest-neighbour vectors) into a model directory.
    pub fn save(&self, dir: &Path) -> Result<(), CalibrationError> {
        if let Some(neighbours) = &self.neighbours {
            neighbours.save_index(dir).map_err(|e| {
                CalibrationError::Mismatch(dir.display().to_string(), e.to_string())
            })?;
        }
        let path = ModelDir::new(dir).calibration();
        let text = serde_json::to_string(self)
            .map_err(|e| CalibrationError::Parse(path.display().to_string(), e))?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| CalibrationError::Read(path.display().to_string(), e))
    }
}

/// Rows per deterministic forward pass while calibrating.
const BATCH: usize = 64;

/// Scores the calibration examples with every predictor: the deterministic
/// model with its temperature and, when T > 0, MC dropout in each mode; with
/// `reference` (the training examples), also the Mahalanobis and (as the
/// settings ask) the nearest-neighbour distance. The default policy is left
/// to the caller.
pub fn fit(
    classifier: &Classifier,
    examples: &[Example],
    reference: Option<&[Example]>,
    settings: &CalibrationSettings,
) -> Result<Calibration, EvalError> {
    let y = targets(classifier, examples)?;
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let rows = classifier.encoder.encode_all(&texts)?;
    let temperature = classifier.config.candor.temperature;
    let probabilities: Vec<Vec<f32>> = classifier
        .logits_for_all(&rows, BATCH)?
        .iter()
        .map(|l| softmax(l, temperature))
        .collect();
    let (samples, seed) = (settings.mc_samples, settings.seed);
    let sampled = |mode| -> Result<Option<CalibrationScores>, EvalError> {
        if samples == 0 {
            return Ok(None);
        }
        let drawn = sample_probabilities(classifier, &rows, samples, seed, MC_BUDGET, mode)?;
        let summaries: Vec<McSummary> = drawn.iter().map(|s| summarize(s)).collect();
        Ok(Some(CalibrationScores::new(&summaries, &y)))
    };
    let top_layers = settings
        .top_layers
        .clamp(1, classifier.network.layer_count().max(1));
    let feature_distance = match reference {
        None => None,
        Some(reference) => {
            let fitted = fit_feature_distance(classifier, reference)?;
            let mut calibration_distances = feature_distances(classifier, &fitted, &rows)?;
            calibration_distances.sort_by(f64::total_cmp);
            Some(FeatureCalibration {
                fitted,
                calibration_distances,
            })
        }
    };
    let neighbours = match (reference, &settings.neighbours) {
        (Some(reference), Some(knn)) => Some(NeighbourCalibration::fit(
            classifier, reference, &rows, knn,
        )?),
        _ => None,
    };
    Ok(Calibration {
        examples: examples.len(),
        mc_samples: samples,
        seed,
        deterministic: CalibrationScores::deterministic(&probabilities, &y),
        full: sampled(SamplingMode::Full)?,
        head: sampled(SamplingMode::Head)?,
        top: sampled(SamplingMode::Top(top_layers))?.map(|scores| TopScores {
            layers: top_layers,
            scores,
        }),
        abstention: None,
        cascade: Vec::new(),
        feature_distance,
        neighbours,
    })
}

/// The miscoverage levels reported for conformal sets.
pub const REPORTED_ALPHAS: [f64; 3] = [0.05, 0.1, 0.2];

/// How conformal sets at one alpha did on labelled examples.
///
/// `candor eval`'s report names the predictor as a [`Predictor`]; training's
/// `metrics.json` by its [`Predictor::metrics_key`] (`temperature-scaled`,
/// `MC full`), a spelling of its own that shipped models already carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConformalRow<P = Predictor> {
    /// The predictor.
    pub predictor: P,
    /// Miscoverage asked for; the guarantee is coverage ≥ 1 − alpha.
    pub alpha: f64,
    /// The nonconformity threshold from the calibration split.
    pub threshold: f64,
    /// Share of examples whose set holds the true label.
    pub coverage: f64,
    /// Mean number of labels per set.
    pub mean_set_size: f64,
    /// Share of sets with exactly one label.
    pub singletons: f64,
}

/// Conformal sets of `probabilities` at each reported alpha, measured against `targets`.
pub fn conformal_rows<P: Clone>(
    predictor: P,
    scores: &CalibrationScores,
    probabilities: &[Vec<f32>],
    targets: &[usize],
) -> Vec<ConformalRow<P>> {
    REPORTED_ALPHAS
        .iter()
        .filter_map(|&alpha| {
            let threshold = scores.conformal_threshold(alpha)?;
            let sets: Vec<Vec<usize>> = probabilities
                .iter()
                .map(|p| prediction_set(p, threshold))
                .collect();
            let (coverage, mean_set_size) = coverage_and_size(&sets, targets);
            let singletons = if sets.is_empty() {
                0.0
            } else {
                sets.iter().filter(|s| s.len() == 1).count() as f64 / sets.len() as f64
            };
            Some(ConformalRow {
                predictor: predictor.clone(),
                alpha,
                threshold,
                coverage,
                mean_set_size,
                singletons,
            })
        })
        .collect()
}

/// Why `calibration.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The file could not be read or written.
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not valid calibration JSON.
    #[error("{0}: {1}")]
    Parse(String, serde_json::Error),
    /// Its default abstention policy is invalid.
    #[error("{0}: abstention policy: {1}")]
    Policy(String, String),
    /// It does not belong to the model beside it.
    #[error("{0}: {1}")]
    Mismatch(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores_of(probabilities: &[[f32; 2]], targets: &[usize]) -> CalibrationScores {
        let p: Vec<Vec<f32>> = probabilities.iter().map(|p| p.to_vec()).collect();
        CalibrationScores::deterministic(&p, targets)
    }

    #[test]
    fn calibration_scores_are_sorted_and_nonconformity_uses_the_true_label() {
        let s = scores_of(&[[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], &[0, 0, 1]);
        assert_eq!(
            s.max_probability,
            [0.6000000238418579, 0.699999988079071, 0.8999999761581421]
        );
        let rounded: Vec<f64> = s
            .nonconformity
            .iter()
            .map(|v| (v * 1e6).round() / 1e6)
            .collect();
        assert_eq!(rounded, [0.1, 0.6, 0.7]);
        assert!(s.mutual_information.iter().all(|&mi| mi == 0.0));
    }

    #[test]
    fn a_coverage_threshold_keeps_that_share_of_the_most_confident_calibration_examples() {
        let probabilities: Vec<[f32; 2]> = (0..10)
            .map(|i| [0.5 + i as f32 * 0.05, 0.5 - i as f32 * 0.05])
            .collect();
        let s = scores_of(&probabilities, &[0; 10]);
        // Max probabilities 0.50, 0.55, …, 0.95: keeping 80% keeps the top 8, down to 0.60.
        let t = s
            .threshold_for_coverage(Score::MaxProbability, 0.8)
            .expect("valid");
        assert!((t - 0.6).abs() < 1e-6, "{t}");
        // Entropy rises as max probability falls: the same 8 are kept.
        let t = s
            .threshold_for_coverage(Score::PredictiveEntropy, 0.8)
            .expect("valid");
        let kept = s.predictive_entropy.iter().filter(|&&e| e <= t).count();
        assert_eq!(kept, 8);
        assert_eq!(s.threshold_for_coverage(Score::Margin, 0.0), None);
        assert_eq!(s.threshold_for_coverage(Score::Margin, 1.5), None);
        let all = s
            .threshold_for_coverage(Score::MaxProbability, 1.0)
            .expect("valid");
        assert!((all - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_feature_distance_percentile_is_the_share_of_calibration_texts_strictly_closer() {
        let features = vec![vec![-1.0f32], vec![1.0], vec![-1.0], vec![1.0]];
        let fitted = FeatureDistance::fit(&features, &[0, 0, 0, 0]).expect("fits");
        let at = |x: f32| fitted.distance(&[x]);
        let calibration = FeatureCalibration {
            calibration_distances: vec![at(0.0), at(1.0), at(2.0), at(3.0)],
            fitted: fitted.clone(),
        };
        assert_eq!(calibration.score(&[0.0]).1, 0.0);
        assert_eq!(calibration.score(&[2.0]).1, 0.5, "ties are not closer");
        assert_eq!(calibration.score(&[2.5]).1, 0.75);
        assert_eq!(calibration.score(&[9.0]).1, 1.0);
        assert_eq!(calibration.score(&[f32::NAN]).1, 1.0);
        assert_eq!(calibration.score(&[3.0]).0, at(3.0));
    }

    #[test]
    fn calibration_round_trips_through_its_file_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(Calibration::load(dir.path()).expect("no file").is_none());
        let calibration = Calibration {
            examples: 2,
            mc_samples: 0,
            seed: 0,
            deterministic: scores_of(&[[0.9, 0.1], [0.6, 0.4]], &[0, 1]),
            full: None,
            head: None,
            top: Some(TopScores {
                layers: 2,
                scores: scores_of(&[[0.7, 0.3], [0.5, 0.5]], &[0, 1]),
            }),
            abstention: Some(AbstentionPolicy {
                score: Score::Margin,
                threshold: None,
                coverage: Some(0.8),
            }),
            feature_distance: None,
            neighbours: None,
            cascade: Vec::new(),
        };
        calibration.save(dir.path()).expect("writes");
        let again = Calibration::load(dir.path())
            .expect("reads")
            .expect("present");
        assert_eq!(again, calibration);
        assert!(again.scores(Some(SamplingMode::Full)).is_none());
        // Top-layer scores answer only for the number of layers they sampled.
        assert!(again.scores(Some(SamplingMode::Top(2))).is_some());
        assert!(again.scores(Some(SamplingMode::Top(1))).is_none());
    }
}
