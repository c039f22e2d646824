//! A model directory: where each of its files lives, and the model's name.
//!
//! The directory is the unit candor trains, compresses, calibrates and
//! serves: the Hugging Face files (`config.json`, `model.safetensors`,
//! `tokenizer.json`) and what candor keeps beside them.

use std::path::{Path, PathBuf};

/// The configuration: a transformers `BertConfig` with candor's keys under `"candor"`.
pub const CONFIG_FILE: &str = "config.json";
/// The weights, in safetensors format.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer, in the `tokenizers` JSON format.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The calibration scores, thresholds and policies (`candor calibrate`).
pub const CALIBRATION_FILE: &str = "calibration.json";
/// The training vectors the calibration's nearest-neighbour distance searches.
pub const NEIGHBOURS_FILE: &str = "neighbours.safetensors";
/// What training measured (`candor train`).
pub const METRICS_FILE: &str = "metrics.json";
/// The model card training writes.
pub const CARD_FILE: &str = "README.md";
/// Training's loss and accuracy curves.
pub const TRAINING_CURVES_FILE: &str = "training_curves.png";
/// Training's reliability diagram of the test split.
pub const RELIABILITY_FILE: &str = "reliability.png";
/// What `candor compress` did.
pub const COMPRESSION_FILE: &str = "compression.json";

/// A model directory's path, and from it each file's and the model's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// The directory, as given.
    path: PathBuf,
}

impl ModelDir {
    /// The model directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// `model.safetensors`.
    pub fn weights(&self) -> PathBuf {
        self.path.join(WEIGHTS_FILE)
    }

    /// `tokenizer.json`.
    pub fn tokenizer(&self) -> PathBuf {
        self.path.join(TOKENIZER_FILE)
    }

    /// `calibration.json`.
    pub fn calibration(&self) -> PathBuf {
        self.path.join(CALIBRATION_FILE)
    }

    /// `neighbours.safetensors`.
    pub fn neighbours(&self) -> PathBuf {
        self.path.join(NEIGHBOURS_FILE)
    }

    /// `metrics.json`.
    pub fn metrics(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    /// The model card, `README.md`.
    pub fn card(&self) -> PathBuf {
        self.path.join(CARD_FILE)
    }

    /// `training_curves.png`.
    pub fn training_curves(&self) -> PathBuf {
        self.path.join(TRAINING_CURVES_FILE)
    }

    /// `reliability.png`.
    pub fn reliability(&self) -> PathBuf {
        self.path.join(RELIABILITY_FILE)
    }

    /// `compression.json`.
    pub fn compression(&self) -> PathBuf {
        self.path.join(COMPRESSION_FILE)
    }

    /// The model's name where it is served (requests, cascades): the last
    /// component of the directory's path after resolving `.` and links;
    /// `model` when there is none.
    pub fn name(&self) -> String {
        std::fs::canonicalize(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .file_name()
            .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned())
    }

    /// The model's name in what training writes (the card's title, the
    /// pictures' titles): the last component of the path as given,
    /// unresolved; empty when there is none (`--out .`). It differs from
    /// [`Self::name`] only for such paths and for links, and is kept apart
    /// so the files training writes do not change.
    pub fn name_as_given(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_live_in_the_directory() {
        let dir = ModelDir::new("models/sentiment");
        assert_eq!(dir.config(), Path::new("models/sentiment/config.json"));
        assert_eq!(
            dir.weights(),
            Path::new("models/sentiment/model.safetensors")
        );
        assert_eq!(dir.card(), Path::new("models/sentiment/README.md"));
    }

    #[test]
    fn a_model_is_named_after_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("sentiment-tiny");
        std::fs::create_dir(&model).unwrap();
        assert_eq!(ModelDir::new(&model).name(), "sentiment-tiny");
        assert_eq!(ModelDir::new(&model).name_as_given(), "sentiment-tiny");
        let dotted = model.join(".");
        assert_eq!(ModelDir::new(&dotted).name(), "sentiment-tiny");
        assert_eq!(ModelDir::new("/").name(), "model");
        assert_eq!(ModelDir::new("..").name_as_given(), "");
    }
}
