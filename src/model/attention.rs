//! Self-attention for inference in one kernel: scores, padding mask, softmax,
//! attention dropout and the weighted sum of values, head by head.
//!
//! The composed version (split the heads into contiguous copies, `q · kᵀ`,
//! scale, add the mask, softmax, dropout, `· v`, merge the heads) makes about
//! a dozen tensors per layer. For the short sequences a served model sees,
//! the arithmetic is a small share of a layer (a few hundred thousand
//! multiply-adds against tens of millions in its dense layers), so the copies
//! and allocations are most of the cost. Here each query row reads its head's
//! slice of `q`, `k` and `v` where the dense layers wrote them and writes its
//! context in place. Results agree with the composition to float rounding
//! (tested), and attention dropout draws the same masks (see
//! [`super::dropout::MaskStream`]).

use rayon::prelude::*;

use super::dropout::MaskStream;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_size: usize,
}

impl Heads {
    fn hidden(&self) -> usize {
        self.heads * self.head_size
    }
}

/// Attention dropout: one mask stream per batch row, indexed as the composed
/// version indexes `(heads, seq, seq)` probabilities with strides
/// `(positions², positions, 1)`.
pub struct AttentionDropout {
    pub streams: Vec<MaskStream>,
    pub positions: usize,
}

/// A key whose bias is below this is padding: `exp` of its score is 0.
const PADDING_BIAS: f32 = -1e8;

/// Fewest multiply-adds in a batch row worth a thread of its own.
const MIN_WORK_PER_THREAD: usize = 1 << 16;

/// The attention context `(batch, seq, hidden)` of `q`, `k`, `v` `(batch,
/// seq, hidden)` with `bias` `(batch, seq)` added to every score of a key
/// position (0, or a large negative number for padding).
pub fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: &[f32],
    shape: Heads,
    dropout: Option<&AttentionDropout>,
) -> Vec<f32> {
    let row = shape.seq * shape.hidden();
    let mut out = vec![0f32; shape.batch * row];
    let work = shape.heads * shape.seq * shape.seq * shape.head_size;
    let one_row = |(b, context): (usize, &mut [f32])| {
        let at = b * row;
        let rows = RowInputs {
            q: &q[at..at + row],
            k: &k[at..at + row],
            v: &v[at..at + row],
            bias: &bias[b * shape.seq..(b + 1) * shape.seq],
        };
        let stream = dropout.map(|d| (&d.streams[b], d.positions));
        attend_row(&rows, shape, stream, context);
    };
    if shape.batch > 1 && work >= MIN_WORK_PER_THREAD && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(row).enumerate().for_each(one_row);
    } else {
        out.chunks_mut(row).enumerate().for_each(one_row);
    }
    out
}

/// One batch row's inputs, each `(seq, hidden)` (the bias `(seq)`).
struct RowInputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: &'a [f32],
}

fn attend_row(
    rows: &RowInputs,
    shape: Heads,
    dropout: Option<(&MaskStream, usize)>,
    context: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { attend_row_avx512(rows, shape, dropout, context) };
    }
    attend_row_portable(rows, shape, dropout, context)
}

/// [`attend_row_portable`] compiled for 512-bit vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn attend_row_avx512(
    rows: &RowInputs,
    shape: Heads,
    dropout: Option<(&MaskStream, usize)>,
    context: &mut [f32],
) {
    attend_row_portable(rows, shape, dropout, context)
}

/// Vector lanes the loops below are written for (one 512-bit register).
const LANES: usize = 16;

/// Head by head: the head's live keys transposed into `(head_size, keys)`,
/// so that each query's scores are `LANES` keys at a time with no horizontal
/// sums; the softmax; and the context `LANES` dimensions at a time, its
/// partial sums held in registers. Padding keys get exactly zero weight
/// (their bias makes `exp` underflow), so only the others are visited (all
/// of them when every key is padding).
#[inline(always)]
fn attend_row_portable(
    rows: &RowInputs,
    shape: Heads,
    dropout: Option<(&MaskStream, usize)>,
    context: &mut [f32],
) {
    let (seq, size, hidden) = (shape.seq, shape.head_size, shape.hidden());
    let scale = 1.0 / (size as f32).sqrt();
    let mut live: Vec<usize> = (0..seq).filter(|&j| rows.bias[j] > PADDING_BIAS).collect();
    if live.is_empty() {
        live = (0..seq).collect();
    }
    let width = live.len().div_ceil(LANES) * LANES;
    let mut keys_t = vec![0f32; size * width];
    let mut probs = vec![0f32; width];
    for head in 0..shape.heads {
        let at = |t: usize| t * hidden + head * size;
        for (c, &j) in live.iter().enumerate() {
            for (d, &x) in rows.k[at(j)..at(j) + size].iter().enumerate() {
                keys_t[d * width + c] = x;
            }
        }
        for i in 0..seq {
            scores(&rows.q[at(i)..at(i) + size], &keys_t, &mut probs);
            let probs = &mut probs[..live.len()];
            for (p, &j) in probs.iter_mut().zip(&live) {
                *p = *p * scale + rows.bias[j];
            }
            softmax_in_place(probs);
            if let Some((stream, positions)) = dropout {
                let base = (head * positions + i) * positions;
                for (p, &j) in probs.iter_mut().zip(&live) {
                    *p *= stream.value((base + j) as u64);
                }
            }
            let values = live.iter().map(|&j| &rows.v[at(j)..at(j) + size]);
            weighted_sum(probs, values, &mut context[at(i)..at(i) + size]);
        }
    }
}

/// `out[c] = query · key c` for the keys in `keys_t` `(query.len(), out.len())`.
#[inline(always)]
fn scores(query: &[f32], keys_t: &[f32], out: &mut [f32]) {
    let width = out.len();
    for (block, out) in out.chunks_exact_mut(LANES).enumerate() {
        let mut acc = [0f32; LANES];
        for (d, &q) in query.iter().enumerate() {
            let keys = &keys_t[d * width + block * LANES..][..LANES];
            for lane in 0..LANES {
                acc[lane] += q * keys[lane];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// `out = Σ probs[c] · values[c]`.
#[inline(always)]
fn weighted_sum<'a>(
    probs: &[f32],
    values: impl Iterator<Item = &'a [f32]> + Clone,
    out: &mut [f32],
) {
    for (chunk, out) in out.chunks_mut(LANES).enumerate() {
        let mut acc = [0f32; LANES];
        let from = chunk * LANES;
        for (&p, value) in probs.iter().zip(values.clone()) {
            let value = &value[from..from + out.len()];
            if out.len() == LANES {
                for lane in 0..LANES {
                    acc[lane] += p * value[lane];
                }
            } else {
                for (a, &x) in acc.iter_mut().zip(value) {
                    *a += p * x;
                }
            }
        }
        out.copy_from_slice(&acc[..out.len()]);
    }
}

#[inline(always)]
fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in xs.iter_mut() {
        *x /= sum;
    }
}
