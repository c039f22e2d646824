//! The network itself: shapes, dropout behaviour, gradient flow, saving and loading.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candor::model::{
    self, ArchitectureSizes, BertClassifier, BertConfig, Classifier, DropoutMode, DropoutRates,
    Kernels, TextEncoder, TokenBatch,
};
use candor::train::initial_parameters;
use candor::train::optimizer::{AdamW, AdamWSettings};

fn labels() -> Vec<String> {
    vec!["negative".into(), "neutral".into(), "positive".into()]
}

fn tiny_config(dropout: f64) -> BertConfig {
    let sizes = ArchitectureSizes {
        layers: 2,
        hidden: 16,
        heads: 2,
        intermediate: 32,
        max_positions: 24,
    };
    let rates = DropoutRates {
        hidden: dropout,
        attention: dropout,
        classifier: dropout,
    };
    BertConfig::new(50, sizes, rates, &labels())
}

fn network(config: &BertConfig, kernels: Kernels) -> (VarMap, BertClassifier) {
    let varmap = initial_parameters(config, HashMap::new(), 7, &Device::Cpu).unwrap();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = BertClassifier::load(vb, config, kernels).unwrap();
    (varmap, net)
}

fn batch() -> TokenBatch {
    let rows: Vec<&[u32]> = vec![
        &[2, 10, 11, 12, 3],
        &[2, 20, 3],
        &[2, 30, 31, 32, 33, 34, 35, 3],
    ];
    TokenBatch::from_rows(&rows, 0, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn the_network_gives_one_logit_per_label_for_every_row() {
    let (_, net) = network(&tiny_config(0.1), Kernels::Fast);
    let logits = net.forward(&batch(), DropoutMode::Off).unwrap();
    assert_eq!(logits.dims(), &[3, 3]);
    assert_eq!(
        net.pooled(&batch(), DropoutMode::Off).unwrap().dims(),
        &[3, 16]
    );
}

#[test]
fn with_dropout_off_repeated_calls_give_bit_identical_logits() {
    let (_, net) = network(&tiny_config(0.5), Kernels::Fast);
    let first = values(&net.forward(&batch(), DropoutMode::Off).unwrap());
    for _ in 0..5 {
        assert_eq!(
            first,
            values(&net.forward(&batch(), DropoutMode::Off).unwrap())
        );
    }
}

#[test]
fn with_dropout_on_the_same_keys_repeat_and_other_keys_differ() {
    let (_, net) = network(&tiny_config(0.3), Kernels::Fast);
    let on = |keys: &[u64]| values(&net.forward(&batch(), DropoutMode::On(keys)).unwrap());
    let off = values(&net.forward(&batch(), DropoutMode::Off).unwrap());
    assert_eq!(on(&[1, 2, 3]), on(&[1, 2, 3]));
    assert_ne!(on(&[1, 2, 3]), on(&[4, 5, 6]));
    assert_ne!(on(&[1, 2, 3]), off);
}

#[test]
fn dropout_with_rate_zero_is_the_deterministic_model() {
    let (_, net) = network(&tiny_config(0.0), Kernels::Fast);
    let on = values(&net.forward(&batch(), DropoutMode::On(&[1, 2, 3])).unwrap());
    assert_eq!(
        on,
        values(&net.forward(&batch(), DropoutMode::Off).unwrap())
    );
}

#[test]
fn fast_and_differentiable_kernels_compute_the_same_function_with_dropout_off_and_on() {
    // Head sizes 8 (whole vector lanes) and 5 (a remainder), several heads.
    for (hidden, heads) in [(16, 2), (15, 3)] {
        let mut config = tiny_config(0.3);
        config.hidden_size = hidden;
        config.num_attention_heads = heads;
        let (varmap, fast) = network(&config, Kernels::Fast);
        let slow = BertClassifier::load(
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            &config,
            Kernels::Differentiable,
        )
        .unwrap();
        for mode in [DropoutMode::Off, DropoutMode::On(&[1, 2, 3])] {
            let a = values(&fast.forward(&batch(), mode).unwrap());
            let b = values(&slow.forward(&batch(), mode).unwrap());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "{mode:?}: {a:?} vs {b:?}");
            }
        }
    }
}

#[test]
fn a_rows_logits_do_not_depend_on_what_else_is_in_the_batch() {
    let (_, net) = network(&tiny_config(0.1), Kernels::Fast);
    let alone = TokenBatch::from_rows(&[&[2, 20, 3]], 0, &Device::Cpu).unwrap();
    let alone = net
        .forward(&alone, DropoutMode::Off)
        .unwrap()
        .get(0)
        .unwrap();
    let together = net
        .forward(&batch(), DropoutMode::Off)
        .unwrap()
        .get(1)
        .unwrap();
    for (x, y) in values(&alone).iter().zip(&values(&together)) {
        assert!((x - y).abs() < 1e-5);
    }
}

