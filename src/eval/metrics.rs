//! Scores from gold and predicted labels: confusion matrices, per-label precision, recall and F1,
//! accuracy, macro-F1 and F_avg. Pure functions over counts; nothing here knows about paragraphs.
//!
//! One convention throughout, so that averages mean the same thing everywhere: a label that occurs
//! neither in the gold nor in the predictions has no defined precision, recall or F1, and is left
//! out of every average (macro-F1, F_avg). Any other label is scored as scikit-learn does with
//! `zero_division=0`: precision is 0 when the label is never predicted, recall is 0 when it never
//! occurs in the gold, and F1 is 0 when both are 0.

use serde::{Deserialize, Serialize};

use crate::label::stance::Stance;

/// A score that two configurations can be compared on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The share of rows whose prediction equals the gold.
    Accuracy,
    /// The mean F1 over the labels that occur.
    MacroF1,
    /// Stance only: the mean F1 of `favor` and `against` (SemEval-2016 task 6), leaving out a
    /// class that occurs neither in the gold nor in the predictions. SemEval's script scores such
    /// a class 0 instead, which caps a perfect run at 0.5 on a target with no `against` at all.
    FAvg,
}

impl Metric {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::MacroF1 => "macro-F1",
            Metric::FAvg => "F_avg",
        }
    }
}

/// Counts of (gold, predicted) pairs: `matrix[gold][predicted]`, rows and columns both in the
/// order of `labels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub labels: Vec<String>,
    /// Rows are gold labels, columns predicted labels.
    pub matrix: Vec<Vec<usize>>,
}

impl Confusion {
    /// Builds the matrix from (gold, predicted) pairs of indices into `labels`.
    ///
    /// # Panics
    /// If an index is out of range: callers index into the same `labels`, so that is a bug.
    pub fn from_pairs(
        labels: Vec<String>,
        pairs: impl IntoIterator<Item = (usize, usize)>,
    ) -> Self {
        let counts = Counts::from_pairs(labels.len(), pairs);
        counts.into_confusion(labels)
    }

    /// The number of pairs counted.
    pub fn total(&self) -> usize {
        self.matrix.iter().flatten().sum()
    }

    /// Precision, recall, F1, support and prediction count for every label, in label order.
    pub fn label_scores(&self) -> Vec<LabelScores> {
        let counts = Counts::from_matrix(&self.matrix);
        (0..self.labels.len())
            .map(|i| counts.label_scores(i, &self.labels[i]))
            .collect()
    }

    /// The share of pairs on the diagonal; `None` for an empty matrix.
    pub fn accuracy(&self) -> Option<f64> {
        Counts::from_matrix(&self.matrix).accuracy()
    }

    /// The mean F1 over labels that occur in the gold or the predictions (see the module
    /// documentation); `None` when no label does.
    pub fn macro_f1(&self) -> Option<f64> {
        let counts = Counts::from_matrix(&self.matrix);
        counts.mean_f1(0..self.labels.len())
    }

    /// [`Metric::FAvg`] of a stance matrix (labels in [`Stance::ALL`] order).
    pub fn f_avg(&self) -> Option<f64> {
        Counts::from_matrix(&self.matrix).score(Metric::FAvg)
    }
}

/// One label's scores. `precision`, `recall` and `f1` are `None` (JSON `null`) only for a label
/// that occurs neither in the gold nor in the predictions; such a label is left out of averages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    pub label: String,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// Rows whose gold is this label.
    pub support: usize,
    /// Rows predicted as this label.
    pub predicted: usize,
}

/// A square count matrix without label names, cheap to rebuild for every bootstrap resample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    size: usize,
    /// Row-major: `cells[gold * size + predicted]`.
    cells: Vec<usize>,
}

impl Counts {
    pub(crate) fn from_pairs(size: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut cells = vec![0; size * size];
        for (gold, predicted) in pairs {
            assert!(
                gold < size && predicted < size,
                "label index out of range ({gold}, {predicted}) for {size} labels; this is a bug"
            );
            cells[gold * size + predicted] += 1;
        }
        Counts { size, cells }
    }

    fn from_matrix(matrix: &[Vec<usize>]) -> Self {
        let size = matrix.len();
        let mut cells = Vec::with_capacity(size * size);
        for row in matrix {
            assert_eq!(
                row.len(),
                size,
                "a confusion matrix must be square; this is a bug"
            );
            cells.extend_from_slice(row);
        }
        Counts { size, cells }
    }

