//! Stance scores split by whether a trained head saw the target in training: the honest view
//! of a head trained on some targets and scored on others.

use crate::eval::{evaluate, Bootstrap, Configuration, EvalReport, StanceReport};

/// The report's JSON, with the stance scores split by whether a trained head saw the target.
#[derive(serde::Serialize)]
pub struct FullReport<'a> {
    #[serde(flatten)]
    pub report: &'a EvalReport,
    pub stance_seen_targets: Option<&'a StanceReport>,
    pub stance_unseen_targets: Option<&'a StanceReport>,
}

/// Stance scores on the targets a trained head saw in training, and on the others.
pub struct SeenSplit {
    pub seen: Option<StanceReport>,
    pub unseen: Option<StanceReport>,
}

/// Splits a configuration's stance rows by whether `seen` holds their target, and scores each part.
pub fn split_by_seen(
    configuration: &Configuration,
    seen: &[String],
    bootstrap: &Bootstrap,
) -> SeenSplit {
    let part = |keep: bool| {
        let subset = Configuration {
            name: configuration.name.clone(),
            run: configuration.run.clone(),
            themes: Vec::new(),
            stances: configuration
                .stances
                .iter()
                .filter(|s| seen.contains(&s.target) == keep)
                .cloned()
                .collect(),
        };
        evaluate(&subset, &[] as &[&str], bootstrap).stance
    };
    SeenSplit {
        seen: part(true),
        unseen: part(false),
    }
}

impl SeenSplit {
    pub fn render(&self) -> String {
        let mut text =
            String::from("\nstance by whether the trained head saw the target in training\n");
        for (name, report) in [
            ("seen targets", &self.seen),
            ("unseen targets", &self.unseen),
        ] {
            match report {
                Some(r) => {
                    let ci = r.scores.macro_f1_ci.map_or(String::new(), |c| {
                        format!("  [{:.3}, {:.3}]", c.low, c.high)
                    });
                    let f_avg = r
                        .scores
                        .f_avg
                        .map_or("-".to_string(), |f| format!("{f:.3}"));
                    text.push_str(&format!(
                        "  {name:<15} {:>5} rows  macro-F1 {:.3}{ci}  F_avg {f_avg}\n",
                        r.scores.n, r.scores.macro_f1
                    ));
                }
                None => text.push_str(&format!("  {name:<15}     0 rows\n")),
            }
        }
        text
    }
}
