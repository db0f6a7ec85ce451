//! Schemas: the themes a paragraph can have and the targets it can take a stance on (TOML).
//!
//! ```toml
//! [[themes]]
//! id = "sino-russian-relations"
//! description = "Relations between China and Russia: alignment, cooperation, rivalry or distrust."
//! examples = ["optional example sentences"]
//! [[targets]]
//! id = "china-peace-broker"
//! text = "China can be leveraged to broker peace in Ukraine"
//! ```
//!
//! Errors name the file, the line and the key.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};

/// The schema used when none is given: the reference document's domain.
pub const DEFAULT_SCHEMA: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/default.toml"));

#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Where it came from ("builtin:default.toml" or a path), for reports.
    pub origin: String,
    pub themes: Vec<Theme>,
    pub targets: Vec<Target>,
    /// How an NLI model reads this schema (the `[nli]` table).
    pub nli: NliSettings,
}

/// The `[nli]` table: the hypotheses an NLI model reads for themes and stances, and the rule
/// that says `none`.
#[derive(Debug, Clone, PartialEq)]
pub struct NliSettings {
    /// Filled with each theme's label ("This example is {}.", the default of transformers'
    /// zero-shot-classification pipeline).
    pub theme_template: String,
    /// Each theme scored on its own (softmax over contradiction and entailment) instead of one
    /// softmax of the entailment logits across the themes.
    pub multi_label: bool,
    /// Filled with a target's text when the target gives no `favor` statements.
    pub favor_template: String,
    /// Filled with a target's text when the target gives no `against` statements.
    pub against_template: String,
    /// `none` wins when neither side's entailment probability reaches this.
    pub none_threshold: f32,
}

/// The defaults of the `[nli]` table.
pub const THEME_TEMPLATE: &str = "This example is {}.";
pub const FAVOR_TEMPLATE: &str = "The author is in favor of {}.";
pub const AGAINST_TEMPLATE: &str = "The author is against {}.";
pub const NONE_THRESHOLD: f32 = 0.5;

impl Default for NliSettings {
    fn default() -> Self {
        Self {
            theme_template: THEME_TEMPLATE.into(),
            multi_label: false,
            favor_template: FAVOR_TEMPLATE.into(),
            against_template: AGAINST_TEMPLATE.into(),
            none_threshold: NONE_THRESHOLD,
        }
    }
}

