//! The model being trained: a BERT cross-encoder, the base weights frozen, low-rank (LoRA)
//! updates on the chosen linear layers and a linear head over the mean-pooled tokens trainable
//! (or, for full fine-tuning, the encoder's weight matrices themselves).
//! The same module tree and tensor names as the checkpoint, so what it learns merges straight
//! into the base model's matrices (see `model::adapter`).
//!
//! The trained tensors are candle `Var`s (the optimizer, checkpoints and adapters read and write
//! them); the training step itself is hand-written (`finetune::engine`). The same forward in
//! candle's autograd, `TrainModel::forward_autograd`, is kept as the reference the step's
//! forward and gradients are tested against.
//!
//! This file holds only the model: no I/O, no tokenization, no printing.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::encode::model::adapter::LoraSettings;
use crate::encode::model::bert::{Activation, BertConfig};
use crate::encode::model::Batch;
use crate::eval::bootstrap::SplitMix64;

use super::ops;

/// The linear layers of each `encoder.layer.N` that LoRA can adapt, by checkpoint name.
pub const LORA_TARGETS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// What besides the LoRA matrices and the head is trained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unfreeze {
    /// Every LayerNorm's weight and bias.
    pub norms: bool,
    /// Every linear layer's bias.
    pub biases: bool,
    /// Every encoder linear layer's weight matrix (full fine-tuning; LoRA is then redundant).
    pub weights: bool,
}

/// A tensor that is either frozen (a constant) or trained (a `Var`, at `index` in the model's
/// list of trained tensors).
pub(super) enum Param {
    Frozen(Tensor),
    Trained { var: Var, index: usize },
}

impl Param {
    fn new(
        tensor: Tensor,
        trained: bool,
        name: String,
        vars: &mut Vec<(String, Var)>,
    ) -> candle_core::Result<Self> {
        if trained {
            let var = Var::from_tensor(&tensor)?;
            vars.push((name, var.clone()));
            Ok(Param::Trained {
                var,
                index: vars.len() - 1,
            })
        } else {
            Ok(Param::Frozen(tensor))
        }
    }

    fn tensor(&self) -> &Tensor {
        match self {
            Param::Frozen(t) => t,
            Param::Trained { var, .. } => var.as_tensor(),
        }
    }

    /// The index of a trained tensor in the model's list, or None for a frozen one.
    pub(super) fn index(&self) -> Option<usize> {
        match self {
            Param::Frozen(_) => None,
            Param::Trained { index, .. } => Some(*index),
        }
    }
}

pub(super) struct LayerNorm {
    pub(super) weight: Param,
    pub(super) bias: Param,
    eps: f64,
    /// The base weight and bias and eps, as the hand-written step and the fused operation
    /// read them (the operation only when weight and bias are both frozen).
    pub(super) base: Arc<ops::FrozenLayerNorm>,
}

impl LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if self.weight.index().is_none() && self.bias.index().is_none() {
            return self.base.forward(xs);
        }
        // Written out in differentiable operations (candle's fused layer_norm has no backward).
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(self.weight.tensor())?
            .broadcast_add(self.bias.tensor())
    }
}

/// A linear layer `x · W^T + b` with an optional low-rank update `scale · x · A^T · B^T`.
pub(super) struct Linear {
    /// W, (outputs, inputs).
    pub(super) weight: Param,
    pub(super) bias: Param,
    pub(super) lora: Option<Lora>,
    pub(super) scale: f64,
    /// W packed for both products, and the base bias (used as the fused operation only when
    /// the weight and the bias are frozen; a trained W is packed afresh for each step).
    pub(super) base: Arc<ops::FrozenLinear>,
}

/// A low-rank update's A (rank x inputs) and B (outputs x rank), with their indices in the
/// model's list of trained tensors.
pub(super) struct Lora {
    pub(super) a: Var,
    pub(super) b: Var,
    pub(super) a_index: usize,
    pub(super) b_index: usize,
}

