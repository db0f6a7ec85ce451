//! Terminal renderings of reports: aligned plain-text tables, scores to 3 decimals, intervals in
//! brackets. Pure: a report in, a `String` out.

use std::fmt::Write as _;

use super::bootstrap::Interval;
use super::compare::{Comparison, PairComparison, PairedTest, TaskComparison};
use super::metrics::{Confusion, LabelScores};
use super::report::{EvalReport, StanceScores, ThemeReport};
use super::RunInfo;

/// Longest label or target shown before it is cut with "…".
const NAME_WIDTH: usize = 40;

/// A one-page summary of one configuration's report.
pub fn render_text(report: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {} paragraphs", report.name, report.n);
    let _ = writeln!(out, "run: {}", run_line(&report.run));
    let _ = writeln!(out, "{}", interval_note(report));
    if let Some(theme) = &report.theme {
        out.push('\n');
        theme_section(&mut out, theme);
    }
    if let Some(stance) = &report.stance {
        out.push('\n');
        let _ = writeln!(
            out,
            "stance ({} rows: {} paragraphs x {} targets)",
            stance.scores.n,
            stance.paragraphs,
            stance.targets.len()
        );
        headline(
            &mut out,
            &[
                (
                    "macro-F1",
                    Some(stance.scores.macro_f1),
                    stance.scores.macro_f1_ci,
                ),
                ("F_avg", stance.scores.f_avg, stance.scores.f_avg_ci),
                (
                    "accuracy",
                    Some(stance.scores.accuracy),
                    stance.scores.accuracy_ci,
                ),
            ],
        );
        out.push('\n');
        label_table(&mut out, "class", &stance.scores.classes);
        out.push('\n');
        confusion_table(&mut out, &stance.scores.confusion, false);
        out.push('\n');
        target_table(&mut out, stance);
    }
    if report.theme.is_none() && report.stance.is_none() {
        out.push_str("\nthe gold has no theme or stance labels: nothing was scored\n");
    }
    out
}

/// One table of every configuration's scores, then each pair's tests and verdicts.
pub fn render_comparison_text(comparison: &Comparison) -> String {
    let mut out = String::new();
    let bootstrap = &comparison.bootstrap;
    let _ = writeln!(
        out,
        "{} configurations; {:.0}% intervals from {} resamples over paragraphs (seed {}); \
         significant when p < {}",
        comparison.configurations.len(),
        bootstrap.confidence * 100.0,
        bootstrap.resamples,
        bootstrap.seed,
        comparison.significance_level
    );
    out.push('\n');
    let mut table = Table::new(&[
        ("configuration", Align::Left),
        ("theme accuracy", Align::Left),
        ("theme macro-F1", Align::Left),
        ("stance macro-F1", Align::Left),
        ("stance F_avg", Align::Left),
        ("paragraphs/s", Align::Right),
    ]);
    for report in &comparison.configurations {
        let theme = report.theme.as_ref();
        let stance = report.stance.as_ref().map(|s| &s.scores);
        table.row(vec![
            shorten(&report.name),
            with_interval(theme.map(|t| t.accuracy), theme.and_then(|t| t.accuracy_ci)),
            with_interval(theme.map(|t| t.macro_f1), theme.and_then(|t| t.macro_f1_ci)),
            with_interval(
                stance.map(|s| s.macro_f1),
                stance.and_then(|s| s.macro_f1_ci),
            ),
            with_interval(
                stance.and_then(|s| s.f_avg),
                stance.and_then(|s| s.f_avg_ci),
            ),
            rate(&report.run),
        ]);
    }
    table.render(&mut out, "");
    for pair in &comparison.pairs {
        out.push('\n');
        pair_section(&mut out, pair);
    }
    out
}

fn pair_section(out: &mut String, pair: &PairComparison) {
    let _ = writeln!(
        out,
        "a = {}, b = {}: paired tests, differences are b - a",
        pair.a, pair.b
    );
    let mut table = Table::new(&[
        ("task", Align::Left),
        ("test", Align::Left),
        ("a", Align::Right),
        ("b", Align::Right),
        ("b - a", Align::Right),
        ("interval", Align::Left),
        ("p", Align::Right),
        ("verdict", Align::Left),
    ]);
    for (task, comparison) in [("theme", &pair.theme), ("stance", &pair.stance)] {
        if let Some(comparison) = comparison {
            task_rows(&mut table, task, comparison, pair);
        }
    }
    table.render(out, "  ");
}

