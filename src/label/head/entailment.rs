//! Themes by entailment through the stance model: each theme becomes a hypothesis ("This text
//! is about {theme}."), the cross-encoder reads (hypothesis, paragraph) the way it reads
//! (target, paragraph), and its `favor` logit, which SNLI's entailment pairs taught it, is the
//! theme's score; the probabilities are the softmax of those logits across the schema's themes,
//! as the zero-shot-classification pipeline of transformers does for one label out of many.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::label::schema::Schema;

use super::cross_encoder::CrossEncoderStance;
use super::{softmax, ThemeHead};

/// The hypothesis for a theme id: dashes and underscores read as spaces.
pub fn hypothesis(theme: &str) -> String {
    format!("This text is about {}.", theme.replace(['-', '_'], " "))
}

pub struct EntailmentTheme {
    model: Arc<CrossEncoderStance>,
    labels: Vec<String>,
    hypotheses: Vec<String>,
    name: String,
}

impl EntailmentTheme {
    /// The schema's themes through `model` (named `name` in reports).
    pub fn new(model: Arc<CrossEncoderStance>, schema: &Schema, name: &str) -> Result<Self> {
        if schema.themes.len() < 2 {
            return Err(Error::Usage {
                message: "--theme-head entailment needs a schema with at least two themes".into(),
            });
        }
        Ok(Self {
            model,
            labels: schema.theme_ids(),
            hypotheses: schema.themes.iter().map(|t| hypothesis(&t.id)).collect(),
            name: name.to_string(),
        })
    }
}

impl ThemeHead for EntailmentTheme {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn predict(&self, _paragraphs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        Err(Error::Usage {
            message: "this is a bug: the entailment theme head reads texts, not vectors".into(),
        })
    }

    fn predict_texts(&self, _vectors: &[&[f32]], texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let themes = self.hypotheses.len();
        let pairs: Vec<(&str, &str)> = texts
            .iter()
            .flat_map(|text| self.hypotheses.iter().map(move |h| (h.as_str(), *text)))
            .collect();
        let logits = self.model.pair_logits(&pairs)?;
        Ok(logits
            .chunks(themes)
            .map(|row| {
                let entailment: Vec<f32> = row.iter().map(|l| l[0]).collect();
                softmax(&entailment)
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!("entailment through {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypotheses_read_theme_ids_as_words() {
        assert_eq!(
            hypothesis("sino-russian-relations"),
            "This text is about sino russian relations."
        );
        assert_eq!(hypothesis("Sci/Tech"), "This text is about Sci/Tech.");
    }
}
