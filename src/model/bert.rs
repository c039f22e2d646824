//! The BERT encoder and sequence-classification head, one struct per sub-layer.
//!
//! Tensor names follow transformers' `BertForSequenceClassification`
//! (`bert.embeddings.word_embeddings.weight`, …, `classifier.weight`), so a
//! checkpoint moves between candor and Python unchanged.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Embedding, VarBuilder};

use std::sync::Arc;

use super::config::BertConfig;
use super::dropout::{dropout, DropoutMode, Site};
use super::packed::{Activation, PackedDense, Precision};

/// Added to attention scores of padding positions; exp() of it is exactly 0 in f32.
const MASKED_SCORE: f64 = -1e9;

/// Which kernels a model instance uses.
///
/// candle's fused `layer_norm` and `softmax_last_dim` record no backward pass,
/// so a model being trained must use differentiable versions (candor's own
/// LayerNorm, candle's composed softmax); inference uses the fast ones. Both
/// compute the same function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Composed operations that gradients flow through.
    Differentiable,
    /// Fused operations for inference.
    Fast,
}

/// A padded batch of token ids.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `(batch, seq)` u32 token ids, `[PAD]` after each row's end.
    pub input_ids: Tensor,
    /// `(batch, seq)` f32, 1 for real tokens and 0 for padding.
    pub attention_mask: Tensor,
}

impl TokenBatch {
    /// Pads `rows` to the longest one with `pad_id`.
    pub fn from_rows(rows: &[&[u32]], pad_id: u32, device: &candle_core::Device) -> Result<Self> {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for row in rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad_id, width - row.len()));
            mask.extend(std::iter::repeat_n(1f32, row.len()));
            mask.extend(std::iter::repeat_n(0f32, width - row.len()));
        }
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (rows.len(), width), device)?,
            attention_mask: Tensor::from_vec(mask, (rows.len(), width), device)?,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.input_ids.dims()[0]
    }
}

/// LayerNorm over the last dimension.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        match kernels {
            Kernels::Fast => candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            ),
            Kernels::Differentiable => {
                super::layer_norm::layer_norm(x, &self.weight, &self.bias, self.eps)
            }
        }
    }
}

fn softmax_last(x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    match kernels {
        Kernels::Fast => candle_nn::ops::softmax_last_dim(&x.contiguous()?),
        Kernels::Differentiable => candle_nn::ops::softmax(x, D::Minus1),
    }
}

/// A dense layer applied to the last dimension.
///
/// candle-nn's `Linear` multiplies a 3-D input by the weight broadcast over the
/// batch, i.e. one small matrix product per example; folding batch and sequence
/// into one dimension makes it a single large product, several times faster
/// forwards and backwards on CPU.
///
/// [`BertClassifier::pack_for_inference`] swaps the weight for a packed copy
/// that a faster kernel uses where the CPU has one.
#[derive(Debug, Clone)]
struct Dense {
    weight: DenseWeight,
    bias: Tensor,
}

/// A dense layer's weight as candle multiplies it, or packed for inference.
#[derive(Debug, Clone)]
enum DenseWeight {
    /// The transposed weight `(inputs, outputs)`, a variable when training.
    Transposed(Tensor),
    /// Packed once; no longer follows the variable.
    Packed(Arc<PackedDense>),
}

impl Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Activation::Identity)
    }

    /// `activation(x · Wᵀ + b)`.
    fn forward_then(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        let weight_t = match &self.weight {
            DenseWeight::Packed(packed) => return packed.forward(x, activation),
            DenseWeight::Transposed(weight_t) => weight_t,
        };
        let y = matmul(x, weight_t, &self.bias)?;
        match activation {
            Activation::Identity => Ok(y),
            Activation::Gelu => super::gelu::gelu_erf(&y),
        }
    }

    fn pack(&mut self, precision: Precision) -> Result<()> {
        if let DenseWeight::Transposed(weight_t) = &self.weight {
            if let Some(packed) =
                PackedDense::with_precision(&weight_t.t()?, &self.bias, precision)?
            {
                self.weight = DenseWeight::Packed(Arc::new(packed));
            }
        }
        Ok(())
    }
}

/// `x · weight_t + bias` over the last dimension of `x`.
fn matmul(x: &Tensor, weight_t: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (last, rows) = (
        dims[dims.len() - 1],
        x.elem_count() / dims[dims.len() - 1].max(1),
    );
    let y = x
        .reshape((rows, last))?
        .matmul(weight_t)?
        .broadcast_add(bias)?;
    let mut out_dims = dims;
    let n = out_dims.len();
    out_dims[n - 1] = bias.dim(0)?;
    y.reshape(out_dims)
}

fn linear(vb: VarBuilder, input: usize, output: usize) -> Result<Dense> {
    Ok(Dense {
        weight: DenseWeight::Transposed(vb.get((output, input), "weight")?.t()?),
        bias: vb.get(output, "bias")?,
    })
}

