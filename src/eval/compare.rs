//! Comparing configurations on the same gold: a paired bootstrap on the difference of a score,
//! and McNemar's exact test on which rows each configuration gets right.
//!
//! Both tests are paired: they look at the same rows under both configurations, which removes the
//! variation between paragraphs that makes two separate intervals overlap even when one
//! configuration is better on nearly every paragraph. For stance, McNemar treats the (paragraph,
//! target) rows as independent, which they are not quite; the bootstrap resamples paragraphs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::bootstrap::{clusters_by_id, percentile_interval, resample, Bootstrap, Interval};
use super::metrics::Metric;
use super::report::{evaluate, theme_label_set, theme_labelled, EvalReport, Labelled};
use super::{Configuration, StanceOutcome, ThemeOutcome};
use crate::error::{Error, Result};

/// A difference is called significant when its two-sided p-value is below this.
pub const SIGNIFICANCE_LEVEL: f64 = 0.05;

/// Several configurations scored on the same gold, with a paired test for every pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub bootstrap: Bootstrap,
    pub significance_level: f64,
    /// Each configuration's report, in the order given.
    pub configurations: Vec<EvalReport>,
    /// Every pair (a, b) with a before b in `configurations`.
    pub pairs: Vec<PairComparison>,
}

/// The tests between two configurations; differences are `b - a`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairComparison {
    pub a: String,
    pub b: String,
    pub theme: Option<TaskComparison>,
    pub stance: Option<TaskComparison>,
}

/// Paired tests on one task (theme or stance).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskComparison {
    /// Rows compared.
    pub n: usize,
    /// Paired bootstrap tests, one per metric defined for both configurations.
    pub tests: Vec<PairedTest>,
    pub mcnemar: McNemar,
}

/// A paired bootstrap test of `b - a` on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    pub metric: Metric,
    pub a: f64,
    pub b: f64,
    pub difference: f64,
    /// Percentile interval of the resampled differences.
    pub difference_ci: Option<Interval>,
    /// Two-sided: twice the smaller share of resampled differences on either side of zero, each
    /// share counted as `(1 + count) / (1 + resamples)` so it is never zero. The test thus agrees
    /// with whether the interval at the same level holds zero. `None` when the bootstrap is off.
    pub p_value: Option<f64>,
    pub significant: bool,
}

/// McNemar's exact test on per-row correctness (strict accuracy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Rows a gets right and b gets wrong.
    pub only_a_correct: usize,
    /// Rows b gets right and a gets wrong.
    pub only_b_correct: usize,
    pub p_value: f64,
    pub significant: bool,
}

/// Scores every configuration and tests every pair. All configurations must cover the same
/// rows with the same gold (same paragraph ids, and for stance the same targets), in any order.
pub fn compare<S: AsRef<str>>(
    configurations: &[Configuration],
    theme_labels: &[S],
    bootstrap: &Bootstrap,
) -> Result<Comparison> {
    let Some(first) = configurations.first() else {
        return Err(Error::Usage {
            message: "nothing to compare: give at least one configuration".to_string(),
        });
    };
    // Put every configuration's rows in the first one's order, checking they agree.
    let themes = configurations
        .iter()
        .map(|c| align_themes(first, c))
        .collect::<Result<Vec<_>>>()?;
    let stances = configurations
        .iter()
        .map(|c| align_stances(first, c))
        .collect::<Result<Vec<_>>>()?;

    let all_theme_rows: Vec<ThemeOutcome> = themes.iter().flatten().cloned().collect();
    let labels = theme_label_set(theme_labels, &all_theme_rows);
    let theme_labelled: Vec<Labelled> = themes
        .iter()
        .map(|rows| theme_labelled(&labels, rows))
        .collect();
    let stance_labelled: Vec<Labelled> = stances.iter().map(Labelled::stances).collect();
    let theme_clusters = clusters_by_id(first.themes.iter().map(|r| r.id.as_str()));
    let stance_clusters = clusters_by_id(first.stances.iter().map(|r| r.id.as_str()));

    let mut pairs = Vec::new();
    for a in 0..configurations.len() {
        for b in a + 1..configurations.len() {
            let theme = (!first.themes.is_empty()).then(|| {
                compare_task(
                    &theme_labelled[a],
                    &theme_labelled[b],
                    &theme_clusters,
                    &[Metric::MacroF1, Metric::Accuracy],
                    bootstrap,
                )
            });
            let stance = (!first.stances.is_empty()).then(|| {
                compare_task(
                    &stance_labelled[a],
                    &stance_labelled[b],
                    &stance_clusters,
                    &[Metric::MacroF1, Metric::FAvg, Metric::Accuracy],
                    bootstrap,
                )
            });
            pairs.push(PairComparison {
                a: configurations[a].name.clone(),
                b: configurations[b].name.clone(),
                theme,
                stance,
            });
        }
    }
    Ok(Comparison {
        bootstrap: *bootstrap,
        significance_level: SIGNIFICANCE_LEVEL,
        configurations: configurations
            .iter()
            .map(|c| evaluate(c, theme_labels, bootstrap))
            .collect(),
        pairs,
    })
}

