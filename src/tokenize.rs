//! Tokenization and windows: text in, complete sequences of token ids out.
//!
//! The shipped `tokenizer.json` files often bake in padding and truncation (all-MiniLM-L6-v2 pads
//! and cuts at 128); both are switched off here. A paragraph longer than the model's limit is never
//! cut: its content tokens are split into overlapping windows, each wrapped in the model's special
//! tokens, and the caller pools the windows.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// A paragraph's tokens and the windows the model will see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Length of the whole paragraph as one sequence, special tokens included.
    pub tokens: usize,
    /// Complete sequences (special tokens included), each no longer than the limit.
    pub windows: Vec<Vec<u32>>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
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
        Ok(Self {
            prefix: ids[..leading].to_vec(),
            suffix: ids[ids.len() - trailing..].to_vec(),
            inner,
            max_tokens,
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
        let windows = window_starts(content.len(), self.body())
            .into_iter()
            .map(|start| {
                let mut window = self.prefix.clone();
                window.extend_from_slice(&content[start..start + self.body()]);
                window.extend_from_slice(&self.suffix);
                window
            })
            .collect();
        Tokenized { tokens, windows }
    }

    fn body(&self) -> usize {
        self.max_tokens - self.prefix.len() - self.suffix.len()
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
