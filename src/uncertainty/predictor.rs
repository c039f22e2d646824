//! The predictors: the ways candor reads class probabilities off a model.
//!
//! One predictor is spelt differently in different outputs, and every one of
//! those outputs is already written (shipped models' `metrics.json` and
//! `README.md`, reports in `docs/`), so each spelling is a named method here
//! rather than a string at the place that writes it:
//!
//! | predictor | `Display` (`candor eval`: JSON, pictures) | [`Predictor::table_label`] (`candor eval`'s tables) | [`Predictor::metrics_key`] (`metrics.json`, model card) | [`Predictor::card_label`] (model card's metrics) | [`Predictor::legend_label`] (training's `reliability.png`) |
//! |---|---|---|---|---|---|
//! | deterministic | `deterministic` | `deterministic` | `deterministic` | `deterministic` | `deterministic` |
//! | temperature-scaled | `temperature` | `temperature 1.124` | `temperature-scaled` | `temperature-scaled` | `temperature 1.12` |
//! | MC dropout, full | `mc_full` | `MC dropout (T=30) full` | `MC full` | `MC dropout (T=30)` | `MC dropout T=30` |
//! | MC dropout, head | `mc_head` | `MC dropout (T=30) head` | `MC head` | `MC dropout (T=30) head` | `MC dropout T=30 head` |
//! | MC dropout, top k | `mc_top2` | `MC dropout (T=30) top2` | `MC top2` | `MC dropout (T=30) top2` | `MC dropout T=30 top2` |
//!
//! (`metrics.json`'s per-split reports name them by field instead:
//! `deterministic`, `temperature_scaled`, `mc_dropout`.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SamplingMode;

/// A way of reading class probabilities off a model.
///
/// It serialises as its `Display` name, the key of `candor eval`'s report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    /// The softmax of the logits.
    Deterministic,
    /// The softmax of the logits divided by the model's fitted temperature.
    TemperatureScaled,
    /// The mean softmax of MC-dropout samples in a mode.
    McDropout(SamplingMode),
}

impl Predictor {
    /// How training names it in `metrics.json`'s conformal rows and the model
    /// card's conformal table: `temperature-scaled`, `MC full`.
    pub fn metrics_key(self) -> String {
        match self {
            Predictor::Deterministic => "deterministic".into(),
            Predictor::TemperatureScaled => "temperature-scaled".into(),
            Predictor::McDropout(mode) => format!("MC {}", mode_key(mode)),
        }
    }

    /// How the model card's metrics table names it, with the number of MC
    /// samples: `MC dropout (T=30)` (training samples `full` only, so that
    /// mode goes unnamed).
    pub fn card_label(self, samples: usize) -> String {
        match self {
            Predictor::McDropout(SamplingMode::Full) => format!("MC dropout (T={samples})"),
            Predictor::McDropout(mode) => format!("MC dropout (T={samples}) {}", mode_key(mode)),
            other => other.metrics_key(),
        }
    }

    /// How training's reliability diagram labels it, with the model's fitted
    /// temperature and the number of MC samples: `temperature 1.12`,
    /// `MC dropout T=30` (training samples `full` only, so that mode goes
    /// unnamed).
    pub fn legend_label(self, samples: usize, temperature: f64) -> String {
        match self {
            Predictor::TemperatureScaled => format!("temperature {temperature:.2}"),
            Predictor::McDropout(SamplingMode::Full) => format!("MC dropout T={samples}"),
            Predictor::McDropout(mode) => format!("MC dropout T={samples} {}", mode_key(mode)),
            other => other.to_string(),
        }
    }

    /// How `candor eval`'s tables show it, with the model's fitted
    /// temperature and the number of MC samples: `temperature 1.124`,
    /// `MC dropout (T=30) full`.
    pub fn table_label(self, samples: usize, temperature: f64) -> String {
        match self {
            Predictor::TemperatureScaled => format!("temperature {temperature:.3}"),
            Predictor::McDropout(mode) => format!("MC dropout (T={samples}) {}", mode_key(mode)),
            other => other.to_string(),
        }
    }
}

