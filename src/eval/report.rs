//! The evaluation report of one configuration: plain serialisable data, built by [`evaluate`].
//!
//! JSON keys are snake_case and stable; a section the gold has no rows for is `null`, and so is a
//! score or interval that is undefined (an interval when the bootstrap is off, F_avg on a target
//! whose gold and predictions never say favor or against).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::bootstrap::{clusters_by_id, percentile_interval, resample, Bootstrap, Interval};
use super::metrics::{Confusion, Counts, LabelScores, Metric};
use super::{Configuration, RunInfo, StanceOutcome, ThemeOutcome};
use crate::label::stance::Stance;

/// The scores of one configuration against the gold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The configuration's name.
    pub name: String,
    /// Distinct paragraphs evaluated (theme and stance rows together).
    pub n: usize,
    pub bootstrap: Bootstrap,
    pub theme: Option<ThemeReport>,
    pub stance: Option<StanceReport>,
    pub run: RunInfo,
}

/// Theme scores; one row per paragraph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThemeReport {
    pub n: usize,
    /// Strict: the prediction equals the gold theme.
    pub accuracy: f64,
    pub accuracy_ci: Option<Interval>,
    /// The prediction equals the gold theme or one of its accepted alternatives.
    pub accuracy_also: f64,
    pub accuracy_also_ci: Option<Interval>,
    /// Strict, over the labels that occur in the gold or the predictions.
    pub macro_f1: f64,
    pub macro_f1_ci: Option<Interval>,
    /// The schema's labels in order, then any label the rows use that the schema lacks.
    pub labels: Vec<LabelScores>,
    pub confusion: Confusion,
    /// Rows whose prediction is not the gold theme, in input order.
    pub misclassified: Vec<ThemeMiss>,
}

/// Stance scores over a set of (paragraph, target) rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StanceScores {
    /// Rows: (paragraph, target) pairs.
    pub n: usize,
    pub macro_f1: f64,
    pub macro_f1_ci: Option<Interval>,
    /// See [`Metric::FAvg`]; `None` when neither favor nor against occurs.
    pub f_avg: Option<f64>,
    pub f_avg_ci: Option<Interval>,
    pub accuracy: f64,
    pub accuracy_ci: Option<Interval>,
    /// favor, against, none.
    pub classes: Vec<LabelScores>,
    pub confusion: Confusion,
}

/// Stance scores over every target, then per target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StanceReport {
    #[serde(flatten)]
    pub scores: StanceScores,
    /// Distinct paragraphs among the rows.
    pub paragraphs: usize,
    /// In the order targets are first seen.
    pub targets: Vec<TargetReport>,
    /// Rows whose prediction is not the gold stance, in input order.
    pub misclassified: Vec<StanceMiss>,
}

/// Stance scores of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub target: String,
    #[serde(flatten)]
    pub scores: StanceScores,
}

/// A paragraph whose predicted theme is not its gold theme.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThemeMiss {
    pub id: String,
    pub text: String,
    pub gold: String,
    pub also: Vec<String>,
    pub predicted: String,
    /// The prediction is one of the accepted alternatives (right for `accuracy_also`).
    pub accepted_by_also: bool,
}

/// A (paragraph, target) row whose predicted stance is not its gold stance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StanceMiss {
    pub id: String,
    pub text: String,
    pub target: String,
    pub gold: Stance,
    pub predicted: Stance,
}

/// Scores one configuration against its gold. `theme_labels` are the schema's theme ids in
/// schema order; a label the rows use that is not among them is appended after them, so a stray
/// prediction shows up in the tables instead of vanishing.
pub fn evaluate<S: AsRef<str>>(
    configuration: &Configuration,
    theme_labels: &[S],
    bootstrap: &Bootstrap,
) -> EvalReport {
    let paragraphs: HashSet<&str> = configuration
        .themes
        .iter()
        .map(|row| row.id.as_str())
        .chain(configuration.stances.iter().map(|row| row.id.as_str()))
        .collect();
    EvalReport {
        name: configuration.name.clone(),
        n: paragraphs.len(),
        bootstrap: *bootstrap,
        theme: theme_report(&configuration.themes, theme_labels, bootstrap),
        stance: stance_report(&configuration.stances, bootstrap),
        run: configuration.run.clone(),
    }
}

