//! Stage 4, labels against gold and speed: gold data ([`gold`]), running a configuration on it
//! ([`run`], through the one labelling path), cross-validation of trained heads
//! ([`cross_validation`]), scores with bootstrap confidence intervals, paired comparisons of
//! configurations, text and HTML reports, and throughput benchmarks ([`bench`]).
//!
//! The layers are kept apart, as in hyperfine: [`run`] labels gold rows and collects
//! [`ThemeOutcome`] and [`StanceOutcome`] rows; [`evaluate`] and [`compare`] turn them into plain
//! serialisable data ([`EvalReport`], [`Comparison`]); the renderers turn that data into strings.
//! Scoring, comparing and rendering load no model, read no file and print nothing.
//!
//! Conventions, stated once:
//! - A label that occurs neither in the gold nor in the predictions is left out of macro averages
//!   (see [`metrics`]); so is the stance class in F_avg.
//! - Confidence intervals are percentile bootstrap intervals over paragraphs (see [`bootstrap`]):
//!   a paragraph's stance rows, one per target, are resampled together.
//! - A difference is called *significant* when its two-sided p-value is below
//!   [`SIGNIFICANCE_LEVEL`].

pub mod bench;
pub mod bootstrap;
pub mod compare;
pub mod config;
pub mod cross_validation;
pub mod gold;
pub mod html;
pub mod metrics;
pub mod report;
pub mod run;
pub mod seen;
pub mod text;

use serde::{Deserialize, Serialize};

use crate::label::stance::Stance;

pub use bootstrap::{Bootstrap, Interval};
pub use compare::{
    compare, mcnemar_exact, Comparison, McNemar, PairComparison, PairedTest, TaskComparison,
    SIGNIFICANCE_LEVEL,
};
pub use html::{render_comparison_html, render_html};
pub use metrics::{Confusion, LabelScores, Metric};
pub use report::{
    evaluate, EvalReport, StanceMiss, StanceReport, StanceScores, TargetReport, ThemeMiss,
    ThemeReport,
};
pub use text::{render_comparison_text, render_text};

/// One paragraph's theme: gold, accepted alternatives and prediction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThemeOutcome {
    pub id: String,
    pub text: String,
    pub gold: String,
    /// Other themes the gold accepts (`theme_also`); a prediction among them counts as correct
    /// for [`ThemeReport::accuracy_also`] only.
    pub also: Vec<String>,
    pub predicted: String,
}

/// One paragraph's stance toward one target: a row is a (paragraph, target) pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StanceOutcome {
    /// The paragraph's id; rows with the same id are the same paragraph.
    pub id: String,
    pub text: String,
    /// The target's id, or its text for a free-text target.
    pub target: String,
    pub gold: Stance,
    pub predicted: Stance,
}

/// What was run, and how fast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub model: String,
    pub head: String,
    pub schema: String,
    /// Paragraphs classified (each once, whatever the number of targets).
    pub paragraphs: usize,
    /// Wall-clock seconds spent classifying them.
    pub seconds: f64,
    /// `paragraphs / seconds`; `None` when no time was measured.
    pub paragraphs_per_second: Option<f64>,
    pub device: String,
}

impl RunInfo {
    pub fn new(
        model: impl Into<String>,
        head: impl Into<String>,
        schema: impl Into<String>,
        device: impl Into<String>,
        paragraphs: usize,
        seconds: f64,
    ) -> Self {
        RunInfo {
            model: model.into(),
            head: head.into(),
            schema: schema.into(),
            paragraphs,
            seconds,
            paragraphs_per_second: (seconds > 0.0).then(|| paragraphs as f64 / seconds),
            device: device.into(),
        }
    }
}

/// One configuration's run over the gold: what it predicted, and how it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Configuration {
    /// A short name for tables, e.g. "bge-small + zero-shot".
    pub name: String,
    pub run: RunInfo,
    pub themes: Vec<ThemeOutcome>,
    pub stances: Vec<StanceOutcome>,
}

/// The reports' macro-F1 figures (theme and stance, whichever each has) below `bar`, as
/// "name: theme macro-F1 0.412" lines; empty when all pass.
pub fn below_bar(reports: &[&EvalReport], bar: f64) -> Vec<String> {
    let mut failed = Vec::new();
    for report in reports {
        if let Some(theme) = &report.theme {
            if theme.macro_f1 < bar {
                failed.push(format!(
                    "{}: theme macro-F1 {:.3}",
                    report.name, theme.macro_f1
                ));
            }
        }
        if let Some(stance) = &report.stance {
            if stance.scores.macro_f1 < bar {
                failed.push(format!(
                    "{}: stance macro-F1 {:.3}",
                    report.name, stance.scores.macro_f1
                ));
            }
        }
    }
    failed
}

