//! DeBERTa-v2 and -v3 in candle, mirroring `transformers.DebertaV2Model` module for module.
//!
//! DeBERTa's attention adds to the content-to-content scores two disentangled terms read off a
//! table of relative-position embeddings: content-to-position (`c2p`, the query against the key
//! projection of the position embedding of `i - j`) and position-to-content (`p2c`, the key
//! against the query projection of the position embedding of `j - i`), with relative distances
//! put into log-spaced buckets past half the bucket count. candle-transformers has a DeBERTa-v2
//! module, but this one is written against the transformers source so that it packs the same
//! inputs as the other engines ([`Batch`]), pools here and returns only pooled vectors, and
//! builds its masks the way `bert.rs` does (finite minimum, cast last).
//!
//! What is not supported is refused by [`DebertaConfig::check`]: the convolution layer of the
//! xlarge v2 checkpoints (`conv_kernel_size`) and an embedding size unlike the hidden size.
//!
//! This file holds only the model: no I/O, no tokenization, no printing.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::bert::{additive_mask, linear, Activation, LayerNorm};
use super::{Batch, Pooling};

/// The keys of a DeBERTa-v2 `config.json` the encoder reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DebertaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub relative_attention: bool,
    #[serde(default = "minus_one")]
    pub max_relative_positions: i64,
    #[serde(default = "minus_one")]
    pub position_buckets: i64,
    #[serde(default)]
    pub pos_att_type: AttentionTypes,
    #[serde(default)]
    pub share_att_key: bool,
    #[serde(default)]
    pub norm_rel_ebd: Option<String>,
    #[serde(default = "yes")]
    pub position_biased_input: bool,
    #[serde(default)]
    pub embedding_size: Option<usize>,
    #[serde(default)]
    pub conv_kernel_size: usize,
    #[serde(default)]
    pub pooler_hidden_size: Option<usize>,
    #[serde(default = "default_act")]
    pub pooler_hidden_act: Activation,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_max_positions() -> usize {
    512
}
fn default_eps() -> f64 {
    1e-7
}
fn minus_one() -> i64 {
    -1
}
fn yes() -> bool {
    true
}

/// `pos_att_type`: a list (`["p2c", "c2p"]`) or, in older configs, one string (`"p2c|c2p"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "RawAttentionTypes")]
pub struct AttentionTypes {
    pub c2p: bool,
    pub p2c: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAttentionTypes {
    List(Vec<String>),
    Joined(String),
    None(()),
}

impl From<RawAttentionTypes> for AttentionTypes {
    fn from(raw: RawAttentionTypes) -> Self {
        let names: Vec<String> = match raw {
            RawAttentionTypes::List(list) => list,
            RawAttentionTypes::Joined(text) => text.split('|').map(str::to_string).collect(),
            RawAttentionTypes::None(()) => Vec::new(),
        };
        let has = |name: &str| names.iter().any(|n| n.trim().eq_ignore_ascii_case(name));
        AttentionTypes {
            c2p: has("c2p"),
            p2c: has("p2c"),
        }
    }
}

impl DebertaConfig {
    /// What this implementation cannot run, said before any tensor is read.
    pub fn check(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.conv_kernel_size > 0 {
            return Err(
                "DeBERTa-v2 with a convolution layer (conv_kernel_size > 0) is not supported"
                    .into(),
            );
        }
        if self.embedding_size.is_some_and(|e| e != self.hidden_size) {
            return Err(
                "DeBERTa-v2 with embedding_size unlike hidden_size is not supported".into(),
            );
        }
        Ok(())
    }

    /// `max_relative_positions`, defaulting to `max_position_embeddings` as transformers does.
    fn max_relative(&self) -> i64 {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings as i64
        } else {
            self.max_relative_positions
        }
    }

    /// Half the number of rows of the relative-position table that attention reads.
    fn attention_span(&self) -> i64 {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative()
        }
    }

    fn normalises_relative_embeddings(&self) -> bool {
        self.norm_rel_ebd.as_deref().is_some_and(|n| {
            n.split('|')
                .any(|p| p.trim().eq_ignore_ascii_case("layer_norm"))
        })
    }

    /// The width of the context pooler's dense layer.
    pub fn pooler_size(&self) -> usize {
        self.pooler_hidden_size.unwrap_or(self.hidden_size)
    }
}

