//! Running a configuration on gold rows: every row is labelled through the same
//! [`Classifier::label`] path as `classify`, and the predictions become outcome rows.

use crate::error::Result;
use crate::eval::gold::GoldRow;
use crate::eval::{StanceOutcome, ThemeOutcome};
use crate::label::classify::{Classifier, Request};

/// Predictions for gold rows whose vectors are known: the theme of every row with a gold
/// theme, and the stance of every (row, target) pair with a gold stance, all pairs in one call,
/// reported in row order.
pub fn label_gold(
    classifier: &mut Classifier<'_>,
    rows: &[GoldRow],
    vectors: &[&[f32]],
) -> Result<(Vec<ThemeOutcome>, Vec<StanceOutcome>)> {
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let requests: Vec<Request<'_>> = rows
        .iter()
        .map(|row| Request {
            theme: row.theme.is_some(),
            targets: row.stances.iter().map(|(t, _)| t.as_str()).collect(),
        })
        .collect();
    let labels = classifier.label(&texts, vectors, &requests)?;
    let mut themes = Vec::new();
    let mut stances = Vec::new();
    for (row, labels) in rows.iter().zip(labels) {
        if let (Some(gold), Some(predicted)) = (&row.theme, labels.theme) {
            themes.push(ThemeOutcome {
                id: row.id.clone(),
                text: row.text.clone(),
                gold: gold.clone(),
                also: row.theme_also.clone(),
                predicted: predicted.label,
            });
        }
        for ((target, gold), (_, decision)) in row.stances.iter().zip(labels.stances) {
            stances.push(StanceOutcome {
                id: row.id.clone(),
                text: row.text.clone(),
                target: target.clone(),
                gold: *gold,
                predicted: decision.label,
            });
        }
    }
    Ok((themes, stances))
}
