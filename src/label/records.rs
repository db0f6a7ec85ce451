//! Classify's output records: one JSON object per paragraph (its place in the source, its
//! theme and its stances, scores to 4 decimals), and the CSV and table rows made from the same
//! data.

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::label::classify::Classified;
use crate::label::stance::Stance;
use crate::text::input::Paragraph;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Table,
}

/// Scores are written with 4 decimals: enough to rank, and stable from run to run.
fn round(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

/// One JSON record per paragraph; the same shape is the source of the CSV and table rows.
pub fn record(paragraph: &Paragraph, result: &Classified) -> Value {
    let mut record = Map::new();
    record.insert("doc".into(), json!(paragraph.doc));
    record.insert("paragraph".into(), json!(paragraph.index));
    record.insert("id".into(), json!(paragraph.id));
    record.insert("section".into(), json!(paragraph.section));
    record.insert("start".into(), json!(paragraph.start));
    record.insert("end".into(), json!(paragraph.end));
    record.insert("text".into(), json!(paragraph.text));
    let theme = result.theme.as_ref().map(|t| {
        let scores: Map<String, Value> = t
            .scores
            .iter()
            .map(|(label, s)| (label.clone(), json!(round(*s))))
            .collect();
        json!({"label": t.label, "score": round(t.score), "scores": scores})
    });
    record.insert("theme".into(), json!(theme));
    let stance: Map<String, Value> = result
        .stances
        .iter()
        .map(|(target, d)| {
            let scores: Map<String, Value> = Stance::ALL
                .iter()
                .map(|s| (s.to_string(), json!(round(d.scores[s.index()]))))
                .collect();
            (
                target.clone(),
                json!({"label": d.label, "score": round(d.score), "scores": scores}),
            )
        })
        .collect();
    record.insert("stance".into(), Value::Object(stance));
    record.insert("tokens".into(), json!(result.embedding.tokens));
    record.insert("windows".into(), json!(result.embedding.windows));
    Value::Object(record)
}

/// Writes classify's records in one format: a header (CSV, table), then a line per paragraph.
pub struct RecordWriter {
    format: Format,
    targets: Vec<String>,
    rows: usize,
}

impl RecordWriter {
    /// A writer for paragraphs scored against `targets` (their ids, in output order).
    pub fn new(format: Format, targets: Vec<String>) -> Self {
        Self {
            format,
            targets,
            rows: 0,
        }
    }

    pub fn header(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {}
            Format::Csv => {
                let mut columns: Vec<String> = [
                    "doc",
                    "paragraph",
                    "id",
                    "section",
                    "start",
                    "end",
                    "tokens",
                    "windows",
                    "theme",
                    "theme_score",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                for t in &self.targets {
                    columns.push(format!("stance:{t}"));
                    columns.push(format!("stance_score:{t}"));
                }
                columns.extend(
                    ["row_target", "row_stance", "row_stance_score", "text"].map(String::from),
                );
                let line: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
                writeln!(out, "{}", line.join(","))?;
            }
            Format::Table => {
                let mut line = format!("{:>4}  {:<28} {:<34}", "#", "section", "theme");
                for t in &self.targets {
                    line.push_str(&format!(" {:<16}", truncate(t, 16)));
                }
                line.push_str("  text");
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }

    pub fn write(
        &mut self,
        out: &mut dyn Write,
        paragraph: &Paragraph,
        result: &Classified,
    ) -> std::io::Result<()> {
        self.rows += 1;
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut *out, &record(paragraph, result))?;
                out.write_all(b"\n")?;
            }
            Format::Csv => {
                let (theme, theme_score) = result
                    .theme
                    .as_ref()
                    .map_or((String::new(), String::new()), |t| {
                        (t.label.clone(), format!("{:.4}", t.score))
                    });
                let mut fields = vec![
                    paragraph.doc.clone(),
                    paragraph.index.to_string(),
                    paragraph.id.clone(),
                    paragraph.section.clone().unwrap_or_default(),
                    paragraph.start.to_string(),
                    paragraph.end.to_string(),
                    result.embedding.tokens.to_string(),
                    result.embedding.windows.to_string(),
                    theme,
                    theme_score,
                ];
                for (_, d) in result.stances.iter().take(self.targets.len()) {
                    fields.push(d.label.to_string());
                    fields.push(format!("{:.4}", d.score));
                }
                match result.stances.get(self.targets.len()) {
                    Some((target, d)) => {
                        fields.push(target.clone());
                        fields.push(d.label.to_string());
                        fields.push(format!("{:.4}", d.score));
                    }
                    None => fields.extend([String::new(), String::new(), String::new()]),
                }
                fields.push(paragraph.text.clone());
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", line.join(","))?;
            }
            Format::Table => {
                let theme = result
                    .theme
                    .as_ref()
                    .map_or(String::new(), |t| format!("{} {:.2}", t.label, t.score));
                let section = paragraph.section.clone().unwrap_or_default();
                let mut line = format!(
                    "{:>4}  {:<28} {:<34}",
                    paragraph.index,
                    truncate(&section, 28),
                    truncate(&theme, 34)
                );
                for (_, d) in result.stances.iter().take(self.targets.len()) {
                    line.push_str(&format!(" {:<16}", format!("{} {:.2}", d.label, d.score)));
                }
                line.push_str("  ");
                line.push_str(&truncate(&paragraph.text, 60));
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }
}

fn truncate(text: &str, width: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= width {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