/// transformers' `make_log_bucket_position`: distances inside half the bucket count stay as
/// they are, longer ones shrink logarithmically toward `max_position`. Computed in f32 with the
/// same operations, in the same order, as the PyTorch code.
pub fn log_bucket(relative: i64, buckets: i64, max_position: i64) -> i64 {
    let middle = buckets / 2;
    let absolute = if relative < middle && relative > -middle {
        middle - 1
    } else {
        relative.abs()
    };
    if absolute <= middle {
        return relative;
    }
    let denominator = (((max_position - 1) as f64 / middle as f64) as f32).ln();
    let log_position = ((absolute as f32 / middle as f32).ln() / denominator * (middle - 1) as f32)
        .ceil()
        + middle as f32;
    log_position as i64 * relative.signum()
}

/// transformers' `build_relative_position`: `query - key` for each pair, bucketed when the
/// model uses buckets; row-major (queries, keys).
pub fn relative_positions(length: usize, buckets: i64, max_position: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(length * length);
    for query in 0..length as i64 {
        for key in 0..length as i64 {
            let relative = query - key;
            out.push(if buckets > 0 && max_position > 0 {
                log_bucket(relative, buckets, max_position)
            } else {
                relative
            });
        }
    }
    out
}

/// `embeddings.*`: word (+ absolute position when `position_biased_input`) (+ token type when
/// the model has types), LayerNorm, then zero on padding.
struct Embeddings {
    word: Embedding,
    position: Option<Embedding>,
    token_type: Option<Embedding>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &DebertaConfig) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        Ok(Self {
            word: candle_nn::embedding(cfg.vocab_size, hidden, vb.pp("word_embeddings"))?,
            position: if cfg.position_biased_input {
                Some(candle_nn::embedding(
                    cfg.max_position_embeddings,
                    hidden,
                    vb.pp("position_embeddings"),
                )?)
            } else {
                None
            },
            token_type: if cfg.type_vocab_size > 0 {
                Some(candle_nn::embedding(
                    cfg.type_vocab_size,
                    hidden,
                    vb.pp("token_type_embeddings"),
                )?)
            } else {
                None
            },
            norm: LayerNorm::load(vb.pp("LayerNorm"), hidden, cfg.layer_norm_eps)?,
        })
    }

    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mut summed = self.word.forward(ids)?;
        if let Some(position) = &self.position {
            summed = (summed + position.forward(positions)?)?;
        }
        if let Some(token_type) = &self.token_type {
            summed = (summed + token_type.forward(type_ids)?)?;
        }
        let normed = self.norm.forward(&summed)?;
        normed.broadcast_mul(&mask.to_dtype(normed.dtype())?.unsqueeze(2)?)
    }
}