/// Fills a template's one `{}` with `text`, as Python's `str.format` does.
pub fn fill_template(template: &str, text: &str) -> String {
    template.replacen("{}", text, 1)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub id: String,
    /// The words an NLI model reads for the theme (`label`; the id with dashes and underscores
    /// as spaces when not given).
    pub label: String,
    pub description: String,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: String,
    /// The claim, as a statement one can be for or against.
    pub text: String,
    pub description: Option<String>,
    /// Optional statements that take the favourable side (help the zero-shot head).
    pub favor: Vec<String>,
    /// Optional statements that take the opposing side.
    pub against: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    themes: Vec<Spanned<RawTheme>>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    nli: Option<Spanned<RawNli>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNli {
    #[serde(default)]
    theme_template: Option<Spanned<String>>,
    #[serde(default)]
    multi_label: Option<bool>,
    #[serde(default)]
    favor_template: Option<Spanned<String>>,
    #[serde(default)]
    against_template: Option<Spanned<String>>,
    #[serde(default)]
    none_threshold: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    id: Spanned<String>,
    #[serde(default)]
    label: Option<Spanned<String>>,
    #[serde(default)]
    description: Option<Spanned<String>>,
    #[serde(default)]
    examples: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    id: Spanned<String>,
    text: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    favor: Vec<String>,
    #[serde(default)]
    against: Vec<String>,
}

impl Schema {
    /// The built-in default schema.
    pub fn default_schema() -> Self {
        Self::parse(DEFAULT_SCHEMA, Path::new("builtin:default.toml"))
            .expect("this is a bug: the default schema does not parse")
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let fail = |span: Option<Range<usize>>, message: String| Error::Schema {
            path: path.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)).unwrap_or(1),
            message,
        };
        let raw: RawSchema = toml::from_str(text).map_err(|e| {
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            fail(e.span(), message)
        })?;
        let _ = raw.name;
        let mut themes: Vec<Theme> = Vec::new();
        for theme in raw.themes {
            let span = theme.span();
            let theme = theme.into_inner();
            let id = theme.id.get_ref().trim().to_string();
            if id.is_empty() {
                return Err(fail(
                    Some(theme.id.span()),
                    "themes: key `id` is empty".into(),
                ));
            }
            if themes.iter().any(|t| t.id == id) {
                return Err(fail(
                    Some(theme.id.span()),
                    format!("themes: key `id`: \"{id}\" is declared twice"),
                ));
            }
            let description = match theme.description {
                Some(d) if !d.get_ref().trim().is_empty() => d.into_inner(),
                Some(d) => {
                    return Err(fail(
                        Some(d.span()),
                        format!("theme \"{id}\": key `description` is empty"),
                    ))
                }
                None => {
                    return Err(fail(
                        Some(span),
                        format!("theme \"{id}\": key `description` is missing (one sentence saying what the theme covers)"),
                    ))
                }
            };
            let label = match theme.label {
                Some(l) if !l.get_ref().trim().is_empty() => l.into_inner(),
                Some(l) => {
                    return Err(fail(
                        Some(l.span()),
                        format!("theme \"{id}\": key `label` is empty"),
                    ))
                }
                None => id.replace(['-', '_'], " "),
            };
            themes.push(Theme {
                id,
                label,
                description,
                examples: theme.examples,
            });
        }
        let mut targets: Vec<Target> = Vec::new();
        for target in raw.targets {
            let target = target.into_inner();
            let id = target.id.get_ref().trim().to_string();
            if id.is_empty() {
                return Err(fail(
                    Some(target.id.span()),
                    "targets: key `id` is empty".into(),
                ));
            }
            if targets.iter().any(|t| t.id == id) {
                return Err(fail(
                    Some(target.id.span()),
                    format!("targets: key `id`: \"{id}\" is declared twice"),
                ));
            }
            if target.text.get_ref().trim().is_empty() {
                return Err(fail(
                    Some(target.text.span()),
                    format!("target \"{id}\": key `text` is empty"),
                ));
            }
            targets.push(Target {
                id,
                text: target.text.into_inner(),
                description: target.description,
                favor: target.favor,
                against: target.against,
            });
        }
        if themes.len() == 1 {
            return Err(fail(
                None,
                "themes: a schema needs at least two themes to choose between (or none)".into(),
            ));
        }
        if themes.is_empty() && targets.is_empty() {
            return Err(fail(None, "no [[themes]] and no [[targets]]".into()));
        }
        let mut nli = NliSettings::default();
        if let Some(raw) = raw.nli {
            let raw = raw.into_inner();
            for (key, value, slot) in [
                (
                    "theme_template",
                    raw.theme_template,
                    &mut nli.theme_template,
                ),
                (
                    "favor_template",
                    raw.favor_template,
                    &mut nli.favor_template,
                ),
                (
                    "against_template",
                    raw.against_template,
                    &mut nli.against_template,
                ),
            ] {
                if let Some(value) = value {
                    if value.get_ref().matches("{}").count() != 1 {
                        return Err(fail(
                            Some(value.span()),
                            format!(
                                "nli: key `{key}` must hold `{{}}` exactly once, where the text \
                                 goes (\"{}\" has {})",
                                value.get_ref(),
                                value.get_ref().matches("{}").count()
                            ),
                        ));
                    }
                    *slot = value.into_inner();
                }
            }
            if let Some(multi) = raw.multi_label {
                nli.multi_label = multi;
            }
            if let Some(threshold) = raw.none_threshold {
                let value = *threshold.get_ref();
                if !(0.0..=1.0).contains(&value) {
                    return Err(fail(
                        Some(threshold.span()),
                        format!("nli: key `none_threshold` is {value}; it must be between 0 and 1"),
                    ));
                }
                nli.none_threshold = value as f32;
            }
        }
        Ok(Schema {
            origin: path.display().to_string(),
            themes,
            targets,
            nli,
        })
    }

    pub fn theme_ids(&self) -> Vec<String> {
        self.themes.iter().map(|t| t.id.clone()).collect()
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.origin)
    }
}

