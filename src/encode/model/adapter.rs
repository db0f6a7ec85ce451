//! Adapters: low-rank (LoRA) updates and a classification head, trained by `stancer finetune`
//! on a base encoder and merged into its matrices at load, so a fine-tuned cross-encoder costs
//! exactly what its base model costs, on every engine and in every precision.
//!
//! An adapter is two files side by side: `adapter.safetensors` (for each adapted linear layer
//! `NAME.lora_a` (rank, inputs) and `NAME.lora_b` (outputs, rank); tensors the training unfroze,
//! under their checkpoint names; `classifier.weight` (classes, hidden) and `classifier.bias`) and
//! `card.json`, the model card (base model and its sha256, labels, rank and scale, and how it was
//! trained).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

#[path = "builtin_stance.rs"]
mod builtin_stance;

use super::bert::BertConfig;
use super::Classifier;
use crate::error::{Error, Result};

/// The file names inside an adapter folder.
pub const WEIGHTS_FILE: &str = "adapter.safetensors";
pub const CARD_FILE: &str = "card.json";

/// The base model an adapter was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseModel {
    pub name: String,
    /// sha256 of the base model's `model.safetensors`.
    pub sha256: String,
}

/// The LoRA settings: `W' = W + scale · B · A`, `scale = alpha / rank`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    pub rank: usize,
    pub alpha: f64,
    /// The adapted linear layers, as module names inside each `encoder.layer.N`.
    pub targets: Vec<String>,
}

impl LoraSettings {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// What loading needs from a model card; the card holds more (data, hyperparameters, scores),
/// which loading keeps but does not read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterCard {
    /// "stance".
    pub task: String,
    pub base: BaseModel,
    pub lora: LoraSettings,
    /// The classes of the head's logits, in order.
    pub labels: Vec<String>,
    /// The longest pair (special tokens included) the model was trained on.
    pub max_tokens: usize,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// What `--stance` names: the prototype head on the encoder's vectors, or a stance model (an
/// adapter on a base model) by name or folder.
#[derive(Debug, Clone)]
pub enum StanceSpec {
    Prototype,
    Builtin(&'static BuiltinAdapter),
    Folder(PathBuf),
}

/// A stance model compiled into the binary: its manifest and the two files' bytes.
#[derive(Debug)]
pub struct BuiltinAdapter {
    pub name: &'static str,
    pub manifest: &'static str,
    pub weights: &'static [u8],
    pub card: &'static [u8],
}

/// The manifest of a stance model (`models/NAME.toml` with `task = "stance"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StanceManifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub task: String,
    /// The base model's manifest name.
    pub base: String,
    pub adapter: AdapterFiles,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterFiles {
    /// The folder with adapter.safetensors and card.json, relative to the manifest.
    pub folder: String,
    /// sha256 of adapter.safetensors.
    pub sha256: String,
    /// sha256 of card.json.
    pub card_sha256: String,
}

/// The stance models shipped with stancer.
pub const BUILTIN_STANCE: &[BuiltinAdapter] = builtin_stance::MODELS;

/// The stance model used when `--stance` is not given.
pub const DEFAULT_STANCE: &str = builtin_stance::DEFAULT;

impl StanceSpec {
    /// Interprets a `--stance` argument.
    pub fn parse(argument: &str) -> Result<Self> {
        Self::parse_flag("--stance", argument)
    }

    /// Interprets the argument of `flag` (`--stance`, `--init`), naming that flag in errors.
    pub fn parse_flag(flag: &str, argument: &str) -> Result<Self> {
        if argument == "prototype" {
            return Ok(StanceSpec::Prototype);
        }
        if let Some(builtin) = BUILTIN_STANCE.iter().find(|b| b.name == argument) {
            return Ok(StanceSpec::Builtin(builtin));
        }
        let path = Path::new(argument);
        if path.is_dir() {
            return Ok(StanceSpec::Folder(path.to_path_buf()));
        }
        let known: Vec<&str> = BUILTIN_STANCE.iter().map(|b| b.name).collect();
        Err(Error::Usage {
            message: format!(
                "{flag} {argument}: not a stance model name ({}), an adapter folder from \
                 `stancer finetune`, or `prototype`",
                if known.is_empty() {
                    "none built in".to_string()
                } else {
                    known.join(", ")
                }
            ),
        })
    }