/// Gold and predicted label indices of a set of rows.
#[derive(Clone, Debug)]
pub(crate) struct Labelled {
    pub(crate) size: usize,
    pub(crate) gold: Vec<usize>,
    pub(crate) predicted: Vec<usize>,
}

impl Labelled {
    pub(crate) fn counts(&self, rows: &[usize]) -> Counts {
        Counts::from_pairs(
            self.size,
            rows.iter().map(|&r| (self.gold[r], self.predicted[r])),
        )
    }

    pub(crate) fn all_counts(&self) -> Counts {
        Counts::from_pairs(
            self.size,
            self.gold
                .iter()
                .copied()
                .zip(self.predicted.iter().copied()),
        )
    }

    pub(crate) fn correct(&self, row: usize) -> bool {
        self.gold[row] == self.predicted[row]
    }

    pub(crate) fn stances<'a>(rows: impl IntoIterator<Item = &'a StanceOutcome>) -> Self {
        let (gold, predicted) = rows
            .into_iter()
            .map(|row| (row.gold.index(), row.predicted.index()))
            .unzip();
        Labelled {
            size: Stance::ALL.len(),
            gold,
            predicted,
        }
    }
}

/// The theme label set: the schema's labels, then unknown labels in first-seen order.
pub(crate) fn theme_label_set<S: AsRef<str>>(
    schema_labels: &[S],
    rows: &[ThemeOutcome],
) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let used = rows
        .iter()
        .flat_map(|row| [row.gold.as_str(), row.predicted.as_str()]);
    for label in schema_labels.iter().map(AsRef::as_ref).chain(used) {
        if seen.insert(label.to_string()) {
            labels.push(label.to_string());
        }
    }
    labels
}

pub(crate) fn theme_labelled(labels: &[String], rows: &[ThemeOutcome]) -> Labelled {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| (label.as_str(), i))
        .collect();
    let position = |label: &str| {
        *index
            .get(label)
            .expect("the label set holds every label the rows use; this is a bug")
    };
    Labelled {
        size: labels.len(),
        gold: rows.iter().map(|row| position(&row.gold)).collect(),
        predicted: rows.iter().map(|row| position(&row.predicted)).collect(),
    }
}

fn accepted(row: &ThemeOutcome) -> bool {
    row.predicted == row.gold || row.also.contains(&row.predicted)
}

fn share(hits: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| hits as f64 / total as f64)
}

const DEFINED: &str = "a non-empty set of rows has a defined accuracy and macro-F1; this is a bug";

fn theme_report<S: AsRef<str>>(
    rows: &[ThemeOutcome],
    schema_labels: &[S],
    bootstrap: &Bootstrap,
) -> Option<ThemeReport> {
    if rows.is_empty() {
        return None;
    }
    let labels = theme_label_set(schema_labels, rows);
    let labelled = theme_labelled(&labels, rows);
    let accepted_rows: Vec<bool> = rows.iter().map(accepted).collect();
    let counts = labelled.all_counts();

    let clusters = clusters_by_id(rows.iter().map(|row| row.id.as_str()));
    let false_alarms = counts.predicted_never_gold();
    let [accuracy, accuracy_also, macro_f1] = resample(&clusters, bootstrap, |sample| {
        let counts = labelled.counts(sample);
        let also = sample.iter().filter(|&&r| accepted_rows[r]).count();
        [
            counts.score(Metric::Accuracy),
            share(also, sample.len()),
            counts.score_within(Metric::MacroF1, &false_alarms),
        ]
    });
    let interval = |values: Vec<f64>| percentile_interval(&values, bootstrap.confidence);

    let confusion = counts.clone().into_confusion(labels);
    Some(ThemeReport {
        n: rows.len(),
        accuracy: counts.score(Metric::Accuracy).expect(DEFINED),
        accuracy_ci: interval(accuracy),
        accuracy_also: share(accepted_rows.iter().filter(|&&a| a).count(), rows.len())
            .expect(DEFINED),
        accuracy_also_ci: interval(accuracy_also),
        macro_f1: counts.score(Metric::MacroF1).expect(DEFINED),
        macro_f1_ci: interval(macro_f1),
        labels: confusion.label_scores(),
        confusion,
        misclassified: rows
            .iter()
            .filter(|row| row.predicted != row.gold)
            .map(|row| ThemeMiss {
                id: row.id.clone(),
                text: row.text.clone(),
                gold: row.gold.clone(),
                also: row.also.clone(),
                predicted: row.predicted.clone(),
                accepted_by_also: accepted(row),
            })
            .collect(),
    })
}