#[test]
fn after_one_step_every_trainable_tensor_has_a_non_zero_gradient() {
    let config = tiny_config(0.1);
    let (varmap, net) = network(&config, Kernels::Differentiable);
    let logits = net.forward(&batch(), DropoutMode::On(&[1, 2, 3])).unwrap();
    let targets = Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let vars = varmap.data().lock().unwrap();
    assert!(
        vars.len() >= 16 * 2 + 9,
        "expected every BERT tensor, got {}",
        vars.len()
    );
    for (name, var) in vars.iter() {
        let grad = grads
            .get(var)
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = grad
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name} has a zero gradient");
    }
}

#[test]
fn a_tiny_model_over_fits_one_batch() {
    let config = tiny_config(0.0);
    let (varmap, net) = network(&config, Kernels::Differentiable);
    let params = varmap.all_vars().into_iter().map(|v| (v, true)).collect();
    let mut optimizer = AdamW::new(params, AdamWSettings::default());
    let targets = Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap();
    let mut loss_value = f32::MAX;
    for _ in 0..300 {
        let logits = net.forward(&batch(), DropoutMode::Off).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
        loss_value = loss.to_scalar::<f32>().unwrap();
        optimizer
            .step(&loss.backward().unwrap(), 1e-3, 1.0)
            .unwrap();
    }
    assert!(loss_value < 0.05, "loss after 300 steps: {loss_value}");
}

#[test]
fn a_saved_model_loads_back_with_identical_logits() {
    let texts: Vec<String> = (0..30)
        .map(|i| format!("the film number {i} was good and then bad"))
        .collect();
    let encoder = TextEncoder::train(&texts, 50, 24).unwrap();
    let mut config = tiny_config(0.1);
    config.vocab_size = encoder.vocab_size();
    let (varmap, mut net) = network(&config, Kernels::Fast);
    // As Classifier::load prepares it, so that both compute the same way.
    net.pack_for_inference(model::Precision::F32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    encoder
        .save(&dir.path().join(model::TOKENIZER_FILE))
        .unwrap();
    let tensors = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    model::write_weights(dir.path(), &tensors).unwrap();
    model::write_config(dir.path(), &config).unwrap();

    let loaded = Classifier::load(dir.path()).unwrap();
    assert_eq!(loaded.labels, labels());
    assert_eq!(loaded.config, config);
    let ids = loaded
        .encoder
        .encode("the film was good", true)
        .unwrap()
        .ids;
    let expected = net
        .forward(
            &TokenBatch::from_rows(&[&ids], 0, &Device::Cpu).unwrap(),
            DropoutMode::Off,
        )
        .unwrap();
    assert_eq!(
        loaded.logits(&[&ids], DropoutMode::Off).unwrap()[0],
        values(&expected)
    );
}

#[test]
fn a_config_with_heads_that_do_not_divide_the_hidden_size_is_rejected() {
    let mut config = tiny_config(0.1);
    config.num_attention_heads = 3;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("multiple"));
}

#[test]
fn every_shipped_model_loads_and_tells_a_review_from_a_question() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let cases = [
        (
            "sentiment",
            "a warm, funny, sharply written film",
            "positive",
        ),
        (
            "sentiment-tiny",
            "a warm, funny, sharply written film",
            "positive",
        ),
        ("trec6", "Who wrote Hamlet?", "HUM"),
        ("trec6-tiny", "Who wrote Hamlet?", "HUM"),
    ];
    for (name, text, expected) in cases {
        let classifier = Classifier::load(&root.join(name)).unwrap();
        let ids = classifier.encoder.encode(text, true).unwrap().ids;
        let logits = classifier
            .logits(&[&ids], DropoutMode::Off)
            .unwrap()
            .remove(0);
        let best = (0..logits.len())
            .max_by(|&i, &j| logits[i].total_cmp(&logits[j]))
            .unwrap();
        assert_eq!(
            classifier.labels[best], expected,
            "models/{name} on {text:?}"
        );
    }
}

#[test]
fn every_shipped_models_calibration_fits_it_and_the_fine_tuned_ones_measure_distance_by_neighbours()
{
    use candor::uncertainty::calibration::Calibration;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (name, neighbours) in [
        ("sentiment", true),
        ("trec6", true),
        ("sentiment-tiny", false),
        ("trec6-tiny", false),
    ] {
        let dir = root.join(name);
        let classifier = Classifier::load(&dir).unwrap();
        let mut calibration = Calibration::load(&dir).unwrap().expect("calibrated");
        calibration
            .check_against(
                &dir,
                classifier.labels.len(),
                classifier.network.layer_count(),
                classifier.config.hidden_size,
            )
            .unwrap_or_else(|e| panic!("models/{name}: {e}"));
        assert_eq!(
            calibration.neighbours.is_some(),
            neighbours,
            "models/{name}"
        );
        assert!(calibration.scores_distances(), "models/{name}");
    }
}
