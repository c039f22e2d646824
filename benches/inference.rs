//! Inference throughput and the cost of MC-dropout sampling, on the shipped model.
//!
//! `cargo bench --bench inference` (optionally `CANDOR_MODEL=DIR`, `CANDOR_THREADS=N`, default 1,
//! and `CANDOR_BENCH_DATA=FILE`, default the review sentences of `data/rotten_tomatoes.jsonl`).
//! Reports texts/s at batch 1 and 32, and the latency of one uncertainty
//! request with 30 samples (one pass of 30 rows) against one plain
//! prediction, against `head` mode (dropout on the classifier only) and
//! against a naive loop of 30 single passes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candor::data::{read_examples, FieldNames};
use candor::model::{Classifier, DropoutMode};
use candor::uncertainty::sample_key;

fn time<F: FnMut()>(repeats: usize, mut f: F) -> Duration {
    f(); // warm-up
    let started = Instant::now();
    for _ in 0..repeats {
        f();
    }
    started.elapsed() / repeats as u32
}

fn main() -> anyhow::Result<()> {
    // As the binary: one compute thread unless CANDOR_THREADS says otherwise.
    let threads = std::env::var("CANDOR_THREADS").unwrap_or_else(|_| "1".into());
    std::env::set_var("RAYON_NUM_THREADS", threads);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = std::env::var("CANDOR_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("models/sentiment"));
    let classifier = Classifier::load(&model)?;
    let data = std::env::var("CANDOR_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("data/rotten_tomatoes.jsonl"));
    let examples = read_examples(&data, &FieldNames::default())?;
    let texts: Vec<String> = examples.iter().take(640).map(|e| e.text.clone()).collect();
    let mean_tokens = texts
        .iter()
        .map(|t| {
            classifier
                .encoder
                .encode(t, true)
                .map(|e| e.ids.len())
                .unwrap_or(0)
        })
        .sum::<usize>() as f64
        / texts.len() as f64;
    println!(
        "model {} ({} texts of {}, {:.1} tokens on average)",
        model.display(),
        texts.len(),
        data.display(),
        mean_tokens
    );

    let mut by_length = texts.clone();
    by_length.sort_by_key(|t| {
        classifier
            .encoder
            .encode(t, true)
            .map(|e| e.ids.len())
            .unwrap_or(0)
    });
    for (batch, order, name) in [
        (1usize, &texts, "in file order"),
        (32, &texts, "in file order"),
        (32, &by_length, "sorted by length, as the engine batches"),
    ] {
        let started = Instant::now();
        for chunk in order.chunks(batch) {
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|t| classifier.encoder.encode(t, true).map(|e| e.ids))
                .collect::<Result<_, _>>()?;
            let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
            classifier.logits(&refs, DropoutMode::Off)?;
        }
        let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
        println!("batch {batch:>2}: {rate:>8.0} texts/s (tokenize + forward; {name})");
    }

    let ids = classifier.encoder.encode(&texts[0], true)?.ids;
    let plain = time(200, || {
        classifier
            .logits(&[&ids], DropoutMode::Off)
            .map(|_| ())
            .unwrap_or(());
    });
    let keys: Vec<u64> = (0..30).map(|t| sample_key(0, t)).collect();
    let rows: Vec<&[u32]> = vec![ids.as_slice(); 30];
    let batched = time(50, || {
        classifier
            .logits(&rows, DropoutMode::On(&keys))
            .map(|_| ())
            .unwrap_or(());
    });
    let head = time(200, || {
        classifier
            .head_sample_logits(&ids, &keys)
            .map(|_| ())
            .unwrap_or(());
    });
    let naive = time(10, || {
        for key in &keys {
            classifier
                .logits(&[&ids], DropoutMode::On(std::slice::from_ref(key)))
                .map(|_| ())
                .unwrap_or(());
        }
    });
    println!(
        "one plain prediction:            {:>8.3} ms",
        plain.as_secs_f64() * 1e3
    );
    println!(
        "30 MC samples, one batched pass: {:>8.3} ms ({:.1}x a plain prediction)",
        batched.as_secs_f64() * 1e3,
        batched.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "30 MC samples, head mode:        {:>8.3} ms ({:.1}x)",
        head.as_secs_f64() * 1e3,
        head.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "30 MC samples, naive loop:       {:>8.3} ms ({:.1}x)",
        naive.as_secs_f64() * 1e3,
        naive.as_secs_f64() / plain.as_secs_f64()
    );
    Ok(())
}