/// `attention.self`: DisentangledSelfAttention.
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// Own projections of the position embeddings when the model does not share them.
    position_key: Option<Linear>,
    position_query: Option<Linear>,
    heads: usize,
    head_size: usize,
    types: AttentionTypes,
    relative: bool,
    span: i64,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &DebertaConfig) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        let types = cfg.pos_att_type.clone();
        let own = !cfg.share_att_key && cfg.relative_attention;
        Ok(Self {
            query: linear(vb.pp("query_proj"), hidden, hidden)?,
            key: linear(vb.pp("key_proj"), hidden, hidden)?,
            value: linear(vb.pp("value_proj"), hidden, hidden)?,
            position_key: if own && types.c2p {
                Some(linear(vb.pp("pos_key_proj"), hidden, hidden)?)
            } else {
                None
            },
            position_query: if own && types.p2c {
                Some(linear(vb.pp("pos_query_proj"), hidden, hidden)?)
            } else {
                None
            },
            heads: cfg.num_attention_heads,
            head_size: hidden / cfg.num_attention_heads,
            types,
            relative: cfg.relative_attention,
            span: cfg.attention_span(),
        })
    }

    /// (batch, length, hidden) -> (batch * heads, length, head size).
    fn split_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, length, _) = xs.dims3()?;
        xs.reshape((batch, length, self.heads, self.head_size))?
            .transpose(1, 2)?
            .reshape((batch * self.heads, length, self.head_size))?
            .contiguous()
    }

    /// `xs` (batch, length, hidden); `mask` additive (batch, 1, 1, length); `relative` the
    /// bucketed relative positions (length, length); `table` the normalised position table.
    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        relative: &[i64],
        table: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (batch, length, hidden) = xs.dims3()?;
        let query = self.split_heads(&self.query.forward(xs)?)?;
        let key = self.split_heads(&self.key.forward(xs)?)?;
        let value = self.split_heads(&self.value.forward(xs)?)?;
        let factor = 1 + usize::from(self.types.c2p) + usize::from(self.types.p2c);
        let scale = ((self.head_size * factor) as f64).sqrt();
        let mut scores = (query.matmul(&key.t()?)? / scale)?;
        if let (true, Some(table)) = (self.relative, table) {
            scores = (scores + self.position_bias(&query, &key, relative, table, scale)?)?;
        }
        let scores = scores
            .reshape((batch, self.heads, length, length))?
            .broadcast_add(mask)?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        probabilities
            .reshape((batch * self.heads, length, length))?
            .matmul(&value)?
            .reshape((batch, self.heads, length, self.head_size))?
            .transpose(1, 2)?
            .reshape((batch, length, hidden))
    }

    /// The c2p and p2c terms, (batch * heads, length, length), already divided by `scale`.
    fn position_bias(
        &self,
        query: &Tensor,
        key: &Tensor,
        relative: &[i64],
        table: &Tensor,
        scale: f64,
    ) -> candle_core::Result<Tensor> {
        let (rows, length, _) = query.dims3()?;
        let span = self.span;
        let table = table.i(..(2 * span) as usize)?.unsqueeze(0)?;
        // The position table through a projection, split into heads and repeated per sequence.
        let project = |layer: &Linear| -> candle_core::Result<Tensor> {
            let projected = self.split_heads(&layer.forward(&table)?)?;
            let (_, positions, size) = projected.dims3()?;
            projected
                .unsqueeze(0)?
                .broadcast_as((rows / self.heads, self.heads, positions, size))?
                .reshape((rows, positions, size))
        };
        let device = query.device();
        let index = |offsets: Vec<u32>| -> candle_core::Result<Tensor> {
            Tensor::from_vec(offsets, (1, length, length), device)?
                .broadcast_as((rows, length, length))?
                .contiguous()
        };
        let clamp = |p: i64| (p + span).clamp(0, 2 * span - 1) as u32;
        let mut bias = Tensor::zeros((rows, length, length), query.dtype(), device)?;
        if self.types.c2p {
            let keys = project(self.position_key.as_ref().unwrap_or(&self.key))?;
            let c2p = query.matmul(&keys.t()?)?;
            let at = index(relative.iter().map(|&p| clamp(p)).collect())?;
            bias = (bias + (c2p.gather(&at, 2)? / scale)?)?;
        }
        if self.types.p2c {
            let queries = project(self.position_query.as_ref().unwrap_or(&self.query))?;
            let p2c = key.matmul(&queries.t()?)?;
            let at = index(relative.iter().map(|&p| clamp(-p)).collect())?;
            bias = (bias + (p2c.gather(&at, 2)?.transpose(1, 2)? / scale)?)?;
        }
        Ok(bias)
    }
}

/// One `encoder.layer.N`.
struct Layer {
    attention: Attention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    activation: Activation,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &DebertaConfig) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            attention: Attention::load(vb.pp("attention").pp("self"), cfg)?,
            attention_output: linear(vb.pp("attention").pp("output").pp("dense"), hidden, hidden)?,
            attention_norm: LayerNorm::load(
                vb.pp("attention").pp("output").pp("LayerNorm"),
                hidden,
                eps,
            )?,
            intermediate: linear(
                vb.pp("intermediate").pp("dense"),
                hidden,
                cfg.intermediate_size,
            )?,
            output: linear(vb.pp("output").pp("dense"), cfg.intermediate_size, hidden)?,
            output_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), hidden, eps)?,
            activation: cfg.hidden_act,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        mask: &Tensor,
        relative: &[i64],
        table: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let attended = self.attention.forward(xs, mask, relative, table)?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_output.forward(&attended)? + xs)?)?;
        let inner = self
            .activation
            .forward_tensor(&self.intermediate.forward(&attended)?)?;
        self.output_norm
            .forward(&(self.output.forward(&inner)? + &attended)?)
    }
}

