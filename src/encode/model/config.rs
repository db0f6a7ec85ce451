//! Reading a Hugging Face `config.json`: which architecture, which encoder settings, and which
//! classification head with which labels.
//!
//! The architecture is never guessed: `model_type` (or, in old checkpoints, `architectures`)
//! must name one stancer implements, because a RoBERTa checkpoint loads as BERT without an error
//! and gives wrong numbers (its positions start after the padding index).

use std::path::Path;

use serde::Deserialize;

use super::bert::BertConfig;
use super::deberta::DebertaConfig;
use crate::error::{Error, Result};

/// The architectures stancer can run, as config.json's `model_type` names them.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["bert", "roberta", "xlm-roberta", "deberta-v2"];

/// An encoder family and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Family {
    /// BERT (`bert.` tensors, positions from 0).
    Bert(BertConfig),
    /// RoBERTa and XLM-R: BERT's layers under `roberta.`, positions counted from
    /// `padding_idx + 1`, no token types in use.
    Roberta {
        config: BertConfig,
        padding_idx: u32,
    },
    /// DeBERTa-v2 and -v3 (`deberta.` tensors, disentangled relative attention).
    Deberta(DebertaConfig),
}

/// How a sequence classifier turns the first token's vector into logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLayout {
    /// BERT: `bert.pooler.dense` + tanh, then `classifier`.
    BertPooler,
    /// RoBERTa / XLM-R: `classifier.dense` + tanh, then `classifier.out_proj`.
    RobertaHead,
    /// DeBERTa-v2: `pooler.dense` + `pooler_hidden_act`, then `classifier`.
    ContextPooler,
}

/// What `config.json` says about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub model_type: String,
    pub family: Family,
    /// The classification head, for `*ForSequenceClassification` checkpoints.
    pub head: Option<HeadLayout>,
    /// `id2label`, in index order (None when the config has none).
    pub labels: Option<Vec<String>>,
    /// `label2id` as written (None when the config has none).
    pub label2id: Option<Vec<(String, usize)>>,
}

impl ModelConfig {
    pub fn hidden_size(&self) -> usize {
        match &self.family {
            Family::Bert(c) | Family::Roberta { config: c, .. } => c.hidden_size,
            Family::Deberta(c) => c.hidden_size,
        }
    }

    /// The BERT settings, for what runs on BERT-family weights only (adapters, fine-tuning).
    pub fn bert(&self) -> Option<&BertConfig> {
        match &self.family {
            Family::Bert(c) => Some(c),
            _ => None,
        }
    }

    /// The longest sequence the model takes, special tokens included.
    pub fn max_sequence(&self) -> usize {
        match &self.family {
            Family::Bert(c) => c.max_position_embeddings,
            Family::Roberta {
                config,
                padding_idx,
            } => config
                .max_position_embeddings
                .saturating_sub(*padding_idx as usize + 1),
            Family::Deberta(c) => c.max_position_embeddings,
        }
    }

    /// Whether this is a sequence classifier (a head on the first token).
    pub fn is_classifier(&self) -> bool {
        self.head.is_some()
    }
}

#[derive(Deserialize)]
struct Common {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    label2id: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pad_token_id: Option<u32>,
}

