//! `stancer classify`: every paragraph's theme and stances, as JSON Lines, CSV or a table.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use stancer::label::classify::Classifier;
use stancer::label::records::{self, RecordWriter};
use stancer::label::schema::Schema;
use stancer::text::input::{self, Paragraph, Source};

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

impl From<Format> for records::Format {
    fn from(format: Format) -> Self {
        match format {
            Format::Jsonl => records::Format::Jsonl,
            Format::Csv => records::Format::Csv,
            Format::Table => records::Format::Table,
        }
    }
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
    stancer::encode::model::fetch::ModelSpec::parse(args.model.model.as_deref())?;
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
    let mut writer = RecordWriter::new(format.into(), classifier.target_ids());
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