    /// The adapter, read and verified (a built-in one against its manifest's checksums).
    pub fn load(&self) -> Result<Option<Adapter>> {
        match self {
            StanceSpec::Prototype => Ok(None),
            StanceSpec::Folder(folder) => Adapter::load(folder).map(Some),
            StanceSpec::Builtin(builtin) => {
                let origin = PathBuf::from(format!("builtin:{}", builtin.name));
                let manifest: StanceManifest =
                    toml::from_str(builtin.manifest).map_err(|e| Error::Manifest {
                        path: origin.clone(),
                        message: e.to_string(),
                    })?;
                for (bytes, expected, file) in [
                    (builtin.weights, &manifest.adapter.sha256, WEIGHTS_FILE),
                    (builtin.card, &manifest.adapter.card_sha256, CARD_FILE),
                ] {
                    let actual = crate::encode::model::fetch::sha256_bytes(bytes);
                    if &actual != expected {
                        return Err(Error::Checksum {
                            path: origin.join(file),
                            model: builtin.name.to_string(),
                            expected: expected.clone(),
                            actual,
                        });
                    }
                }
                Adapter::from_bytes(builtin.weights, builtin.card, &origin).map(Some)
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            StanceSpec::Prototype => "prototype".into(),
            StanceSpec::Builtin(builtin) => builtin.name.into(),
            StanceSpec::Folder(folder) => folder.display().to_string(),
        }
    }
}

/// A loaded adapter.
#[derive(Clone)]
pub struct Adapter {
    pub folder: PathBuf,
    pub card: AdapterCard,
    tensors: HashMap<String, Tensor>,
}

/// Parses an adapter's `card.json`; `path` names it in the message.
fn parse_card(bytes: &[u8], path: &Path) -> Result<AdapterCard> {
    serde_json::from_slice(bytes).map_err(|e| Error::Head {
        path: path.to_path_buf(),
        message: format!(
            "not a stancer model card ({e}); pass a folder written by `stancer finetune`, a \
             stance model name, or `prototype`"
        ),
    })
}

impl Adapter {
    /// Reads `adapter.safetensors` and `card.json` from `folder`.
    pub fn load(folder: &Path) -> Result<Self> {
        let card_path = folder.join(CARD_FILE);
        let weights_path = folder.join(WEIGHTS_FILE);
        if !card_path.is_file() || !weights_path.is_file() {
            return Err(Error::Head {
                path: folder.to_path_buf(),
                message: format!(
                    "not an adapter folder (it needs {CARD_FILE} and {WEIGHTS_FILE}); pass a folder \
                     written by `stancer finetune`, a stance model name, or `prototype`"
                ),
            });
        }
        let bytes = std::fs::read(&card_path).map_err(|e| Error::read(&card_path, e))?;
        let card = parse_card(&bytes, &card_path)?;
        let tensors =
            candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|source| {
                Error::LoadWeights {
                    path: weights_path.clone(),
                    source,
                }
            })?;
        let adapter = Self {
            folder: folder.to_path_buf(),
            card,
            tensors,
        };
        adapter.check()?;
        Ok(adapter)
    }

    /// Reads an adapter from its two files' bytes (an adapter compiled into the binary).
    /// `origin` names it in messages.
    pub fn from_bytes(weights: &[u8], card: &[u8], origin: &Path) -> Result<Self> {
        let card = parse_card(card, &origin.join(CARD_FILE))?;
        let tensors =
            candle_core::safetensors::load_buffer(weights, &Device::Cpu).map_err(|source| {
                Error::LoadWeights {
                    path: origin.join(WEIGHTS_FILE),
                    source,
                }
            })?;
        let adapter = Self {
            folder: origin.to_path_buf(),
            card,
            tensors,
        };
        adapter.check()?;
        Ok(adapter)
    }

    /// Refuses a base model other than the one the adapter was trained on.
    pub fn check_base(&self, name: &str, sha256: &str) -> Result<()> {
        if self.card.base.sha256 != sha256 {
            return Err(self.fail(format!(
                "the adapter was trained on '{}' (weights sha256 {}), not on '{name}' \
                 ({sha256}); pass the base it was made for (--base {})",
                self.card.base.name, self.card.base.sha256, self.card.base.name
            )));
        }
        Ok(())
    }

