//! Labelling: paragraphs in, a theme and a stance per target out. Classify, eval and
//! cross-validation all label through [`Classifier::label`].
//!
//! The classifier hands each paragraph's vector and text to the heads; targets are prepared
//! once (schema targets, `--target` texts, and each distinct free-text target as it is first
//! seen), and every (paragraph, target) pair of a call is scored in one call of the stance head,
//! so a pair model batches across targets.

use std::collections::HashMap;

use crate::encode::embed::{EmbedStats, Embedder, Embedding};
use crate::error::Result;
use crate::label::head::{Heads, PairInput, PreparedTarget, StanceDecision, ThemeDecision};
use crate::label::schema::{Schema, Target};
use crate::text::input::Paragraph;

/// One paragraph's labels.
#[derive(Debug, Clone)]
pub struct Classified {
    pub embedding: Embedding,
    pub theme: Option<ThemeDecision>,
    /// (target id or free text, decision), schema and command-line targets first, then the
    /// paragraph's own target if it has one.
    pub stances: Vec<(String, StanceDecision)>,
}

/// What to label of one paragraph: its theme or not, and its stance toward which targets
/// (a schema or command-line target by id, anything else as a free-text target).
#[derive(Debug, Clone, Default)]
pub struct Request<'t> {
    pub theme: bool,
    pub targets: Vec<&'t str>,
}

/// The labels a [`Request`] asked for.
#[derive(Debug, Clone)]
pub struct Labels {
    pub theme: Option<ThemeDecision>,
    /// (target as requested, decision), in the order requested.
    pub stances: Vec<(String, StanceDecision)>,
}

pub struct Classifier<'a> {
    embedder: &'a Embedder,
    heads: &'a Heads,
    /// Schema and command-line targets, in output order.
    targets: Vec<PreparedTarget>,
    /// Free-text targets, prepared as they are first seen.
    free_targets: HashMap<String, PreparedTarget>,
    pub stats: EmbedStats,
}

impl<'a> Classifier<'a> {
    /// A classifier with the given heads, scoring every paragraph against the schema's targets
    /// plus extra free-text targets.
    pub fn new(
        embedder: &'a Embedder,
        heads: &'a Heads,
        schema: &Schema,
        extra_targets: &[String],
    ) -> Result<Self> {
        let mut all: Vec<Target> = schema.targets.clone();
        for text in extra_targets {
            if !all.iter().any(|t| t.id == *text) {
                all.push(Target::free(text));
            }
        }
        let targets = all
            .iter()
            .map(|t| heads.stance.prepare(embedder, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedder,
            heads,
            targets,
            free_targets: HashMap::new(),
            stats: EmbedStats::default(),
        })
    }

    pub fn embedder(&self) -> &Embedder {
        self.embedder
    }

    pub fn heads(&self) -> &Heads {
        self.heads
    }

    /// Ids of the targets every paragraph is scored against, in output order.
    pub fn target_ids(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.id.clone()).collect()
    }

    pub fn theme_labels(&self) -> Option<&[String]> {
        self.heads.theme.as_ref().map(|h| h.labels())
    }

    /// Classifies paragraphs, in input order.
    pub fn classify(&mut self, paragraphs: &[Paragraph]) -> Result<Vec<Classified>> {
        let texts: Vec<&str> = paragraphs.iter().map(|p| p.text.as_str()).collect();
        let embeddings = self
            .embedder
            .embed_passages_counted(&texts, &mut self.stats)?;
        self.classify_embedded(paragraphs, embeddings)
    }

    /// Labels paragraphs whose embeddings are already known: the theme, every configured
    /// target, and the paragraph's own target where it has one.
    pub fn classify_embedded(
        &mut self,
        paragraphs: &[Paragraph],
        embeddings: Vec<Embedding>,
    ) -> Result<Vec<Classified>> {
        let vectors: Vec<&[f32]> = embeddings.iter().map(|e| e.vector.as_slice()).collect();
        let texts: Vec<&str> = paragraphs.iter().map(|p| p.text.as_str()).collect();
        let configured: Vec<String> = self.target_ids();
        let requests: Vec<Request<'_>> = paragraphs
            .iter()
            .map(|paragraph| {
                let mut targets: Vec<&str> = configured.iter().map(String::as_str).collect();
                if let Some(own) = &paragraph.target {
                    if !configured.iter().any(|id| id == own) {
                        targets.push(own);
                    }
                }
                Request {
                    theme: true,
                    targets,
                }
            })
            .collect();
        let labels = self.label(&texts, &vectors, &requests)?;
        Ok(embeddings
            .into_iter()
            .zip(labels)
            .map(|(embedding, labels)| Classified {
                embedding,
                theme: labels.theme,
                stances: labels.stances,
            })
            .collect())
    }

    /// Labels what each request asks of its paragraph (text and vector at the same index):
    /// the themes in one call of the theme head, every (paragraph, target) pair in one call of
    /// the stance head.
    pub fn label(
        &mut self,
        texts: &[&str],
        vectors: &[&[f32]],
        requests: &[Request<'_>],
    ) -> Result<Vec<Labels>> {
        assert_eq!(
            texts.len(),
            requests.len(),
            "this is a bug: one request per text"
        );
        assert_eq!(
            vectors.len(),
            requests.len(),
            "this is a bug: one request per vector"
        );
        let mut themes: Vec<Option<ThemeDecision>> = vec![None; requests.len()];
        if let Some(head) = &self.heads.theme {
            let asked: Vec<usize> = (0..requests.len()).filter(|&i| requests[i].theme).collect();
            if !asked.is_empty() {
                let inputs: Vec<&[f32]> = asked.iter().map(|&i| vectors[i]).collect();
                let asked_texts: Vec<&str> = asked.iter().map(|&i| texts[i]).collect();
                let labels = head.labels().to_vec();
                for (&i, probabilities) in
                    asked.iter().zip(head.predict_texts(&inputs, &asked_texts)?)
                {
                    themes[i] = Some(ThemeDecision::from_probabilities(&labels, &probabilities));
                }
            }
        }
        for request in requests {
            for key in &request.targets {
                self.prepare_free(key)?;
            }
        }
        let mut inputs: Vec<PairInput<'_>> = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            for key in &request.targets {
                inputs.push(PairInput {
                    vector: vectors[i],
                    text: texts[i],
                    target: self.target(key),
                });
            }
        }
        let mut scores = if inputs.is_empty() {
            Vec::new()
        } else {
            self.heads.stance.predict_pairs(&inputs)?
        }
        .into_iter();
        Ok(requests
            .iter()
            .zip(themes)
            .map(|(request, theme)| Labels {
                theme,
                stances: request
                    .targets
                    .iter()
                    .map(|key| {
                        let s = scores.next().expect("this is a bug: a pair was not scored");
                        (key.to_string(), StanceDecision::from_probabilities(s))
                    })
                    .collect(),
            })
            .collect())
    }

    /// Prepares `key` as a free-text target unless it names a configured one or is prepared.
    fn prepare_free(&mut self, key: &str) -> Result<()> {
        if self.targets.iter().any(|t| t.id == key) || self.free_targets.contains_key(key) {
            return Ok(());
        }
        let prepared = self
            .heads
            .stance
            .prepare(self.embedder, &Target::free(key))?;
        self.free_targets.insert(key.to_string(), prepared);
        Ok(())
    }

    fn target(&self, key: &str) -> &PreparedTarget {
        self.targets
            .iter()
            .find(|t| t.id == key)
            .or_else(|| self.free_targets.get(key))
            .expect("this is a bug: a target was not prepared")
    }
}
