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

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QMatMul};
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

/// Weights kept in Q4_0 blocks (an E5S1 container's), by checkpoint name: the matrices whose
/// products candle's quantized matmul computes (activations quantised to Q8_0 per block of 32),
/// and the word embeddings, dequantised a row at a time as they are looked up.
pub struct Quantized {
    /// name -> (raw Q4_0 blocks, [rows, columns]).
    pub blocks: HashMap<String, (Vec<u8>, Vec<usize>)>,
}

impl Quantized {
    fn matmul(&self, names: &[String], device: &Device) -> candle_core::Result<Option<QMatMul>> {
        let mut bytes = Vec::new();
        let (mut rows, mut columns) = (0, 0);
        for name in names {
            let Some((data, shape)) = self.blocks.get(name) else {
                return Ok(None);
            };
            bytes.extend_from_slice(data);
            rows += shape[0];
            columns = shape[1];
        }
        let tensor = candle_core::quantized::ggml_file::qtensor_from_ggml(
            GgmlDType::Q4_0,
            &bytes,
            vec![rows, columns],
            device,
        )?;
        Ok(Some(QMatMul::from_qtensor(tensor)?))
    }
}

/// A linear layer in f32 (or the model's dtype), or on Q4_0 weights.
pub(crate) enum Dense {
    Float(Linear),
    Q4 { weight: QMatMul, bias: Tensor },
}

impl Dense {
    /// The layer of the tensors `names` (concatenated by rows when several), quantized where
    /// `quantized` holds them all.
    fn load(
        vb: &VarBuilder,
        names: &[&str],
        inputs: usize,
        outputs: usize,
        quantized: Option<&Quantized>,
    ) -> candle_core::Result<Self> {
        let bias = Tensor::cat(
            &names
                .iter()
                .map(|n| vb.get(outputs, &format!("{n}.bias")))
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )?;
        if let Some(quantized) = quantized {
            let full: Vec<String> = names
                .iter()
                .map(|n| format!("{}.{n}.weight", vb.prefix()))
                .collect();
            if let Some(weight) = quantized.matmul(&full, vb.device())? {
                return Ok(Dense::Q4 { weight, bias });
            }
        }
        let weight = Tensor::cat(
            &names
                .iter()
                .map(|n| vb.get((outputs, inputs), &format!("{n}.weight")))
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )?;
        Ok(Dense::Float(Linear::new(weight, Some(bias))))
    }
}

impl Module for Dense {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Dense::Float(linear) => linear.forward(xs),
            Dense::Q4 { weight, bias } => weight.forward(xs)?.broadcast_add(bias),
        }
    }
}

/// Word embeddings in the model's dtype, or in Q4_0 blocks.
enum Words {
    Float(Embedding),
    Q4(QMatMul),
}

/// `embeddings.*`: word + position + token type, then LayerNorm.
struct Embeddings {
    word: Words,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(
        vb: VarBuilder,
        cfg: &BertConfig,
        quantized: Option<&Quantized>,
    ) -> candle_core::Result<Self> {
        let name = format!("{}.word_embeddings.weight", vb.prefix());
        let word = match quantized.map(|q| q.matmul(&[name], vb.device())) {
            Some(result) if result.as_ref().is_ok_and(Option::is_some) => {
                Words::Q4(result?.expect("checked"))
            }
            _ => Words::Float(candle_nn::embedding(
                cfg.vocab_size,
                cfg.hidden_size,
                vb.pp("word_embeddings"),
            )?),
        };
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
        let words = match &self.word {
            Words::Float(embedding) => embedding.forward(ids)?,
            Words::Q4(blocks) => blocks.embedding(ids)?,
        };
        let summed =
            ((words + self.position.forward(positions)?)? + self.token_type.forward(type_ids)?)?;
        self.norm.forward(&summed)
    }
}

/// One `encoder.layer.N`: self-attention with a fused QKV projection, then the feed-forward block.
struct Layer {
    qkv: Dense,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
    heads: usize,
    head_size: usize,
    activation: Activation,
}

impl Layer {
    fn load(
        vb: VarBuilder,
        cfg: &BertConfig,
        quantized: Option<&Quantized>,
    ) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        let attention = vb.pp("attention");
        let heads = cfg.num_attention_heads;
        Ok(Self {
            qkv: Dense::load(
                &attention.pp("self"),
                &["query", "key", "value"],
                hidden,
                hidden,
                quantized,
            )?,
            attention_output: Dense::load(
                &attention.pp("output"),
                &["dense"],
                hidden,
                hidden,
                quantized,
            )?,
            attention_norm: LayerNorm::load(
                attention.pp("output").pp("LayerNorm"),
                hidden,
                cfg.layer_norm_eps,
            )?,
            intermediate: Dense::load(
                &vb.pp("intermediate"),
                &["dense"],
                hidden,
                cfg.intermediate_size,
                quantized,
            )?,
            output: Dense::load(
                &vb.pp("output"),
                &["dense"],
                cfg.intermediate_size,
                hidden,
                quantized,
            )?,
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
        Self::load_quantized(vb, cfg, pooling, None)
    }

    /// Loads with the matrices (and word embeddings) that `quantized` holds kept in Q4_0.
    pub fn load_quantized(
        vb: VarBuilder,
        cfg: &BertConfig,
        pooling: Pooling,
        quantized: Option<&Quantized>,
    ) -> candle_core::Result<Self> {
        // Quantized word embeddings are not in the VarBuilder; their names are bare.
        let vb = match quantized {
            Some(q) if q.blocks.contains_key("embeddings.word_embeddings.weight") => vb,
            _ => checkpoint_root(vb),
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg, quantized)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp(format!("layer.{i}")), cfg, quantized))
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