fn mismatch(message: String) -> Error {
    Error::Usage {
        message: format!("{message}; compare configurations run on the same gold file"),
    }
}

/// `other`'s theme rows in `first`'s order.
fn align_themes(first: &Configuration, other: &Configuration) -> Result<Vec<ThemeOutcome>> {
    let by_id = unique_rows(other, &other.themes, |row| row.id.clone(), "theme")?;
    if other.themes.len() != first.themes.len() {
        return Err(mismatch(format!(
            "'{}' has {} theme rows and '{}' has {}",
            first.name,
            first.themes.len(),
            other.name,
            other.themes.len()
        )));
    }
    first
        .themes
        .iter()
        .map(|row| {
            let Some(&found) = by_id.get(&row.id) else {
                return Err(mismatch(format!(
                    "paragraph '{}' has a theme in '{}' but not in '{}'",
                    row.id, first.name, other.name
                )));
            };
            let found = &other.themes[found];
            if found.gold != row.gold {
                return Err(mismatch(format!(
                    "paragraph '{}' has gold theme '{}' in '{}' but '{}' in '{}'",
                    row.id, row.gold, first.name, found.gold, other.name
                )));
            }
            Ok(found.clone())
        })
        .collect()
}

/// `other`'s stance rows in `first`'s order.
fn align_stances(first: &Configuration, other: &Configuration) -> Result<Vec<StanceOutcome>> {
    let key = |row: &StanceOutcome| (row.id.clone(), row.target.clone());
    let by_key = unique_rows(other, &other.stances, key, "stance")?;
    if other.stances.len() != first.stances.len() {
        return Err(mismatch(format!(
            "'{}' has {} stance rows and '{}' has {}",
            first.name,
            first.stances.len(),
            other.name,
            other.stances.len()
        )));
    }
    first
        .stances
        .iter()
        .map(|row| {
            let Some(&found) = by_key.get(&key(row)) else {
                return Err(mismatch(format!(
                    "paragraph '{}' has a stance toward '{}' in '{}' but not in '{}'",
                    row.id, row.target, first.name, other.name
                )));
            };
            let found = &other.stances[found];
            if found.gold != row.gold {
                return Err(mismatch(format!(
                    "paragraph '{}' has gold stance {} toward '{}' in '{}' but {} in '{}'",
                    row.id, row.gold, row.target, first.name, found.gold, other.name
                )));
            }
            Ok(found.clone())
        })
        .collect()
}

/// Row positions by key, refusing a key that appears twice (pairing would be ambiguous).
fn unique_rows<T, K: std::hash::Hash + Eq + std::fmt::Debug>(
    configuration: &Configuration,
    rows: &[T],
    key: impl Fn(&T) -> K,
    task: &str,
) -> Result<HashMap<K, usize>> {
    let mut positions = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if let Some(_earlier) = positions.insert(key(row), i) {
            return Err(mismatch(format!(
                "'{}' has two {task} rows for {:?}",
                configuration.name,
                key(row)
            )));
        }
    }
    Ok(positions)
}

fn compare_task(
    a: &Labelled,
    b: &Labelled,
    clusters: &[Vec<usize>],
    metrics: &[Metric],
    bootstrap: &Bootstrap,
) -> TaskComparison {
    let tests = metrics
        .iter()
        .filter_map(|&metric| paired_bootstrap(a, b, clusters, metric, bootstrap))
        .collect();
    let rows = 0..a.gold.len();
    let only_a_correct = rows
        .clone()
        .filter(|&r| a.correct(r) && !b.correct(r))
        .count();
    let only_b_correct = rows.filter(|&r| !a.correct(r) && b.correct(r)).count();
    let p_value = mcnemar_exact(only_a_correct, only_b_correct);
    TaskComparison {
        n: a.gold.len(),
        tests,
        mcnemar: McNemar {
            only_a_correct,
            only_b_correct,
            p_value,
            significant: p_value < SIGNIFICANCE_LEVEL,
        },
    }
}