    /// Builds an adapter from tensors in memory (training, tests).
    pub fn from_tensors(card: AdapterCard, tensors: HashMap<String, Tensor>) -> Result<Self> {
        let adapter = Self {
            folder: PathBuf::new(),
            card,
            tensors,
        };
        adapter.check()?;
        Ok(adapter)
    }

    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    fn fail(&self, message: String) -> Error {
        Error::Head {
            path: self.folder.join(WEIGHTS_FILE),
            message,
        }
    }

    fn check(&self) -> Result<()> {
        if self.card.lora.rank == 0 {
            return Err(self.fail("the model card gives LoRA rank 0".into()));
        }
        for name in ["classifier.weight", "classifier.bias"] {
            if !self.tensors.contains_key(name) {
                return Err(self.fail(format!("no tensor {name}")));
            }
        }
        let classes = self.tensors["classifier.bias"].dims1().unwrap_or(0);
        if classes != self.card.labels.len() {
            return Err(self.fail(format!(
                "the head has {classes} classes but the model card names {} labels",
                self.card.labels.len()
            )));
        }
        for name in self.tensors.keys() {
            if let Some(module) = name.strip_suffix(".lora_a") {
                if !self.tensors.contains_key(&format!("{module}.lora_b")) {
                    return Err(self.fail(format!("{name} has no matching {module}.lora_b")));
                }
            }
        }
        Ok(())
    }

    /// The classification head.
    pub fn classifier(&self, hidden: usize) -> Result<Classifier> {
        let read = |name: &str| -> Result<Vec<f32>> {
            self.tensors[name]
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|source| Error::LoadWeights {
                    path: self.folder.join(WEIGHTS_FILE),
                    source,
                })
        };
        let weight = read("classifier.weight")?;
        let bias = read("classifier.bias")?;
        if weight.len() != bias.len() * hidden {
            return Err(self.fail(format!(
                "classifier.weight has {} values, expected {} classes x {hidden}",
                weight.len(),
                bias.len()
            )));
        }
        Ok(Classifier {
            weight,
            bias,
            labels: self.card.labels.clone(),
        })
    }

    /// The base model's tensors with every low-rank update added and every unfrozen tensor
    /// replaced, in f32 on the CPU, under the base file's own names.
    pub fn merge_into(
        &self,
        base: &super::ModelFiles,
        config: &BertConfig,
    ) -> Result<HashMap<String, Tensor>> {
        let base_weights = base.weights.as_path();
        let load_error = |source| Error::LoadWeights {
            path: base_weights.to_path_buf(),
            source,
        };
        let mut tensors = base.tensors()?;
        let root = if tensors.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let scale = self.card.lora.scale();
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            if name.starts_with("classifier.") || name.ends_with(".lora_b") {
                continue;
            }
            let tensor = &self.tensors[name];
            let (key, value) = if let Some(module) = name.strip_suffix(".lora_a") {
                let key = format!("{root}{module}.weight");
                let base = tensors
                    .get(&key)
                    .ok_or_else(|| self.mismatch(&key))?
                    .to_dtype(DType::F32)
                    .map_err(load_error)?;
                let b = &self.tensors[&format!("{module}.lora_b")];
                let delta = b
                    .matmul(tensor)
                    .and_then(|d| d * scale)
                    .map_err(|source| self.shape_error(&key, source))?;
                let merged = (base + delta).map_err(|source| self.shape_error(&key, source))?;
                (key, merged)
            } else {
                let key = format!("{root}{name}");
                let base = tensors.get(&key).ok_or_else(|| self.mismatch(&key))?;
                if base.dims() != tensor.dims() {
                    return Err(self.fail(format!(
                        "{name} is {:?} but the base model's is {:?}: the adapter was made for \
                         another base model",
                        tensor.dims(),
                        base.dims()
                    )));
                }
                (key, tensor.clone())
            };
            tensors.insert(key, value);
        }
        let _ = config;
        Ok(tensors)
    }

    fn mismatch(&self, key: &str) -> Error {
        self.fail(format!(
            "the base model has no tensor {key}: the adapter was made for another base model \
             ({})",
            self.card.base.name
        ))
    }

    fn shape_error(&self, key: &str, source: candle_core::Error) -> Error {
        self.fail(format!(
            "the update of {key} does not fit the base model ({}): the adapter was made for \
             another base model",
            without_backtrace(&source)
        ))
    }
}

/// A candle error's message without the backtrace candle attaches when RUST_BACKTRACE is set.
fn without_backtrace(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(inner),
        other => other.to_string(),
    }
}
