//! A BERT encoder in candle that mirrors the Hugging Face checkpoint's module tree.
//!
//! It loads the same tensor names as `transformers.BertModel` (with or without the `bert.` prefix),
//! so any BERT-family sentence encoder in safetensors loads unchanged. It differs from
//! `candle_transformers::models::bert` in three ways that matter here:
//! - the additive attention mask is built in f32 with the model dtype's own finite minimum, then
//!   cast, so f16 and bf16 never see `0 * -inf = NaN`;
//! - query, key and value are one fused projection, so each layer runs one matrix product for them;
//! - pooling (masked mean or CLS) happens here, on the device, and only pooled vectors leave it.
//!
//! This file holds only the model: no I/O, no tokenization, no printing.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::{Batch, Pooling};

/// The subset of a Hugging Face `config.json` that a BERT encoder needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// The exact, erf-based GELU that BERT checkpoints are trained with.
    Gelu,
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluApproximate,
    Relu,
}

impl Activation {
    pub(crate) fn forward_tensor(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluApproximate => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}

pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub(crate) fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&xs.contiguous()?, &self.weight, &self.bias, self.eps)
    }
}

pub(crate) fn linear(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Linear> {
    let weight = vb.get((outputs, inputs), "weight")?;
    let bias = vb.get(outputs, "bias")?;
    Ok(Linear::new(weight, Some(bias)))
}

/// `embeddings.*`: word + position + token type, then LayerNorm.
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let word = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?;
        let position = candle_nn::embedding(
            cfg.max_position_embeddings,
            cfg.hidden_size,
            vb.pp("position_embeddings"),
        )?;
        let token_type = candle_nn::embedding(
            cfg.type_vocab_size,
            cfg.hidden_size,
            vb.pp("token_type_embeddings"),
        )?;
        let norm = LayerNorm::load(vb.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?;
        Ok(Self {
            word,
            position,
            token_type,
            norm,
        })
    }

    /// `ids`, `type_ids` and `positions` are (batch, length); returns (batch, length, hidden).
    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        positions: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let summed = ((self.word.forward(ids)? + self.position.forward(positions)?)?
            + self.token_type.forward(type_ids)?)?;
        self.norm.forward(&summed)
    }
}

/// One `encoder.layer.N`: self-attention with a fused QKV projection, then the feed-forward block.
struct Layer {
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    head_size: usize,
    activation: Activation,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        let attention = vb.pp("attention");
        let this = attention.pp("self");
        let parts = ["query", "key", "value"]
            .iter()
            .map(|name| linear(this.pp(name), hidden, hidden))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let weight = Tensor::cat(
            &parts.iter().map(|l| l.weight().clone()).collect::<Vec<_>>(),
            0,
        )?;
        let bias = Tensor::cat(
            &parts
                .iter()
                .map(|l| {
                    l.bias()
                        .expect("this is a bug: linear without bias")
                        .clone()
                })
                .collect::<Vec<_>>(),
            0,
        )?;
        let heads = cfg.num_attention_heads;
        Ok(Self {
            qkv: Linear::new(weight, Some(bias)),
            attention_output: linear(attention.pp("output").pp("dense"), hidden, hidden)?,
            attention_norm: LayerNorm::load(
                attention.pp("output").pp("LayerNorm"),
                hidden,
                cfg.layer_norm_eps,
            )?,
            intermediate: linear(
                vb.pp("intermediate").pp("dense"),
                hidden,
                cfg.intermediate_size,
            )?,
            output: linear(vb.pp("output").pp("dense"), cfg.intermediate_size, hidden)?,
            output_norm: LayerNorm::load(
                vb.pp("output").pp("LayerNorm"),
                hidden,
                cfg.layer_norm_eps,
            )?,
            heads,
            head_size: hidden / heads,
            activation: cfg.hidden_act,
        })
    }

    /// `xs` is (batch, length, hidden); `mask` is the additive mask, (batch, 1, 1, length).
    fn forward(&self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, length, hidden) = xs.dims3()?;
        let flat = xs.reshape((batch * length, hidden))?;
        let qkv = self
            .qkv
            .forward(&flat)?
            .reshape((batch, length, 3, self.heads, self.head_size))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let scale = 1.0 / (self.head_size as f64).sqrt();
        let query = (qkv.i(0)? * scale)?;
        let key = qkv.i(1)?;
        let value = qkv.i(2)?;
        let scores = query.matmul(&key.t()?)?.broadcast_add(mask)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probabilities
            .matmul(&value)?
            .transpose(1, 2)?
            .reshape((batch * length, hidden))?;
        let attended = self.attention_output.forward(&context)?;
        let attended = self.attention_norm.forward(&(attended + &flat)?)?;
        let inner = self
            .activation
            .forward_tensor(&self.intermediate.forward(&attended)?)?;
        let out = self.output.forward(&inner)?;
        let out = self.output_norm.forward(&(out + &attended)?)?;
        out.reshape((batch, length, hidden))
    }
}

