//! K-fold cross-validation of trained heads: train on K-1 folds, score the held-out fold, so a
//! small labelled set can be scored without testing on training data.
//!
//! Folds are drawn with a seeded generator. When every stance row names a free-text target
//! (VAST, SemEval), rows are grouped by target, so each fold's targets are unseen in training;
//! otherwise rows are assigned one by one.

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::eval::bootstrap::SplitMix64;
use crate::eval::{StanceOutcome, ThemeOutcome};
use crate::gold::{self, GoldRow, TargetCache};
use crate::head::linear::TrainOptions;
use crate::head::trained::{self, EncoderRecord, TrainingData};
use crate::head::Heads;
use crate::schema::Schema;

/// How rows were split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    ByTarget,
    ByRow,
}

/// The fold of each row.
pub fn assign_folds(
    rows: &[GoldRow],
    schema: &Schema,
    k: usize,
    seed: u64,
) -> (Vec<usize>, Grouping) {
    let free_targets = rows.iter().any(|r| !r.stances.is_empty())
        && rows.iter().all(|r| {
            r.stances
                .iter()
                .all(|(t, _)| !schema.targets.iter().any(|s| &s.id == t))
        });
    let (keys, grouping): (Vec<String>, Grouping) = if free_targets {
        (
            rows.iter()
                .map(|r| {
                    r.stances
                        .first()
                        .map(|(t, _)| t.clone())
                        .unwrap_or_default()
                })
                .collect(),
            Grouping::ByTarget,
        )
    } else {
        (
            (0..rows.len()).map(|i| i.to_string()).collect(),
            Grouping::ByRow,
        )
    };
    let mut groups: Vec<String> = keys.clone();
    groups.sort();
    groups.dedup();
    SplitMix64::new(seed).shuffle(&mut groups);
    let fold_of_group: std::collections::HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i % k))
        .collect();
    (
        keys.iter().map(|key| fold_of_group[key.as_str()]).collect(),
        grouping,
    )
}

/// Cross-validated predictions for every gold row.
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    rows: &[GoldRow],
    vectors: &[&[f32]],
    schema: &Schema,
    embedder: &Embedder,
    encoder: &EncoderRecord,
    k: usize,
    options: &TrainOptions,
) -> Result<(Vec<ThemeOutcome>, Vec<StanceOutcome>, Grouping)> {
    if k < 2 {
        return Err(Error::Usage {
            message: format!("--cv {k}: cross-validation needs at least 2 folds"),
        });
    }
    let (folds, grouping) = assign_folds(rows, schema, k, options.seed);
    let has_theme = rows.iter().any(|r| r.theme.is_some());
    let has_stance = rows.iter().any(|r| !r.stances.is_empty());
    let mut themes = Vec::new();
    let mut stances = Vec::new();
    for fold in 0..k {
        let train_index: Vec<usize> = (0..rows.len()).filter(|&i| folds[i] != fold).collect();
        let test_index: Vec<usize> = (0..rows.len()).filter(|&i| folds[i] == fold).collect();
        if test_index.is_empty() {
            continue;
        }
        let train_rows: Vec<GoldRow> = train_index.iter().map(|&i| rows[i].clone()).collect();
        let train_vectors: Vec<&[f32]> = train_index.iter().map(|&i| vectors[i]).collect();
        let data = TrainingData {
            rows: &train_rows,
            vectors: &train_vectors,
            files: Vec::new(),
            sha256: String::new(),
        };
        let mut trained_heads = Vec::new();
        if has_theme {
            trained_heads.push(trained::train_theme(
                &data,
                schema,
                encoder.clone(),
                options,
            )?);
        }
        if has_stance {
            trained_heads.push(trained::train_stance(
                &data,
                schema,
                embedder,
                encoder.clone(),
                options,
            )?);
        }
        let heads = Heads::zero_shot_stance_only().with_trained(trained_heads);
        let test_rows: Vec<GoldRow> = test_index.iter().map(|&i| rows[i].clone()).collect();
        let test_vectors: Vec<&[f32]> = test_index.iter().map(|&i| vectors[i]).collect();
        let mut targets = TargetCache::new(schema);
        let (t, s) = gold::predict(
            &test_rows,
            &test_vectors,
            heads.theme.as_deref(),
            heads.stance.as_ref(),
            embedder,
            &mut targets,
        )?;
        // Tag each outcome with its row, so the result comes back in input order.
        let theme_rows = test_index.iter().filter(|&&i| rows[i].theme.is_some());
        themes.extend(theme_rows.copied().zip(t));
        let stance_rows = test_index
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i, rows[i].stances.len()));
        stances.extend(stance_rows.zip(s));
    }
    themes.sort_by_key(|(i, _)| *i);
    stances.sort_by_key(|(i, _)| *i);
    Ok((
        themes.into_iter().map(|(_, o)| o).collect(),
        stances.into_iter().map(|(_, o)| o).collect(),
        grouping,
    ))
}
