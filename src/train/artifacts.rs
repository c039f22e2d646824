//! What training leaves beside the model: the fitted temperature, `metrics.json`,
//! `training_curves.png`, `reliability.png` and a model card `README.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::temperature::fit_temperature;
use super::{Fitted, TrainOutcome, TrainSettings};
use crate::charts::{self, EpochPoint};
use crate::data::{Example, Splits};
use crate::model::dir::{CALIBRATION_FILE, RELIABILITY_FILE, TRAINING_CURVES_FILE};
use crate::model::{self, BertConfig, Classifier, ModelDir};
use crate::uncertainty::calibration::{self, CalibrationSettings, ConformalRow};
use crate::uncertainty::evaluate::{
    evaluate, predict_all, report, targets, EvalReport, PredictorOutputs, PREDICTORS,
};
use crate::uncertainty::metrics::{reliability_points, ECE_BINS};
use crate::uncertainty::{Predictor, SamplingMode};

/// The contents of `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingMetrics {
    /// Label names in class order.
    pub labels: Vec<String>,
    /// Examples per split.
    pub examples: SplitSizes,
    /// Epochs run and the one kept.
    pub epochs_run: usize,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// Per-epoch losses and accuracies (dropout off).
    pub history: Vec<EpochPoint>,
    /// Fitted softmax temperature.
    pub temperature: f64,
    /// Optimisation throughput, examples per second.
    pub train_examples_per_second: f64,
    /// Metrics on the training split (deterministic only: MC over it costs T passes for nothing).
    pub train: EvalReport,
    /// Metrics on the validation split (the temperature was fitted here).
    pub val: EvalReport,
    /// Metrics on the held-out test split.
    pub test: EvalReport,
    /// Conformal sets on the test split, calibrated on the calibration split
    /// (empty without one), each named by its [`Predictor::metrics_key`].
    #[serde(default)]
    pub conformal: Vec<ConformalRow<String>>,
    /// The command that trained the model.
    pub command: String,
}

/// Examples per split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitSizes {
    /// Training examples.
    pub train: usize,
    /// Validation examples.
    pub val: usize,
    /// Calibration examples (conformal sets, abstention thresholds).
    #[serde(default)]
    pub calibration: usize,
    /// Test examples.
    pub test: usize,
}

/// Seed of the MC-dropout evaluation, fixed so `metrics.json` is reproducible.
const EVAL_SEED: u64 = 0;