    pub(crate) fn into_confusion(self, labels: Vec<String>) -> Confusion {
        assert_eq!(
            labels.len(),
            self.size,
            "one label per row of the confusion matrix; this is a bug"
        );
        let matrix = if self.size == 0 {
            Vec::new()
        } else {
            self.cells
                .chunks(self.size)
                .map(<[usize]>::to_vec)
                .collect()
        };
        Confusion { labels, matrix }
    }

    fn cell(&self, gold: usize, predicted: usize) -> usize {
        self.cells[gold * self.size + predicted]
    }

    fn support(&self, label: usize) -> usize {
        (0..self.size).map(|p| self.cell(label, p)).sum()
    }

    fn predicted(&self, label: usize) -> usize {
        (0..self.size).map(|g| self.cell(g, label)).sum()
    }

    pub(crate) fn accuracy(&self) -> Option<f64> {
        let total: usize = self.cells.iter().sum();
        let correct: usize = (0..self.size).map(|i| self.cell(i, i)).sum();
        (total > 0).then(|| correct as f64 / total as f64)
    }

    /// (precision, recall, f1) of one label, or `None` when it is absent from gold and predictions.
    fn precision_recall_f1(&self, label: usize) -> Option<(f64, f64, f64)> {
        let support = self.support(label);
        let predicted = self.predicted(label);
        if support == 0 && predicted == 0 {
            return None;
        }
        let hits = self.cell(label, label) as f64;
        let precision = if predicted > 0 {
            hits / predicted as f64
        } else {
            0.0
        };
        let recall = if support > 0 {
            hits / support as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Some((precision, recall, f1))
    }

    fn label_scores(&self, label: usize, name: &str) -> LabelScores {
        let scores = self.precision_recall_f1(label);
        LabelScores {
            label: name.to_string(),
            precision: scores.map(|s| s.0),
            recall: scores.map(|s| s.1),
            f1: scores.map(|s| s.2),
            support: self.support(label),
            predicted: self.predicted(label),
        }
    }

    /// The metric on these counts; `None` where it is undefined. F_avg reads the favor and
    /// against rows, so it means something only on stance counts.
    pub(crate) fn score(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Accuracy => self.accuracy(),
            Metric::MacroF1 => self.mean_f1(0..self.size),
            Metric::FAvg => self.mean_f1([Stance::Favor.index(), Stance::Against.index()]),
        }
    }

    /// The labels that are predicted on these counts but never gold: their F1 is 0 wherever
    /// it is defined, and they count in every average (see [`Counts::score_within`]).
    pub(crate) fn predicted_never_gold(&self) -> Vec<bool> {
        (0..self.size)
            .map(|label| self.support(label) == 0 && self.predicted(label) > 0)
            .collect()
    }

    /// The metric on a resample of a set whose [`Counts::predicted_never_gold`] labels are
    /// `false_alarms`: such a label scores F1 0 in the resample's averages even where the
    /// resample happens to lack its predictions. Without this, a class the gold lacks and a model
    /// predicts a few times drops out of some resamples' averages and not others, and the
    /// interval mixes two different averages (a macro-F1 of 0.56 got the interval [0.55, 0.83]).
    /// A label with gold rows that a resample lacks entirely is left out of its averages, as in
    /// [`Counts::score`], so a perfect model's interval stays [1, 1].
    pub(crate) fn score_within(&self, metric: Metric, false_alarms: &[bool]) -> Option<f64> {
        assert_eq!(
            false_alarms.len(),
            self.size,
            "one flag per label of the counts; this is a bug"
        );
        let labels: Vec<usize> = match metric {
            Metric::Accuracy => return self.accuracy(),
            Metric::MacroF1 => (0..self.size).collect(),
            Metric::FAvg => vec![Stance::Favor.index(), Stance::Against.index()],
        };
        let f1s: Vec<f64> = labels
            .into_iter()
            .filter_map(|label| match self.precision_recall_f1(label) {
                Some(scores) => Some(scores.2),
                None => false_alarms[label].then_some(0.0),
            })
            .collect();
        (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64)
    }

