//! How far an input lies from the training data by its nearest neighbours:
//! the cosine distance of its L2-normalised feature vector to the k-th
//! nearest training vector (Sun et al., 2022, "Out-of-distribution detection
//! with deep nearest neighbors").
//!
//! Unlike the Mahalanobis distance to class means, this assumes no shape of
//! the training cloud: a text is ordinary when k training texts lie close to
//! it, wherever they are. The training vectors are stored beside the model in
//! `neighbours.safetensors` (f16, one row per training text, with the layer
//! and pooling they come from in the file's metadata) and searched exactly.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::evaluate::EvalError;
use crate::data::Example;
use crate::model::{Classifier, ModelDir, Pooling, Representation};

/// Name of the tensor in it.
const TENSOR: &str = "embeddings";

/// Normalised training vectors, searched exactly for the k-th nearest.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    width: usize,
    /// Row-major, one L2-normalised row per training text, at f16 precision.
    rows: Vec<f32>,
}

/// Why the neighbours could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum NeighboursError {
    /// No features, or features of different or zero width.
    #[error("nearest neighbours need training features of one width, got none or ragged ones")]
    Malformed,
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl Neighbours {
    /// Normalises `features` (one row per training text) and rounds them
    /// to f16, as they are stored, so that scores computed now equal those
    /// computed after loading the file.
    pub fn new(features: &[Vec<f32>]) -> Result<Self, NeighboursError> {
        let width = features.first().map_or(0, Vec::len);
        if width == 0 || features.iter().any(|f| f.len() != width) {
            return Err(NeighboursError::Malformed);
        }
        let rows = features
            .iter()
            .flat_map(|f| normalised(f))
            .map(|v| f16::from_f32(v).to_f32())
            .collect();
        Ok(Self { width, rows })
    }

    /// Training vectors stored.
    pub fn len(&self) -> usize {
        self.rows.len() / self.width
    }

    /// True when there are none (never, for a built index).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Width of each vector.
    pub fn width(&self) -> usize {
        self.width
    }

    /// 1 − the cosine similarity of `feature` to its `k`-th most similar
    /// training vector (the farthest one when there are fewer than k): 0
    /// for a text among k training twins, up to 2. NaN for a zero or
    /// non-finite vector, which is as far as anything can be.
    pub fn distance(&self, feature: &[f32], k: usize) -> f64 {
        let query = normalised(feature);
        if query.len() != self.width || query.iter().any(|v| !v.is_finite()) {
            return f64::NAN;
        }
        let k = k.clamp(1, self.len().max(1));
        // The k largest similarities so far, in descending order.
        let mut best: Vec<f32> = Vec::with_capacity(k + 1);
        for row in self.rows.chunks_exact(self.width) {
            let similarity = dot(row, &query);
            if best.len() < k || similarity > best[k - 1] {
                let at = best.partition_point(|&b| b >= similarity);
                best.insert(at, similarity);
                best.truncate(k);
            }
        }
        best.last().map_or(f64::NAN, |&s| 1.0 - f64::from(s))
    }

    /// Writes the vectors as f16 with where they come from in the metadata.
    pub fn save(&self, path: &Path, representation: Representation) -> Result<(), NeighboursError> {
        let bytes: Vec<u8> = self
            .rows
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let file_error = |message: String| NeighboursError::File {
            path: path.display().to_string(),
            message,
        };
        let view = TensorView::new(Dtype::F16, vec![self.len(), self.width], &bytes)
            .map_err(|e| file_error(e.to_string()))?;
        let metadata = HashMap::from([
            ("layer".to_string(), representation.layer.to_string()),
            (
                "pooling".to_string(),
                representation.pooling.as_str().to_string(),
            ),
            ("normalised".to_string(), "l2".to_string()),
        ]);
        // Written like any other file (serialize_to_file would make it private).
        let file = safetensors::serialize([(TENSOR, view)], Some(metadata))
            .map_err(|e| file_error(e.to_string()))?;
        std::fs::write(path, file).map_err(|e| file_error(e.to_string()))
    }

    /// Reads a file written by [`Neighbours::save`], with the representation it records.
    pub fn load(path: &Path) -> Result<(Self, Representation), NeighboursError> {
        let file_error = |message: String| NeighboursError::File {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| file_error(e.to_string()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| file_error(e.to_string()))?;
        let tensors =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| file_error(e.to_string()))?;
        let view = tensors
            .tensor(TENSOR)
            .map_err(|e| file_error(e.to_string()))?;
        let [rows, width] = view.shape() else {
            return Err(file_error(format!("'{TENSOR}' is not a matrix")));
        };
        if view.dtype() != Dtype::F16 || *rows == 0 || *width == 0 {
            return Err(file_error(format!(
                "'{TENSOR}' must be a non-empty f16 matrix"
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let metadata = header.metadata().clone().unwrap_or_default();
        let field = |name: &str| {
            metadata
                .get(name)
                .ok_or_else(|| file_error(format!("the metadata has no '{name}'")))
        };
        let layer = field("layer")?
            .parse()
            .map_err(|_| file_error("the metadata's layer is not a number".into()))?;
        let pooling: Pooling = field("pooling")?.parse().map_err(file_error)?;
        Ok((
            Self {
                width: *width,
                rows: values,
            },
            Representation { layer, pooling },
        ))
    }
}

/// How `candor calibrate` builds the nearest-neighbour score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeighbourSettings {
    /// The representation (`None`: the mean of the last hidden states).
    pub representation: Option<Representation>,
    /// Which neighbour's distance is the score.
    pub k: usize,
    /// Most bytes the stored vectors may take; training texts beyond what
    /// fits are subsampled evenly.
    pub max_bytes: usize,
}

impl Default for NeighbourSettings {
    fn default() -> Self {
        Self {
            representation: None,
            k: 10,
            max_bytes: 8 << 20,
        }
    }
}

/// The nearest-neighbour score as calibrated: where the vectors come from,
/// k, and the calibration texts' distances, which turn a distance into a
/// percentile. The vectors themselves live in `neighbours.safetensors` ([`ModelDir::neighbours`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourCalibration {
    /// The layer and pooling of the vectors.
    pub representation: Representation,
    /// Which neighbour's distance is the score.
    pub k: usize,
    /// Training texts the vectors were chosen from.
    pub training_texts: usize,
    /// Vectors stored (fewer than the training texts when subsampled).
    pub stored: usize,
    /// Distances of the calibration examples, ascending.
    pub calibration_distances: Vec<f64>,
    /// The vectors, read from `neighbours.safetensors` ([`ModelDir::neighbours`]).
    #[serde(skip)]
    pub index: Option<Arc<Neighbours>>,
}

impl NeighbourCalibration {
    /// Builds the index from `reference` (the training examples) and scores
    /// the calibration `rows` against it.
    pub fn fit(
        classifier: &Classifier,
        reference: &[Example],
        rows: &[Vec<u32>],
        settings: &NeighbourSettings,
    ) -> Result<Self, EvalError> {
        let layers = classifier.network.layer_count();
        let representation = settings
            .representation
            .unwrap_or(Representation::last_mean(layers));
        representation.check(layers).map_err(EvalError::Reference)?;
        let width = classifier.config.hidden_size;
        let keep = evenly_spaced(reference.len(), settings.max_bytes / (2 * width).max(1));
        let texts: Vec<String> = keep.iter().map(|&i| reference[i].text.clone()).collect();
        let encoded = classifier.encoder.encode_all(&texts)?;
        let features = classifier.representations_for_all(&encoded, BATCH, &[representation])?;
        let index =
            Neighbours::new(&features[0]).map_err(|e| EvalError::Reference(e.to_string()))?;
        let calibration = classifier.representations_for_all(rows, BATCH, &[representation])?;
        let mut calibration_distances: Vec<f64> = calibration[0]
            .iter()
            .map(|f| index.distance(f, settings.k))
            .collect();
        calibration_distances.sort_by(f64::total_cmp);
        Ok(Self {
            representation,
            k: settings.k,
            training_texts: reference.len(),
            stored: index.len(),
            calibration_distances,
            index: Some(Arc::new(index)),
        })
    }

    /// The distance of one feature vector (of [`Self::representation`]) and
    /// the share of calibration examples strictly closer (0 to 1).
    pub fn score(&self, feature: &[f32]) -> (f64, f64) {
        let distance = self
            .index
            .as_ref()
            .map_or(f64::NAN, |index| index.distance(feature, self.k));
        (distance, percentile(&self.calibration_distances, distance))
    }

    /// Reads the vectors from `dir` and checks them against this record
    /// and a model of `layers` layers of width `width`.
    pub fn load_index(&mut self, dir: &Path, layers: usize, width: usize) -> Result<(), String> {
        let path = ModelDir::new(dir).neighbours();
        let (index, representation) = Neighbours::load(&path).map_err(|e| e.to_string())?;
        let problem = if representation != self.representation {
            Some(format!(
                "it holds the {representation}, but calibration.json says the {}",
                self.representation
            ))
        } else if index.len() != self.stored || index.width() != width {
            Some(format!(
                "it holds {} vectors of width {}; expected {} of the model's width {width}",
                index.len(),
                index.width(),
                self.stored
            ))
        } else {
            self.representation.check(layers).err()
        };
        if let Some(problem) = problem {
            return Err(format!("{}: {problem}", path.display()));
        }
        self.index = Some(Arc::new(index));
        Ok(())
    }

    /// Writes the vectors into `dir`.
    pub fn save_index(&self, dir: &Path) -> Result<(), NeighboursError> {
        match &self.index {
            Some(index) => index.save(&ModelDir::new(dir).neighbours(), self.representation),
            None => Ok(()),
        }
    }
}

/// Rows per forward pass while computing training vectors.
const BATCH: usize = 64;

/// The share of `sorted` values strictly below `value` (1 for NaN: beyond all).
pub fn percentile(sorted: &[f64], value: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let below = if value.is_nan() {
        sorted.len()
    } else {
        sorted.partition_point(|&d| d < value)
    };
    below as f64 / sorted.len() as f64
}

/// `v / |v|` (all NaN for a zero vector).
fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// Dot product with sixteen independent sums, which the compiler vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 16];
    let (a_body, b_body) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a_body
        .remainder()
        .iter()
        .zip(b_body.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_body.zip(b_body) {
        for i in 0..16 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `max` indices evenly spaced over `0..n` (all of them when n ≤ max).
pub fn evenly_spaced(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    (0..max).map(|i| i * n / max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::uniform_vectors;

    /// The k-th smallest cosine distance, by sorting every distance in f64.
    fn brute_force(train: &[Vec<f32>], query: &[f32], k: usize) -> f64 {
        let unit = |v: &[f32]| {
            let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            v.iter().map(|x| f64::from(*x) / n).collect::<Vec<f64>>()
        };
        let q = unit(query);
        let mut distances: Vec<f64> = train
            .iter()
            .map(|t| {
                // As stored: normalised, then rounded to f16.
                let t: Vec<f64> = unit(t)
                    .iter()
                    .map(|&x| f64::from(f16::from_f64(x).to_f32()))
                    .collect();
                1.0 - t.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>()
            })
            .collect();
        distances.sort_by(f64::total_cmp);
        distances[k.min(distances.len()) - 1]
    }

    #[test]
    fn the_distance_is_that_of_the_kth_nearest_training_vector_by_brute_force() {
        let train = uniform_vectors(300, 37, 1);
        let index = Neighbours::new(&train).unwrap();
        for (q, query) in uniform_vectors(20, 37, 2).iter().enumerate() {
            for k in [1, 5, 10, 299, 300, 1000] {
                let got = index.distance(query, k);
                let want = brute_force(&train, query, k);
                assert!(
                    (got - want).abs() < 1e-5,
                    "query {q}, k {k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn a_training_vector_is_its_own_nearest_neighbour_and_scale_does_not_matter() {
        let train = uniform_vectors(50, 16, 3);
        let index = Neighbours::new(&train).unwrap();
        let scaled: Vec<f32> = train[7].iter().map(|x| x * 40.0).collect();
        assert!(index.distance(&scaled, 1).abs() < 1e-3);
        assert!(index.distance(&scaled, 2) > index.distance(&scaled, 1));
    }

    #[test]
    fn zero_or_foreign_vectors_are_as_far_as_can_be() {
        let index = Neighbours::new(&uniform_vectors(10, 4, 4)).unwrap();
        assert!(index.distance(&[0.0; 4], 1).is_nan());
        assert!(index.distance(&[1.0; 3], 1).is_nan());
        assert!(matches!(
            Neighbours::new(&[vec![1.0], vec![1.0, 2.0]]),
            Err(NeighboursError::Malformed)
        ));
    }

    #[test]
    fn the_stored_file_gives_back_the_same_vectors_and_where_they_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = ModelDir::new(dir.path()).neighbours();
        let index = Neighbours::new(&uniform_vectors(30, 8, 5)).unwrap();
        let representation = Representation {
            layer: 2,
            pooling: Pooling::Cls,
        };
        index.save(&path, representation).unwrap();
        let (loaded, from) = Neighbours::load(&path).unwrap();
        assert_eq!(loaded, index);
        assert_eq!(from, representation);
        std::fs::write(&path, b"not safetensors").unwrap();
        assert!(Neighbours::load(&path).is_err());
    }

    #[test]
    fn an_even_selection_spans_the_whole_range() {
        assert_eq!(evenly_spaced(3, 5), vec![0, 1, 2]);
        assert_eq!(evenly_spaced(10, 4), vec![0, 2, 5, 7]);
    }
}
