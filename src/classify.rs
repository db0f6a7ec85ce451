//! Classification: paragraphs in, a theme and a stance per target out.
//!
//! The classifier embeds paragraphs once and hands the vectors to the heads; targets are
//! prepared once (schema targets, `--target` texts, and each distinct per-row target as it is
//! first seen).

use std::collections::HashMap;

use crate::embed::{EmbedStats, Embedder, Embedding};
use crate::error::Result;
use crate::head::{Heads, PreparedTarget, StanceDecision, ThemeDecision};
use crate::input::Paragraph;
use crate::schema::{Schema, Target};

/// One paragraph's labels.
#[derive(Debug, Clone)]
pub struct Classified {
    pub embedding: Embedding,
    pub theme: Option<ThemeDecision>,
    /// (target id or free text, decision), schema and command-line targets first, then the
    /// paragraph's own target if it has one.
    pub stances: Vec<(String, StanceDecision)>,
}

pub struct Classifier {
    embedder: Embedder,
    heads: Heads,
    targets: Vec<PreparedTarget>,
    row_targets: HashMap<String, PreparedTarget>,
    pub stats: EmbedStats,
}

impl Classifier {
    /// A classifier with the given heads, scoring every paragraph against the schema's targets
    /// plus extra free-text targets.
    pub fn new(
        embedder: Embedder,
        heads: Heads,
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
            .map(|t| heads.stance.prepare(&embedder, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedder,
            heads,
            targets,
            row_targets: HashMap::new(),
            stats: EmbedStats::default(),
        })
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
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

    /// Labels paragraphs whose embeddings are already known.
    pub fn classify_embedded(
        &mut self,
        paragraphs: &[Paragraph],
        embeddings: Vec<Embedding>,
    ) -> Result<Vec<Classified>> {
        let vectors: Vec<&[f32]> = embeddings.iter().map(|e| e.vector.as_slice()).collect();
        let themes = match &self.heads.theme {
            Some(head) => {
                let labels = head.labels().to_vec();
                head.predict(&vectors)?
                    .iter()
                    .map(|p| Some(ThemeDecision::from_probabilities(&labels, p)))
                    .collect()
            }
            None => vec![None; paragraphs.len()],
        };
        let texts: Vec<&str> = paragraphs.iter().map(|p| p.text.as_str()).collect();
        let mut stances: Vec<Vec<(String, StanceDecision)>> = vec![Vec::new(); paragraphs.len()];
        for target in &self.targets {
            let scores = self
                .heads
                .stance
                .predict_paragraphs(&vectors, &texts, target)?;
            for (row, s) in stances.iter_mut().zip(scores) {
                row.push((target.id.clone(), StanceDecision::from_probabilities(s)));
            }
        }
        // A paragraph's own target: every such pair in one call (a model batches them all),
        // each distinct target prepared once per run.
        let mut by_target: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, paragraph) in paragraphs.iter().enumerate() {
            let Some(text) = &paragraph.target else {
                continue;
            };
            if self.targets.iter().any(|t| t.id == *text) {
                continue;
            }
            match by_target.iter_mut().find(|(t, _)| t == text) {
                Some((_, rows)) => rows.push(i),
                None => by_target.push((text.clone(), vec![i])),
            }
        }
        for (text, _) in &by_target {
            if !self.row_targets.contains_key(text) {
                let prepared = self
                    .heads
                    .stance
                    .prepare(&self.embedder, &Target::free(text))?;
                self.row_targets.insert(text.clone(), prepared);
            }
        }
        let mut slots: Vec<(usize, &str)> = Vec::new();
        for (text, rows) in &by_target {
            slots.extend(rows.iter().map(|&i| (i, text.as_str())));
        }
        let inputs: Vec<crate::head::PairInput<'_>> = slots
            .iter()
            .map(|&(i, text)| crate::head::PairInput {
                vector: vectors[i],
                text: texts[i],
                target: &self.row_targets[text],
            })
            .collect();
        let scores = self.heads.stance.predict_pairs(&inputs)?;
        let mut own: Vec<Option<(String, StanceDecision)>> = vec![None; paragraphs.len()];
        for (&(i, text), s) in slots.iter().zip(scores) {
            own[i] = Some((text.to_string(), StanceDecision::from_probabilities(s)));
        }
        for (row, decision) in stances.iter_mut().zip(own) {
            row.extend(decision);
        }
        Ok(embeddings
            .into_iter()
            .zip(themes)
            .zip(stances)
            .map(|((embedding, theme), stances)| Classified {
                embedding,
                theme,
                stances,
            })
            .collect())
    }
}
