//! Models: what an encoder is to the rest of stancer, and how one is found, fetched and loaded.
//!
//! The seam between the pipeline and a model is the [`Encoder`] trait: token ids in, one pooled
//! vector per sequence out. Tokenization, windowing and batching live outside it and never see a
//! tensor; each engine owns its tensors completely.

pub mod adapter;
pub mod bert;
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
}

impl Matmul {
    pub fn name(self) -> &'static str {
        match self {
            Matmul::F32 => "f32",
            Matmul::Int8 => "int8",
            Matmul::Bf16 => "bf16",
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
        let hidden = pooled.len();
        self.weight
            .chunks_exact(hidden)
            .zip(&self.bias)
            .map(|(row, bias)| {
                // f64 sums: the same bits whatever else is in the batch.
                let dot: f64 = row
                    .iter()
                    .zip(pooled)
                    .map(|(w, x)| f64::from(*w) * f64::from(*x))
                    .sum();
                (dot + f64::from(*bias)) as f32
            })
            .collect()
    }
}

/// A BERT as a [`Model`]: the packed CPU forward where it applies, candle's tensors elsewhere;
/// with a classifier over the pooled vector when the weights carry one (a cross-encoder).
pub struct BertEncoder {
    forward: Forward,
    matmul: Matmul,
    classifier: Option<Classifier>,
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
        let packed_fits = device.is_cpu() && dtype == DType::F32;
        if matmul != Matmul::F32 && (!packed_fits || engine == Engine::Candle) {
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
        let config = read_bert_config(&files.config)?;
        let load_error = |source| Error::LoadWeights {
            path: files.weights.clone(),
            source,
        };
        let (vb, classifier) = match adapter {
            None => {
                // The file is validated (header, sizes) before any tensor is read, so a
                // truncated or foreign file is an error here, not a crash later.
                // SAFETY: the mapped file is the model's weights, which stancer never writes
                // while it runs; a file changed underneath by another process is the one case
                // memory mapping cannot guard against (as for every mmap-based loader).
                let vb = unsafe {
                    candle_nn::VarBuilder::from_mmaped_safetensors(&[&files.weights], dtype, device)
                }
                .map_err(load_error)?;
                (vb, None)
            }
            Some(adapter) => {
                let merged = adapter.merge_into(&files.weights, &config)?;
                let classifier = adapter.classifier(config.hidden_size)?;
                (
                    candle_nn::VarBuilder::from_tensors(merged, dtype, device),
                    Some(classifier),
                )
            }
        };
        let forward = if packed {
            Forward::Packed(
                packed::PackedBert::load(vb, &config, pooling, matmul).map_err(load_error)?,
            )
        } else {
            Forward::Candle(bert::Bert::load(vb, &config, pooling).map_err(load_error)?)
        };
        Ok(Self {
            forward,
            matmul,
            classifier,
        })
    }

    fn pooled(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match &self.forward {
            Forward::Packed(model) => model.forward_pooled(batch).map_err(Error::encoder),
            Forward::Candle(model) => model.forward_batch(batch).map_err(Error::encoder),
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

/// The architectures stancer can run, as config.json's `model_type` names them.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["bert"];

/// Reads a BERT config.json, refusing any other architecture by name: a RoBERTa or XLM-R
/// checkpoint would load as BERT and silently give wrong vectors (its positions start after
/// the padding index), so `model_type` and `architectures` are checked, never guessed.
pub fn read_bert_config(path: &Path) -> Result<bert::BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let fail = |message: String| Error::ModelConfig {
        path: path.to_path_buf(),
        message,
    };
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("not a valid BERT config.json (not JSON: {e})")))?;
    let model_type = raw.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = raw
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let unsupported = match model_type {
        Some(name) if !SUPPORTED_MODEL_TYPES.contains(&name) => Some(name.to_string()),
        Some(_) => None,
        // Old checkpoints may lack model_type; then the architecture names decide.
        None => architectures
            .iter()
            .find(|a| !a.starts_with("Bert"))
            .map(|a| a.to_string()),
    };
    if let Some(name) = unsupported {
        return Err(fail(format!(
            "model type '{name}' is not supported (supported: {}); stancer will not run it as \
             BERT, which would give wrong results",
            SUPPORTED_MODEL_TYPES.join(", ")
        )));
    }
    let config: bert::BertConfig = serde_json::from_value(raw)
        .map_err(|e| fail(format!("not a valid BERT config.json ({e})")))?;
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(fail(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            config.hidden_size, config.num_attention_heads
        )));
    }
    Ok(config)
}

impl Model for BertEncoder {
    fn offers(&self) -> Offers {
        Offers {
            embed: true,
            predict: self.classifier.is_some(),
        }
    }

    fn embed(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        self.pooled(batch)
    }

    fn predict(&self, batch: &Batch) -> Result<Vec<Vec<f32>>> {
        let Some(classifier) = &self.classifier else {
            return Err(Error::Usage {
                message: "this model gives vectors only; it has no classification head".into(),
            });
        };
        Ok(self
            .pooled(batch)?
            .iter()
            .map(|pooled| classifier.logits(pooled))
            .collect())
    }

    fn labels(&self) -> &[String] {
        self.classifier.as_ref().map_or(&[], |c| &c.labels)
    }

    fn dimension(&self) -> usize {
        match &self.forward {
            Forward::Candle(model) => model.hidden_size(),
            Forward::Packed(model) => model.hidden_size(),
        }
    }

    fn max_positions(&self) -> usize {
        match &self.forward {
            Forward::Candle(model) => model.max_positions(),
            Forward::Packed(model) => model.max_positions(),
        }
    }

    fn device_label(&self) -> String {
        let (device, dtype) = match &self.forward {
            Forward::Candle(model) => (model.device(), model.dtype()),
            Forward::Packed(_) => (&Device::Cpu, DType::F32),
        };
        let engine = match (&self.forward, self.matmul) {
            (Forward::Candle(_), _) => String::new(),
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
        matches!(self.forward, Forward::Candle(_))
    }
}
