//! The embedding pipeline: tokenize, window, plan batches, encode, pool windows, normalise.
//!
//! It owns everything around the model and nothing inside it: the [`Encoder`] sees only complete
//! sequences of token ids.

use std::time::Instant;

use candle_core::{DType, Device};

use crate::encode::batch;
use crate::encode::model::fetch::ResolvedModel;
use crate::encode::model::{BertEncoder, Encoder, Engine};
use crate::encode::tokenize::TextTokenizer;
use crate::error::{Error, Result};

/// Defaults for batch planning, measured on a 2-core CPU (see BENCHMARKS.md).
pub const DEFAULT_BATCH_TOKENS: usize = 4096;
pub const DEFAULT_MAX_ROWS: usize = 128;

/// One paragraph's vector and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Length of the paragraph in tokens, special tokens included.
    pub tokens: usize,
    /// How many windows the paragraph took (1 unless it is longer than the model's limit).
    pub windows: usize,
}

/// Counters for one or more `embed` calls, for benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbedStats {
    pub paragraphs: usize,
    pub sequences: usize,
    /// Real tokens the model ran on (windows' tokens, special tokens included).
    pub real_tokens: usize,
    /// Tokens the model computed, padding included: rows x longest per batch for an encoder that
    /// pads, the real tokens for one that packs sequences without padding.
    pub padded_tokens: usize,
    /// Wall time of each batch through the model, in seconds.
    pub batch_seconds: Vec<f64>,
}

/// A model ready to embed text: tokenizer, encoder and the settings that go with them.
pub struct Embedder {
    tokenizer: TextTokenizer,
    encoder: std::sync::Arc<dyn Encoder>,
    normalize: bool,
    passage_prefix: String,
    query_prefix: String,
    batch_tokens: usize,
    max_rows: usize,
    name: String,
    /// What besides the weights shapes the vectors (for cache keys).
    settings: String,
}

impl Embedder {
    /// Loads a resolved model on `device` in `dtype`.
    pub fn load(model: &ResolvedModel, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_engine(model, device, dtype, Engine::Auto)
    }

    /// Loads with an explicit encoder engine (for benchmarks and comparisons).
    pub fn load_engine(
        model: &ResolvedModel,
        device: &Device,
        dtype: DType,
        engine: Engine,
    ) -> Result<Self> {
        let encoder = BertEncoder::load_engine(
            &model.files,
            model.pooling,
            device,
            dtype,
            engine,
            model.matmul,
        )?;
        Self::with_encoder(model, Box::new(encoder))
    }

    /// Wraps any encoder with the model's tokenizer and settings.
    pub fn with_encoder(model: &ResolvedModel, encoder: Box<dyn Encoder>) -> Result<Self> {
        if model.max_tokens > encoder.max_positions() {
            return Err(Error::ModelConfig {
                path: model.files.config.clone(),
                message: format!(
                    "max_tokens {} is more than the model's {} positions",
                    model.max_tokens,
                    encoder.max_positions()
                ),
            });
        }
        let tokenizer = TextTokenizer::load(&model.files.tokenizer, model.max_tokens)?
            .with_windows(model.windows);
        let mut settings = format!(
            "pooling={:?} normalize={} passage_prefix={:?} query_prefix={:?}",
            model.pooling, model.normalize, model.passage_prefix, model.query_prefix
        );
        if model.windows != crate::encode::tokenize::Windows::Overlapping {
            settings.push_str(&format!(" windows={:?}", model.windows));
        }
        Ok(Self {
            tokenizer,
            encoder: std::sync::Arc::from(encoder),
            normalize: model.normalize,
            passage_prefix: model.passage_prefix.clone(),
            query_prefix: model.query_prefix.clone(),
            batch_tokens: DEFAULT_BATCH_TOKENS,
            max_rows: DEFAULT_MAX_ROWS,
            name: model.name.clone(),
            settings,
        })
    }

    /// Sets the token budget of one batch (rows x longest sequence).
    #[must_use]
    pub fn batch_tokens(mut self, tokens: usize) -> Self {
        self.batch_tokens = tokens.max(1);
        self
    }

    /// Sets the most sequences one batch may hold.
    #[must_use]
    pub fn max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows.max(1);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model itself, for heads that run it on pairs (NLI models).
    pub fn model(&self) -> std::sync::Arc<dyn Encoder> {
        self.encoder.clone()
    }

    /// Whether the model gives sentence vectors. A bare sequence classifier (an NLI model)
    /// does not: its paragraphs get an empty vector, and only heads that read texts apply.
    pub fn gives_vectors(&self) -> bool {
        self.encoder.offers().embed
    }

