//! Zero-shot themes and stances from an NLI model (a sequence classifier trained on premise /
//! hypothesis pairs), computed as transformers' `zero-shot-classification` pipeline does.
//!
//! - The entailment logit is the first label of `label2id` whose name starts with "entail" (any
//!   case); the contradiction logit is label 0, or the last label when entailment is label 0
//!   (the pipeline's rule, which also covers two-label entailment / not_entailment models).
//! - Themes: the paragraph is the premise and the schema's theme template, filled with each
//!   theme's label, the hypothesis. One label: the softmax of the entailment logits across the
//!   themes. Multi-label: each theme's softmax over [contradiction, entailment].
//! - Stance toward a target: the probability that the paragraph entails a favor hypothesis and
//!   an against hypothesis (the target's own `favor` / `against` statements, the best of them,
//!   else the schema's templates filled with the target's text), each the softmax over
//!   [contradiction, entailment]. `none` scores the schema's `none_threshold`: the label is the
//!   larger side when it reaches the threshold, else `none`. The three scores are divided by
//!   their sum so that they read like the other heads' probabilities; they are scores, not
//!   calibrated probabilities.
//!
//! A paragraph longer than the model's window is read in windows, each followed by the whole
//! hypothesis, and the windows' logits are combined as the model declares (the pipeline would
//! cut the paragraph instead; for a paragraph that fits, the two are the same).

use std::sync::Arc;

use crate::encode::embed::DEFAULT_BATCH_TOKENS;
use crate::encode::model::Model;
use crate::encode::tokenize::TextTokenizer;
use crate::error::{Error, Result};
use crate::label::schema::{fill_template, NliSettings, Schema, Target};

use super::cross_encoder::pair_logits;
use super::{softmax, PreparedTarget, StanceHead, ThemeHead};

/// An NLI model with its tokenizer and the positions of its entailment and contradiction logits.
pub struct NliModel {
    tokenizer: TextTokenizer,
    model: Arc<dyn Model>,
    entailment: usize,
    contradiction: usize,
    name: String,
    batch_tokens: usize,
    max_rows: usize,
}

impl NliModel {
    /// Wraps a pair classifier; `label2id` is the config's, in its order (the pipeline takes the
    /// first label that starts with "entail").
    pub fn new(
        tokenizer: TextTokenizer,
        model: Arc<dyn Model>,
        label2id: &[(String, usize)],
        name: &str,
    ) -> Result<Self> {
        if !model.offers().predict {
            return Err(Error::Usage {
                message: format!(
                    "model '{name}' has no classification head; an NLI model is a \
                     *ForSequenceClassification checkpoint"
                ),
            });
        }
        if !tokenizer.encodes_pairs() {
            return Err(Error::Usage {
                message: format!("model '{name}': its tokenizer does not encode text pairs"),
            });
        }
        let classes = model.labels().len();
        let entailment = label2id
            .iter()
            .find(|(label, _)| label.to_lowercase().starts_with("entail"))
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::Usage {
                message: format!(
                    "model '{name}' has no label that starts with \"entail\" in label2id \
                     (labels: {}), so it is not an NLI model stancer can read",
                    model.labels().join(", ")
                ),
            })?;
        if entailment >= classes || classes < 2 {
            return Err(Error::Usage {
                message: format!(
                    "model '{name}': label2id puts entailment at {entailment}, but the model has \
                     {classes} outputs"
                ),
            });
        }
        let contradiction = if entailment == 0 { classes - 1 } else { 0 };
        Ok(Self {
            tokenizer,
            model,
            entailment,
            contradiction,
            name: name.to_string(),
            batch_tokens: DEFAULT_BATCH_TOKENS,
            max_rows: 64,
        })
    }

    /// Sets the token budget of one batch.
    #[must_use]
    pub fn batch_tokens(mut self, tokens: usize) -> Self {
        self.batch_tokens = tokens.max(1);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index of the entailment logit.
    pub fn entailment_index(&self) -> usize {
        self.entailment
    }

    /// The model's logits for each (premise, hypothesis) pair, windows combined; every
    /// distinct hypothesis is tokenized once, and all pairs are batched together by tokens.
    pub fn logits(&self, pairs: &[(&str, &str)]) -> Result<Vec<Vec<f32>>> {
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, (_, hypothesis)) in pairs.iter().enumerate() {
            match groups.iter_mut().find(|(h, _)| h == hypothesis) {
                Some((_, members)) => members.push(i),
                None => groups.push((hypothesis, vec![i])),
            }
        }
        let mut tokenized = vec![None; pairs.len()];
        for (hypothesis, members) in groups {
            let premises: Vec<&str> = members.iter().map(|&i| pairs[i].0).collect();
            for (&i, pair) in members.iter().zip(
                self.tokenizer
                    .tokenize_premise_pairs(hypothesis, &premises)?,
            ) {
                tokenized[i] = Some(pair);
            }
        }
        let tokenized: Vec<_> = tokenized
            .into_iter()
            .map(|t| t.expect("this is a bug: a pair was not tokenized"))
            .collect();
        pair_logits(&*self.model, &tokenized, self.batch_tokens, self.max_rows)
    }

    /// P(entailment) of one pair's logits on its own: the softmax over [contradiction,
    /// entailment].
    pub fn entailed(&self, logits: &[f32]) -> f32 {
        softmax(&[logits[self.contradiction], logits[self.entailment]])[1]
    }

    fn describe(&self) -> String {
        format!("NLI {} ({})", self.name, self.model.device_label())
    }
}

/// Themes by NLI: one hypothesis per theme.
pub struct NliTheme {
    model: Arc<NliModel>,
    labels: Vec<String>,
    hypotheses: Vec<String>,
    multi_label: bool,
}