/// The paired bootstrap of `b - a` on one metric; `None` when the metric is undefined for either
/// configuration on the full rows.
fn paired_bootstrap(
    a: &Labelled,
    b: &Labelled,
    clusters: &[Vec<usize>],
    metric: Metric,
    bootstrap: &Bootstrap,
) -> Option<PairedTest> {
    let (all_a, all_b) = (a.all_counts(), b.all_counts());
    let score_a = all_a.score(metric)?;
    let score_b = all_b.score(metric)?;
    // A class either side predicts but the gold lacks stays in every resample's average (see
    // Counts::score_within).
    let (false_alarms_a, false_alarms_b) =
        (all_a.predicted_never_gold(), all_b.predicted_never_gold());
    let [differences] = resample(clusters, bootstrap, |rows| {
        let a = a.counts(rows).score_within(metric, &false_alarms_a);
        let b = b.counts(rows).score_within(metric, &false_alarms_b);
        [a.zip(b).map(|(a, b)| b - a)]
    });
    let p_value = two_sided_p(&differences);
    Some(PairedTest {
        metric,
        a: score_a,
        b: score_b,
        difference: score_b - score_a,
        difference_ci: percentile_interval(&differences, bootstrap.confidence),
        p_value,
        significant: p_value.is_some_and(|p| p < SIGNIFICANCE_LEVEL),
    })
}

/// Twice the smaller tail share of resampled differences around zero (see [`PairedTest`]).
fn two_sided_p(differences: &[f64]) -> Option<f64> {
    if differences.is_empty() {
        return None;
    }
    let total = differences.len() as f64 + 1.0;
    let at_or_below = differences.iter().filter(|&&d| d <= 0.0).count() as f64 + 1.0;
    let at_or_above = differences.iter().filter(|&&d| d >= 0.0).count() as f64 + 1.0;
    Some((2.0 * at_or_below.min(at_or_above) / total).min(1.0))
}