    pub fn dimension(&self) -> usize {
        self.encoder.dimension()
    }

    pub fn device_label(&self) -> String {
        self.encoder.device_label()
    }

    /// Pooling, normalisation and prefixes, as one line (cache keys, reports).
    pub fn settings_label(&self) -> &str {
        &self.settings
    }

    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// Embeds paragraphs (the texts searched in), in input order.
    pub fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.embed_with_prefix(texts, &self.passage_prefix, &mut EmbedStats::default())
    }

    /// Embeds queries (targets, theme descriptions), in input order.
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.embed_with_prefix(texts, &self.query_prefix, &mut EmbedStats::default())
    }

    /// Embeds paragraphs and adds what it cost to `stats`.
    pub fn embed_passages_counted(
        &self,
        texts: &[&str],
        stats: &mut EmbedStats,
    ) -> Result<Vec<Embedding>> {
        self.embed_with_prefix(texts, &self.passage_prefix, stats)
    }

    /// Tokenizes without running the model (for benchmarks and token counts).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<crate::encode::tokenize::Tokenized>> {
        self.tokenizer.tokenize(texts)
    }

    fn embed_with_prefix(
        &self,
        texts: &[&str],
        prefix: &str,
        stats: &mut EmbedStats,
    ) -> Result<Vec<Embedding>> {
        let prefixed: Vec<String>;
        let texts: Vec<&str> = if prefix.is_empty() {
            texts.to_vec()
        } else {
            prefixed = texts.iter().map(|t| format!("{prefix}{t}")).collect();
            prefixed.iter().map(String::as_str).collect()
        };
        let tokenized = self.tokenizer.tokenize(&texts)?;
        if !self.gives_vectors() {
            stats.paragraphs += texts.len();
            return Ok(tokenized
                .iter()
                .map(|t| Embedding {
                    vector: Vec::new(),
                    tokens: t.tokens,
                    windows: t.windows.len(),
                })
                .collect());
        }
        // Every window of every paragraph, in order.
        let mut sequences: Vec<&[u32]> = Vec::new();
        for t in &tokenized {
            sequences.extend(t.windows.iter().map(Vec::as_slice));
        }
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        let plan = batch::plan(&lengths, self.batch_tokens, self.max_rows);
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); sequences.len()];
        for batch in &plan {
            let inputs: Vec<&[u32]> = batch.iter().map(|&i| sequences[i]).collect();
            let started = Instant::now();
            let outputs = self
                .encoder
                .embed(&crate::encode::model::Batch::from_ids(&inputs))?;
            stats.batch_seconds.push(started.elapsed().as_secs_f64());
            for (&i, vector) in batch.iter().zip(outputs) {
                vectors[i] = vector;
            }
        }
        stats.paragraphs += texts.len();
        stats.sequences += sequences.len();
        let real_tokens = lengths.iter().sum::<usize>();
        stats.real_tokens += real_tokens;
        stats.padded_tokens += if self.encoder.is_padded() {
            batch::padded_tokens(&lengths, &plan)
        } else {
            real_tokens
        };

        // Pool windows: a mean weighted by each window's length (or, with disjoint windows, its
        // content tokens), then normalise. A paragraph of one window keeps the model's own
        // numbers bit for bit.
        let specials = match self.tokenizer.windows_rule() {
            crate::encode::tokenize::Windows::Overlapping => 0,
            crate::encode::tokenize::Windows::Disjoint => self.tokenizer.special_tokens(),
        };
        let mut vectors = vectors.into_iter();
        let mut embeddings = Vec::with_capacity(tokenized.len());
        for t in &tokenized {
            let mut vector = if t.windows.len() == 1 {
                vectors
                    .next()
                    .expect("this is a bug: fewer vectors than windows")
            } else {
                let mut sum = vec![0.0f64; self.encoder.dimension()];
                let mut weight = 0usize;
                for window in &t.windows {
                    let v = vectors
                        .next()
                        .expect("this is a bug: fewer vectors than windows");
                    let length = window.len() - specials;
                    for (s, x) in sum.iter_mut().zip(&v) {
                        *s += f64::from(*x) * length as f64;
                    }
                    weight += length;
                }
                sum.iter().map(|s| (s / weight as f64) as f32).collect()
            };
            if self.normalize {
                normalize(&mut vector);
            }
            embeddings.push(Embedding {
                vector,
                tokens: t.tokens,
                windows: t.windows.len(),
            });
        }
        Ok(embeddings)
    }
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for v in vector {
            *v = (f64::from(*v) / norm) as f32;
        }
    }
}

/// Cosine similarity of two vectors of the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}
