//! Gold data (data only: it labels nothing): hand-labelled paragraphs in JSON Lines, in two forms that may mix in one file.
//!
//! - schema form: `{"id", "text", "theme": "<theme id>", "theme_also": [...], "stance": {"<target id>": "favor|against|none"}}`
//!   (each key but `text` optional);
//! - free-target form: `{"id", "text", "target": "<free text>", "stance": "favor|against|none"}`,
//!   and theme-only rows `{"id", "text", "theme": "<label>"}`.
//!
//! Rows are paragraphs: never re-split. Theme labels and schema-form target ids must be in the
//! schema; an unknown one is an error naming the file and line.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::label::schema::Schema;
use crate::label::stance::Stance;

#[derive(Debug, Clone, PartialEq)]
pub struct GoldRow {
    pub id: String,
    pub text: String,
    pub theme: Option<String>,
    /// Other themes the labeller would accept.
    pub theme_also: Vec<String>,
    /// (target id for schema targets, or the free text, gold stance).
    pub stances: Vec<(String, Stance)>,
}

/// Reads gold rows from a file, checking labels against the schema.
pub fn read(path: &Path, schema: &Schema) -> Result<Vec<GoldRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Error::NotUtf8 {
            path: path.to_path_buf(),
            offset: std::fs::read(path)
                .ok()
                .and_then(|b| std::str::from_utf8(&b).err().map(|e| e.valid_up_to()))
                .unwrap_or(0),
        },
        _ => Error::read(path, e),
    })?;
    parse(&text, path, schema)
}

/// Reads the gold rows of several files, in order; no rows at all is an error.
pub fn read_all(files: &[std::path::PathBuf], schema: &Schema) -> Result<Vec<GoldRow>> {
    let mut rows = Vec::new();
    for file in files {
        rows.extend(read(file, schema)?);
    }
    if rows.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(Error::Usage {
            message: format!(
                "no gold rows in {} (empty or blank); pass JSON Lines of {{\"text\", \"target\", \"stance\"}} or schema-form rows",
                names.join(", ")
            ),
        });
    }
    Ok(rows)
}