impl Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let out = match (self.weight.index(), self.bias.index()) {
            (None, None) => self.base.forward(xs)?,
            _ => xs
                .matmul(&self.weight.tensor().t()?.contiguous()?)?
                .broadcast_add(self.bias.tensor())?,
        };
        match &self.lora {
            None => Ok(out),
            Some(Lora { a, b, .. }) => {
                let update = xs
                    .matmul(&a.as_tensor().t()?)?
                    .matmul(&b.as_tensor().t()?)?;
                out + (update * self.scale)?
            }
        }
    }
}

pub(super) struct Layer {
    pub(super) query: Linear,
    pub(super) key: Linear,
    pub(super) value: Linear,
    pub(super) attention_output: Linear,
    pub(super) attention_norm: LayerNorm,
    pub(super) intermediate: Linear,
    pub(super) output: Linear,
    pub(super) output_norm: LayerNorm,
}

/// The BERT cross-encoder being trained.
pub struct TrainModel {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    pub(super) embedding_norm: LayerNorm,
    pub(super) layers: Vec<Layer>,
    pub(super) head_weight: Var,
    pub(super) head_bias: Var,
    pub(super) heads: usize,
    pub(super) head_size: usize,
    pub(super) activation: Activation,
    /// The embedding tables as the hand-written step reads them: (vocabulary, hidden),
    /// (positions, hidden), (types, hidden), row-major.
    pub(super) tables: [Vec<f32>; 3],
    /// Every trained tensor with its name in the adapter file, in a fixed order.
    vars: Vec<(String, Var)>,
    device: Device,
}

