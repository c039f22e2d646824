//! Inference throughput and the cost of MC-dropout sampling, on the shipped model.
//!
//! `cargo bench --bench inference` (optionally `CANDOR_MODEL=DIR`, `CANDOR_THREADS=N`, default 1,
//! `CANDOR_PRECISION=f32|bf16|int8`, default f32,
//! and `CANDOR_BENCH_DATA=FILE`, default the review sentences of `data/rotten_tomatoes.jsonl`).
//! Reports texts/s at batch 1 and 32, and the latency of one uncertainty
//! request with 30 samples against one plain prediction: `full` mode (one
//! pass of 30 rows), `top` mode with 2 and 1 layers (the layers below once),
//! `head` mode (dropout on the classifier only) and a naive loop of 30
//! single passes. `CANDOR_BENCH_FORWARD_ONLY=1` stops after the texts/s lines.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candor::data::{read_examples, FieldNames};
use candor::model::{Classifier, DropoutMode, Precision};
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
    let bench = Bench::from_env()?;
    bench.describe();
    bench.throughput()?;
    if std::env::var("CANDOR_BENCH_FORWARD_ONLY").is_ok_and(|v| v == "1") {
        return Ok(());
    }
    bench.uncertainty_latency()
}

/// A model loaded at a precision, and the texts it is timed on.
struct Bench {
    /// The model's directory.
    model: PathBuf,
    precision: Precision,
    classifier: Classifier,
    /// The file the texts come from.
    data: PathBuf,
    /// Its first 640 texts.
    texts: Vec<String>,
}

impl Bench {
    /// The model, precision and data the environment names, else the
    /// shipped sentiment model at f32 on rotten_tomatoes.
    fn from_env() -> anyhow::Result<Bench> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let model = std::env::var("CANDOR_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("models/sentiment"));
        let precision: Precision = std::env::var("CANDOR_PRECISION")
            .unwrap_or_else(|_| "f32".into())
            .parse()
            .map_err(anyhow::Error::msg)?;
        let classifier = Classifier::load_with(&model, precision)?;
        let data = std::env::var("CANDOR_BENCH_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("data/rotten_tomatoes.jsonl"));
        let examples = read_examples(&data, &FieldNames::default())?;
        let texts = examples.iter().take(640).map(|e| e.text.clone()).collect();
        Ok(Bench {
            model,
            precision,
            classifier,
            data,
            texts,
        })
    }

    /// Tokens in `text` with the special ones (0 if it does not tokenize).
    fn token_count(&self, text: &str) -> usize {
        self.classifier
            .encoder
            .encode(text, true)
            .map(|e| e.ids.len())
            .unwrap_or(0)
    }

    /// Prints what is measured.
    fn describe(&self) {
        let tokens: usize = self.texts.iter().map(|t| self.token_count(t)).sum();
        println!(
            "model {} at {} ({} texts of {}, {:.1} tokens on average)",
            self.model.display(),
            self.precision,
            self.texts.len(),
            self.data.display(),
            tokens as f64 / self.texts.len() as f64
        );
    }

    /// Prints texts/s, tokenizing included, at batch 1 and 32, and at 32
    /// with the texts sorted by length as the engine batches them.
    fn throughput(&self) -> anyhow::Result<()> {
        let mut by_length = self.texts.clone();
        by_length.sort_by_key(|t| self.token_count(t));
        for (batch, order, name) in [
            (1usize, &self.texts, "in file order"),
            (32, &self.texts, "in file order"),
            (32, &by_length, "sorted by length, as the engine batches"),
        ] {
            let started = Instant::now();
            for chunk in order.chunks(batch) {
                let rows: Vec<Vec<u32>> = chunk
                    .iter()
                    .map(|t| self.classifier.encoder.encode(t, true).map(|e| e.ids))
                    .collect::<Result<_, _>>()?;
                let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
                self.classifier.logits(&refs, DropoutMode::Off)?;
            }
            let rate = self.texts.len() as f64 / started.elapsed().as_secs_f64();
            println!("batch {batch:>2}: {rate:>8.0} texts/s (tokenize + forward; {name})");
        }
        Ok(())
    }

    /// Prints the latency of one plain prediction and of 30 MC samples drawn
    /// each way, as means over the first 20 texts, each timed alone.
    fn uncertainty_latency(&self) -> anyhow::Result<()> {
        let rows: Vec<Vec<u32>> = self
            .texts
            .iter()
            .take(20)
            .map(|t| self.classifier.encoder.encode(t, true).map(|e| e.ids))
            .collect::<Result<_, _>>()?;
        let keys: Vec<u64> = (0..30).map(|t| sample_key(0, t)).collect();
        let classifier = &self.classifier;
        let plain = per_text(&rows, 50, &|ids| {
            classifier
                .logits(&[ids], DropoutMode::Off)
                .map(|_| ())
                .unwrap_or(());
        });
        let sampled = sampled_latencies(classifier, &rows, &keys);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("latency, mean over {} texts alone (batch 1):", rows.len());
        println!("one plain prediction:            {:>8.3} ms", ms(plain));
        for (name, d) in sampled {
            let ratio = d.as_secs_f64() / plain.as_secs_f64();
            println!(" {name}{:>8.3} ms ({ratio:.1}x a plain prediction)", ms(d));
        }
        Ok(())
    }
}

/// The mean time of `f` per row of `rows`, each timed alone over `repeats`.
fn per_text(rows: &[Vec<u32>], repeats: usize, f: &dyn Fn(&[u32])) -> Duration {
    rows.iter()
        .map(|ids| time(repeats, || f(ids)))
        .sum::<Duration>()
        / rows.len() as u32
}

/// The latency of drawing one MC sample per key for each of `rows`: `full`
/// mode in one pass, `top` mode with 2 and 1 layers (where the model has
/// more), `head` mode, and a naive loop of single passes; named as printed.
fn sampled_latencies(
    classifier: &Classifier,
    rows: &[Vec<u32>],
    keys: &[u64],
) -> Vec<(&'static str, Duration)> {
    let full = per_text(rows, 5, &|ids| {
        let copies: Vec<&[u32]> = vec![ids; keys.len()];
        classifier
            .logits(&copies, DropoutMode::On(keys))
            .map(|_| ())
            .unwrap_or(());
    });
    let naive = per_text(rows, 2, &|ids| {
        for key in keys {
            classifier
                .logits(&[ids], DropoutMode::On(std::slice::from_ref(key)))
                .map(|_| ())
                .unwrap_or(());
        }
    });
    let top = |k: usize| {
        per_text(rows, 10, &|ids| {
            classifier
                .lower_pass(ids, k)
                .and_then(|pass| classifier.top_sample_logits(&pass, keys))
                .map(|_| ())
                .unwrap_or(());
        })
    };
    let mut lines = vec![("30 MC samples, full, one pass:  ", full)];
    let layers = classifier.network.layer_count();
    if layers > 2 {
        lines.push(("30 MC samples, top 2 layers:    ", top(2)));
    }
    if layers > 1 {
        lines.push(("30 MC samples, top 1 layer:     ", top(1)));
    }
    lines.push(("30 MC samples, head mode:       ", top(0)));
    lines.push(("30 MC samples, naive loop:      ", naive));
    lines
}