/// Word, position and token-type embeddings, LayerNorm and dropout.
#[derive(Debug, Clone)]
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    layer_norm: LayerNorm,
    hidden: usize,
    dropout: f64,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let table = |name: &str, rows: usize| -> Result<Embedding> {
            Ok(Embedding::new(vb.pp(name).get((rows, h), "weight")?, h))
        };
        Ok(Self {
            word: table("word_embeddings", cfg.vocab_size)?,
            position: table("position_embeddings", cfg.max_position_embeddings)?,
            token_type: table("token_type_embeddings", cfg.type_vocab_size)?,
            layer_norm: LayerNorm::load(vb.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            hidden: h,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    fn forward(&self, input_ids: &Tensor, kernels: Kernels, mode: DropoutMode) -> Result<Tensor> {
        let seq = input_ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq as u32, input_ids.device())?;
        let segment = Tensor::zeros(1, DType::U32, input_ids.device())?;
        let x = self
            .word
            .forward(input_ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .broadcast_add(&self.token_type.forward(&segment)?)?;
        let x = self.layer_norm.forward(&x, kernels)?;
        dropout(
            &x,
            self.dropout,
            Site::EMBEDDINGS,
            &[self.hidden as u64, 1],
            mode,
        )
    }
}

/// Multi-head self-attention with its output projection, residual and LayerNorm.
#[derive(Debug, Clone)]
struct Attention {
    query: Dense,
    key: Dense,
    value: Dense,
    output: Dense,
    layer_norm: LayerNorm,
    heads: usize,
    head_size: usize,
    max_positions: u64,
    attention_dropout: f64,
    hidden_dropout: f64,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let own = vb.pp("self");
        Ok(Self {
            query: linear(own.pp("query"), h, h)?,
            key: linear(own.pp("key"), h, h)?,
            value: linear(own.pp("value"), h, h)?,
            output: linear(vb.pp("output").pp("dense"), h, h)?,
            layer_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            head_size: h / cfg.num_attention_heads,
            max_positions: cfg.max_position_embeddings as u64,
            attention_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// `(batch, seq, hidden)` → `(batch, heads, seq, head_size)`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.heads, self.head_size))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, x: &Tensor, mask_bias: &Tensor, step: &Step) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let q = self.split_heads(&self.query.forward(x)?)?;
        let k = self.split_heads(&self.key.forward(x)?)?;
        let v = self.split_heads(&self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_size as f64).sqrt())?;
        let probs = softmax_last(&scores.broadcast_add(mask_bias)?, step.kernels)?;
        let p = self.max_positions;
        let probs = dropout(
            &probs,
            self.attention_dropout,
            Site::in_layer(step.layer, 0),
            &[p * p, p, 1],
            step.mode,
        )?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        let out = self.output.forward(&context)?;
        let out = dropout(
            &out,
            self.hidden_dropout,
            Site::in_layer(step.layer, 1),
            &[h as u64, 1],
            step.mode,
        )?;
        self.layer_norm.forward(&(out + x)?, step.kernels)
    }
}

/// The GELU feed-forward block with residual and LayerNorm.
#[derive(Debug, Clone)]
struct FeedForward {
    intermediate: Dense,
    output: Dense,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            intermediate: linear(vb.pp("intermediate").pp("dense"), h, i)?,
            output: linear(vb.pp("output").pp("dense"), i, h)?,
            layer_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    fn forward(&self, x: &Tensor, step: &Step) -> Result<Tensor> {
        let h = x.dim(D::Minus1)? as u64;
        let inner = self.intermediate.forward_then(x, Activation::Gelu)?;
        let out = self.output.forward(&inner)?;
        let out = dropout(
            &out,
            self.dropout,
            Site::in_layer(step.layer, 2),
            &[h, 1],
            step.mode,
        )?;
        self.layer_norm.forward(&(out + x)?, step.kernels)
    }
}

/// Per-layer context of one forward pass.
struct Step<'a> {
    layer: usize,
    kernels: Kernels,
    mode: DropoutMode<'a>,
}

/// One post-LayerNorm transformer layer.
#[derive(Debug, Clone)]
struct EncoderLayer {
    attention: Attention,
    feed_forward: FeedForward,
}

impl EncoderLayer {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        Ok(Self {
            attention: Attention::load(vb.pp("attention"), cfg)?,
            feed_forward: FeedForward::load(vb.clone(), cfg)?,
        })
    }

    fn forward(&self, x: &Tensor, mask_bias: &Tensor, step: &Step) -> Result<Tensor> {
        let x = self.attention.forward(x, mask_bias, step)?;
        self.feed_forward.forward(&x, step)
    }
}

/// BERT with a `[CLS]` tanh pooler and a linear classification head.
#[derive(Debug, Clone)]
pub struct BertClassifier {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    pooler: Dense,
    classifier: Dense,
    classifier_dropout: f64,
    kernels: Kernels,
}