/// Reads and checks a config.json of any supported architecture.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
    let fail = |message: String| Error::ModelConfig {
        path: path.to_path_buf(),
        message,
    };
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("not a valid config.json (not JSON: {e})")))?;
    let common: Common = serde_json::from_value(raw.clone())
        .map_err(|e| fail(format!("not a valid config.json ({e})")))?;
    let model_type = match &common.model_type {
        Some(name) => name.clone(),
        // Old checkpoints may lack model_type; then the architecture names decide.
        None => match common.architectures.first() {
            Some(a) if a.starts_with("Bert") => "bert".into(),
            Some(a) => {
                return Err(fail(format!(
                    "architecture '{a}' is not supported (supported model types: {})",
                    SUPPORTED_MODEL_TYPES.join(", ")
                )))
            }
            None => "bert".into(),
        },
    };
    let parse_bert = |raw: serde_json::Value| -> Result<BertConfig> {
        let config: BertConfig = serde_json::from_value(raw)
            .map_err(|e| fail(format!("not a valid {model_type} config.json ({e})")))?;
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
    };
    let family = match model_type.as_str() {
        "bert" => Family::Bert(parse_bert(raw.clone())?),
        "roberta" | "xlm-roberta" => Family::Roberta {
            config: parse_bert(raw.clone())?,
            padding_idx: common.pad_token_id.unwrap_or(1),
        },
        "deberta-v2" => {
            let config: DebertaConfig = serde_json::from_value(raw.clone())
                .map_err(|e| fail(format!("not a valid deberta-v2 config.json ({e})")))?;
            config.check().map_err(fail)?;
            Family::Deberta(config)
        }
        other => {
            return Err(fail(format!(
                "model type '{other}' is not supported (supported: {}); stancer will not run it \
                 as another architecture, which would give wrong results",
                SUPPORTED_MODEL_TYPES.join(", ")
            )))
        }
    };
    let classifier = common
        .architectures
        .iter()
        .any(|a| a.ends_with("ForSequenceClassification"));
    let head = classifier.then_some(match family {
        Family::Bert(_) => HeadLayout::BertPooler,
        Family::Roberta { .. } => HeadLayout::RobertaHead,
        Family::Deberta(_) => HeadLayout::ContextPooler,
    });
    let labels = match &common.id2label {
        None => None,
        Some(map) => {
            let mut indexed = Vec::with_capacity(map.len());
            for (key, label) in map {
                let index: usize = key
                    .parse()
                    .map_err(|_| fail(format!("id2label key '{key}' is not a number")))?;
                indexed.push((index, label.clone()));
            }
            indexed.sort();
            if indexed
                .iter()
                .enumerate()
                .any(|(i, (index, _))| i != *index)
            {
                return Err(fail(
                    "id2label does not number its labels 0, 1, 2, ...".into(),
                ));
            }
            Some(indexed.into_iter().map(|(_, label)| label).collect())
        }
    };
    let label2id = match &common.label2id {
        None => None,
        Some(map) => Some(
            map.iter()
                .map(|(label, id)| {
                    id.as_u64()
                        .map(|id| (label.clone(), id as usize))
                        .ok_or_else(|| fail(format!("label2id of '{label}' is not a number")))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(ModelConfig {
        model_type,
        family,
        head,
        labels,
        label2id,
    })
}

/// Reads a config.json for what needs BERT itself (adapters, fine-tuning), refusing any other
/// architecture by name.
pub fn read_bert_config(path: &Path) -> Result<BertConfig> {
    let config = read_config(path)?;
    match config.family {
        Family::Bert(bert) => Ok(bert),
        _ => Err(Error::ModelConfig {
            path: path.to_path_buf(),
            message: format!(
                "model type '{}' cannot be used here: stance adapters and fine-tuning need a \
                 BERT base (such as minilm-l6)",
                config.model_type
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(json: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        (dir, path)
    }

    const BERT: &str = r#""vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 32"#;

    #[test]
    fn families_heads_and_labels_are_read_from_the_config() {
        let (_dir, path) = write(&format!(
            r#"{{"model_type": "roberta", "architectures": ["RobertaForSequenceClassification"],
            "pad_token_id": 1, "id2label": {{"1": "not_entailment", "0": "entailment"}},
            "label2id": {{"entailment": 0, "not_entailment": 1}}, {BERT}}}"#
        ));
        let config = read_config(&path).unwrap();
        assert!(matches!(
            config.family,
            Family::Roberta { padding_idx: 1, .. }
        ));
        assert_eq!(config.head, Some(HeadLayout::RobertaHead));
        assert_eq!(config.max_sequence(), 30);
        assert_eq!(
            config.labels.as_deref(),
            Some(&["entailment".to_string(), "not_entailment".to_string()][..])
        );
        let (_dir, path) = write(&format!(r#"{{"model_type": "bert", {BERT}}}"#));
        let config = read_config(&path).unwrap();
        assert_eq!(config.head, None);
        assert_eq!(config.max_sequence(), 32);
    }

    #[test]
    fn unknown_architectures_and_bad_label_maps_are_refused_by_name() {
        let (_dir, path) = write(&format!(r#"{{"model_type": "gpt2", {BERT}}}"#));
        let error = read_config(&path).unwrap_err().to_string();
        assert!(error.contains("'gpt2' is not supported"), "{error}");
        let (_dir, path) = write(&format!(
            r#"{{"model_type": "bert", "id2label": {{"0": "a", "2": "b"}}, {BERT}}}"#
        ));
        let error = read_config(&path).unwrap_err().to_string();
        assert!(error.contains("id2label"), "{error}");
        let (_dir, path) = write(&format!(r#"{{"model_type": "roberta", {BERT}}}"#));
        let error = read_bert_config(&path).unwrap_err().to_string();
        assert!(error.contains("need a BERT base"), "{error}");
    }
}
