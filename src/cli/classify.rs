//! `stancer classify`: every paragraph's theme and stances, as JSON Lines, CSV or a table.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};
use stancer::classify::{Classified, Classifier};
use stancer::input::{self, Paragraph, Source};
use stancer::schema::Schema;

use super::output::Output;
use super::setup::{load_embedder, load_heads, notice, StanceArgs};
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Files (.txt, .md, .jsonl), folders (searched recursively), or - for standard input.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Schema of themes and targets (TOML); default: the built-in schema for Sino-Russian
    /// relations and the war in Ukraine.
    #[arg(long, short = 's', value_name = "FILE")]
    schema: Option<PathBuf>,
    /// A target to score every paragraph's stance toward, as free text (repeatable).
    #[arg(long, short = 't', value_name = "TEXT")]
    target: Vec<String>,
    /// Output format; default: a table when standard output is a terminal, else jsonl.
    #[arg(long, short = 'f', value_enum)]
    format: Option<Format>,
    /// Write to FILE (complete or not at all) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Fail on a binary file instead of skipping it with a warning.
    #[arg(long)]
    strict: bool,
    /// A trained head (from `stancer train`) instead of the zero-shot one; repeat for a theme and
    /// a stance head.
    #[arg(long, value_name = "DIR")]
    head: Vec<PathBuf>,
    #[command(flatten)]
    stance: StanceArgs,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
    Table,
}

/// Paragraphs are classified this many at a time, so memory stays flat on large inputs.
const CHUNK: usize = 512;

pub fn run(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.model.quiet;
    let schema = match &args.schema {
        Some(path) => Schema::from_file(path)?,
        None => Schema::default_schema(),
    };
    // A wrong --model is an error even when the input turns out to be empty.
    stancer::model::fetch::ModelSpec::parse(args.model.model.as_deref())?;
    let sources = input::expand(&args.inputs)?;
    let format = args.format.unwrap_or_else(|| {
        if args.output.is_none() && std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Jsonl
        }
    });

    // Read and split everything once up front: bad input fails before the model loads, and the
    // progress bar knows the total. Only standard input is kept; files are read again when their
    // turn comes (JSON Lines line by line), so memory does not grow with the input.
    let mut total = 0usize;
    let mut readable: Vec<(Source, Option<Vec<Paragraph>>)> = Vec::new();
    for source in sources {
        let counted = match &source {
            Source::Stdin => input::paragraphs(&source).map(|p| (p.len(), Some(p))),
            Source::File(_) => count(&source).map(|n| (n, None)),
        };
        match counted {
            Ok((n, kept)) => {
                total += n;
                readable.push((source, kept));
            }
            Err(e @ stancer::Error::Binary { .. }) if !args.strict => {
                notice(
                    false,
                    &format!("skipping {e} (pass --strict to fail instead)"),
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut output = Output::open(args.output.as_deref())?;
    if total == 0 {
        notice(
            quiet,
            &format!(
                "no paragraphs in {}: nothing to classify",
                args.inputs.join(", ")
            ),
        );
        output.finish()?;
        return Ok(ExitCode::SUCCESS);
    }

    let (embedder, resolved) = load_embedder(&args.model)?;
    let heads = load_heads(
        &embedder,
        &resolved,
        &schema,
        &args.head,
        &args.stance,
        &args.model,
    )?;
    let mut classifier = Classifier::new(&embedder, &heads, &schema, &args.target)?;
    let mut writer = RecordWriter::new(format, classifier.target_ids());
    let progress = progress_bar(total, quiet);
    let started = Instant::now();
    writer.header(&mut output)?;
    for (source, kept) in readable {
        let mut paragraphs: Box<dyn Iterator<Item = stancer::Result<Paragraph>>> = match kept {
            Some(p) => Box::new(p.into_iter().map(Ok)),
            None => input::stream(&source)?,
        };
        loop {
            let chunk = paragraphs
                .by_ref()
                .take(CHUNK)
                .collect::<stancer::Result<Vec<_>>>()?;
            if chunk.is_empty() {
                break;
            }
            let classified = classifier.classify(&chunk)?;
            for (paragraph, result) in chunk.iter().zip(&classified) {
                writer.write(&mut output, paragraph, result)?;
            }
            progress.inc(chunk.len() as u64);
        }
    }
    progress.finish_and_clear();
    output.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    notice(
        quiet,
        &format!(
            "classified {total} paragraphs in {seconds:.2} s ({:.1} paragraphs/s, {} on {})",
            total as f64 / seconds.max(1e-9),
            classifier.embedder().name(),
            classifier.embedder().device_label()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

/// Paragraphs in a file, checking every one parses (without keeping them).
fn count(source: &Source) -> stancer::Result<usize> {
    let mut n = 0;
    for paragraph in input::stream(source)? {
        paragraph?;
        n += 1;
    }
    Ok(n)
}

fn progress_bar(total: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet || total < 64 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} paragraphs  {per_sec}  {eta} left",
        )
        .expect("this is a bug: bad progress template"),
    );
    bar
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
            let scores: Map<String, Value> = stancer::stance::Stance::ALL
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

struct RecordWriter {
    format: Format,
    targets: Vec<String>,
    rows: usize,
}

impl RecordWriter {
    fn new(format: Format, targets: Vec<String>) -> Self {
        Self {
            format,
            targets,
            rows: 0,
        }
    }

    fn header(&mut self, out: &mut Output) -> anyhow::Result<()> {
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

    fn write(
        &mut self,
        out: &mut Output,
        paragraph: &Paragraph,
        result: &Classified,
    ) -> anyhow::Result<()> {
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
