//! How far an input's representation lies from the training data: the
//! Mahalanobis distance of a feature vector (the report uses the mean of the
//! encoder's last hidden states) to the nearest class mean, with one
//! covariance shared by the classes (Lee et al., 2018).
//!
//! Softmax-based scores only see where an input falls relative to the
//! decision boundary, and a small model is often confidently wrong on text
//! unlike anything it was trained on. The distance looks at the
//! representation itself: unrelated text lands away from every class's cloud.

/// Class means and the inverse shared covariance, fitted on training features.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureDistance {
    means: Vec<Vec<f64>>,
    /// Lower-triangular Cholesky factor of the (shrunk) shared covariance.
    cholesky: Vec<Vec<f64>>,
}

/// Why the distance could not be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    /// No features, or features of different widths.
    #[error("feature distance needs training features of one width, got none or ragged ones")]
    Malformed,
    /// The covariance is not positive definite even after shrinkage.
    #[error("the feature covariance is singular")]
    Singular,
}

/// Share of the mean variance added to the covariance's diagonal, so that a
/// few thousand examples in 128 dimensions give a well-conditioned inverse.
const SHRINKAGE: f64 = 0.01;

impl FeatureDistance {
    /// Fits class means and the shared covariance of `features` (one row per
    /// training example) with class indices `targets`. Classes without
    /// examples get no mean.
    pub fn fit(features: &[Vec<f32>], targets: &[usize]) -> Result<Self, FitError> {
        let width = features.first().map_or(0, Vec::len);
        if width == 0
            || features.iter().any(|f| f.len() != width)
            || features.len() != targets.len()
        {
            return Err(FitError::Malformed);
        }
        let classes = targets.iter().copied().max().unwrap_or(0) + 1;
        let mut sums = vec![vec![0.0f64; width]; classes];
        let mut counts = vec![0usize; classes];
        for (f, &t) in features.iter().zip(targets) {
            counts[t] += 1;
            for (s, &x) in sums[t].iter_mut().zip(f) {
                *s += f64::from(x);
            }
        }
        let means: Vec<Vec<f64>> = sums
            .into_iter()
            .zip(&counts)
            .filter(|(_, &n)| n > 0)
            .map(|(s, &n)| s.into_iter().map(|v| v / n as f64).collect())
            .collect();
        let class_of: Vec<usize> = {
            let mut index = vec![usize::MAX; classes];
            let mut next = 0;
            for (k, &n) in counts.iter().enumerate() {
                if n > 0 {
                    index[k] = next;
                    next += 1;
                }
            }
            targets.iter().map(|&t| index[t]).collect()
        };
        // Lower triangle of the within-class scatter matrix.
        let mut scatter = vec![vec![0.0f64; width]; width];
        for (f, &k) in features.iter().zip(&class_of) {
            let centred: Vec<f64> = f
                .iter()
                .zip(&means[k])
                .map(|(&x, m)| f64::from(x) - m)
                .collect();
            for (i, row) in scatter.iter_mut().enumerate() {
                for (j, cell) in row.iter_mut().enumerate().take(i + 1) {
                    *cell += centred[i] * centred[j];
                }
            }
        }
        let n = features.len() as f64;
        let mean_variance = scatter
            .iter()
            .enumerate()
            .map(|(i, row)| row[i] / n)
            .sum::<f64>()
            / width as f64;
        let ridge = SHRINKAGE * mean_variance.max(f64::MIN_POSITIVE);
        let covariance: Vec<Vec<f64>> = (0..width)
            .map(|i| {
                (0..width)
                    .map(|j| {
                        let v = if j <= i { scatter[i][j] } else { scatter[j][i] } / n;
                        if i == j {
                            v + ridge
                        } else {
                            v
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            means,
            cholesky: cholesky(&covariance).ok_or(FitError::Singular)?,
        })
    }

    /// Checks that it was fitted on features `width` wide from at most
    /// `classes` classes, with means and covariance factor of that width.
    pub fn check(&self, width: usize, classes: usize) -> Result<(), String> {
        let factor_ok = self.cholesky.len() == width
            && self
                .cholesky
                .iter()
                .enumerate()
                .all(|(i, row)| (i + 1..=width).contains(&row.len()));
        if !factor_ok || self.means.iter().any(|m| m.len() != width) {
            return Err(format!(
                "the feature distance is not of the model's hidden size {width}"
            ));
        }
        if self.means.is_empty() || self.means.len() > classes {
            return Err(format!(
                "the feature distance has {} class means for a model of {classes} labels",
                self.means.len()
            ));
        }
        Ok(())
    }

    /// Squared Mahalanobis distance of `feature` to the nearest class mean
    /// (higher: less like the training data).
    pub fn distance(&self, feature: &[f32]) -> f64 {
        self.means
            .iter()
            .map(|mean| {
                let centred: Vec<f64> = feature
                    .iter()
                    .zip(mean)
                    .map(|(&x, m)| f64::from(x) - m)
                    .collect();
                // With Σ = L Lᵀ, dᵀ Σ⁻¹ d = |L⁻¹ d|²: one forward substitution.
                forward_substitute(&self.cholesky, &centred)
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
            })
            .fold(f64::INFINITY, f64::min)
    }
}

/// Lower-triangular L with L Lᵀ = a, or None when a is not positive definite.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - dot;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - dot) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves L y = b for lower-triangular L.
fn forward_substitute(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; b.len()];
    for i in 0..b.len() {
        let dot: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - dot) / l[i][i];
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_one_dimension_the_distance_is_the_squared_gap_over_the_variance() {
        // Class 0 at −1 ± 1, class 1 at 3 ± 1: within-class variance 1,
        // shrunk by 1% of itself to 1.01.
        let features = vec![vec![-2.0], vec![0.0], vec![2.0], vec![4.0]];
        let fitted = FeatureDistance::fit(&features, &[0, 0, 1, 1]).unwrap();
        let variance = 1.01;
        assert!((fitted.distance(&[-1.0]) - 0.0).abs() < 1e-12);
        assert!((fitted.distance(&[1.0]) - 4.0 / variance).abs() < 1e-12);
        assert!((fitted.distance(&[10.0]) - 49.0 / variance).abs() < 1e-12);
    }

    #[test]
    fn a_correlated_direction_counts_less_than_an_uncorrelated_one() {
        // Points spread along x = y: moving along the diagonal is ordinary,
        // moving across it is not, though both are √2 from the mean.
        let features: Vec<Vec<f32>> = (-5..=5)
            .flat_map(|i| {
                let t = i as f32;
                [vec![t + 0.1, t - 0.1], vec![t - 0.1, t + 0.1]]
            })
            .collect();
        let targets = vec![0; features.len()];
        let fitted = FeatureDistance::fit(&features, &targets).unwrap();
        assert!(fitted.distance(&[1.0, 1.0]) < fitted.distance(&[1.0, -1.0]) / 10.0);
    }

    #[test]
    fn ragged_or_empty_features_are_refused() {
        assert_eq!(
            FeatureDistance::fit(&[], &[]).unwrap_err(),
            FitError::Malformed
        );
        let ragged = vec![vec![1.0, 2.0], vec![1.0]];
        assert_eq!(
            FeatureDistance::fit(&ragged, &[0, 1]).unwrap_err(),
            FitError::Malformed
        );
    }

    #[test]
    fn identical_features_are_still_fitted_thanks_to_shrinkage_or_refused_cleanly() {
        let same = vec![vec![1.0, 1.0]; 4];
        match FeatureDistance::fit(&same, &[0, 0, 1, 1]) {
            Ok(fitted) => assert!(fitted.distance(&[1.0, 1.0]).is_finite()),
            Err(e) => assert_eq!(e, FitError::Singular),
        }
    }
}
