//! Models: what an encoder is to the rest of stancer, and how one is found, fetched and loaded.
//!
//! The seam between the pipeline and a model is the [`Encoder`] trait: token ids in, one pooled
//! vector per sequence out. Tokenization, windowing and batching live outside it and never see a
//! tensor; each engine owns its tensors completely.

pub mod bert;
pub mod fetch;
pub mod manifest;
pub mod packed;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
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

/// The contract between the pipeline and a model.
pub trait Encoder: Send + Sync {
    /// Pooled, not yet normalised vectors, one per sequence, in the order given. Each sequence is
    /// complete: special tokens included, no longer than [`Encoder::max_positions`].
    fn embed(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>>;
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

enum Model {
    Candle(bert::Bert),
    Packed(packed::PackedBert),
}

/// A BERT as an [`Encoder`]: the packed CPU forward where it applies, candle's tensors elsewhere.
pub struct BertEncoder {
    model: Model,
    matmul: Matmul,
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
        let packed_fits = device.is_cpu() && dtype == DType::F32;
        if matmul != Matmul::F32 && (!packed_fits || engine == Engine::Candle) {
            return Err(Error::Usage {
                message: format!(
                    "this model runs its matrix products in {} on the packed CPU encoder and cannot \
                     run as {} {}{}; leave out --device/--dtype/--engine, or use the f32 model it \
                     is a variant of",
                    matmul.name(),
                    device_name(device),
                    crate::device::dtype_name(dtype),
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
                        crate::device::dtype_name(dtype)
                    ),
                })
            }
        };
        let config = read_bert_config(&files.config)?;
        // The file is validated (header, sizes) before any tensor is read, so a truncated or
        // foreign file is an error here, not a crash later.
        let vb = unsafe {
            candle_nn::VarBuilder::from_mmaped_safetensors(&[&files.weights], dtype, device)
        }
        .map_err(|source| Error::LoadWeights {
            path: files.weights.clone(),
            source,
        })?;
        let load_error = |source| Error::LoadWeights {
            path: files.weights.clone(),
            source,
        };
        let model = if packed {
            Model::Packed(
                packed::PackedBert::load(vb, &config, pooling, matmul).map_err(load_error)?,
            )
        } else {
            Model::Candle(bert::Bert::load(vb, &config, pooling).map_err(load_error)?)
        };
        Ok(Self { model, matmul })
    }
}

fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

pub fn read_bert_config(path: &Path) -> Result<bert::BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let config: bert::BertConfig = serde_json::from_str(&text).map_err(|e| Error::ModelConfig {
        path: path.to_path_buf(),
        message: format!("not a valid BERT config.json ({e})"),
    })?;
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(Error::ModelConfig {
            path: path.to_path_buf(),
            message: format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ),
        });
    }
    Ok(config)
}

impl Encoder for BertEncoder {
    fn embed(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if sequences.is_empty() {
            return Ok(Vec::new());
        }
        let model = match &self.model {
            Model::Packed(model) => return model.forward_pooled(sequences).map_err(Error::encoder),
            Model::Candle(model) => model,
        };
        let rows = sequences.len();
        let length = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; rows * length];
        let mut mask = vec![0u32; rows * length];
        for (row, sequence) in sequences.iter().enumerate() {
            let start = row * length;
            ids[start..start + sequence.len()].copy_from_slice(sequence);
            mask[start..start + sequence.len()].fill(1);
        }
        let device = model.device();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (rows, length), device)?;
            let mask = Tensor::from_vec(mask, (rows, length), device)?;
            model.forward_pooled(&ids, &mask)?.to_vec2::<f32>()
        };
        run().map_err(Error::encoder)
    }

    fn dimension(&self) -> usize {
        match &self.model {
            Model::Candle(model) => model.hidden_size(),
            Model::Packed(model) => model.hidden_size(),
        }
    }

    fn max_positions(&self) -> usize {
        match &self.model {
            Model::Candle(model) => model.max_positions(),
            Model::Packed(model) => model.max_positions(),
        }
    }

    fn device_label(&self) -> String {
        let (device, dtype) = match &self.model {
            Model::Candle(model) => (model.device(), model.dtype()),
            Model::Packed(_) => (&Device::Cpu, DType::F32),
        };
        let engine = match (&self.model, self.matmul) {
            (Model::Candle(_), _) => String::new(),
            (Model::Packed(_), Matmul::F32) => ", packed".into(),
            (Model::Packed(_), Matmul::Int8) if packed::vnni_available() => {
                ", packed, int8 matmul (VNNI)".into()
            }
            (Model::Packed(_), Matmul::Bf16) if packed::bf16_available() => {
                ", packed, bf16 matmul (AVX512-BF16)".into()
            }
            (Model::Packed(_), other) => format!(", packed, {} matmul (portable)", other.name()),
        };
        format!(
            "{} {}{engine}",
            device_name(device),
            crate::device::dtype_name(dtype)
        )
    }

    fn is_padded(&self) -> bool {
        matches!(self.model, Model::Candle(_))
    }
}