/// McNemar's exact two-sided p-value for `only_a` and `only_b` discordant rows: under the null
/// each discordant row is equally likely to favour either side, so the smaller count is
/// Binomial(only_a + only_b, 1/2); the p-value is twice its lower tail, at most 1. Computed in
/// log space, so large counts do not underflow.
pub fn mcnemar_exact(only_a: usize, only_b: usize) -> f64 {
    let n = only_a + only_b;
    let smaller = only_a.min(only_b);
    let mut log_probability = -(n as f64) * std::f64::consts::LN_2;
    let mut tail = 0.0;
    for k in 0..=smaller {
        tail += log_probability.exp();
        // P(k + 1) = P(k) * (n - k) / (k + 1)
        log_probability += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;
    use crate::label::stance::Stance;

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        // 2 vs 8 discordant: P(X <= 2) = (1 + 10 + 45) / 1024; two-sided twice that.
        assert!((mcnemar_exact(2, 8) - 2.0 * 56.0 / 1024.0).abs() < 1e-12);
        assert!((mcnemar_exact(8, 2) - mcnemar_exact(2, 8)).abs() < 1e-15);
        // 0 vs 6: 2 / 64.
        assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // Large counts stay finite and tiny.
        let p = mcnemar_exact(100, 400);
        assert!(p > 0.0 && p < 1e-30, "{p}");
    }

    /// A copy of the sample configuration whose theme predictions are all right.
    fn perfect() -> Configuration {
        let mut configuration = sample::configuration();
        configuration.name = "oracle".to_string();
        for row in &mut configuration.themes {
            row.predicted = row.gold.clone();
        }
        configuration
    }

    #[test]
    fn paired_bootstrap_detects_a_clear_difference() {
        let comparison = compare(
            &[
                sample::synthetic("weak", 200, 120),
                sample::synthetic("strong", 200, 180),
            ],
            &["x", "y"],
            &Bootstrap::default(),
        )
        .unwrap();
        let theme = comparison.pairs[0].theme.as_ref().unwrap();
        let accuracy = theme
            .tests
            .iter()
            .find(|t| t.metric == Metric::Accuracy)
            .unwrap();
        assert!((accuracy.difference - 0.3).abs() < 1e-12);
        assert!(accuracy.significant && accuracy.p_value.unwrap() < 0.01);
        assert!(accuracy.difference_ci.unwrap().low > 0.0);
        assert_eq!(
            (theme.mcnemar.only_a_correct, theme.mcnemar.only_b_correct),
            (0, 60)
        );
        assert!(theme.mcnemar.significant);
    }

    #[test]
    fn paired_bootstrap_finds_nothing_between_equal_configurations() {
        let same = sample::configuration();
        let mut renamed = same.clone();
        renamed.name = "again".to_string();
        let comparison =
            compare(&[same, renamed], &sample::labels(), &Bootstrap::default()).unwrap();
        for task in [&comparison.pairs[0].theme, &comparison.pairs[0].stance] {
            let task = task.as_ref().unwrap();
            for test in &task.tests {
                assert_eq!(test.difference, 0.0);
                assert_eq!(test.p_value, Some(1.0));
                assert!(!test.significant);
            }
            assert_eq!(task.mcnemar.p_value, 1.0);
        }
    }

    #[test]
    fn a_small_difference_on_few_rows_is_not_significant() {
        // 12 paragraphs, three more right: not enough to tell.
        let comparison = compare(
            &[sample::configuration(), perfect()],
            &sample::labels(),
            &Bootstrap::default(),
        )
        .unwrap();
        let theme = comparison.pairs[0].theme.as_ref().unwrap();
        assert_eq!(
            (theme.mcnemar.only_a_correct, theme.mcnemar.only_b_correct),
            (0, 3)
        );
        assert!((theme.mcnemar.p_value - 0.25).abs() < 1e-12);
        assert!(!theme.mcnemar.significant);
        let macro_f1 = &theme.tests[0];
        assert!(macro_f1.difference > 0.0);
        assert!(macro_f1
            .difference_ci
            .unwrap()
            .contains(macro_f1.difference));
    }

    #[test]
    fn rows_are_paired_by_id_whatever_their_order() {
        let first = sample::configuration();
        let mut shuffled = perfect();
        shuffled.themes.reverse();
        shuffled.stances.reverse();
        let in_order = compare(
            &[first.clone(), perfect()],
            &sample::labels(),
            &Bootstrap::default(),
        )
        .unwrap();
        let reversed =
            compare(&[first, shuffled], &sample::labels(), &Bootstrap::default()).unwrap();
        assert_eq!(in_order.pairs, reversed.pairs);
    }

    #[test]
    fn every_pair_is_tested_once() {
        let mut third = perfect();
        third.name = "third".to_string();
        let comparison = compare(
            &[sample::configuration(), perfect(), third],
            &sample::labels(),
            &Bootstrap::default().resamples(100),
        )
        .unwrap();
        let names: Vec<(&str, &str)> = comparison
            .pairs
            .iter()
            .map(|p| (p.a.as_str(), p.b.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("bge-small + zero-shot", "oracle"),
                ("bge-small + zero-shot", "third"),
                ("oracle", "third")
            ]
        );
    }

    #[test]
    fn configurations_on_different_gold_are_refused() {
        let first = sample::configuration();
        let mut other = perfect();
        other.themes.pop();
        let error = compare(
            &[first.clone(), other],
            &sample::labels(),
            &Bootstrap::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("12 theme rows"), "{error}");

        let mut other = perfect();
        other.stances[0].gold = Stance::Against;
        let error = compare(&[first, other], &sample::labels(), &Bootstrap::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "paragraph 'memo.txt#1' has gold stance favor toward 'china-peace-broker' in \
             'bge-small + zero-shot' but against in 'oracle'; compare configurations run on the \
             same gold file"
        );
    }

    #[test]
    fn json_layout() {
        let comparison = compare(
            &[sample::configuration(), perfect()],
            &sample::labels(),
            &Bootstrap::default().resamples(200),
        )
        .unwrap();
        let json = serde_json::to_value(&comparison).unwrap();
        // The reports themselves are snapshot in report.rs; here the comparison's own keys.
        insta::assert_json_snapshot!(json["pairs"]);
        assert_eq!(json["configurations"].as_array().unwrap().len(), 2);
        assert_eq!(json["significance_level"], 0.05);
    }
}