/// A sampling mode as predictors' names spell it: `full`, `head`, `top2`.
fn mode_key(mode: SamplingMode) -> String {
    match mode {
        SamplingMode::Top(k) => format!("top{k}"),
        other => other.as_str().to_string(),
    }
}

/// The key of `candor eval`'s report: `deterministic`, `temperature`,
/// `mc_full`, `mc_head`, `mc_top2`.
impl fmt::Display for Predictor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predictor::Deterministic => f.write_str("deterministic"),
            Predictor::TemperatureScaled => f.write_str("temperature"),
            Predictor::McDropout(mode) => write!(f, "mc_{}", mode_key(*mode)),
        }
    }
}

/// A name that is no predictor's `Display` name.
#[derive(Debug, thiserror::Error)]
#[error("unknown predictor '{0}' (deterministic, temperature, mc_full, mc_head or mc_topK)")]
pub struct UnknownPredictor(String);

impl FromStr for Predictor {
    type Err = UnknownPredictor;

    /// The inverse of `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mode = match s {
            "deterministic" => return Ok(Predictor::Deterministic),
            "temperature" => return Ok(Predictor::TemperatureScaled),
            "mc_full" => SamplingMode::Full,
            "mc_head" => SamplingMode::Head,
            other => match other.strip_prefix("mc_top").map(str::parse) {
                Some(Ok(k)) => SamplingMode::Top(k),
                _ => return Err(UnknownPredictor(s.to_string())),
            },
        };
        Ok(Predictor::McDropout(mode))
    }
}

impl Serialize for Predictor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Predictor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Predictor; 5] = [
        Predictor::Deterministic,
        Predictor::TemperatureScaled,
        Predictor::McDropout(SamplingMode::Full),
        Predictor::McDropout(SamplingMode::Head),
        Predictor::McDropout(SamplingMode::Top(2)),
    ];

    #[test]
    fn every_predictor_reads_back_from_its_name() {
        for predictor in ALL {
            assert_eq!(
                predictor.to_string().parse::<Predictor>().unwrap(),
                predictor
            );
            let json = serde_json::to_string(&predictor).unwrap();
            assert_eq!(json, format!("\"{predictor}\""));
            assert_eq!(serde_json::from_str::<Predictor>(&json).unwrap(), predictor);
        }
        assert!("mc_top".parse::<Predictor>().is_err());
        assert!("temperature-scaled".parse::<Predictor>().is_err());
    }

    #[test]
    fn each_output_keeps_its_own_spelling() {
        let keys: Vec<String> = ALL.iter().map(|p| p.to_string()).collect();
        let metrics: Vec<String> = ALL.iter().map(|p| p.metrics_key()).collect();
        let card: Vec<String> = ALL.iter().map(|p| p.card_label(30)).collect();
        let tables: Vec<String> = ALL.iter().map(|p| p.table_label(30, 1.124)).collect();
        let legends: Vec<String> = ALL.iter().map(|p| p.legend_label(30, 1.124)).collect();
        assert_eq!(
            keys,
            [
                "deterministic",
                "temperature",
                "mc_full",
                "mc_head",
                "mc_top2"
            ]
        );
        assert_eq!(
            metrics,
            [
                "deterministic",
                "temperature-scaled",
                "MC full",
                "MC head",
                "MC top2"
            ]
        );
        assert_eq!(
            card,
            [
                "deterministic",
                "temperature-scaled",
                "MC dropout (T=30)",
                "MC dropout (T=30) head",
                "MC dropout (T=30) top2"
            ]
        );
        assert_eq!(
            tables,
            [
                "deterministic",
                "temperature 1.124",
                "MC dropout (T=30) full",
                "MC dropout (T=30) head",
                "MC dropout (T=30) top2"
            ]
        );
        assert_eq!(
            legends,
            [
                "deterministic",
                "temperature 1.12",
                "MC dropout T=30",
                "MC dropout T=30 head",
                "MC dropout T=30 top2"
            ]
        );
    }
}
