//! How well distances to the training data tell unrelated texts apart from
//! labelled in-distribution ones: the Mahalanobis distance of the mean last
//! hidden state to the class means, and the k-th-nearest-neighbour cosine
//! distance in every representation the model offers (each layer's output,
//! mean- or `[CLS]`-pooled), so that the representation a calibration stores
//! is chosen by measurement.

use serde::{Deserialize, Serialize};

use super::evaluate::{targets, EvalError};
use super::feature_distance::FeatureDistance;
use super::neighbours::{evenly_spaced, NeighbourSettings, Neighbours};
use super::selective::{aupr, auroc, fpr_at_tpr};
use crate::data::Example;
use crate::model::{Classifier, Representation};

/// Rows per forward pass.
const BATCH: usize = 64;

/// Separating one OOD set from the labelled data by one distance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistanceRow {
    /// The OOD set.
    pub set: String,
    /// `mahalanobis` or `knn`.
    #[serde(default = "mahalanobis")]
    pub score: String,
    /// The hidden states compared (the last layer's mean for Mahalanobis).
    #[serde(default)]
    pub representation: Option<Representation>,
    /// Area under the ROC curve, OOD as the positive class.
    pub auroc: f64,
    /// Average precision, OOD as the positive class.
    pub aupr: f64,
    /// False-positive rate at 95% of OOD caught.
    pub fpr_at_95_tpr: f64,
}

fn mahalanobis() -> String {
    "mahalanobis".into()
}

/// The distances of the labelled rows and of each OOD set's rows under one score.
struct Distances {
    score: &'static str,
    representation: Representation,
    inside: Vec<f64>,
    outside: Vec<Vec<f64>>,
}

/// Measures every distance: Mahalanobis, then kNN (with the settings' k) in
/// each representation, fitted on `reference` (the training examples,
/// subsampled to the settings' size as `candor calibrate` would store them).
pub fn distance_rows(
    classifier: &Classifier,
    reference: &[Example],
    labelled: &[Vec<u32>],
    ood: &[(String, Vec<Vec<u32>>)],
    settings: &NeighbourSettings,
) -> Result<Vec<DistanceRow>, EvalError> {
    let k = settings.k;
    let layers = classifier.network.layer_count();
    let candidates = Representation::all(layers);
    let features = |rows: &[Vec<u32>]| classifier.representations_for_all(rows, BATCH, &candidates);
    let reference_targets = targets(classifier, reference)?;
    let texts: Vec<String> = reference.iter().map(|e| e.text.clone()).collect();
    let training = features(&classifier.encoder.encode_all(&texts)?)?;
    let inside = features(labelled)?;
    let outside = ood
        .iter()
        .map(|(_, rows)| features(rows))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = evenly_spaced(
        reference.len(),
        settings.max_bytes / (2 * classifier.config.hidden_size).max(1),
    );
    let last = Representation::last_mean(layers);
    let mut measured = Vec::new();
    for (c, &representation) in candidates.iter().enumerate() {
        let keep: Vec<Vec<f32>> = stored.iter().map(|&i| training[c][i].clone()).collect();
        let index = Neighbours::new(&keep).map_err(|e| EvalError::Reference(e.to_string()))?;
        let knn = |rows: &[Vec<f32>]| rows.iter().map(|f| index.distance(f, k)).collect();
        if representation == last {
            let fitted = FeatureDistance::fit(&training[c], &reference_targets)
                .map_err(|e| EvalError::Reference(e.to_string()))?;
            let distance = |rows: &[Vec<f32>]| rows.iter().map(|f| fitted.distance(f)).collect();
            measured.push(Distances {
                score: "mahalanobis",
                representation,
                inside: distance(&inside[c]),
                outside: outside.iter().map(|o| distance(&o[c])).collect(),
            });
        }
        measured.push(Distances {
            score: "knn",
            representation,
            inside: knn(&inside[c]),
            outside: outside.iter().map(|o| knn(&o[c])).collect(),
        });
    }
    let mut rows = Vec::new();
    for d in &measured {
        for ((set, _), outside) in ood.iter().zip(&d.outside) {
            rows.push(DistanceRow {
                set: set.clone(),
                score: d.score.to_string(),
                representation: Some(d.representation),
                auroc: auroc(outside, &d.inside),
                aupr: aupr(outside, &d.inside),
                fpr_at_95_tpr: fpr_at_tpr(outside, &d.inside, 0.95),
            });
        }
    }
    Ok(rows)
}

