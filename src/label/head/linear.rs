//! Multinomial logistic regression with L2 and class weights, fitted by full-batch Adam.
//!
//! Everything is deterministic: the validation split is drawn with a seeded generator, every
//! epoch sees the whole training set in order, and sums run in a fixed order.
//!
//! Fitting: features are standardised (z-scores from the training rows); a stratified share of
//! the rows is held out and cut in two, a selection part and a test part. For each L2 strength on
//! a small grid the model trains until the selection loss stops improving, and the strength with
//! the best selection macro-F1 wins; that model is then scored once on the test part, which chose
//! nothing, so its score is an honest estimate (the best selection score is not: it is the
//! maximum over the grid). The final model is refitted on all rows with that strength for the
//! same number of epochs, and the standardisation is folded into the weights, so the saved model
//! applies to raw vectors.

use serde::{Deserialize, Serialize};

use crate::label::head::softmax;

/// How a head is fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub seed: u64,
    /// L2 strengths tried; the held-out macro-F1 picks one.
    pub l2_grid: Vec<f32>,
    pub max_epochs: usize,
    /// Epochs without a better held-out loss before stopping.
    pub patience: usize,
    /// Share of rows held out: half of it chooses the L2 strength and the epoch count, the
    /// other half scores the chosen model.
    pub validation_fraction: f64,
    pub learning_rate: f32,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            seed: 2016,
            l2_grid: vec![1e-4, 1e-3, 1e-2, 1e-1],
            max_epochs: 400,
            patience: 25,
            validation_fraction: 0.2,
            learning_rate: 0.01,
        }
    }
}

/// Scores on held-out rows (the selection part or the test part), recorded in the head's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub rows: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub l2: f32,
    pub epochs: usize,
    /// The chosen model's scores on the selection part: the best over the grid, so optimistic.
    pub validation: Validation,
    /// The chosen model's scores on the test part, which chose nothing (`None` when the data is
    /// too small to hold out a test part).
    pub test: Option<Validation>,
    /// (l2, selection macro-F1, epochs) for every strength tried.
    pub grid: Vec<(f32, f64, usize)>,
}

/// A fitted linear model: `softmax(weight · x + bias)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub classes: usize,
    pub dimension: usize,
    /// Row-major, `classes x dimension`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LinearModel {
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.logits(x))
    }

    fn logits(&self, x: &[f32]) -> Vec<f32> {
        (0..self.classes)
            .map(|c| {
                let row = &self.weight[c * self.dimension..(c + 1) * self.dimension];
                self.bias[c] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
            })
            .collect()
    }
}

/// Fits a model on `features` (one row per example) with labels in `0..classes`.
pub fn fit(
    features: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    options: &TrainOptions,
) -> (LinearModel, FitReport) {
    assert_eq!(
        features.len(),
        labels.len(),
        "this is a bug: rows and labels differ"
    );
    let (train, held_out) =
        stratified_split(labels, classes, options.validation_fraction, options.seed);
    let (selection, test) = halve(&held_out, labels, classes);

    let mut grid = Vec::new();
    let mut best: Option<(f32, f64, usize, Validation, LinearModel)> = None;
    for &l2 in &options.l2_grid {
        let (epochs, validation, model) =
            train_with_early_stopping(features, labels, classes, &train, &selection, l2, options);
        grid.push((l2, validation.macro_f1, epochs));
        // Ties go to the stronger regularisation.
        if best.as_ref().is_none_or(|b| validation.macro_f1 >= b.1) {
            best = Some((l2, validation.macro_f1, epochs, validation, model));
        }
    }
    let (l2, _, epochs, validation, chosen) = best.expect("this is a bug: empty L2 grid");
    let test = (!test.is_empty()).then(|| {
        let standardizer = Standardizer::fit(features, &train);
        let x: Vec<Vec<f32>> = test
            .iter()
            .map(|&r| standardizer.apply(&features[r]))
            .collect();
        let y: Vec<usize> = test.iter().map(|&r| labels[r]).collect();
        score(&chosen, &x, &y, classes)
    });
    let all: Vec<usize> = (0..features.len()).collect();
    let model = train_fixed(features, labels, classes, &all, l2, epochs.max(1), options);
    (
        model,
        FitReport {
            l2,
            epochs,
            validation,
            test,
            grid,
        },
    )
}