/// Fits the temperature, evaluates and writes the artifacts into `dir`.
pub fn finish(
    dir: &Path,
    settings: &TrainSettings,
    splits: &Splits,
    fitted: Fitted,
) -> anyhow::Result<TrainOutcome> {
    let mut classifier = Classifier::load(dir)?;
    let temperature = fit_temperature_on(&classifier, &splits.val)?;
    classifier.config.candor.temperature = temperature;
    model::write_config(dir, &classifier.config)?;

    let mc = settings.mc_samples;
    let train = evaluate(&classifier, &splits.train, 0, EVAL_SEED)?;
    let val = evaluate(&classifier, &splits.val, mc, EVAL_SEED)?;
    let held_out = HeldOut::predict(&classifier, splits, mc)?;
    let test = report(&held_out.outputs, &held_out.targets, &classifier.labels, mc);
    let conformal = calibrate(dir, &classifier, splits, settings, &held_out)?;
    let metrics = TrainingMetrics {
        labels: classifier.labels.clone(),
        examples: SplitSizes::of(splits),
        epochs_run: fitted.history.len(),
        best_epoch: fitted.best_epoch,
        history: fitted.history.clone(),
        temperature,
        train_examples_per_second: fitted.examples_per_second,
        train,
        val,
        test,
        conformal,
        command: settings.command.clone(),
    };
    let files = ModelDir::new(dir);
    let path = files.metrics();
    std::fs::write(&path, serde_json::to_string_pretty(&metrics)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    draw_pictures(&files, &held_out.outputs, &held_out.targets, &metrics)?;
    let card = files.card();
    let text = model_card(&files.name_as_given(), &classifier, settings, &metrics);
    std::fs::write(&card, text).with_context(|| format!("writing {}", card.display()))?;
    Ok(TrainOutcome {
        history: fitted.history,
        best_epoch: fitted.best_epoch,
        examples_per_second: fitted.examples_per_second,
        temperature,
    })
}

impl SplitSizes {
    /// The sizes of `splits`.
    fn of(splits: &Splits) -> Self {
        Self {
            train: splits.train.len(),
            val: splits.val.len(),
            calibration: splits.calibration.len(),
            test: splits.test.len(),
        }
    }
}

/// The temperature that minimises the NLL of the validation split.
fn fit_temperature_on(classifier: &Classifier, val: &[Example]) -> anyhow::Result<f64> {
    let targets = targets(classifier, val)?;
    let texts: Vec<String> = val.iter().map(|e| e.text.clone()).collect();
    let logits = predict_all(classifier, &texts, 0, EVAL_SEED)?.logits;
    Ok(fit_temperature(&logits, &targets))
}

/// The predictors' outputs on the held-out split: the test split, or the
/// validation split when there is no test split.
struct HeldOut {
    /// Class index of each example's label.
    targets: Vec<usize>,
    /// Every predictor's probabilities.
    outputs: PredictorOutputs,
}

impl HeldOut {
    /// Runs the predictors (MC dropout with `mc` samples) over the held-out split.
    fn predict(classifier: &Classifier, splits: &Splits, mc: usize) -> anyhow::Result<Self> {
        let held_out = if splits.test.is_empty() {
            &splits.val
        } else {
            &splits.test
        };
        let targets = targets(classifier, held_out)?;
        let texts: Vec<String> = held_out.iter().map(|e| e.text.clone()).collect();
        let outputs = predict_all(classifier, &texts, mc, EVAL_SEED)?;
        Ok(Self { targets, outputs })
    }
}

/// With a calibration split: fits and saves `calibration.json` (with the
/// training's abstention policy) and measures its conformal sets on the
/// held-out split. Nothing without one.
fn calibrate(
    dir: &Path,
    classifier: &Classifier,
    splits: &Splits,
    settings: &TrainSettings,
    held_out: &HeldOut,
) -> anyhow::Result<Vec<ConformalRow<String>>> {
    if splits.calibration.is_empty() {
        return Ok(Vec::new());
    }
    let calibrating = CalibrationSettings {
        mc_samples: settings.mc_samples,
        seed: EVAL_SEED,
        top_layers: 1,
        neighbours: None,
    };
    let mut fitted = calibration::fit(
        classifier,
        &splits.calibration,
        Some(&splits.train),
        &calibrating,
    )?;
    fitted.abstention = settings.abstention.clone();
    fitted.save(dir)?;
    // The temperature-scaled model's scores are the calibration's deterministic ones.
    let calibrated = [
        (Predictor::TemperatureScaled, None),
        (
            Predictor::McDropout(SamplingMode::Full),
            Some(SamplingMode::Full),
        ),
    ];
    let mut conformal = Vec::new();
    for (predictor, mode) in calibrated {
        let probabilities = held_out.outputs.of(predictor);
        if let (Some(scores), Some(p)) = (fitted.scores(mode), probabilities) {
            conformal.extend(calibration::conformal_rows(
                predictor.metrics_key(),
                scores,
                p,
                &held_out.targets,
            ));
        }
    }
    Ok(conformal)
}

/// `training_curves.png`, and `reliability.png` of each predictor on the held-out split.
fn draw_pictures(
    files: &ModelDir,
    outputs: &PredictorOutputs,
    y: &[usize],
    metrics: &TrainingMetrics,
) -> anyhow::Result<()> {
    let name = files.name_as_given();
    charts::training_curves(
        &files.training_curves(),
        &format!("{name}: training curves"),
        &metrics.history,
    )?;
    let points: Vec<(String, Vec<(f64, f64)>)> = PREDICTORS
        .into_iter()
        .filter_map(|predictor| {
            let probabilities = outputs.of(predictor)?;
            let report = metrics.test.of(predictor)?;
            let label = predictor.legend_label(metrics.test.mc_samples, metrics.temperature);
            Some((
                format!("{label} (ECE {:.3})", report.ece),
                reliability_points(probabilities, y, ECE_BINS),
            ))
        })
        .collect();
    let series: Vec<(&str, &[(f64, f64)])> = points
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_slice()))
        .collect();
    charts::reliability_diagram(
        &files.reliability(),
        &format!("{name}: reliability on the test split"),
        &series,
    )?;
    Ok(())
}

