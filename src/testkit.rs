//! A tiny BERT with random weights, written to a folder, for fast tests and benches of shapes,
//! masking, windows and ordering. Never evidence of quality: its vectors mean nothing.
//!
//! Weights come from a fixed-seed generator, so the same call writes the same bytes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Sizes of the tiny model.
pub const HIDDEN: usize = 32;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const INTERMEDIATE: usize = 64;
pub const MAX_POSITIONS: usize = 64;

/// Words the tiny tokenizer knows; anything else is split into letters or becomes [UNK].
const WORDS: &[&str] = &[
    "the",
    "china",
    "russia",
    "peace",
    "war",
    "ukraine",
    "west",
    "alignment",
    "is",
    "and",
    "of",
    "to",
    "a",
    "in",
    "broker",
    "strong",
    "durable",
    "not",
    "will",
    "power",
    "great",
    "threat",
];

/// Writes config.json, tokenizer.json and model.safetensors for a tiny random BERT.
pub fn write_tiny_bert(folder: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(folder).map_err(|e| Error::write(folder, e))?;
    let vocab = vocabulary();
    let config = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab.len(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0
    });
    write(
        &folder.join("config.json"),
        &serde_json::to_vec_pretty(&config).expect("json"),
    )?;
    write(
        &folder.join("tokenizer.json"),
        tokenizer_json(&vocab).as_bytes(),
    )?;

    let mut random = SplitMix(seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: String, shape: &[usize], scale: f32, offset: f32| {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| offset + scale * random.normal())
            .collect();
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor");
        tensors.insert(name, tensor);
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        &[vocab.len(), HIDDEN],
        0.5,
        0.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        &[MAX_POSITIONS, HIDDEN],
        0.1,
        0.0,
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[2, HIDDEN],
        0.1,
        0.0,
    );
    add("embeddings.LayerNorm.weight".into(), &[HIDDEN], 0.05, 1.0);
    add("embeddings.LayerNorm.bias".into(), &[HIDDEN], 0.05, 0.0);
    for layer in 0..LAYERS {
        let p = format!("encoder.layer.{layer}");
        for part in ["query", "key", "value"] {
            add(
                format!("{p}.attention.self.{part}.weight"),
                &[HIDDEN, HIDDEN],
                0.3,
                0.0,
            );
            add(
                format!("{p}.attention.self.{part}.bias"),
                &[HIDDEN],
                0.05,
                0.0,
            );
        }
        add(
            format!("{p}.attention.output.dense.weight"),
            &[HIDDEN, HIDDEN],
            0.2,
            0.0,
        );
        add(
            format!("{p}.attention.output.dense.bias"),
            &[HIDDEN],
            0.05,
            0.0,
        );
        add(
            format!("{p}.attention.output.LayerNorm.weight"),
            &[HIDDEN],
            0.05,
            1.0,
        );
        add(
            format!("{p}.attention.output.LayerNorm.bias"),
            &[HIDDEN],
            0.05,
            0.0,
        );
        add(
            format!("{p}.intermediate.dense.weight"),
            &[INTERMEDIATE, HIDDEN],
            0.2,
            0.0,
        );
        add(
            format!("{p}.intermediate.dense.bias"),
            &[INTERMEDIATE],
            0.05,
            0.0,
        );
        add(
            format!("{p}.output.dense.weight"),
            &[HIDDEN, INTERMEDIATE],
            0.15,
            0.0,
        );
        add(format!("{p}.output.dense.bias"), &[HIDDEN], 0.05, 0.0);
        add(format!("{p}.output.LayerNorm.weight"), &[HIDDEN], 0.05, 1.0);
        add(format!("{p}.output.LayerNorm.bias"), &[HIDDEN], 0.05, 0.0);
    }
    let path = folder.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &path).map_err(|source| Error::LoadWeights {
        path: path.clone(),
        source,
    })?;
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::write(path, e))
}

fn vocabulary() -> Vec<String> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend(WORDS.iter().map(|w| w.to_string()));
    for c in ('a'..='z').chain('0'..='9') {
        vocab.push(c.to_string());
        vocab.push(format!("##{c}"));
    }
    for c in ".,;:!?'\"()-".chars() {
        vocab.push(c.to_string());
    }
    vocab
}

/// A BERT WordPiece tokenizer in the `tokenizers` JSON format, like the real models ship.
fn tokenizer_json(vocab: &[String]) -> String {
    let vocab_map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), serde_json::Value::from(i)))
        .collect();
    let special = |content: &str, id: usize| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 16, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 16}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special("[PAD]", 0), special("[UNK]", 1), special("[CLS]", 2),
            special("[SEP]", 3), special("[MASK]", 4)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab_map}
    })
    .to_string()
}

/// A small, fixed-seed generator (SplitMix64) with Box-Muller normals: no dependency, same
/// numbers on every platform.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}