pub fn parse(text: &str, path: &Path, schema: &Schema) -> Result<Vec<GoldRow>> {
    let themes = schema.theme_ids();
    let mut rows = Vec::new();
    for row in crate::text::input::json_lines(text, path) {
        let (number, value) = row?;
        let fail = |message: String| Error::Jsonl {
            path: path.to_path_buf(),
            line: number,
            message,
        };
        let object = value
            .as_object()
            .ok_or_else(|| fail("expected a JSON object".into()))?;
        let text = object
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("no \"text\" string field".into()))?
            .to_string();
        let id = match object.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("{}#{}", path.display(), number),
        };
        let check_theme = |label: &str| -> Result<String> {
            if themes.iter().any(|t| t == label) {
                Ok(label.to_string())
            } else {
                Err(fail(format!(
                    "theme \"{label}\" is not in the schema {} (its themes: {}); pass --schema with the right schema",
                    schema.origin,
                    themes.join(", ")
                )))
            }
        };
        let theme = match object.get("theme") {
            None | Some(Value::Null) => None,
            Some(Value::String(label)) => Some(check_theme(label)?),
            Some(_) => return Err(fail("\"theme\" must be a string".into())),
        };
        let theme_also = match object.get("theme_also") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| fail("\"theme_also\" must be a list of strings".into()))
                        .and_then(check_theme)
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(fail("\"theme_also\" must be a list of strings".into())),
        };
        let parse_stance = |value: &Value| -> Result<Stance> {
            value
                .as_str()
                .ok_or_else(|| fail("a stance must be \"favor\", \"against\" or \"none\"".into()))?
                .parse()
                .map_err(|e: crate::label::stance::ParseStanceError| fail(e.to_string()))
        };
        let stances = match (object.get("target"), object.get("stance")) {
            (Some(Value::String(target)), Some(stance)) => {
                vec![(target.clone(), parse_stance(stance)?)]
            }
            (Some(_), _) => {
                return Err(fail(
                    "a row with \"target\" needs a string target and a \"stance\"".into(),
                ))
            }
            (None, Some(Value::Object(map))) => {
                let mut stances = Vec::new();
                for (target, stance) in map {
                    if !schema.targets.iter().any(|t| &t.id == target) {
                        return Err(fail(format!(
                            "target \"{target}\" is not in the schema {}; use the free-target form {{\"target\": \"...\", \"stance\": \"...\"}}",
                            schema.origin
                        )));
                    }
                    stances.push((target.clone(), parse_stance(stance)?));
                }
                stances
            }
            (None, None) | (None, Some(Value::Null)) => Vec::new(),
            (None, Some(_)) => {
                return Err(fail(
                    "\"stance\" without \"target\" must be an object {\"<target id>\": \"favor|against|none\"}".into(),
                ))
            }
        };
        if theme.is_none() && stances.is_empty() {
            return Err(fail(
                "the row has neither a \"theme\" nor a stance label".into(),
            ));
        }
        rows.push(GoldRow {
            id,
            text,
            theme,
            theme_also,
            stances,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::default_schema()
    }

    #[test]
    fn both_forms_mix_in_one_file() {
        let text = concat!(
            "{\"id\": \"a\", \"text\": \"A.\", \"theme\": \"other\", \"theme_also\": [\"western-policy\"], \"stance\": {\"china-peace-broker\": \"against\"}}\n",
            "{\"id\": \"b\", \"text\": \"B.\", \"target\": \"Atheism\", \"stance\": \"favor\"}\n",
            "\n",
            "{\"id\": \"c\", \"text\": \"C.\", \"theme\": \"war-and-security\"}\n",
        );
        let rows = parse(text, Path::new("g.jsonl"), &schema()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].theme.as_deref(), Some("other"));
        assert_eq!(rows[0].theme_also, ["western-policy"]);
        assert_eq!(
            rows[0].stances,
            [("china-peace-broker".to_string(), Stance::Against)]
        );
        assert_eq!(rows[1].stances, [("Atheism".to_string(), Stance::Favor)]);
        assert!(rows[2].stances.is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Gold rows in both forms, with known and unknown labels, blank and broken lines.
        fn gold() -> impl Strategy<Value = String> {
            let theme = prop_oneof![Just("other"), Just("war-and-security"), Just("Sports")];
            let stance = prop_oneof![Just("favor"), Just("against"), Just("none"), Just("maybe")];
            let line = prop_oneof![
                4 => (any::<String>(), theme, prop::option::of("[a-z0-9]{1,6}")).prop_map(
                    |(text, theme, id)| {
                        let mut row = serde_json::json!({ "text": text, "theme": theme });
                        if let Some(id) = id {
                            row["id"] = id.into();
                        }
                        row.to_string()
                    }
                ),
                2 => (any::<String>(), any::<String>(), stance.clone()).prop_map(|(text, target, stance)| {
                    serde_json::json!({ "text": text, "target": target, "stance": stance })
                        .to_string()
                }),
                1 => stance.prop_map(|stance| {
                    serde_json::json!({ "text": "t", "stance": { "china-peace-broker": stance } })
                        .to_string()
                }),
                1 => Just(String::new()),
                1 => any::<String>(),
            ];
            prop::collection::vec(line, 0..10).prop_map(|lines| lines.join("\n"))
        }

        fn check(text: &str) {
            let path = Path::new("g.jsonl");
            match parse(text, path, &schema()) {
                Ok(rows) => {
                    let lines: Vec<&str> = text.lines().collect();
                    for row in rows {
                        assert!(row.theme.is_some() || !row.stances.is_empty());
                        if let Some(line) = row.id.strip_prefix("g.jsonl#") {
                            let line: usize = line.parse().unwrap();
                            let value: Value = serde_json::from_str(
                                lines[line - 1].trim_start_matches('\u{feff}').trim(),
                            )
                            .unwrap();
                            assert_eq!(value["text"].as_str(), Some(row.text.as_str()));
                        }
                    }
                }
                // An error names a line of the file.
                Err(Error::Jsonl { line, .. }) => {
                    assert!(line >= 1 && line <= text.lines().count(), "line {line}");
                }
                Err(other) => panic!("not a JSON Lines error: {other}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Issue 11: the gold parser never panics; an id it makes up names the row's line,
            /// and an error names a line of the file.
            #[test]
            fn issue_11_generated_gold_parses_or_names_a_line(text in gold()) {
                check(&text);
            }

            #[test]
            fn issue_11_arbitrary_strings_never_panic(text in any::<String>()) {
                check(&text);
            }
        }
    }

    #[test]
    fn unknown_labels_name_the_line() {
        let text =
            "{\"text\": \"A.\", \"theme\": \"other\"}\n{\"text\": \"B.\", \"theme\": \"Sports\"}\n";
        let message = parse(text, Path::new("g.jsonl"), &schema())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("g.jsonl:2: theme \"Sports\" is not in the schema"),
            "{message}"
        );
        let text = "{\"text\": \"A.\", \"stance\": {\"nope\": \"favor\"}}\n";
        let message = parse(text, Path::new("g.jsonl"), &schema())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("g.jsonl:1: target \"nope\" is not in the schema"),
            "{message}"
        );
        let text = "{\"text\": \"A.\", \"target\": \"x\", \"stance\": \"maybe\"}\n";
        let message = parse(text, Path::new("g.jsonl"), &schema())
            .unwrap_err()
            .to_string();
        assert!(message.contains("unknown stance 'maybe'"), "{message}");
    }
}