/// The best distance among measured rows.
#[derive(Debug, Clone, PartialEq)]
pub struct BestDistance {
    /// `mahalanobis` or `knn`.
    pub score: String,
    /// Its representation.
    pub representation: Representation,
    /// Its AUROC, averaged over the OOD sets.
    pub auroc: f64,
}

/// The distance (score and representation) that separates the OOD sets best
/// on average by AUROC; `knn_only` leaves Mahalanobis out.
pub fn best_distance(rows: &[DistanceRow]) -> Option<BestDistance> {
    best_of(rows, false)
}

fn best_of(rows: &[DistanceRow], knn_only: bool) -> Option<BestDistance> {
    let mut best: Option<BestDistance> = None;
    for row in rows.iter().filter(|r| !knn_only || r.score == "knn") {
        let Some(representation) = row.representation else {
            continue;
        };
        let same: Vec<f64> = rows
            .iter()
            .filter(|r| r.score == row.score && r.representation == Some(representation))
            .map(|r| r.auroc)
            .collect();
        let mean = same.iter().sum::<f64>() / same.len() as f64;
        if best.as_ref().is_none_or(|b| mean > b.auroc) {
            best = Some(BestDistance {
                score: row.score.clone(),
                representation,
                auroc: mean,
            });
        }
    }
    best
}

/// The distance table of `candor eval`.
pub fn render(rows: &[DistanceRow], k: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nout of distribution by distance to the training data (Mahalanobis to the nearest class mean; kNN: cosine distance to the {k}th nearest training text)"
    );
    let _ = writeln!(
        out,
        "{:<24} {:<12} {:<16} {:>8} {:>8} {:>8}",
        "OOD set", "score", "representation", "AUROC", "AUPR", "FPR@95"
    );
    for row in rows {
        let representation = row
            .representation
            .map_or_else(|| "last mean".to_string(), |r| r.to_string());
        let _ = writeln!(
            out,
            "{:<24} {:<12} {:<16} {:>8.4} {:>8.4} {:>8.4}",
            row.set, row.score, representation, row.auroc, row.aupr, row.fpr_at_95_tpr
        );
    }
    if let Some(best) = best_of(rows, true) {
        let r = best.representation;
        let _ = writeln!(
            out,
            "best kNN representation here: {r} (mean AUROC {:.4}); `candor calibrate --neighbour-layer {}:{}` stores it",
            best.auroc,
            r.layer,
            r.pooling.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pooling;

    fn row(set: &str, score: &str, layer: usize, auroc: f64) -> DistanceRow {
        DistanceRow {
            set: set.into(),
            score: score.into(),
            representation: Some(Representation {
                layer,
                pooling: Pooling::Mean,
            }),
            auroc,
            aupr: 0.0,
            fpr_at_95_tpr: 0.0,
        }
    }

    #[test]
    fn the_best_distance_has_the_highest_auroc_averaged_over_the_sets() {
        let rows = vec![
            row("a", "mahalanobis", 2, 0.90),
            row("b", "mahalanobis", 2, 0.80),
            row("a", "knn", 1, 0.99),
            row("b", "knn", 1, 0.60),
            row("a", "knn", 2, 0.88),
            row("b", "knn", 2, 0.86),
        ];
        let best = best_distance(&rows).unwrap();
        assert_eq!((best.score.as_str(), best.representation.layer), ("knn", 2));
        assert!((best.auroc - 0.87).abs() < 1e-12);
        let rows = &rows[..4];
        assert_eq!(best_distance(rows).unwrap().score, "mahalanobis");
        assert_eq!(best_of(rows, true).unwrap().representation.layer, 1);
    }
}
