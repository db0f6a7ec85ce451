//! Models: what an encoder is to the rest of stancer, and how one is found, fetched and loaded.
//!
//! The seam between the pipeline and a model is the [`Encoder`] trait: token ids in, one pooled
//! vector per sequence out. Tokenization, windowing and batching live outside it and never see a
//! tensor; each engine owns its tensors completely.

pub mod bert;
pub mod fetch;
pub mod manifest;

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

/// A candle BERT as an [`Encoder`].
pub struct BertEncoder {
    model: bert::Bert,
}

impl BertEncoder {
    pub fn load(
        files: &ModelFiles,
        pooling: Pooling,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
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
        let model =
            bert::Bert::load(vb, &config, pooling).map_err(|source| Error::LoadWeights {
                path: files.weights.clone(),
                source,
            })?;
        Ok(Self { model })
    }
}

pub fn read_bert_config(path: &Path) -> Result<bert::BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let config: bert::BertConfig = serde_json::from_str(&text).map_err(|e| Error::ModelConfig {
        path: path.to_path_buf(),
        message: format!("not a valid BERT config.json ({e})"),
    })?;
    if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
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
        let rows = sequences.len();
        let length = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; rows * length];
        let mut mask = vec![0u32; rows * length];
        for (row, sequence) in sequences.iter().enumerate() {
            let start = row * length;
            ids[start..start + sequence.len()].copy_from_slice(sequence);
            mask[start..start + sequence.len()].fill(1);
        }
        let device = self.model.device();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (rows, length), device)?;
            let mask = Tensor::from_vec(mask, (rows, length), device)?;
            self.model.forward_pooled(&ids, &mask)?.to_vec2::<f32>()
        };
        run().map_err(Error::encoder)
    }

    fn dimension(&self) -> usize {
        self.model.hidden_size()
    }

    fn max_positions(&self) -> usize {
        self.model.max_positions()
    }

    fn device_label(&self) -> String {
        let device = match self.model.device() {
            Device::Cpu => "cpu".to_string(),
            Device::Cuda(_) => "cuda".to_string(),
            Device::Metal(_) => "metal".to_string(),
        };
        format!("{device} {}", crate::device::dtype_name(self.model.dtype()))
    }
}
