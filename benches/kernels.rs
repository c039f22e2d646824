//! candor's inference kernels against the candle compositions they replace.
//!
//! `cargo bench --bench kernels` (one thread unless `CANDOR_THREADS=N`):
//! the packed dense layer ([`candor::model::packed`], f32 and bf16) against candle's
//! `matmul` + bias + GELU, and the fused attention
//! ([`candor::model::attention`]) against split heads, `q · kᵀ`, scale, mask,
//! softmax, `· v` and merged heads, at MiniLM's sizes (hidden 384, 12 heads,
//! feed-forward 1536) for one text of 27 pieces and for 32 such texts.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candor::model::attention::{attend, Heads};
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

fn composed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    shape: Heads,
) -> candle_core::Result<Tensor> {
    let (b, s, h) = q.dims3()?;
    let split = |x: &Tensor| {
        x.reshape((b, s, shape.heads, shape.head_size))?
            .transpose(1, 2)?
            .contiguous()
    };
    let scores = (split(q)?.matmul(&split(k)?.t()?)? / (shape.head_size as f64).sqrt())?;
    let probs = candle_nn::ops::softmax_last_dim(
        &scores
            .broadcast_add(&bias.reshape((b, 1, 1, s))?)?
            .contiguous()?,
    )?;
    probs
        .matmul(&split(v)?)?
        .transpose(1, 2)?
        .reshape((b, s, h))
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
        println!("this CPU has no AVX-512F: the packed kernel is not used");
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
    let bf16 = match PackedDense::with_precision(&weight, &bias, Precision::Bf16)? {
        Some(packed_bf16) => {
            let us = micros(|| {
                packed_bf16.forward(&x, activation)?;
                Ok(())
            })?;
            format!(", bf16 {us:>8.1} µs ({:>3.0})", gflops(us))
        }
        None => ", bf16: not on this CPU".into(),
    };
    println!(
        "dense {rows}×{inputs} → {outputs} ({activation:?}): candle {candle:>8.1} µs ({:>3.0} GFLOP/s), packed f32 {f32_panels:>8.1} µs ({:>3.0}), f16 weights {f16_panels:>8.1} µs ({:>3.0}){bf16}",
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

        let shape = Heads {
            batch,
            seq,
            heads: 12,
            head_size: 32,
        };
        let (q, k, v) = (
            random(&[batch, seq, hidden], 4)?,
            random(&[batch, seq, hidden], 5)?,
            random(&[batch, seq, hidden], 6)?,
        );
        // The last three positions of every text are padding.
        let mask: Vec<f32> = (0..rows)
            .map(|i| if i % seq >= seq - 3 { -1e9 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (batch, seq), &Device::Cpu)?;
        let values =
            |t: &Tensor| -> anyhow::Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        let (qv, kv, vv, mv) = (values(&q)?, values(&k)?, values(&v)?, values(&mask)?);
        let candle = micros(|| {
            composed_attention(&q, &k, &v, &mask, shape)?;
            Ok(())
        })?;
        let ours = micros(|| {
            let context = attend(&qv, &kv, &vv, &mv, shape, None);
            Tensor::from_vec(context, (batch, seq, hidden), &Device::Cpu)?;
            Ok(())
        })?;
        let difference = (composed_attention(&q, &k, &v, &mask, shape)?
            - Tensor::from_vec(
                attend(&qv, &kv, &vv, &mv, shape, None),
                (batch, seq, hidden),
                &Device::Cpu,
            )?)?
        .abs()?
        .max(D::Minus1)?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
        println!(
            "attention {batch}×{seq}, 12 heads of 32: candle {candle:>8.1} µs, fused {ours:>8.1} µs, {:.2}× (largest difference {difference:.1e})",
            candle / ours
        );
    }
    Ok(())
}