impl Target {
    /// A target given as free text (`--target`, a JSON Lines row's `target`): its id is its text.
    pub fn free(text: &str) -> Self {
        Target {
            id: text.to_string(),
            text: text.to_string(),
            description: None,
            favor: Vec::new(),
            against: Vec::new(),
        }
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Schema> {
        Schema::parse(text, Path::new("s.toml"))
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A schema's TOML: themes and targets with generated ids and texts, some of them
        /// empty or repeated, and sometimes a stray line.
        fn schema_toml() -> impl Strategy<Value = String> {
            let id = prop_oneof![4 => "[a-z][a-z0-9-]{0,6}", 1 => Just(" ".to_string())];
            let words = prop_oneof![4 => "[A-Za-z][A-Za-z ,.]{0,30}", 1 => Just(String::new())];
            let theme =
                (id.clone(), prop::option::of(words.clone())).prop_map(|(id, description)| {
                    let description = description
                        .map(|d| format!("description = {d:?}\n"))
                        .unwrap_or_default();
                    format!("[[themes]]\nid = {id:?}\n{description}\n")
                });
            let target = (id, words)
                .prop_map(|(id, text)| format!("[[targets]]\nid = {id:?}\ntext = {text:?}\n\n"));
            (
                prop::collection::vec(theme, 0..5),
                prop::collection::vec(target, 0..4),
                prop::option::of(prop_oneof![
                    Just("id = = 3\n"),
                    Just("[[themes]\n"),
                    Just("x = 1\n")
                ]),
            )
                .prop_map(|(themes, targets, stray)| {
                    format!(
                        "{}{}{}",
                        themes.concat(),
                        targets.concat(),
                        stray.unwrap_or("")
                    )
                })
        }

        fn check(text: &str) {
            match parse(text) {
                Ok(schema) => {
                    assert!(schema.themes.len() != 1);
                    assert!(!(schema.themes.is_empty() && schema.targets.is_empty()));
                    let mut ids = schema.theme_ids();
                    ids.sort();
                    ids.dedup();
                    assert_eq!(ids.len(), schema.themes.len(), "theme ids are unique");
                    assert!(schema.themes.iter().all(|t| !t.id.is_empty()));
                    assert!(schema.targets.iter().all(|t| !t.id.is_empty()));
                }
                // An error names a line of the file.
                Err(Error::Schema { line, .. }) => {
                    assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}");
                }
                Err(other) => panic!("not a schema error: {other}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Issue 11: the schema parser never panics; a schema it accepts has two themes or
            /// none, unique non-empty ids, and an error it gives names a line of the file.
            #[test]
            fn issue_11_generated_schemas_parse_or_name_a_line(text in schema_toml()) {
                check(&text);
            }

            #[test]
            fn issue_11_arbitrary_strings_never_panic(text in any::<String>()) {
                check(&text);
            }
        }
    }

    #[test]
    fn default_schema_has_the_required_ids() {
        let schema = Schema::default_schema();
        assert_eq!(
            schema.theme_ids(),
            [
                "sino-russian-relations",
                "identity-and-ideology",
                "great-power-status",
                "threat-perception",
                "war-and-security",
                "western-policy",
                "information-and-narratives",
                "other"
            ]
        );
        let targets: Vec<(&str, &str)> = schema
            .targets
            .iter()
            .map(|t| (t.id.as_str(), t.text.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                (
                    "china-peace-broker",
                    "China can be leveraged to broker peace in Ukraine"
                ),
                (
                    "alignment-durable",
                    "The Sino-Russian alignment is strong and durable"
                )
            ]
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "[[themes]]\nid = \"a\"\ndescription = \"A.\"\n\n[[themes]]\nid = \"a\"\ndescription = \"B.\"\n";
        let message = parse(text).unwrap_err().to_string();
        assert_eq!(
            message,
            "schema s.toml:6: themes: key `id`: \"a\" is declared twice"
        );

        let text = "[[themes]]\nid = \"a\"\ndescription = \"A.\"\n[[themes]]\nid = \"b\"\n";
        let message = parse(text).unwrap_err().to_string();
        assert!(
            message.starts_with("schema s.toml:4: theme \"b\": key `description` is missing"),
            "{message}"
        );

        let text = "[[targets]]\nid = \"t\"\ntxt = \"typo\"\n";
        let message = parse(text).unwrap_err().to_string();
        assert!(
            message.starts_with("schema s.toml:3: unknown field `txt`"),
            "{message}"
        );

        let text = "[[themes]]\nid = \"a\"\ndescription = \"unterminated\n";
        assert!(parse(text)
            .unwrap_err()
            .to_string()
            .starts_with("schema s.toml:3:"));
    }

    #[test]
    fn optional_keys_are_read() {
        let text =
            "[[targets]]\nid = \"t\"\ntext = \"Claim.\"\nfavor = [\"Yes.\"]\nagainst = [\"No.\"]\n";
        let schema = parse(text).unwrap();
        assert_eq!(schema.targets[0].favor, ["Yes."]);
        assert_eq!(schema.targets[0].against, ["No."]);
        assert!(schema.themes.is_empty());
    }
}
