//! The cross-encoder stance head: a pair model reads `[CLS] target [SEP] paragraph [SEP]` and
//! gives logits for favor, against and none. Paragraphs are paired with each target, batched by
//! tokens; a paragraph longer than the model's window is split into windows, each paired with
//! the whole target, and the windows' logits combine as the model declares.

use crate::encode::batch;
use crate::encode::embed::DEFAULT_BATCH_TOKENS;
use crate::encode::model::{Batch, Model};
use crate::encode::tokenize::{PairTokenized, TextTokenizer};
use crate::error::{Error, Result};
use crate::label::schema::Target;
use crate::label::stance::Stance;

use super::{softmax, PreparedTarget, StanceHead};

pub struct CrossEncoderStance {
    tokenizer: TextTokenizer,
    model: Box<dyn Model>,
    /// For favor, against and none, the index of its logit.
    order: [usize; 3],
    name: String,
    batch_tokens: usize,
    max_rows: usize,
}

impl CrossEncoderStance {
    /// Wraps a pair model whose labels name favor, against and none (in any order).
    pub fn new(tokenizer: TextTokenizer, model: Box<dyn Model>, name: &str) -> Result<Self> {
        if !model.offers().predict {
            return Err(Error::Usage {
                message: format!("model '{name}' gives vectors only; it cannot score pairs"),
            });
        }
        if !tokenizer.encodes_pairs() {
            return Err(Error::Usage {
                message: format!("model '{name}': its tokenizer does not encode text pairs"),
            });
        }
        let labels = model.labels().to_vec();
        let mut order = [0usize; 3];
        for stance in Stance::ALL {
            order[stance.index()] = labels
                .iter()
                .position(|l| l.parse::<Stance>() == Ok(stance))
                .ok_or_else(|| Error::Usage {
                    message: format!(
                        "model '{name}' has labels [{}], not favor, against and none",
                        labels.join(", ")
                    ),
                })?;
        }
        Ok(Self {
            tokenizer,
            model,
            order,
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

    /// [favor, against, none] probabilities of each paragraph toward `target`.
    pub fn score(&self, target: &str, paragraphs: &[&str]) -> Result<Vec<[f32; 3]>> {
        let tokenized = self.tokenizer.tokenize_pairs(target, paragraphs)?;
        self.score_tokenized(&tokenized)
    }

    /// [favor, against, none] probabilities of each (target, paragraph) pair, targets mixed,
    /// all pairs' windows batched together by tokens.
    pub fn score_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<[f32; 3]>> {
        Ok(probabilities(&self.pair_logits(pairs)?))
    }

    /// [favor, against, none] logits of each (target, paragraph) pair (windows combined as
    /// the model declares), as [`CrossEncoderStance::score_pairs`] batches them.
    pub fn pair_logits(&self, pairs: &[(&str, &str)]) -> Result<Vec<[f32; 3]>> {
        // Each distinct target is tokenized once, with all of its paragraphs.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, (target, _)) in pairs.iter().enumerate() {
            match groups.iter_mut().find(|(t, _)| t == target) {
                Some((_, members)) => members.push(i),
                None => groups.push((target, vec![i])),
            }
        }
        let mut tokenized: Vec<Option<PairTokenized>> = vec![None; pairs.len()];
        for (target, members) in groups {
            let texts: Vec<&str> = members.iter().map(|&i| pairs[i].1).collect();
            for (&i, pair) in members
                .iter()
                .zip(self.tokenizer.tokenize_pairs(target, &texts)?)
            {
                tokenized[i] = Some(pair);
            }
        }
        let tokenized: Vec<PairTokenized> = tokenized
            .into_iter()
            .map(|t| t.expect("this is a bug: a pair was not tokenized"))
            .collect();
        self.logits_tokenized(&tokenized)
    }

    fn score_tokenized(&self, tokenized: &[PairTokenized]) -> Result<Vec<[f32; 3]>> {
        Ok(probabilities(&self.logits_tokenized(tokenized)?))
    }

    fn logits_tokenized(&self, tokenized: &[PairTokenized]) -> Result<Vec<[f32; 3]>> {
        Ok(
            pair_logits(&*self.model, tokenized, self.batch_tokens, self.max_rows)?
                .into_iter()
                .map(|logits| {
                    [
                        logits[self.order[0]],
                        logits[self.order[1]],
                        logits[self.order[2]],
                    ]
                })
                .collect(),
        )
    }
}

/// Runs every window of every pair through `model`, batched by tokens, and combines each
/// pair's windows as the model declares: one logit row per pair, in order.
pub(crate) fn pair_logits(
    model: &dyn Model,
    tokenized: &[PairTokenized],
    batch_tokens: usize,
    max_rows: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut sequences = Vec::new();
    for pair in tokenized {
        sequences.extend(pair.windows.iter());
    }
    let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
    let mut logits: Vec<Vec<f32>> = vec![Vec::new(); sequences.len()];
    for planned in batch::plan(&lengths, batch_tokens, max_rows) {
        let inputs: Vec<&crate::encode::tokenize::Sequence> =
            planned.iter().map(|&i| sequences[i]).collect();
        let outputs = model.predict(&Batch::from_sequences(&inputs))?;
        for (&i, row) in planned.iter().zip(outputs) {
            logits[i] = row;
        }
    }
    let combine = model.window_combine();
    let mut next = 0;
    Ok(tokenized
        .iter()
        .map(|pair| {
            let windows: Vec<(Vec<f32>, usize)> = pair
                .windows
                .iter()
                .map(|w| {
                    let row = std::mem::take(&mut logits[next]);
                    next += 1;
                    (row, w.len())
                })
                .collect();
            combine.combine(&windows)
        })
        .collect())
}

/// The softmax of each [favor, against, none] logit triple.
fn probabilities(logits: &[[f32; 3]]) -> Vec<[f32; 3]> {
    logits
        .iter()
        .map(|l| {
            let p = softmax(l);
            [p[0], p[1], p[2]]
        })
        .collect()
}

impl StanceHead for CrossEncoderStance {
    fn prepare(
        &self,
        _embedder: &crate::encode::embed::Embedder,
        target: &Target,
    ) -> Result<PreparedTarget> {
        Ok(PreparedTarget {
            id: target.id.clone(),
            text: target.text.clone(),
            vectors: Vec::new(),
            ..PreparedTarget::default()
        })
    }

    fn predict(&self, _paragraphs: &[&[f32]], _target: &PreparedTarget) -> Result<Vec<[f32; 3]>> {
        Err(Error::Usage {
            message: "this is a bug: the cross-encoder reads paragraph texts, not vectors".into(),
        })
    }

    fn predict_paragraphs(
        &self,
        _vectors: &[&[f32]],
        texts: &[&str],
        target: &PreparedTarget,
    ) -> Result<Vec<[f32; 3]>> {
        self.score(&target.text, texts)
    }

    fn predict_pairs(&self, pairs: &[super::PairInput<'_>]) -> Result<Vec<[f32; 3]>> {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.target.text.as_str(), p.text))
            .collect();
        self.score_pairs(&pairs)
    }

    fn describe(&self) -> String {
        format!(
            "cross-encoder {} ({})",
            self.name,
            self.model.device_label()
        )
    }
}

/// The same model shared by the stance head and an entailment theme head.
impl StanceHead for std::sync::Arc<CrossEncoderStance> {
    fn prepare(
        &self,
        embedder: &crate::encode::embed::Embedder,
        target: &Target,
    ) -> Result<PreparedTarget> {
        (**self).prepare(embedder, target)
    }

    fn predict(&self, paragraphs: &[&[f32]], target: &PreparedTarget) -> Result<Vec<[f32; 3]>> {
        (**self).predict(paragraphs, target)
    }

    fn predict_paragraphs(
        &self,
        vectors: &[&[f32]],
        texts: &[&str],
        target: &PreparedTarget,
    ) -> Result<Vec<[f32; 3]>> {
        (**self).predict_paragraphs(vectors, texts, target)
    }

    fn predict_pairs(&self, pairs: &[super::PairInput<'_>]) -> Result<Vec<[f32; 3]>> {
        (**self).predict_pairs(pairs)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Loads a stance model: its adapter merged into the base model's matrices, on the engine and
/// in the precision `options` give, with the base model's tokenizer at the length the adapter
/// was trained on. The base must be the one the adapter names (checked by sha256).
pub fn load(
    adapter: &crate::encode::model::adapter::Adapter,
    base: &crate::encode::model::fetch::ResolvedModel,
    options: &crate::encode::model::LoadOptions,
    name: &str,
) -> Result<CrossEncoderStance> {
    adapter.check_base(&base.name, &base.weights_checksum()?)?;
    let max_tokens = adapter.card.max_tokens;
    let tokenizer = TextTokenizer::load(&base.files.tokenizer, max_tokens)?;
    let model =
        crate::encode::model::BertEncoder::load_weights(&base.files, Some(adapter), options)?;
    if max_tokens > model.max_positions() {
        return Err(Error::Usage {
            message: format!(
                "stance model '{name}' was trained on {max_tokens} tokens, more than its base \
                 model's {} positions",
                model.max_positions()
            ),
        });
    }
    CrossEncoderStance::new(tokenizer, Box::new(model), name)
}