/// Stance scores over `rows`, resampling them by paragraph.
fn stance_scores(rows: &[&StanceOutcome], bootstrap: &Bootstrap) -> StanceScores {
    let labelled = Labelled::stances(rows.iter().copied());
    let counts = labelled.all_counts();
    let clusters = clusters_by_id(rows.iter().map(|row| row.id.as_str()));
    let false_alarms = counts.predicted_never_gold();
    let [macro_f1, f_avg, accuracy] = resample(&clusters, bootstrap, |sample| {
        let counts = labelled.counts(sample);
        [
            counts.score_within(Metric::MacroF1, &false_alarms),
            counts.score_within(Metric::FAvg, &false_alarms),
            counts.score(Metric::Accuracy),
        ]
    });
    let interval = |values: Vec<f64>| percentile_interval(&values, bootstrap.confidence);
    let f_avg_point = counts.score(Metric::FAvg);
    let names = Stance::ALL.iter().map(|s| s.to_string()).collect();
    let confusion = counts.clone().into_confusion(names);
    StanceScores {
        n: rows.len(),
        macro_f1: counts.score(Metric::MacroF1).expect(DEFINED),
        macro_f1_ci: interval(macro_f1),
        f_avg: f_avg_point,
        // A resample can define F_avg where the full set does not; its interval would then
        // describe a score that is not reported.
        f_avg_ci: f_avg_point.and_then(|_| interval(f_avg)),
        accuracy: counts.score(Metric::Accuracy).expect(DEFINED),
        accuracy_ci: interval(accuracy),
        classes: confusion.label_scores(),
        confusion,
    }
}

/// The targets of `rows` in first-seen order.
pub(crate) fn targets_in_order(rows: &[StanceOutcome]) -> Vec<&str> {
    let mut seen = HashSet::new();
    rows.iter()
        .map(|row| row.target.as_str())
        .filter(|target| seen.insert(*target))
        .collect()
}