#[cfg(test)]
pub(crate) mod sample {
    //! Hand-built outcomes shared by the report, comparison and renderer tests.

    use super::*;

    pub const THEMES: [&str; 4] = [
        "sino-russian-relations",
        "war-and-security",
        "information-and-narratives",
        "economy-and-sanctions",
    ];

    fn theme(id: usize, gold: &str, also: &[&str], predicted: &str) -> ThemeOutcome {
        ThemeOutcome {
            id: format!("memo.txt#{id}"),
            text: format!("Paragraph {id} on {gold} <with> \"markup\" & more."),
            gold: gold.to_string(),
            also: also.iter().map(|a| a.to_string()).collect(),
            predicted: predicted.to_string(),
        }
    }

    fn stance(id: usize, target: &str, gold: Stance, predicted: Stance) -> StanceOutcome {
        StanceOutcome {
            id: format!("memo.txt#{id}"),
            text: format!("Paragraph {id} on {target}."),
            target: target.to_string(),
            gold,
            predicted,
        }
    }

    /// Twelve paragraphs: themes over three of the four schema labels (the fourth never occurs),
    /// stances toward two targets, one of which only ever has `none` in the gold.
    pub fn configuration() -> Configuration {
        let [relations, war, information, _] = THEMES;
        let themes = vec![
            theme(1, relations, &[], relations),
            theme(2, relations, &[war], war),
            theme(3, relations, &[], relations),
            theme(4, war, &[], war),
            theme(5, war, &[], war),
            theme(6, war, &[relations], information),
            theme(7, information, &[], information),
            theme(8, information, &[], information),
            theme(9, information, &[], war),
            theme(10, relations, &[], relations),
            theme(11, war, &[], war),
            theme(12, information, &[], information),
        ];
        use Stance::{Against, Favor, None};
        let broker = [
            (Favor, Favor),
            (Favor, None),
            (Against, Against),
            (None, None),
            (None, Favor),
            (Against, Against),
            (None, None),
            (Favor, Favor),
            (None, None),
            (Against, None),
            (None, None),
            (Favor, Favor),
        ];
        let mut stances = Vec::new();
        for (i, (gold, predicted)) in broker.into_iter().enumerate() {
            stances.push(stance(i + 1, "china-peace-broker", gold, predicted));
            let predicted = if i == 4 { Against } else { None };
            stances.push(stance(i + 1, "alignment-durable", None, predicted));
        }
        Configuration {
            name: "bge-small + zero-shot".to_string(),
            run: RunInfo::new("bge-small-en-v1.5", "zero-shot", "default", "cpu", 12, 0.8),
            themes,
            stances,
        }
    }

    pub fn labels() -> Vec<String> {
        THEMES.iter().map(|t| t.to_string()).collect()
    }

    /// `count` paragraphs over two themes, the first `right` of them predicted right.
    pub fn synthetic(name: &str, count: usize, right: usize) -> Configuration {
        let themes = (0..count)
            .map(|i| ThemeOutcome {
                id: format!("p{i}"),
                text: String::new(),
                gold: ["x", "y"][i % 2].to_string(),
                also: Vec::new(),
                predicted: if i < right {
                    ["x", "y"][i % 2]
                } else {
                    ["y", "x"][i % 2]
                }
                .to_string(),
            })
            .collect();
        Configuration {
            name: name.to_string(),
            run: configuration().run,
            themes,
            stances: Vec::new(),
        }
    }

    pub fn sample_report() -> EvalReport {
        evaluate(&configuration(), &labels(), &Bootstrap::default())
    }

    pub fn sample_comparison() -> Comparison {
        let mut better = configuration();
        better.name = "bge-base + zero-shot".to_string();
        better.run = RunInfo::new("bge-base-en-v1.5", "zero-shot", "default", "cpu", 12, 2.4);
        for row in &mut better.themes {
            row.predicted = row.gold.clone();
        }
        for row in &mut better.stances {
            row.predicted = row.gold;
        }
        compare(&[configuration(), better], &labels(), &Bootstrap::default()).unwrap()
    }
}