/// A uniform draw in `[-bound, bound)`, from the run's seeded generator.
fn uniform(random: &mut SplitMix64, count: usize, bound: f64) -> Vec<f32> {
    (0..count)
        .map(|_| {
            let unit = (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            ((unit * 2.0 - 1.0) * bound) as f32
        })
        .collect()
}

impl TrainModel {
    /// Builds the model from the base checkpoint's tensors (names as in the file, with or
    /// without a `bert.` prefix). LoRA's A starts uniform in ±1/sqrt(inputs) and B at zero, so
    /// training starts from the base model exactly; the head starts uniform in ±1/sqrt(hidden).
    pub fn new(
        base: &HashMap<String, Tensor>,
        config: &BertConfig,
        lora: &LoraSettings,
        unfreeze: Unfreeze,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let root = if base.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let get = |name: &str| -> candle_core::Result<Tensor> {
            base.get(&format!("{root}{name}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find tensor {root}{name}")))?
                .to_dtype(DType::F32)?
                .to_device(device)
        };
        let mut random = SplitMix64::new(seed);
        let mut vars: Vec<(String, Var)> = Vec::new();
        let scale = lora.scale();

        let norm = |name: &str, vars: &mut Vec<(String, Var)>| -> candle_core::Result<LayerNorm> {
            let base = ops::FrozenLayerNorm::new(
                &get(&format!("{name}.weight"))?,
                &get(&format!("{name}.bias"))?,
                config.layer_norm_eps,
            )?;
            Ok(LayerNorm {
                base,
                weight: Param::new(
                    get(&format!("{name}.weight"))?,
                    unfreeze.norms,
                    format!("{name}.weight"),
                    vars,
                )?,
                bias: Param::new(
                    get(&format!("{name}.bias"))?,
                    unfreeze.norms,
                    format!("{name}.bias"),
                    vars,
                )?,
                eps: config.layer_norm_eps,
            })
        };
        let mut linear = |name: &str,
                          module: &str,
                          vars: &mut Vec<(String, Var)>|
         -> candle_core::Result<Linear> {
            let weight = get(&format!("{name}.weight"))?;
            let (outputs, inputs) = weight.dims2()?;
            let adapted = lora.targets.iter().any(|t| t == module);
            let lora_pair = if adapted {
                let bound = 1.0 / (inputs as f64).sqrt();
                let a = Tensor::from_vec(
                    uniform(&mut random, lora.rank * inputs, bound),
                    (lora.rank, inputs),
                    device,
                )?;
                let b = Tensor::zeros((outputs, lora.rank), DType::F32, device)?;
                let (a, b) = (Var::from_tensor(&a)?, Var::from_tensor(&b)?);
                vars.push((format!("{name}.lora_a"), a.clone()));
                vars.push((format!("{name}.lora_b"), b.clone()));
                Some(Lora {
                    a,
                    b,
                    a_index: vars.len() - 2,
                    b_index: vars.len() - 1,
                })
            } else {
                None
            };
            let base = ops::FrozenLinear::new(&weight, &get(&format!("{name}.bias"))?)?;
            Ok(Linear {
                base,
                weight: Param::new(weight, unfreeze.weights, format!("{name}.weight"), vars)?,
                bias: Param::new(
                    get(&format!("{name}.bias"))?,
                    unfreeze.biases,
                    format!("{name}.bias"),
                    vars,
                )?,
                lora: lora_pair,
                scale,
            })
        };

        let embedding_norm = norm("embeddings.LayerNorm", &mut vars)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let prefix = format!("encoder.layer.{i}");
            let name = |module: &str| format!("{prefix}.{module}");
            layers.push(Layer {
                query: linear(&name(LORA_TARGETS[0]), LORA_TARGETS[0], &mut vars)?,
                key: linear(&name(LORA_TARGETS[1]), LORA_TARGETS[1], &mut vars)?,
                value: linear(&name(LORA_TARGETS[2]), LORA_TARGETS[2], &mut vars)?,
                attention_output: linear(&name(LORA_TARGETS[3]), LORA_TARGETS[3], &mut vars)?,
                attention_norm: norm(&name("attention.output.LayerNorm"), &mut vars)?,
                intermediate: linear(&name(LORA_TARGETS[4]), LORA_TARGETS[4], &mut vars)?,
                output: linear(&name(LORA_TARGETS[5]), LORA_TARGETS[5], &mut vars)?,
                output_norm: norm(&name("output.LayerNorm"), &mut vars)?,
            });
        }
        let hidden = config.hidden_size;
        let bound = 1.0 / (hidden as f64).sqrt();
        let head_weight = Var::from_tensor(&Tensor::from_vec(
            uniform(&mut random, classes * hidden, bound),
            (classes, hidden),
            device,
        )?)?;
        let head_bias = Var::from_tensor(&Tensor::zeros(classes, DType::F32, device)?)?;
        vars.push(("classifier.weight".into(), head_weight.clone()));
        vars.push(("classifier.bias".into(), head_bias.clone()));
        let (word, position, token_type) = (
            get("embeddings.word_embeddings.weight")?,
            get("embeddings.position_embeddings.weight")?,
            get("embeddings.token_type_embeddings.weight")?,
        );
        let table = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        Ok(Self {
            tables: [table(&word)?, table(&position)?, table(&token_type)?],
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            head_weight,
            head_bias,
            heads: config.num_attention_heads,
            head_size: hidden / config.num_attention_heads,
            activation: config.hidden_act,
            vars,
            device: device.clone(),
        })
    }

    /// The trained tensors with their adapter names, in a fixed order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// A copy of the trained tensors' current values, by adapter name. A copy, not a view:
    /// `Var::set` writes in place, so a view kept as "the best weights" would follow training.
    /// Detached: a copy of a `Var` is tracked for backprop, and everything computed from it
    /// (the running mean of `--average-from`, one step after another) would keep every earlier
    /// value alive through its graph.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(name, var)| {
                let copy = var
                    .as_tensor()
                    .copy()
                    .expect("this is a bug: a tensor copies")
                    .detach();
                (name.clone(), copy)
            })
            .collect()
    }

    /// Sets the trained tensors from an adapter's (the unmerged forward of a trained adapter).
    pub fn set_tensors(&self, tensors: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (name, var) in &self.vars {
            let value = tensors
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("the adapter has no {name}")))?;
            var.set(&value.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Sets the trained tensors that `tensors` holds and leaves the others as they are (a
    /// LoRA adapter's head and norms on a model built from that adapter merged into its base).
    pub fn set_tensors_present(
        &self,
        tensors: &HashMap<String, Tensor>,
    ) -> candle_core::Result<()> {
        for (name, var) in &self.vars {
            if let Some(value) = tensors.get(name) {
                var.set(&value.to_dtype(DType::F32)?.to_device(&self.device)?)?;
            }
        }
        Ok(())
    }

    /// Logits (rows, classes) for a packed batch through candle's autograd, padded to its
    /// longest sequence: the reference that the hand-written step (`forward`, `step` in
    /// `finetune::engine`) is tested against.
    pub fn forward_autograd(&self, batch: &Batch) -> candle_core::Result<Tensor> {
        let padded = batch.padded();
        let (rows, length) = (padded.rows, padded.length);
        let mask: Vec<f32> = padded.mask.iter().map(|&m| m as f32).collect();
        let (ids, type_ids, positions) = (padded.ids, padded.type_ids, padded.positions);
        let device = &self.device;
        let flat = |values: Vec<u32>| Tensor::from_vec(values, rows * length, device);
        let hidden = self.word.dim(1)?;
        let embedded = ((self.word.index_select(&flat(ids)?, 0)?
            + self.position.index_select(&flat(positions)?, 0)?)?
            + self.token_type.index_select(&flat(type_ids)?, 0)?)?;
        let mut states = self.embedding_norm.forward(&embedded)?;
        let mask = Tensor::from_vec(mask, (rows, length), device)?;
        // 0 for real tokens, a large negative number for padding, as (rows, 1, 1, length).
        let additive = ((1.0 - &mask)? * f64::from(f32::MIN))?.reshape((rows, 1, 1, length))?;
        for layer in &self.layers {
            states = self.layer(layer, &states, &additive, rows, length)?;
        }
        let states = states.reshape((rows, length, hidden))?;
        let weights = mask.unsqueeze(2)?;
        let pooled = states
            .broadcast_mul(&weights)?
            .sum(1)?
            .broadcast_div(&weights.sum(1)?)?;
        pooled
            .matmul(&self.head_weight.as_tensor().t()?)?
            .broadcast_add(self.head_bias.as_tensor())
    }

    /// One encoder layer on `xs` (rows x length, hidden).
    fn layer(
        &self,
        layer: &Layer,
        xs: &Tensor,
        additive: &Tensor,
        rows: usize,
        length: usize,
    ) -> candle_core::Result<Tensor> {
        let hidden = self.heads * self.head_size;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((rows, length, self.heads, self.head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = 1.0 / (self.head_size as f64).sqrt();
        let query = split((layer.query.forward(xs)? * scale)?)?;
        let key = split(layer.key.forward(xs)?)?;
        let value = split(layer.value.forward(xs)?)?;
        let scores = query
            .matmul(&key.t()?.contiguous()?)?
            .broadcast_add(additive)?;
        let probabilities = ops::softmax_last_dim(&scores)?;
        let context = probabilities
            .matmul(&value)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows * length, hidden))?;
        let attended = layer
            .attention_norm
            .forward(&(layer.attention_output.forward(&context)? + xs)?)?;
        let inner = layer.intermediate.forward(&attended)?;
        let inner = match self.activation {
            Activation::Gelu => ops::gelu_erf(&inner)?,
            Activation::GeluApproximate => inner.gelu()?,
            Activation::Relu => inner.relu()?,
        };
        layer
            .output_norm
            .forward(&(layer.output.forward(&inner)? + attended)?)
    }
}