impl BertClassifier {
    /// Builds the model from tensors named as in transformers (`bert.*`, `classifier.*`).
    pub fn load(vb: VarBuilder, cfg: &BertConfig, kernels: Kernels) -> Result<Self> {
        let bert = vb.pp("bert");
        let encoder = bert.pp("encoder").pp("layer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::load(encoder.pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let h = cfg.hidden_size;
        Ok(Self {
            embeddings: Embeddings::load(bert.pp("embeddings"), cfg)?,
            layers,
            pooler: linear(bert.pp("pooler").pp("dense"), h, h)?,
            classifier: linear(vb.pp("classifier"), h, cfg.id2label.len())?,
            classifier_dropout: cfg.classifier_dropout_rate(),
            kernels,
        })
    }

    /// Packs every dense layer's weight for the inference kernel (see
    /// [`super::packed`]) in place of candle's copy; a no-op where the CPU
    /// lacks it. Only for a model whose weights no longer change: the packed
    /// weights do not follow training updates. `precision` chooses the
    /// kernel's arithmetic (see [`Precision`]).
    pub fn pack_for_inference(&mut self, precision: Precision) -> Result<()> {
        for layer in &mut self.layers {
            let (a, f) = (&mut layer.attention, &mut layer.feed_forward);
            for dense in [
                &mut a.query,
                &mut a.key,
                &mut a.value,
                &mut a.output,
                &mut f.intermediate,
                &mut f.output,
            ] {
                dense.pack(precision)?;
            }
        }
        self.pooler.pack(precision)?;
        self.classifier.pack(precision)
    }

    /// Class logits `(batch, labels)`; deterministic when `mode` is [`DropoutMode::Off`].
    pub fn forward(&self, batch: &TokenBatch, mode: DropoutMode) -> Result<Tensor> {
        let pooled = self.pooled(batch, mode)?;
        self.classify(&pooled, mode)
    }

    /// The encoder and pooler: the tanh-pooled `[CLS]` vector `(batch, hidden)`.
    pub fn pooled(&self, batch: &TokenBatch, mode: DropoutMode) -> Result<Tensor> {
        self.pool(&self.encode(batch, mode)?)
    }

    /// The pooler over last hidden states: tanh of a linear map of `[CLS]`.
    pub fn pool(&self, hidden: &Tensor) -> Result<Tensor> {
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        self.pooler.forward(&cls)?.tanh()
    }

    /// The encoder's last hidden states `(batch, seq, hidden)`.
    pub fn encode(&self, batch: &TokenBatch, mode: DropoutMode) -> Result<Tensor> {
        let (x, mask_bias) = self.embed(batch, mode)?;
        self.run_layers(x, &mask_bias, 0..self.layers.len(), mode)
    }

    /// The input of the first encoder layer: the embeddings `(batch, seq,
    /// hidden)`, and the attention bias `(batch, 1, 1, seq)` that keeps
    /// padding out of every layer's attention.
    pub fn embed(&self, batch: &TokenBatch, mode: DropoutMode) -> Result<(Tensor, Tensor)> {
        let (b, s) = batch.attention_mask.dims2()?;
        let mask_bias =
            ((batch.attention_mask.clone() - 1.0)? * -MASKED_SCORE)?.reshape((b, 1, 1, s))?;
        let x = self
            .embeddings
            .forward(&batch.input_ids, self.kernels, mode)?;
        Ok((x, mask_bias))
    }

    /// Runs encoder layers `layers` (0-based, in order) over hidden states
    /// `x`; dropout sites keep their layer's numbering, so running layers
    /// 0..k and then k..L draws the same masks as running 0..L.
    pub fn run_layers(
        &self,
        mut x: Tensor,
        mask_bias: &Tensor,
        layers: std::ops::Range<usize>,
        mode: DropoutMode,
    ) -> Result<Tensor> {
        for layer in layers {
            let Some(encoder_layer) = self.layers.get(layer) else {
                candle_core::bail!("the model has no layer {layer}")
            };
            let step = Step {
                layer,
                kernels: self.kernels,
                mode,
            };
            x = encoder_layer.forward(&x, mask_bias, &step)?;
        }
        Ok(x)
    }

    /// The number of encoder layers.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The word-embedding table `(vocab, hidden)`, which a masked-language-model head shares.
    pub fn word_embeddings(&self) -> &Tensor {
        self.embeddings.word.embeddings()
    }

    /// The head alone: dropout on the pooled vector, then the linear classifier.
    pub fn classify(&self, pooled: &Tensor, mode: DropoutMode) -> Result<Tensor> {
        let x = dropout(
            pooled,
            self.classifier_dropout,
            Site::CLASSIFIER,
            &[1],
            mode,
        )?;
        self.classifier.forward(&x)
    }
}