fn task_rows(table: &mut Table, task: &str, comparison: &TaskComparison, pair: &PairComparison) {
    for (i, test) in comparison.tests.iter().enumerate() {
        table.row(vec![
            if i == 0 {
                task.to_string()
            } else {
                String::new()
            },
            test.metric.name().to_string(),
            score(test.a),
            score(test.b),
            signed(test.difference),
            test.difference_ci
                .map(|ci| format!("[{}, {}]", signed(ci.low), signed(ci.high)))
                .unwrap_or_default(),
            test.p_value.map(p_value).unwrap_or_else(|| "-".to_string()),
            verdict(test, pair),
        ]);
    }
    let mcnemar = &comparison.mcnemar;
    let better = if !mcnemar.significant {
        "not significant".to_string()
    } else if mcnemar.only_b_correct > mcnemar.only_a_correct {
        format!("{} better", pair.b)
    } else {
        format!("{} better", pair.a)
    };
    table.row(vec![
        if comparison.tests.is_empty() {
            task.to_string()
        } else {
            String::new()
        },
        "McNemar".to_string(),
        format!("{} right", mcnemar.only_a_correct),
        format!("{} right", mcnemar.only_b_correct),
        String::new(),
        "(rows only a / only b gets right)".to_string(),
        p_value(mcnemar.p_value),
        better,
    ]);
}

fn verdict(test: &PairedTest, pair: &PairComparison) -> String {
    if !test.significant {
        "not significant".to_string()
    } else if test.difference > 0.0 {
        format!("{} better", pair.b)
    } else {
        format!("{} better", pair.a)
    }
}

fn theme_section(out: &mut String, theme: &ThemeReport) {
    let _ = writeln!(out, "theme ({} paragraphs)", theme.n);
    headline(
        out,
        &[
            ("accuracy", Some(theme.accuracy), theme.accuracy_ci),
            (
                "accuracy, also accepted",
                Some(theme.accuracy_also),
                theme.accuracy_also_ci,
            ),
            ("macro-F1", Some(theme.macro_f1), theme.macro_f1_ci),
        ],
    );
    out.push('\n');
    label_table(out, "label", &theme.labels);
    if theme.labels.iter().any(|l| l.f1.is_none()) {
        out.push_str("  - : the label never occurs in gold or predictions; left out of macro-F1\n");
    }
    out.push('\n');
    confusion_table(out, &theme.confusion, true);
}

fn headline(out: &mut String, rows: &[(&str, Option<f64>, Option<Interval>)]) {
    let mut table = Table::new(&[("", Align::Left), ("", Align::Right), ("", Align::Left)]);
    for (name, value, interval) in rows {
        table.row(vec![
            name.to_string(),
            value.map(score).unwrap_or_else(|| "-".to_string()),
            interval.map(bracket).unwrap_or_default(),
        ]);
    }
    table.render_body(out, "  ");
}

fn label_table(out: &mut String, heading: &str, labels: &[LabelScores]) {
    let mut table = Table::new(&[
        (heading, Align::Left),
        ("precision", Align::Right),
        ("recall", Align::Right),
        ("f1", Align::Right),
        ("support", Align::Right),
        ("predicted", Align::Right),
    ]);
    for label in labels {
        let optional = |value: Option<f64>| value.map(score).unwrap_or_else(|| "-".to_string());
        table.row(vec![
            shorten(&label.label),
            optional(label.precision),
            optional(label.recall),
            optional(label.f1),
            label.support.to_string(),
            label.predicted.to_string(),
        ]);
    }
    table.render(out, "  ");
}

/// With `numbered`, columns are headed by the row numbers (theme names are too wide to repeat).
fn confusion_table(out: &mut String, confusion: &Confusion, numbered: bool) {
    out.push_str("  confusion: rows gold, columns predicted\n");
    let headers: Vec<String> = if numbered {
        (1..=confusion.labels.len())
            .map(|i| i.to_string())
            .collect()
    } else {
        confusion.labels.clone()
    };
    let mut columns = vec![("", Align::Left)];
    columns.extend(headers.iter().map(|h| (h.as_str(), Align::Right)));
    let mut table = Table::new(&columns);
    for (i, (label, row)) in confusion.labels.iter().zip(&confusion.matrix).enumerate() {
        let name = if numbered {
            format!("{:>2} {}", i + 1, shorten(label))
        } else {
            shorten(label)
        };
        let mut cells = vec![name];
        cells.extend(row.iter().map(|&count| match count {
            0 => ".".to_string(),
            count => count.to_string(),
        }));
        table.row(cells);
    }
    table.render(out, "  ");
}