/// The model card `README.md`: what the model is, its data and command,
/// its architecture and its figures.
fn model_card(
    name: &str,
    classifier: &Classifier,
    settings: &TrainSettings,
    m: &TrainingMetrics,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {name}\n");
    let _ = writeln!(
        s,
        "A BERT-style sequence classifier trained by candor. Labels: {}.\n",
        m.labels.join(", ")
    );
    let _ = writeln!(s, "## Data\n");
    let _ = writeln!(
        s,
        "Source: `{}`; {} training, {} validation, {} calibration, {} test examples.\n",
        settings.data.train.display(),
        m.examples.train,
        m.examples.val,
        m.examples.calibration,
        m.examples.test
    );
    let _ = writeln!(s, "## Command\n\n```\n{}\n```\n", m.command);
    architecture_section(&mut s, &classifier.config, m);
    metrics_section(&mut s, m);
    if !m.conformal.is_empty() {
        conformal_section(&mut s, m);
    }
    let _ = writeln!(
        s,
        "\n![training curves]({TRAINING_CURVES_FILE})\n\n![reliability]({RELIABILITY_FILE})"
    );
    s
}

/// The card's sizes, dropout rates and how training went.
fn architecture_section(s: &mut String, c: &BertConfig, m: &TrainingMetrics) {
    let _ = writeln!(s, "## Architecture\n");
    let _ = writeln!(
        s,
        "{} layers, hidden {}, {} heads, feed-forward {}, vocabulary {}, max length {}; dropout hidden {}, attention {}, classifier {}. Best epoch {} of {}; temperature {:.3}; {:.0} training examples/s.\n",
        c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size, c.candor.max_length,
        c.hidden_dropout_prob, c.attention_probs_dropout_prob, c.classifier_dropout_rate(), m.best_epoch, m.epochs_run, m.temperature, m.train_examples_per_second
    );
}

/// The card's table of each predictor's figures on each split.
fn metrics_section(s: &mut String, m: &TrainingMetrics) {
    let _ = writeln!(s, "## Metrics\n");
    let _ = writeln!(s, "| split | predictor | accuracy | macro-F1 | NLL | Brier | ECE |\n|---|---|---|---|---|---|---|");
    for (split, report) in [
        ("train", &m.train),
        ("validation", &m.val),
        ("test", &m.test),
    ] {
        for predictor in PREDICTORS {
            let Some(r) = report.of(predictor) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {split} | {} | {:.2}% | {:.4} | {:.4} | {:.4} | {:.4} |",
                predictor.card_label(report.mc_samples),
                r.accuracy * 100.0,
                r.macro_f1,
                r.nll,
                r.brier,
                r.ece
            );
        }
    }
}

/// The card's table of the conformal sets on the test split.
fn conformal_section(s: &mut String, m: &TrainingMetrics) {
    let _ = writeln!(s, "\nConformal prediction sets on the test split, calibrated on the {} calibration examples (`{CALIBRATION_FILE}`):\n", m.examples.calibration);
    let _ = writeln!(s, "| predictor | alpha | coverage | mean set size | single-label sets |\n|---|---|---|---|---|");
    for r in &m.conformal {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2}% | {:.3} | {:.1}% |",
            r.predictor,
            r.alpha,
            r.coverage * 100.0,
            r.mean_set_size,
            r.singletons * 100.0
        );
    }
}
