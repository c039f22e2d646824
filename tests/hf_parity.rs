//! Hugging Face format both ways, checked against Python transformers itself:
//! a candor model loads in `BertForSequenceClassification` with no missing or
//! unexpected keys and the same logits, and a transformers model loads in candor
//! with the same logits. Needs the Python environment of `scripts/python-env.sh`
//! (found through `CANDOR_PYTHON`, else its default location).

use std::path::Path;

use candor::model::{Classifier, DropoutMode};

mod common;
use common::{run_python_script, train_tiny, trec6_questions};

const TOLERANCE: f32 = 1e-4;

fn parity_script(args: &[&str]) {
    eprintln!("{}", run_python_script("hf_parity.py", args));
}

/// Texts of different lengths, so that rows are padded and the attention mask matters.
fn case_for(classifier: &Classifier) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let texts = [
        "What is the capital of France ?",
        "Who ?",
        "How many miles is it from London to the moon , roughly speaking , today ?",
    ];
    let width = 24;
    let rows: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| classifier.encoder.encode(t, true).unwrap().ids)
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap().max(width);
    let padded: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| {
            let mut p = r.clone();
            p.resize(width, classifier.encoder.pad_id());
            p
        })
        .collect();
    let masks: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| (0..width).map(|i| u32::from(i < r.len())).collect())
        .collect();
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let logits = classifier.logits(&refs, DropoutMode::Off).unwrap();
    let _ = masks;
    (padded, logits)
}

fn write_case(path: &Path, ids: &[Vec<u32>], pad: u32, logits: Option<&[Vec<f32>]>) {
    let mask: Vec<Vec<u32>> = ids
        .iter()
        .map(|r| {
            let real = r.iter().rposition(|&t| t != pad).map_or(0, |i| i + 1);
            (0..r.len()).map(|i| u32::from(i < real)).collect()
        })
        .collect();
    let case = serde_json::json!({"input_ids": ids, "attention_mask": mask, "logits": logits.unwrap_or(&[])});
    std::fs::write(path, case.to_string()).unwrap();
}

#[test]
fn transformers_loads_a_candor_model_with_no_missing_keys_and_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
    let classifier = Classifier::load(&model).unwrap();
    let (ids, logits) = case_for(&classifier);
    let case = dir.path().join("case.json");
    write_case(&case, &ids, classifier.encoder.pad_id(), Some(&logits));
    parity_script(&[
        "check-candor",
        model.to_str().unwrap(),
        case.to_str().unwrap(),
    ]);
}

#[test]
fn candor_loads_a_transformers_model_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let candor_model = train_tiny(dir.path());
    let hf = dir.path().join("hf-model");
    std::fs::create_dir_all(&hf).unwrap();
    std::fs::copy(
        candor_model.join("tokenizer.json"),
        hf.join("tokenizer.json"),
    )
    .unwrap();
    let tokenizer_user = Classifier::load(&candor_model).unwrap();
    let (ids, _) = case_for(&tokenizer_user);
    let case = dir.path().join("case.json");
    write_case(&case, &ids, tokenizer_user.encoder.pad_id(), None);
    parity_script(&["make-hf", hf.to_str().unwrap(), case.to_str().unwrap()]);

    let loaded = Classifier::load(&hf).unwrap();
    assert_eq!(loaded.labels, ["ABBR", "DESC", "HUM"]);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
    let pad = loaded.encoder.pad_id();
    for (row, want) in ids.iter().zip(expected["logits"].as_array().unwrap()) {
        let real: Vec<u32> = row[..row.iter().rposition(|&t| t != pad).unwrap() + 1].to_vec();
        let got = &loaded.logits(&[&real], DropoutMode::Off).unwrap()[0];
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            let w = w.as_f64().unwrap() as f32;
            assert!(
                (g - w).abs() <= TOLERANCE,
                "candor {got:?} vs transformers {want}"
            );
        }
    }
}

#[test]
fn transformers_loads_a_compressed_model_with_no_missing_keys_and_the_same_logits() {
    use candor::compress::{compress, CompressSettings, LayerChoice};
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
    // The texts it was trained on.
    let texts: Vec<String> = trec6_questions(0, 400)
        .into_iter()
        .map(|(text, _)| text)
        .collect();
    let compressed = dir.path().join("compressed");
    let settings = CompressSettings {
        prune_to: Some(texts),
        held_out: None,
        data_labels: Vec::new(),
        layers: LayerChoice::Count(1),
        intermediate: Some(48),
        half: true,
        force: false,
    };
    compress(&model, &compressed, &settings).unwrap();
    let classifier = Classifier::load(&compressed).unwrap();
    assert_eq!(classifier.config.num_hidden_layers, 1);
    assert_eq!(classifier.config.intermediate_size, 48);
    let (ids, logits) = case_for(&classifier);
    let case = dir.path().join("case.json");
    write_case(&case, &ids, classifier.encoder.pad_id(), Some(&logits));
    parity_script(&[
        "check-candor",
        compressed.to_str().unwrap(),
        case.to_str().unwrap(),
    ]);
}
