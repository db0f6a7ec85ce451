//! Heads: what turns paragraph vectors into labels.
//!
//! A theme head gives a probability for each theme; a stance head gives probabilities for
//! favor, against and none toward a prepared target. The zero-shot heads here need nothing but
//! the encoder and the schema; trained heads plug in through the same traits.

pub mod cross_encoder;
pub mod entailment;
pub mod linear;
pub mod nli;
pub mod trained;
pub mod zero_shot;

use crate::encode::embed::Embedder;
use crate::error::Result;
use crate::label::schema::Target;
use crate::label::stance::Stance;

/// Probabilities over a schema's themes, for each paragraph.
pub trait ThemeHead: Send + Sync {
    /// The labels, in the order of the probabilities.
    fn labels(&self) -> &[String];
    /// One probability vector per paragraph vector.
    fn predict(&self, paragraphs: &[&[f32]]) -> Result<Vec<Vec<f32>>>;
    /// One probability vector per paragraph, from what the head needs of it: its vector, or
    /// its text for a head that reads (hypothesis, paragraph) pairs with a model of its own.
    /// Heads on vectors alone keep this default.
    fn predict_texts(&self, vectors: &[&[f32]], texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let _ = texts;
        self.predict(vectors)
    }
    /// A short description for reports ("zero-shot (temperature 0.031)").
    fn describe(&self) -> String;
}

/// Probabilities of [favor, against, none] toward a target.
pub trait StanceHead: Send + Sync {
    /// Embeds what the head needs of a target, once per target.
    fn prepare(&self, embedder: &Embedder, target: &Target) -> Result<PreparedTarget>;
    /// One [favor, against, none] triple per paragraph vector.
    fn predict(&self, paragraphs: &[&[f32]], target: &PreparedTarget) -> Result<Vec<[f32; 3]>>;
    /// One [favor, against, none] triple per paragraph, from what the head needs of it: its
    /// vector, or its text for a head that reads (target, paragraph) pairs with a model of its
    /// own. Heads on vectors alone keep this default.
    fn predict_paragraphs(
        &self,
        vectors: &[&[f32]],
        texts: &[&str],
        target: &PreparedTarget,
    ) -> Result<Vec<[f32; 3]>> {
        let _ = texts;
        self.predict(vectors, target)
    }
    /// One [favor, against, none] triple per (paragraph, target) pair, targets mixed: a head
    /// that runs a model batches all pairs together. The default scores each target's pairs
    /// with [`StanceHead::predict_paragraphs`].
    fn predict_pairs(&self, pairs: &[PairInput<'_>]) -> Result<Vec<[f32; 3]>> {
        let mut scores = vec![[0.0f32; 3]; pairs.len()];
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            match groups.iter_mut().find(|(id, _)| *id == pair.target.id) {
                Some((_, members)) => members.push(i),
                None => groups.push((&pair.target.id, vec![i])),
            }
        }
        for (_, members) in groups {
            let vectors: Vec<&[f32]> = members.iter().map(|&i| pairs[i].vector).collect();
            let texts: Vec<&str> = members.iter().map(|&i| pairs[i].text).collect();
            let target = pairs[members[0]].target;
            for (&i, s) in members
                .iter()
                .zip(self.predict_paragraphs(&vectors, &texts, target)?)
            {
                scores[i] = s;
            }
        }
        Ok(scores)
    }
    fn describe(&self) -> String;
}

/// One (paragraph, target) pair to score: the paragraph's vector and text, and the target.
#[derive(Debug, Clone, Copy)]
pub struct PairInput<'a> {
    pub vector: &'a [f32],
    pub text: &'a str,
    pub target: &'a PreparedTarget,
}

/// The heads a run uses: an optional theme head and a stance head.
pub struct Heads {
    pub theme: Option<Box<dyn ThemeHead>>,
    pub stance: Box<dyn StanceHead>,
    /// "zero-shot" unless a trained head is loaded.
    pub kind: String,
    /// The targets a trained stance head saw in training (None for zero-shot stance).
    pub seen_targets: Option<Vec<String>>,
}

impl Heads {
    /// The zero-shot heads for a schema.
    pub fn zero_shot(embedder: &Embedder, schema: &crate::label::schema::Schema) -> Result<Self> {
        let theme: Option<Box<dyn ThemeHead>> = if schema.themes.is_empty() {
            None
        } else {
            Some(Box::new(zero_shot::ZeroShotTheme::build(embedder, schema)?))
        };
        Ok(Self {
            theme,
            stance: Box::new(zero_shot::ZeroShotStance::default()),
            kind: "zero-shot".into(),
            seen_targets: None,
        })
    }

    /// Replaces the zero-shot heads with trained ones where given.
    pub fn with_trained(mut self, trained: Vec<trained::TrainedHead>) -> Self {
        let mut kinds = Vec::new();
        for head in trained {
            match head.manifest.task {
                trained::Task::Theme => {
                    kinds.push("trained theme");
                    self.theme = Some(Box::new(trained::TrainedTheme(head)));
                }
                trained::Task::Stance => {
                    kinds.push("trained stance");
                    self.seen_targets = Some(head.manifest.training.targets.clone());
                    self.stance = Box::new(trained::TrainedStance(head));
                }
            }
        }
        if !kinds.is_empty() {
            self.kind = kinds.join(" + ");
        }
        self
    }

    /// No theme head and the zero-shot stance head: a base for trained heads that needs no
    /// encoder work.
    pub fn zero_shot_stance_only() -> Self {
        Self {
            theme: None,
            stance: Box::new(zero_shot::ZeroShotStance::default()),
            kind: "zero-shot".into(),
            seen_targets: None,
        }
    }

    pub fn describe(&self) -> String {
        let theme = self
            .theme
            .as_ref()
            .map_or("none".to_string(), |h| h.describe());
        format!("theme: {theme}; stance: {}", self.stance.describe())
    }

    pub fn short_name(&self) -> &str {
        &self.kind
    }
}

/// A target with what a stance head prepared for it.
#[derive(Debug, Clone, Default)]
pub struct PreparedTarget {
    pub id: String,
    pub text: String,
    /// Head-specific vectors (the zero-shot head keeps the target, favor and against prototypes).
    pub vectors: Vec<Vec<f32>>,
    /// The hypotheses an NLI head reads for each side.
    pub favor: Vec<String>,
    pub against: Vec<String>,
}

/// A theme decision: the top label with its probability, and every label's probability.
#[derive(Debug, Clone, PartialEq)]
pub struct ThemeDecision {
    pub label: String,
    pub score: f32,
    pub scores: Vec<(String, f32)>,
}

impl ThemeDecision {
    pub fn from_probabilities(labels: &[String], probabilities: &[f32]) -> Self {
        let best = argmax(probabilities);
        ThemeDecision {
            label: labels[best].clone(),
            score: probabilities[best],
            scores: labels
                .iter()
                .cloned()
                .zip(probabilities.iter().copied())
                .collect(),
        }
    }
}

/// A stance decision toward one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StanceDecision {
    pub label: Stance,
    pub score: f32,
    /// [favor, against, none].
    pub scores: [f32; 3],
}

impl StanceDecision {
    pub fn from_probabilities(scores: [f32; 3]) -> Self {
        let best = argmax(&scores);
        StanceDecision {
            label: Stance::ALL[best],
            score: scores[best],
            scores,
        }
    }
}

/// Index of the largest value; the first one on ties, so decisions are deterministic.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Softmax of `logits`, computed stably.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