/// A BERT encoder with pooling: token ids in, one pooled vector per sequence out.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooling: Pooling,
    dtype: DType,
    device: Device,
    hidden: usize,
    max_positions: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &BertConfig, pooling: Pooling) -> candle_core::Result<Self> {
        let vb = checkpoint_root(vb);
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp(format!("layer.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            pooling,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            hidden: cfg.hidden_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Pads a packed batch to its longest sequence and returns one pooled vector per sequence.
    pub fn forward_batch(&self, batch: &Batch) -> candle_core::Result<Vec<Vec<f32>>> {
        let padded = batch.padded();
        let (rows, length) = (padded.rows, padded.length);
        let device = &self.device;
        let tensor = |values: Vec<u32>| Tensor::from_vec(values, (rows, length), device);
        self.forward_pooled(
            &tensor(padded.ids)?,
            &tensor(padded.type_ids)?,
            &tensor(padded.positions)?,
            &tensor(padded.mask)?,
        )?
        .to_vec2::<f32>()
    }

    /// Runs the encoder on `ids`, `type_ids` and `positions` (batch, length) with `mask` (batch,
    /// length; 1 for real tokens, 0 for padding) and returns the pooled vectors, (batch, hidden),
    /// in f32.
    pub fn forward_pooled(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let additive = additive_mask(mask, self.dtype)?;
        let mut hidden = self.embeddings.forward(ids, type_ids, positions)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &additive)?;
        }
        let hidden = hidden.to_dtype(DType::F32)?;
        match self.pooling {
            Pooling::Cls => hidden.i((.., 0))?.contiguous(),
            Pooling::Mean => {
                let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
                let counts = weights.sum(1)?;
                summed.broadcast_div(&counts)
            }
        }
    }
}

/// Where the BERT tensors start: checkpoints saved from `BertModel` have bare names; those saved
/// from a task model carry a `bert.` prefix.
/// RoBERTa and XLM-R task checkpoints carry `roberta.`, with the same module tree below it.
pub fn checkpoint_root(vb: VarBuilder) -> VarBuilder {
    if vb.contains_tensor("embeddings.word_embeddings.weight") {
        vb
    } else if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
        vb.pp("roberta")
    } else {
        vb.pp("bert")
    }
}

/// The additive attention mask, (batch, 1, 1, length): 0 where a token is real, the dtype's most
/// negative finite value where it is padding. Built in f32 and cast last, so that half precision
/// gets a finite value and `exp` underflows to exactly 0 instead of producing NaN.
pub fn additive_mask(mask: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let minimum = match dtype {
        DType::F16 => f64::from(half::f16::MIN.to_f32()),
        DType::BF16 => f64::from(half::bf16::MIN.to_f32()),
        _ => f64::from(f32::MIN),
    };
    let (batch, length) = mask.dims2()?;
    let inverted = (1.0 - mask.to_dtype(DType::F32)?)?;
    (inverted * minimum)?
        .to_dtype(dtype)?
        .reshape((batch, 1, 1, length))
}