    /// The mean F1 over the given labels that are defined; `None` when none is.
    pub(crate) fn mean_f1(&self, labels: impl IntoIterator<Item = usize>) -> Option<f64> {
        let f1s: Vec<f64> = labels
            .into_iter()
            .filter_map(|label| self.precision_recall_f1(label).map(|s| s.2))
            .collect();
        (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(labels: &[&str]) -> Vec<String> {
        labels.iter().map(|l| l.to_string()).collect()
    }

    fn close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("a defined score");
        assert!(
            (actual - expected).abs() < 1e-12,
            "expected {expected}, got {actual}"
        );
    }

    /// Gold a a a b b c, predicted a a b b c c:
    ///
    /// ```text
    ///          a  b  c     precision  recall  F1
    ///   a      2  1  0     2/2 = 1    2/3     0.8
    ///   b      0  1  1     1/2        1/2     0.5
    ///   c      0  0  1     1/2        1/1     2/3
    /// ```
    fn three_class() -> Confusion {
        let pairs = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 2), (2, 2)];
        Confusion::from_pairs(names(&["a", "b", "c"]), pairs)
    }

    #[test]
    fn three_class_confusion_scores_match_hand_computation() {
        let confusion = three_class();
        assert_eq!(
            confusion.matrix,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert_eq!(confusion.total(), 6);
        close(confusion.accuracy(), 4.0 / 6.0);

        let scores = confusion.label_scores();
        let expected = [
            ("a", 1.0, 2.0 / 3.0, 0.8, 3, 2),
            ("b", 0.5, 0.5, 0.5, 2, 2),
            ("c", 0.5, 1.0, 2.0 / 3.0, 1, 2),
        ];
        for (score, (label, precision, recall, f1, support, predicted)) in
            scores.iter().zip(expected)
        {
            assert_eq!(score.label, label);
            close(score.precision, precision);
            close(score.recall, recall);
            close(score.f1, f1);
            assert_eq!((score.support, score.predicted), (support, predicted));
        }
        close(confusion.macro_f1(), (0.8 + 0.5 + 2.0 / 3.0) / 3.0);
    }

    #[test]
    fn macro_f1_leaves_out_labels_absent_from_gold_and_predictions() {
        // "d" never occurs: the macro average is over a, b and c only.
        let pairs = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 2), (2, 2)];
        let confusion = Confusion::from_pairs(names(&["a", "b", "c", "d"]), pairs);
        close(confusion.macro_f1(), (0.8 + 0.5 + 2.0 / 3.0) / 3.0);
        let d = &confusion.label_scores()[3];
        assert_eq!((d.precision, d.recall, d.f1), (None, None, None));
        assert_eq!((d.support, d.predicted), (0, 0));
    }

    #[test]
    fn a_label_only_predicted_or_only_in_gold_scores_zero_and_counts() {
        // Gold a a, predicted a b: "b" is predicted but never gold, so it scores F1 0 and pulls
        // the average down; "c" never occurs and is left out.
        let confusion = Confusion::from_pairs(names(&["a", "b", "c"]), [(0, 0), (0, 1)]);
        let scores = confusion.label_scores();
        close(scores[0].f1, 2.0 * 0.5 / 1.5);
        close(scores[1].precision, 0.0);
        close(scores[1].recall, 0.0);
        close(scores[1].f1, 0.0);
        close(confusion.macro_f1(), (2.0 / 3.0 + 0.0) / 2.0);
    }

    #[test]
    fn a_resample_keeps_a_false_alarm_class_in_its_averages() {
        // Whole set: c is never gold and predicted once, so it is defined with F1 0.
        let whole = Counts::from_pairs(3, [(0, 0), (1, 1), (0, 2)]);
        let false_alarms = whole.predicted_never_gold();
        assert_eq!(false_alarms, [false, false, true]);
        for metric in [Metric::Accuracy, Metric::MacroF1] {
            assert_eq!(
                whole.score_within(metric, &false_alarms),
                whole.score(metric)
            );
        }
        // A resample without the (a, c) row: c is absent from it, yet still counted, as 0.
        let resample = Counts::from_pairs(3, [(0, 0), (1, 1)]);
        close(resample.score(Metric::MacroF1), 1.0);
        close(
            resample.score_within(Metric::MacroF1, &false_alarms),
            2.0 / 3.0,
        );
        // A resample that lacks a gold class (b) leaves it out, as the point estimate would.
        let perfect = Counts::from_pairs(3, [(0, 0), (0, 0)]);
        close(
            perfect.score_within(Metric::MacroF1, &[false, false, false]),
            1.0,
        );
    }

    #[test]
    fn an_empty_matrix_has_no_accuracy_or_macro_f1() {
        let confusion = Confusion::from_pairs(names(&["a", "b"]), []);
        assert_eq!(confusion.accuracy(), None);
        assert_eq!(confusion.macro_f1(), None);
    }
}
