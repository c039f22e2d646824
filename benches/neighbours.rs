//! The cost of one nearest-neighbour query against the stored training
//! vectors, by how many there are: `cargo bench --bench neighbours`.
//!
//! Exact search over L2-normalised vectors of MiniLM's width (384), random
//! but stored as a calibration stores them (f16-rounded), k = 10.

use std::time::Instant;

use candor::uncertainty::neighbours::Neighbours;

const WIDTH: usize = 384;
const K: usize = 10;

/// Deterministic pseudo-random vectors of MiniLM's width.
fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    candor::rng::uniform_vectors(n, WIDTH, seed)
}

fn main() -> anyhow::Result<()> {
    let queries = vectors(200, 7);
    println!("training vectors   stored MB   ms per query (width {WIDTH}, k {K})");
    for n in [1_000, 5_000, 10_000, 20_000, 50_000] {
        let index = Neighbours::new(&vectors(n, 1))?;
        let mut sink = 0.0;
        for q in queries.iter().take(10) {
            sink += index.distance(q, K); // warm-up
        }
        let started = Instant::now();
        for q in &queries {
            sink += index.distance(q, K);
        }
        let ms = started.elapsed().as_secs_f64() * 1e3 / queries.len() as f64;
        println!(
            "{n:>16} {:>11.1} {ms:>14.3}{}",
            (n * WIDTH * 2) as f64 / 1e6,
            if sink.is_nan() { " (NaN)" } else { "" }
        );
    }
    Ok(())
}
