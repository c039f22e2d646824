//! `candor calibrate --cascade-to NEXT`: fitting when a model passes a text
//! on to a larger one, and writing the fit into its calibration.json.

use std::path::Path;

use anyhow::Context;

use super::evaluate::CalibrateArgs;
use super::load;
use crate::data::{self, Example};
use crate::model::dir::CALIBRATION_FILE;
use crate::model::{softmax, Classifier, ModelDir, Precision};
use crate::uncertainty::calibration::Calibration;
use crate::uncertainty::cascade::{self, CascadeAccuracy, CascadeStep, TRADE_OFF_MARGINS};

/// Rows per forward pass while scoring.
const BATCH: usize = 32;

/// Scores both models on the calibration data, fits the threshold for the
/// margin and stores it (replacing an earlier fit for the same next model)
/// in the first model's calibration.json, whose other contents stay.
pub(super) fn run_cascade_fit(
    args: &CalibrateArgs,
    next_dir: &Path,
    precision: Precision,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..100.0).contains(&args.cascade_margin),
        "--cascade-margin is in accuracy points, from 0 to 100, got {}",
        args.cascade_margin
    );
    let mut calibration = Calibration::load(&args.model)?.with_context(|| {
        format!(
            "{} has no {CALIBRATION_FILE}: run candor calibrate on it first, then again with --cascade-to",
            args.model.display()
        )
    })?;
    let first = load(&args.model, precision)?;
    let next = load(next_dir, precision)?;
    anyhow::ensure!(
        first.labels == next.labels,
        "the cascade's models must have the same labels in the same order: {} has {}, {} has {}",
        args.model.display(),
        first.labels.join(","),
        next_dir.display(),
        next.labels.join(",")
    );
    let examples = data::read_examples(&args.data, &args.fields.names())?;
    let (confidence, first_correct) = scored(&first, &examples)?;
    let (_, next_correct) = scored(&next, &examples)?;
    let step = step_of(
        &next,
        next_dir,
        args.cascade_margin,
        &confidence,
        &first_correct,
        &next_correct,
    );
    print_trade_off(&step);
    calibration
        .cascade
        .retain(|s| s.next_weights_sha256 != step.next_weights_sha256);
    calibration.cascade.push(step);
    calibration.save(&args.model)?;
    eprintln!(
        "wrote the cascade to {} into {}",
        next_dir.display(),
        ModelDir::new(&args.model).calibration().display()
    );
    Ok(())
}

/// Each example's calibrated top probability and whether the label is right.
fn scored(model: &Classifier, examples: &[Example]) -> anyhow::Result<(Vec<f64>, Vec<bool>)> {
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let rows = model.encoder.encode_all(&texts)?;
    let logits = model.logits_for_all(&rows, BATCH)?;
    let temperature = model.config.candor.temperature;
    Ok(logits
        .iter()
        .zip(examples)
        .map(|(l, e)| {
            let p = softmax(l, temperature);
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0);
            (p[best] as f64, model.labels[best] == e.label)
        })
        .unzip())
}

fn step_of(
    next: &Classifier,
    next_dir: &Path,
    margin: f64,
    confidence: &[f64],
    first_correct: &[bool],
    next_correct: &[bool],
) -> CascadeStep {
    let fitted = cascade::fit(confidence, first_correct, next_correct, margin);
    let alone = |correct: &[bool]| {
        correct.iter().filter(|&&c| c).count() as f64 / correct.len().max(1) as f64
    };
    CascadeStep {
        next_weights_sha256: next.weights_sha256.clone(),
        next_name: ModelDir::new(next_dir).name(),
        score: "max_probability".into(),
        threshold: fitted.threshold,
        margin_points: margin,
        examples: confidence.len(),
        passed_on: fitted.passed_on,
        accuracy: CascadeAccuracy {
            first: alone(first_correct),
            next: alone(next_correct),
            cascade: fitted.accuracy,
        },
        trade_off: TRADE_OFF_MARGINS
            .iter()
            .map(|&m| cascade::fit(confidence, first_correct, next_correct, m))
            .collect(),
    }
}

fn print_trade_off(step: &CascadeStep) {
    let a = &step.accuracy;
    println!(
        "{} examples: first model alone {:.2}%, {} alone {:.2}%",
        step.examples,
        100.0 * a.first,
        step.next_name,
        100.0 * a.next
    );
    println!("| margin (points) | threshold | passed on | cascade accuracy |");
    println!("|---|---|---|---|");
    for t in &step.trade_off {
        println!(
            "| {:.1} | {} | {:.1}% | {:.2}% |",
            t.margin_points,
            t.threshold.map_or("– (all)".into(), |x| format!("{x:.4}")),
            100.0 * t.passed_on,
            100.0 * t.accuracy
        );
    }
    println!(
        "fitted at {:.1} points: threshold {}, {:.1}% passed on, accuracy {:.2}%",
        step.margin_points,
        step.threshold
            .map_or("– (all)".into(), |x| format!("{x:.4}")),
        100.0 * step.passed_on,
        100.0 * a.cascade
    );
}