fn target_table(out: &mut String, stance: &super::report::StanceReport) {
    let mut table = Table::new(&[
        ("target", Align::Left),
        ("n", Align::Right),
        ("accuracy", Align::Right),
        ("macro-F1", Align::Right),
        ("interval", Align::Left),
        ("F_avg", Align::Right),
        ("interval", Align::Left),
    ]);
    for target in &stance.targets {
        let scores: &StanceScores = &target.scores;
        table.row(vec![
            shorten(&target.target),
            scores.n.to_string(),
            score(scores.accuracy),
            score(scores.macro_f1),
            scores.macro_f1_ci.map(bracket).unwrap_or_default(),
            scores.f_avg.map(score).unwrap_or_else(|| "-".to_string()),
            scores.f_avg_ci.map(bracket).unwrap_or_default(),
        ]);
    }
    table.render(out, "  ");
}

pub(crate) fn run_line(run: &RunInfo) -> String {
    let speed = match run.paragraphs_per_second {
        Some(rate) => format!(" ({rate:.1} paragraphs/s)"),
        None => String::new(),
    };
    format!(
        "model {}, head {}, schema {}, device {}; {} paragraphs in {:.2} s{speed}",
        run.model, run.head, run.schema, run.device, run.paragraphs, run.seconds
    )
}

pub(crate) fn interval_note(report: &EvalReport) -> String {
    let bootstrap = &report.bootstrap;
    if bootstrap.resamples == 0 {
        "no confidence intervals (bootstrap off)".to_string()
    } else {
        format!(
            "intervals: {:.0}% percentile bootstrap, {} resamples over paragraphs, seed {}",
            bootstrap.confidence * 100.0,
            bootstrap.resamples,
            bootstrap.seed
        )
    }
}

fn rate(run: &RunInfo) -> String {
    run.paragraphs_per_second
        .map(|rate| format!("{rate:.1}"))
        .unwrap_or_else(|| "-".to_string())
}

pub(crate) fn score(value: f64) -> String {
    format!("{value:.3}")
}

pub(crate) fn signed(value: f64) -> String {
    // Avoid "-0.000" for a difference that rounds to nothing.
    if value.abs() < 0.0005 {
        "0.000".to_string()
    } else {
        format!("{value:+.3}")
    }
}

pub(crate) fn p_value(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

pub(crate) fn bracket(interval: Interval) -> String {
    format!("[{}, {}]", score(interval.low), score(interval.high))
}

fn with_interval(value: Option<f64>, interval: Option<Interval>) -> String {
    match (value, interval) {
        (Some(value), Some(interval)) => format!("{} {}", score(value), bracket(interval)),
        (Some(value), None) => score(value),
        (None, _) => "-".to_string(),
    }
}

fn shorten(name: &str) -> String {
    if name.chars().count() <= NAME_WIDTH {
        name.to_string()
    } else {
        let cut: String = name.chars().take(NAME_WIDTH - 1).collect();
        format!("{cut}…")
    }
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart, trailing spaces trimmed.
struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|(h, _)| h.to_string()).collect(),
            aligns: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    fn widths(&self, with_headers: bool) -> Vec<usize> {
        let mut widths = vec![0; self.headers.len()];
        let rows = self
            .rows
            .iter()
            .chain(with_headers.then_some(&self.headers));
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    fn line(&self, out: &mut String, indent: &str, cells: &[String], widths: &[usize]) {
        let mut line = indent.to_string();
        for (i, ((cell, width), align)) in cells.iter().zip(widths).zip(&self.aligns).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width - cell.chars().count();
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }

    fn render(&self, out: &mut String, indent: &str) {
        let widths = self.widths(true);
        self.line(out, indent, &self.headers, &widths);
        for row in &self.rows {
            self.line(out, indent, row, &widths);
        }
    }

    /// The rows without the header line.
    fn render_body(&self, out: &mut String, indent: &str) {
        let widths = self.widths(false);
        for row in &self.rows {
            self.line(out, indent, row, &widths);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::evaluate;
    use super::super::sample::{self, sample_comparison, sample_report};
    use super::super::Bootstrap;
    use super::*;

    #[test]
    fn report_text() {
        insta::assert_snapshot!(render_text(&sample_report()));
    }

    #[test]
    fn comparison_text() {
        insta::assert_snapshot!(render_comparison_text(&sample_comparison()));
    }

    #[test]
    fn a_report_without_sections_says_so() {
        let mut configuration = sample::configuration();
        configuration.themes.clear();
        configuration.stances.clear();
        let report = evaluate(&configuration, &sample::labels(), &Bootstrap::default());
        assert!(render_text(&report).contains("nothing was scored"));
    }

    #[test]
    fn long_names_are_cut() {
        let name = "x".repeat(50);
        let cut = shorten(&name);
        assert_eq!(cut.chars().count(), NAME_WIDTH);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn small_differences_print_without_a_sign() {
        assert_eq!(signed(-0.0001), "0.000");
        assert_eq!(signed(0.25), "+0.250");
        assert_eq!(signed(-0.25), "-0.250");
        assert_eq!(p_value(0.0004), "<0.001");
    }
}