fn stance_report(rows: &[StanceOutcome], bootstrap: &Bootstrap) -> Option<StanceReport> {
    if rows.is_empty() {
        return None;
    }
    let all: Vec<&StanceOutcome> = rows.iter().collect();
    let targets = targets_in_order(rows)
        .into_iter()
        .map(|target| {
            let subset: Vec<&StanceOutcome> =
                rows.iter().filter(|row| row.target == target).collect();
            TargetReport {
                target: target.to_string(),
                scores: stance_scores(&subset, bootstrap),
            }
        })
        .collect();
    let paragraphs: HashSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    Some(StanceReport {
        scores: stance_scores(&all, bootstrap),
        paragraphs: paragraphs.len(),
        targets,
        misclassified: rows
            .iter()
            .filter(|row| row.predicted != row.gold)
            .map(|row| StanceMiss {
                id: row.id.clone(),
                text: row.text.clone(),
                target: row.target.clone(),
                gold: row.gold,
                predicted: row.predicted,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "expected {expected}, got {actual}"
        );
    }

    fn report() -> EvalReport {
        evaluate(
            &sample::configuration(),
            &sample::labels(),
            &Bootstrap::default(),
        )
    }

    #[test]
    fn theme_accuracy_is_strict_and_accuracy_also_accepts_alternatives() {
        let theme = report().theme.unwrap();
        // Wrong: #2 (war, accepted), #6 (information, not accepted: also is relations), #9.
        close(theme.accuracy, 9.0 / 12.0);
        close(theme.accuracy_also, 10.0 / 12.0);
        let accepted: Vec<bool> = theme
            .misclassified
            .iter()
            .map(|m| m.accepted_by_also)
            .collect();
        assert_eq!(accepted, [true, false, false]);
    }

    #[test]
    fn theme_macro_f1_leaves_out_the_label_that_never_occurs() {
        let theme = report().theme.unwrap();
        // relations: gold 4, predicted 3, hits 3 -> P 1, R 3/4, F1 6/7.
        // war: gold 4, predicted 5, hits 3 -> P 3/5, R 3/4, F1 2/3.
        // information: gold 4, predicted 4, hits 3 -> P 3/4, R 3/4, F1 3/4.
        // economy: never occurs -> left out.
        let f1s: Vec<Option<f64>> = theme.labels.iter().map(|l| l.f1).collect();
        close(f1s[0].unwrap(), 6.0 / 7.0);
        close(f1s[1].unwrap(), 2.0 / 3.0);
        close(f1s[2].unwrap(), 0.75);
        assert_eq!(f1s[3], None);
        close(theme.macro_f1, (6.0 / 7.0 + 2.0 / 3.0 + 0.75) / 3.0);
    }

    #[test]
    fn stance_f_avg_is_the_mean_of_favor_and_against_f1() {
        let stance = report().stance.unwrap();
        let broker = &stance.targets[0];
        assert_eq!(broker.target, "china-peace-broker");
        // favor: gold 4, predicted 4 (one from none), hits 3 -> F1 3/4.
        // against: gold 3, predicted 2, hits 2 -> P 1, R 2/3, F1 4/5.
        // none: gold 5, predicted 6, hits 4 -> P 2/3, R 4/5, F1 8/11.
        let scores = &broker.scores;
        close(scores.f_avg.unwrap(), (0.75 + 0.8) / 2.0);
        close(scores.macro_f1, (0.75 + 0.8 + 8.0 / 11.0) / 3.0);
        close(scores.accuracy, 9.0 / 12.0);
        assert_eq!(scores.confusion.matrix, [[3, 0, 1], [0, 2, 1], [1, 0, 4]]);
    }

    #[test]
    fn a_target_with_no_favor_or_against_in_gold_scores_its_false_alarms() {
        let stance = report().stance.unwrap();
        let durable = &stance.targets[1].scores;
        // Gold all none; one row predicted against. favor never occurs (left out); against is
        // predicted once, never right: F1 0. F_avg = 0 over against alone.
        close(durable.f_avg.unwrap(), 0.0);
        assert_eq!(durable.classes[0].f1, None);
        close(durable.accuracy, 11.0 / 12.0);
    }

    #[test]
    fn f_avg_is_undefined_when_nothing_says_favor_or_against() {
        let rows: Vec<StanceOutcome> = (0..3)
            .map(|i| StanceOutcome {
                id: format!("p{i}"),
                text: String::new(),
                target: "t".to_string(),
                gold: Stance::None,
                predicted: Stance::None,
            })
            .collect();
        let scores = stance_scores(&rows.iter().collect::<Vec<_>>(), &Bootstrap::default());
        assert_eq!((scores.f_avg, scores.f_avg_ci), (None, None));
        close(scores.macro_f1, 1.0);
    }

    #[test]
    fn a_class_the_gold_lacks_and_a_model_predicts_twice_stays_in_every_resamples_macro_f1() {
        // 100 rows, gold favor or against only (as IBM ArgQ); all predicted right but two,
        // predicted none. On the whole set none has F1 0, so macro-F1 = (favor + against + 0) / 3,
        // about 0.66. A resample without those two rows must average over the same three labels
        // (none scores 0 there too), not over favor and against alone (1.0).
        let rows: Vec<StanceOutcome> = (0..100)
            .map(|i| {
                let gold = if i % 2 == 0 {
                    Stance::Favor
                } else {
                    Stance::Against
                };
                StanceOutcome {
                    id: format!("p{i}"),
                    text: String::new(),
                    target: "t".to_string(),
                    gold,
                    predicted: if i < 2 { Stance::None } else { gold },
                }
            })
            .collect();
        let scores = stance_scores(&rows.iter().collect::<Vec<_>>(), &Bootstrap::default());
        close(scores.macro_f1, (2.0 * 98.0 / 99.0) / 3.0);
        let interval = scores.macro_f1_ci.unwrap();
        assert!(interval.high <= 2.0 / 3.0 + 1e-12, "{interval:?}");
        assert!(interval.contains(scores.macro_f1), "{interval:?}");
    }

    #[test]
    fn counts_paragraphs_and_rows() {
        let report = report();
        assert_eq!(report.n, 12);
        let stance = report.stance.unwrap();
        assert_eq!((stance.scores.n, stance.paragraphs), (24, 12));
        assert_eq!(stance.misclassified.len(), 3 + 1);
    }

    #[test]
    fn intervals_are_repeatable_and_contain_the_point_estimates() {
        let first = report();
        assert_eq!(first, report());
        let theme = first.theme.unwrap();
        for (point, interval) in [
            (theme.accuracy, theme.accuracy_ci),
            (theme.accuracy_also, theme.accuracy_also_ci),
            (theme.macro_f1, theme.macro_f1_ci),
        ] {
            let interval = interval.unwrap();
            assert!(interval.contains(point), "{point} outside {interval:?}");
            assert!(interval.high > interval.low, "{interval:?} is not a range");
        }
        let stance = first.stance.unwrap().scores;
        assert!(stance.macro_f1_ci.unwrap().contains(stance.macro_f1));
        assert!(stance.f_avg_ci.unwrap().contains(stance.f_avg.unwrap()));
        let other_seed = evaluate(
            &sample::configuration(),
            &sample::labels(),
            &Bootstrap::default().seed(99),
        );
        assert_ne!(other_seed.theme.unwrap().macro_f1_ci, theme.macro_f1_ci);
    }

    #[test]
    fn no_resamples_means_no_intervals() {
        let report = evaluate(
            &sample::configuration(),
            &sample::labels(),
            &Bootstrap::default().resamples(0),
        );
        let theme = report.theme.unwrap();
        assert_eq!((theme.accuracy_ci, theme.macro_f1_ci), (None, None));
    }

    #[test]
    fn a_label_outside_the_schema_is_appended_not_dropped() {
        let mut configuration = sample::configuration();
        configuration.themes[0].predicted = "made-up".to_string();
        let report = evaluate(&configuration, &sample::labels(), &Bootstrap::default());
        let labels = report.theme.unwrap().confusion.labels;
        assert_eq!(labels.len(), 5);
        assert_eq!(labels[4], "made-up");
    }

    #[test]
    fn missing_sections_are_null() {
        let mut configuration = sample::configuration();
        configuration.stances.clear();
        let report = evaluate(&configuration, &sample::labels(), &Bootstrap::default());
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["stance"].is_null());
        assert_eq!(json["theme"]["n"], 12);
    }

    #[test]
    fn json_layout() {
        insta::assert_json_snapshot!(report());
    }

    #[test]
    fn reports_read_back_from_json() {
        // serde_json parses floats to within one unit in the last place (without its
        // `float_roundtrip` feature), so compare numbers with a tolerance.
        fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            use serde_json::Value;
            match (a, b) {
                (Value::Number(a), Value::Number(b)) => {
                    (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-12
                }
                (Value::Array(a), Value::Array(b)) => {
                    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
                }
                (Value::Object(a), Value::Object(b)) => {
                    a.len() == b.len()
                        && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
                }
                (a, b) => a == b,
            }
        }
        let report = report();
        let json = serde_json::to_string(&report).unwrap();
        let parsed: EvalReport = serde_json::from_str(&json).unwrap();
        let original = serde_json::to_value(&report).unwrap();
        assert!(same(&serde_json::to_value(&parsed).unwrap(), &original));
        assert_eq!(parsed.stance.unwrap().targets.len(), 2);
    }
}
