//! Distillation: the teachers' soft targets.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::data::Example;
use crate::model::{self};

/// The teachers' averaged probabilities (at `temperature`) for each of
/// `examples`, in the class order of `labels`. Each teacher reads the texts
/// with its own tokenizer and must know exactly the training labels.
pub(super) fn teacher_probabilities(
    teachers: &[PathBuf],
    examples: &[Example],
    labels: &[String],
    temperature: f64,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let mut sum = vec![vec![0f32; labels.len()]; texts.len()];
    for dir in teachers {
        let teacher = model::Classifier::load(dir)
            .with_context(|| format!("loading teacher {}", dir.display()))?;
        let mut theirs = teacher.labels.clone();
        theirs.sort();
        let mut ours = labels.to_vec();
        ours.sort();
        if theirs != ours {
            bail!(
                "teacher {} predicts the labels {:?}, the training data has {:?}",
                dir.display(),
                teacher.labels,
                labels
            );
        }
        // Column of each of our classes among the teacher's.
        let columns: Vec<usize> = labels
            .iter()
            .map(|l| teacher.labels.iter().position(|t| t == l).unwrap_or(0))
            .collect();
        let rows = teacher.encoder.encode_all(&texts)?;
        let logits = teacher.logits_for_all(&rows, 64)?;
        for (acc, row) in sum.iter_mut().zip(&logits) {
            let probs = model::softmax(row, temperature);
            for (a, &c) in acc.iter_mut().zip(&columns) {
                *a += probs[c];
            }
        }
        eprintln!(
            "teacher {}: soft targets for {} training texts",
            dir.display(),
            texts.len()
        );
    }
    let n = teachers.len() as f32;
    for row in &mut sum {
        row.iter_mut().for_each(|p| *p /= n);
    }
    Ok(sum)
}