impl NliTheme {
    pub fn new(model: Arc<NliModel>, schema: &Schema) -> Result<Self> {
        Ok(Self {
            labels: schema.theme_ids(),
            hypotheses: schema
                .themes
                .iter()
                .map(|t| fill_template(&schema.nli.theme_template, &t.label))
                .collect(),
            multi_label: schema.nli.multi_label,
            model,
        })
    }

    /// One score per theme for each text (see the module's rule).
    pub fn scores(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let themes = self.hypotheses.len();
        let pairs: Vec<(&str, &str)> = texts
            .iter()
            .flat_map(|text| self.hypotheses.iter().map(move |h| (*text, h.as_str())))
            .collect();
        let logits = self.model.logits(&pairs)?;
        Ok(logits
            .chunks(themes)
            .map(|row| {
                if self.multi_label || themes == 1 {
                    row.iter().map(|l| self.model.entailed(l)).collect()
                } else {
                    let entailment: Vec<f32> =
                        row.iter().map(|l| l[self.model.entailment]).collect();
                    softmax(&entailment)
                }
            })
            .collect())
    }
}

impl ThemeHead for NliTheme {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn predict(&self, _paragraphs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        Err(Error::Usage {
            message: "this is a bug: the NLI theme head reads texts, not vectors".into(),
        })
    }

    fn predict_texts(&self, _vectors: &[&[f32]], texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.scores(texts)
    }

    fn describe(&self) -> String {
        format!(
            "{} zero-shot themes{}",
            self.model.describe(),
            if self.multi_label {
                " (multi-label)"
            } else {
                ""
            }
        )
    }
}

/// Stances by NLI: favor and against hypotheses per target, `none` by threshold.
pub struct NliStance {
    model: Arc<NliModel>,
    settings: NliSettings,
}

impl NliStance {
    pub fn new(model: Arc<NliModel>, settings: &NliSettings) -> Self {
        Self {
            model,
            settings: settings.clone(),
        }
    }

    /// The favor and against hypotheses for a target.
    pub fn hypotheses(&self, target: &Target) -> (Vec<String>, Vec<String>) {
        let side = |statements: &[String], template: &str| {
            if statements.is_empty() {
                vec![fill_template(template, &target.text)]
            } else {
                statements.to_vec()
            }
        };
        (
            side(&target.favor, &self.settings.favor_template),
            side(&target.against, &self.settings.against_template),
        )
    }

    /// [favor, against, none] from the best favor and against entailment probabilities.
    pub fn decide(&self, favor: f32, against: f32) -> [f32; 3] {
        let none = self.settings.none_threshold;
        let sum = favor + against + none;
        if sum <= 0.0 {
            return [0.0, 0.0, 1.0];
        }
        [favor / sum, against / sum, none / sum]
    }
}

impl StanceHead for NliStance {
    fn prepare(
        &self,
        _embedder: &crate::encode::embed::Embedder,
        target: &Target,
    ) -> Result<PreparedTarget> {
        let (favor, against) = self.hypotheses(target);
        Ok(PreparedTarget {
            id: target.id.clone(),
            text: target.text.clone(),
            favor,
            against,
            ..PreparedTarget::default()
        })
    }

    fn predict(&self, _paragraphs: &[&[f32]], _target: &PreparedTarget) -> Result<Vec<[f32; 3]>> {
        Err(Error::Usage {
            message: "this is a bug: the NLI stance head reads paragraph texts, not vectors".into(),
        })
    }

    fn predict_pairs(&self, pairs: &[super::PairInput<'_>]) -> Result<Vec<[f32; 3]>> {
        // Every hypothesis of every pair, in one call, so that the model batches them all.
        let mut inputs: Vec<(&str, &str)> = Vec::new();
        for pair in pairs {
            for hypothesis in pair.target.favor.iter().chain(&pair.target.against) {
                inputs.push((pair.text, hypothesis.as_str()));
            }
        }
        let logits = self.model.logits(&inputs)?;
        let mut rows = logits.iter();
        Ok(pairs
            .iter()
            .map(|pair| {
                let mut best = |count: usize| {
                    (0..count)
                        .map(|_| {
                            self.model
                                .entailed(rows.next().expect("this is a bug: a hypothesis lost"))
                        })
                        .fold(0.0f32, f32::max)
                };
                let favor = best(pair.target.favor.len());
                let against = best(pair.target.against.len());
                self.decide(favor, against)
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!(
            "{} zero-shot stance (none below {})",
            self.model.describe(),
            self.settings.none_threshold
        )
    }
}

/// The NLI heads' model: the resolved model's tokenizer (at its length limit) around `model`,
/// with the entailment label read off its config.json.
pub fn load(
    resolved: &crate::encode::model::fetch::ResolvedModel,
    model: Arc<dyn Model>,
) -> Result<NliModel> {
    let config = crate::encode::model::read_config(&resolved.files.config)?;
    let label2id = match (&config.label2id, &config.labels) {
        (Some(label2id), _) => label2id.clone(),
        // transformers derives label2id from id2label when only that is written.
        (None, Some(labels)) => labels.iter().cloned().zip(0..).collect(),
        (None, None) => {
            return Err(Error::ModelConfig {
                path: resolved.files.config.clone(),
                message: "this sequence classifier has no label2id or id2label, so its \
                          entailment output cannot be found; add them to config.json"
                    .into(),
            })
        }
    };
    let tokenizer = TextTokenizer::load(&resolved.files.tokenizer, resolved.max_tokens)?;
    NliModel::new(tokenizer, model, &label2id, &resolved.name)
}