/// Splits row indices into (train, held out), the same share of every class held out.
pub fn stratified_split(
    labels: &[usize],
    classes: usize,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut random = crate::eval::bootstrap::SplitMix64::new(seed);
    let mut train = Vec::new();
    let mut held_out = Vec::new();
    for class in 0..classes {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        random.shuffle(&mut rows);
        let take = if rows.len() >= 2 {
            ((rows.len() as f64 * fraction).round() as usize).clamp(1, rows.len() - 1)
        } else {
            0
        };
        held_out.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    held_out.sort_unstable();
    (train, held_out)
}

/// Cuts held-out rows (sorted) into a selection part and a test part, each class alternating
/// between them, so both parts keep the class shares; with one held-out row of a class, it goes
/// to selection.
fn halve(held_out: &[usize], labels: &[usize], classes: usize) -> (Vec<usize>, Vec<usize>) {
    let mut seen = vec![0usize; classes];
    let (mut selection, mut test) = (Vec::new(), Vec::new());
    for &row in held_out {
        let class = labels[row];
        if seen[class].is_multiple_of(2) {
            selection.push(row);
        } else {
            test.push(row);
        }
        seen[class] += 1;
    }
    (selection, test)
}

/// Column means and standard deviations over the given rows.
struct Standardizer {
    mean: Vec<f32>,
    scale: Vec<f32>,
}

impl Standardizer {
    fn fit(features: &[Vec<f32>], rows: &[usize]) -> Self {
        let dimension = features[0].len();
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0f64; dimension];
        for &r in rows {
            for (m, v) in mean.iter_mut().zip(&features[r]) {
                *m += f64::from(*v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut variance = vec![0.0f64; dimension];
        for &r in rows {
            for ((s, v), m) in variance.iter_mut().zip(&features[r]).zip(&mean) {
                *s += (f64::from(*v) - m).powi(2);
            }
        }
        Self {
            mean: mean.iter().map(|m| *m as f32).collect(),
            scale: variance
                .iter()
                .map(|s| ((s / n).sqrt().max(1e-6)) as f32)
                .collect(),
        }
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }

    /// Folds the standardisation into a model trained on standardised features.
    fn fold(&self, model: &mut LinearModel) {
        for c in 0..model.classes {
            let row = &mut model.weight[c * model.dimension..(c + 1) * model.dimension];
            let mut shift = 0.0f32;
            for ((w, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *w /= s;
                shift += *w * m;
            }
            model.bias[c] -= shift;
        }
    }
}

/// Weight of each class: rows / (classes x rows of the class), so every class counts the same.
fn class_weights(labels: &[usize], rows: &[usize], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &r in rows {
        counts[labels[r]] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                rows.len() as f32 / (present as f32 * c as f32)
            }
        })
        .collect()
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    step: i32,
}

impl Adam {
    fn new(size: usize) -> Self {
        Self {
            m: vec![0.0; size],
            v: vec![0.0; size],
            step: 0,
        }
    }

    fn update(&mut self, parameters: &mut [f32], gradient: &[f32], rate: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.step += 1;
        let c1 = 1.0 - B1.powi(self.step);
        let c2 = 1.0 - B2.powi(self.step);
        for i in 0..parameters.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * gradient[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * gradient[i] * gradient[i];
            parameters[i] -= rate * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

/// One full-batch gradient of the weighted cross-entropy plus L2, over standardised rows.
fn gradient(
    model: &LinearModel,
    rows: &[Vec<f32>],
    labels: &[usize],
    weights: &[f32],
    l2: f32,
) -> (Vec<f32>, Vec<f32>) {
    let d = model.dimension;
    let mut grad_w = vec![0.0f32; model.classes * d];
    let mut grad_b = vec![0.0f32; model.classes];
    let total_weight: f32 = labels.iter().map(|&y| weights[y]).sum::<f32>().max(1e-9);
    for (x, &y) in rows.iter().zip(labels) {
        let p = model.probabilities(x);
        for c in 0..model.classes {
            let g = weights[y] * (p[c] - if c == y { 1.0 } else { 0.0 }) / total_weight;
            grad_b[c] += g;
            let row = &mut grad_w[c * d..(c + 1) * d];
            for (gw, v) in row.iter_mut().zip(x) {
                *gw += g * v;
            }
        }
    }
    for (gw, w) in grad_w.iter_mut().zip(&model.weight) {
        *gw += l2 * w;
    }
    (grad_w, grad_b)
}

fn zero_model(classes: usize, dimension: usize) -> LinearModel {
    LinearModel {
        classes,
        dimension,
        weight: vec![0.0; classes * dimension],
        bias: vec![0.0; classes],
    }
}

fn train_with_early_stopping(
    features: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    train: &[usize],
    held_out: &[usize],
    l2: f32,
    options: &TrainOptions,
) -> (usize, Validation, LinearModel) {
    let standardizer = Standardizer::fit(features, train);
    let weights = class_weights(labels, train, classes);
    let train_x: Vec<Vec<f32>> = train
        .iter()
        .map(|&r| standardizer.apply(&features[r]))
        .collect();
    let train_y: Vec<usize> = train.iter().map(|&r| labels[r]).collect();
    let held_x: Vec<Vec<f32>> = held_out
        .iter()
        .map(|&r| standardizer.apply(&features[r]))
        .collect();
    let held_y: Vec<usize> = held_out.iter().map(|&r| labels[r]).collect();
    let dimension = features[0].len();
    let mut model = zero_model(classes, dimension);
    let mut adam_w = Adam::new(model.weight.len());
    let mut adam_b = Adam::new(classes);
    let mut best = (f64::INFINITY, model.clone(), 0usize);
    for epoch in 1..=options.max_epochs {
        let (gw, gb) = gradient(&model, &train_x, &train_y, &weights, l2);
        adam_w.update(&mut model.weight, &gw, options.learning_rate);
        adam_b.update(&mut model.bias, &gb, options.learning_rate);
        let loss = if held_x.is_empty() {
            0.0
        } else {
            mean_loss(&model, &held_x, &held_y)
        };
        if loss < best.0 - 1e-6 {
            best = (loss, model.clone(), epoch);
        } else if epoch - best.2 >= options.patience {
            break;
        }
    }
    let (_, model, epochs) = best;
    let validation = score(&model, &held_x, &held_y, classes);
    (epochs, validation, model)
}

fn train_fixed(
    features: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    rows: &[usize],
    l2: f32,
    epochs: usize,
    options: &TrainOptions,
) -> LinearModel {
    let standardizer = Standardizer::fit(features, rows);
    let weights = class_weights(labels, rows, classes);
    let x: Vec<Vec<f32>> = rows
        .iter()
        .map(|&r| standardizer.apply(&features[r]))
        .collect();
    let y: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
    let mut model = zero_model(classes, features[0].len());
    let mut adam_w = Adam::new(model.weight.len());
    let mut adam_b = Adam::new(classes);
    for _ in 0..epochs {
        let (gw, gb) = gradient(&model, &x, &y, &weights, l2);
        adam_w.update(&mut model.weight, &gw, options.learning_rate);
        adam_b.update(&mut model.bias, &gb, options.learning_rate);
    }
    standardizer.fold(&mut model);
    model
}

fn mean_loss(model: &LinearModel, x: &[Vec<f32>], y: &[usize]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(row, &label)| -f64::from(model.probabilities(row)[label].max(1e-9)).ln())
        .sum::<f64>()
        / x.len().max(1) as f64
}

fn score(model: &LinearModel, x: &[Vec<f32>], y: &[usize], classes: usize) -> Validation {
    let predicted: Vec<usize> = x
        .iter()
        .map(|row| crate::label::head::argmax(&model.probabilities(row)))
        .collect();
    let correct = predicted.iter().zip(y).filter(|(p, g)| p == g).count();
    let mut f1s = Vec::new();
    for c in 0..classes {
        let tp = predicted
            .iter()
            .zip(y)
            .filter(|(p, g)| **p == c && **g == c)
            .count() as f64;
        let fp = predicted
            .iter()
            .zip(y)
            .filter(|(p, g)| **p == c && **g != c)
            .count() as f64;
        let fn_ = predicted
            .iter()
            .zip(y)
            .filter(|(p, g)| **p != c && **g == c)
            .count() as f64;
        if tp + fp + fn_ > 0.0 {
            f1s.push(2.0 * tp / (2.0 * tp + fp + fn_));
        }
    }
    Validation {
        rows: y.len(),
        accuracy: correct as f64 / y.len().max(1) as f64,
        macro_f1: f1s.iter().sum::<f64>() / f1s.len().max(1) as f64,
        loss: mean_loss(model, x, y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 5 dimensions, with a fixed generator.
    fn clusters(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut random = crate::eval::bootstrap::SplitMix64::new(seed);
        let mut uniform = || (random.next_u64() >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let class = i % 3;
            let mut row: Vec<f32> = (0..5).map(|_| uniform()).collect();
            row[class] += 2.0;
            x.push(row);
            y.push(class);
        }
        (x, y)
    }

    #[test]
    fn learns_separable_classes_and_is_repeatable() {
        let (x, y) = clusters(150, 1);
        let options = TrainOptions::default();
        let (model, report) = fit(&x, &y, 3, &options);
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(row, &label)| crate::label::head::argmax(&model.probabilities(row)) == label)
            .count();
        assert!(correct >= 147, "{correct} of 150");
        assert!(report.validation.macro_f1 > 0.95);
        let (again, _) = fit(&x, &y, 3, &options);
        assert_eq!(model, again, "same data, same seed, same model");
    }

    #[test]
    fn standardisation_is_folded_into_the_weights() {
        let (mut x, y) = clusters(90, 2);
        // A feature with a large offset and scale must not change the decision.
        for row in &mut x {
            row.push(1000.0 + row[0] * 50.0);
        }
        let (model, _) = fit(&x, &y, 3, &TrainOptions::default());
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(row, &label)| crate::label::head::argmax(&model.probabilities(row)) == label)
            .count();
        assert!(correct >= 85, "{correct} of 90");
    }

    /// Issue 11: `stancer train` reported the best held-out macro-F1 over the L2 grid, a score
    /// that chose the L2 and so reads high. The reported test score comes from rows that chose
    /// nothing: replacing their features with noise changes neither the grid nor the choice,
    /// only the test score.
    #[test]
    fn issue_11_the_test_score_comes_from_rows_that_chose_nothing() {
        let (x, y) = clusters(150, 3);
        let options = TrainOptions::default();
        let (_, report) = fit(&x, &y, 3, &options);
        let test = report.test.expect("150 rows hold out a test part");
        let (_, held_out) = stratified_split(&y, 3, options.validation_fraction, options.seed);
        let (selection, test_rows) = halve(&held_out, &y, 3);
        assert_eq!(test.rows, test_rows.len());
        assert_eq!(report.validation.rows, selection.len());
        assert!(selection.iter().all(|r| !test_rows.contains(r)));
        assert!(test.macro_f1 > 0.9, "{test:?}");

        let mut noisy = x.clone();
        let mut random = crate::eval::bootstrap::SplitMix64::new(9);
        for &row in &test_rows {
            noisy[row] = (0..5)
                .map(|_| (random.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0)
                .collect();
        }
        let (_, again) = fit(&noisy, &y, 3, &options);
        assert_eq!(
            again.grid, report.grid,
            "the test rows took part in choosing"
        );
        assert_eq!((again.l2, again.epochs), (report.l2, report.epochs));
        assert_eq!(again.validation, report.validation);
        assert!(again.test.unwrap().macro_f1 < test.macro_f1);
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let labels: Vec<usize> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let (train, held) = stratified_split(&labels, 2, 0.2, 7);
        assert_eq!(held.iter().filter(|&&i| labels[i] == 0).count(), 16);
        assert_eq!(held.iter().filter(|&&i| labels[i] == 1).count(), 4);
        assert_eq!(train.len() + held.len(), 100);
        assert_eq!(stratified_split(&labels, 2, 0.2, 7), (train, held));
    }
}