/// A DeBERTa-v2 encoder with pooling: token ids in, one pooled vector per sequence out.
pub struct Deberta {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// `encoder.rel_embeddings` and, when the model normalises it, `encoder.LayerNorm`.
    relative_table: Option<Tensor>,
    relative_norm: Option<LayerNorm>,
    buckets: i64,
    max_relative: i64,
    pooling: Pooling,
    dtype: DType,
    device: Device,
    hidden: usize,
    max_positions: usize,
}

impl Deberta {
    pub fn load(
        vb: VarBuilder,
        cfg: &DebertaConfig,
        pooling: Pooling,
    ) -> candle_core::Result<Self> {
        if let Err(message) = cfg.check() {
            candle_core::bail!("{message}");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("deberta")
        };
        let encoder = vb.pp("encoder");
        let (relative_table, relative_norm) = if cfg.relative_attention {
            let rows = (2 * cfg.attention_span()) as usize;
            let table = encoder
                .pp("rel_embeddings")
                .get((rows, cfg.hidden_size), "weight")?;
            let norm = if cfg.normalises_relative_embeddings() {
                Some(LayerNorm::load(
                    encoder.pp("LayerNorm"),
                    cfg.hidden_size,
                    cfg.layer_norm_eps,
                )?)
            } else {
                None
            };
            (Some(table), norm)
        } else {
            (None, None)
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(encoder.pp(format!("layer.{i}")), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), cfg)?,
            layers,
            relative_table,
            relative_norm,
            buckets: cfg.position_buckets,
            max_relative: cfg.max_relative(),
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
    /// Positions are each token's place in its sequence, as DeBERTa counts them.
    pub fn forward_batch(&self, batch: &Batch) -> candle_core::Result<Vec<Vec<f32>>> {
        let padded = batch.padded();
        let (rows, length) = (padded.rows, padded.length);
        let tensor = |values: Vec<u32>| Tensor::from_vec(values, (rows, length), &self.device);
        let ids = tensor(padded.ids)?;
        let type_ids = tensor(padded.type_ids)?;
        let positions = tensor(padded.positions)?;
        let mask = tensor(padded.mask)?;
        let additive = additive_mask(&mask, self.dtype)?;
        let mut hidden = self
            .embeddings
            .forward(&ids, &type_ids, &positions, &mask)?;
        let relative = relative_positions(length, self.buckets, self.max_relative);
        let table = match (&self.relative_table, &self.relative_norm) {
            (Some(table), Some(norm)) => Some(norm.forward(table)?),
            (Some(table), None) => Some(table.clone()),
            _ => None,
        };
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &additive, &relative, table.as_ref())?;
        }
        let hidden = hidden.to_dtype(DType::F32)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
            Pooling::Mean => {
                let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                hidden
                    .broadcast_mul(&weights)?
                    .sum(1)?
                    .broadcast_div(&weights.sum(1)?)?
            }
        };
        pooled.to_vec2::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_short_distances_and_compress_long_ones() {
        // deberta-v3-base: 256 buckets over 512 positions.
        for d in -127..=127 {
            assert_eq!(log_bucket(d, 256, 512), d);
        }
        assert_eq!(log_bucket(128, 256, 512), 128);
        assert!(log_bucket(300, 256, 512) > 128 && log_bucket(300, 256, 512) < 256);
        assert_eq!(log_bucket(-300, 256, 512), -log_bucket(300, 256, 512));
        assert!((128..=256).contains(&log_bucket(511, 256, 512)));
    }

    #[test]
    fn attention_types_read_both_spellings() {
        let list: AttentionTypes = serde_json::from_str(r#"["p2c", "c2p"]"#).unwrap();
        let joined: AttentionTypes = serde_json::from_str(r#""c2p|p2c""#).unwrap();
        let one: AttentionTypes = serde_json::from_str(r#"["c2p"]"#).unwrap();
        assert_eq!(
            list,
            AttentionTypes {
                c2p: true,
                p2c: true
            }
        );
        assert_eq!(joined, list);
        assert_eq!(
            one,
            AttentionTypes {
                c2p: true,
                p2c: false
            }
        );
    }
}
