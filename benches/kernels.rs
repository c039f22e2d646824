//! candor's inference kernels against the candle compositions they replace.
//!
//! `cargo bench --bench kernels` (one thread unless `CANDOR_THREADS=N`):
//! the packed dense layer ([`candor::model::packed`]: f32 weights, f16
//! weights, bf16 and int8 arithmetic) against candle's `matmul` + bias (+ GELU), at
//! MiniLM's sizes (hidden 384, feed-forward 1536) for one text of 27 pieces
//! and for 32 such texts.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candor::model::packed::{Activation, PackedDense, Precision};

fn random(shape: &[usize], seed: u64) -> anyhow::Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| {
            let x = candor::rng::hash64(seed ^ i as u64);
            (candor::rng::unit_f64(x) as f32 - 0.5) * 0.2
        })
        .collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Mean microseconds per call of `f` over about half a second.
fn micros(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed().as_secs_f64() < 0.5 {
        f()?;
        calls += 1;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(calls))
}

/// One dense layer `rows × inputs → outputs`, candle against packed f32 and packed f16 weights.
fn dense(rows: usize, inputs: usize, outputs: usize, activation: Activation) -> anyhow::Result<()> {
    let x = random(&[rows, inputs], 1)?;
    let weight = random(&[outputs, inputs], 2)?;
    let bias = random(&[outputs], 3)?;
    let weight_t = weight.t()?.contiguous()?;
    let halves = weight.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
    let (Some(packed), Some(packed_f16)) = (
        PackedDense::new(&weight, &bias)?,
        PackedDense::new(&halves, &bias)?,
    ) else {
        println!("this CPU has neither AVX-512F nor AVX2 with FMA: the packed kernel is not used");
        return Ok(());
    };
    let gflops = |us: f64| 2.0 * (rows * inputs * outputs) as f64 / us / 1e3;
    let candle = micros(|| {
        let y = x.matmul(&weight_t)?.broadcast_add(&bias)?;
        if activation == Activation::Gelu {
            y.gelu_erf()?;
        }
        Ok(())
    })?;
    let f32_panels = micros(|| {
        packed.forward(&x, activation)?;
        Ok(())
    })?;
    let f16_panels = micros(|| {
        packed_f16.forward(&x, activation)?;
        Ok(())
    })?;
    let mut reduced = String::new();
    for precision in [Precision::Bf16, Precision::Int8] {
        match PackedDense::with_precision(&weight, &bias, precision)? {
            Some(packed) => {
                let us = micros(|| {
                    packed.forward(&x, activation)?;
                    Ok(())
                })?;
                reduced += &format!(", {precision} {us:>8.1} µs ({:>3.0})", gflops(us));
            }
            None => reduced += &format!(", {precision}: not on this CPU"),
        }
    }
    println!(
        "dense {rows}×{inputs} → {outputs} ({activation:?}): candle {candle:>8.1} µs ({:>3.0} GFLOP/s), packed f32 {f32_panels:>8.1} µs ({:>3.0}), f16 weights {f16_panels:>8.1} µs ({:>3.0}){reduced}",
        gflops(candle),
        gflops(f32_panels),
        gflops(f16_panels)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let threads = std::env::var("CANDOR_THREADS").unwrap_or_else(|_| "1".into());
    std::env::set_var("RAYON_NUM_THREADS", threads);
    let (hidden, intermediate, seq) = (384, 1536, 27);
    for batch in [1usize, 32] {
        let rows = batch * seq;
        for (inputs, outputs, activation) in [
            (hidden, hidden, Activation::Identity),
            (hidden, intermediate, Activation::Gelu),
            (intermediate, hidden, Activation::Identity),
        ] {
            dense(rows, inputs, outputs, activation)?;
        }
    }
    Ok(())
}
