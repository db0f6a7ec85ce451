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

use super::output::{Output, Resumable};
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
    /// Write to FILE instead of standard output. Records go to FILE.partial as they are made
    /// (synced every 512 paragraphs); FILE appears, complete, when the run ends.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Continue an interrupted `-o FILE` run of the same command from FILE.partial: what was
    /// synced is kept, a torn last record is cut, and FILE ends byte-identical to an
    /// uninterrupted run's. Without a partial run, starts afresh.
    #[arg(long, requires = "output")]
    resume: bool,
    /// Take only shard K of N (0 <= K < N): a text document goes to one shard whole, a JSON Lines
    /// row by its id, by a fixed hash, so N runs with K = 0..N-1 classify every paragraph once.
    #[arg(long, value_name = "K/N")]
    shard: Option<stancer::text::shard::Shard>,
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
    if args.resume && format == Format::Table {
        anyhow::bail!(stancer::Error::Usage {
            message: "--resume continues jsonl or csv output; the table is not resumable".into()
        });
    }
    super::output::check_folder(args.output.as_deref())?;
    let shard = args.shard;
    // A text document not in this shard is not even read.
    let owned = |source: &Source| match (shard, source) {
        (Some(shard), Source::File(path)) if path.extension().is_none_or(|e| e != "jsonl") => {
            shard.owns(&source.name())
        }
        _ => true,
    };
    let in_shard = move |paragraph: &Paragraph| shard.is_none_or(|s| s.owns(paragraph.shard_key()));

    // Read and split everything once up front: bad input fails before the model loads, and the
    // progress bar knows the total. Only standard input is kept; files are read again when their
    // turn comes (JSON Lines line by line), so memory does not grow with the input.
    let mut total = 0usize;
    let mut readable: Vec<(Source, Option<Vec<Paragraph>>)> = Vec::new();
    for source in sources.into_iter().filter(|s| owned(s)) {
        let counted = match &source {
            Source::Stdin => input::paragraphs(&source).map(|p| {
                let kept: Vec<Paragraph> = p.into_iter().filter(|p| in_shard(p)).collect();
                (kept.len(), Some(kept))
            }),
            Source::File(_) => count(&source, &in_shard).map(|n| (n, None)),
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
    // The output opens only once the inputs are read (and, below, the model loaded), so bad
    // input or a model that cannot load leaves no partial file behind.
    let open_output = || -> anyhow::Result<(Sink, u64, bool)> {
        let identity = command_identity(&args);
        Ok(match &args.output {
            Some(path) => {
                let (file, done, started) =
                    Resumable::open(path, &identity, args.resume, &mut |line| {
                        notice(quiet, line)
                    })?;
                (Sink::File(Box::new(file)), done, started)
            }
            None => (Sink::Stdout(Output::open(None)?), 0, false),
        })
    };
    if total == 0 {
        let (output, _, _) = open_output()?;
        notice(
            quiet,
            &format!(
                "no paragraphs in {}: nothing to classify",
                args.inputs.join(", ")
            ),
        );
        output.finish(0)?;
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
    let (mut output, done, started) = open_output()?;
    let mut classifier = Classifier::new(&embedder, &heads, &schema, &args.target)?;
    let mut writer = RecordWriter::new(format.into(), classifier.target_ids());
    let progress = progress_bar(total, quiet);
    let clock = Instant::now();
    if !started {
        writer.header(&mut output)?;
    }
    // Records already in a resumed partial: skipped, not classified again. Every paragraph's
    // labels are independent of its batch, so the rest come out as an uninterrupted run's.
    let mut skip = done as usize;
    let mut written = done;
    progress.inc(done);
    for (source, kept) in readable {
        let mut paragraphs: Box<dyn Iterator<Item = stancer::Result<Paragraph>>> = match kept {
            Some(p) => Box::new(p.into_iter().map(Ok)),
            None => {
                Box::new(input::stream(&source)?.filter(|p| p.as_ref().map_or(true, &in_shard)))
            }
        };
        while skip > 0 {
            match paragraphs.next() {
                Some(p) => {
                    p?;
                    skip -= 1;
                }
                None => break,
            }
        }
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
            written += chunk.len() as u64;
            output.checkpoint(written)?;
            progress.inc(chunk.len() as u64);
        }
    }
    if skip > 0 {
        anyhow::bail!(stancer::Error::Usage {
            message: format!(
                "the partial output holds more records than the inputs give now ({done} against \
                 {total}); the inputs changed since the interrupted run, so delete the partial \
                 output and start afresh"
            )
        });
    }
    progress.finish_and_clear();
    output.finish(written)?;
    let seconds = clock.elapsed().as_secs_f64();
    let fresh = total - done as usize;
    notice(
        quiet,
        &format!(
            "classified {fresh} paragraphs in {seconds:.2} s ({:.1} paragraphs/s, {} on {}){}",
            fresh as f64 / seconds.max(1e-9),
            classifier.embedder().name(),
            classifier.embedder().device_label(),
            match shard {
                Some(shard) => format!("; shard {shard}"),
                None => String::new(),
            }
        ),
    );
    Ok(ExitCode::SUCCESS)
}

/// Paragraphs of a file in the shard, checking every one parses (without keeping them).
fn count(source: &Source, in_shard: &dyn Fn(&Paragraph) -> bool) -> stancer::Result<usize> {
    let mut n = 0;
    for paragraph in input::stream(source)? {
        if in_shard(&paragraph?) {
            n += 1;
        }
    }
    Ok(n)
}

/// What decides the output, as one checksum: a partial output continues only under the same.
fn command_identity(args: &ClassifyArgs) -> String {
    let model = super::ModelArgs {
        quiet: false,
        ..args.model.clone()
    };
    let description = format!(
        "stancer {} classify inputs={:?} schema={:?} target={:?} format={:?} head={:?} stance={:?} model={:?} shard={:?}",
        env!("CARGO_PKG_VERSION"),
        args.inputs,
        args.schema,
        args.target,
        args.format,
        args.head,
        args.stance,
        model,
        args.shard.map(|s| s.to_string()),
    );
    stancer::encode::model::fetch::sha256_bytes(description.as_bytes())
}

/// Standard output, or a resumable `-o FILE`.
enum Sink {
    Stdout(Output),
    File(Box<Resumable>),
}

impl Sink {
    fn checkpoint(&mut self, records: u64) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(_) => Ok(()),
            Sink::File(file) => file.checkpoint(records),
        }
    }

    fn finish(self, records: u64) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(output) => output.finish(),
            Sink::File(file) => file.finish(records),
        }
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(output) => output.write(buf),
            Sink::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(output) => output.flush(),
            Sink::File(file) => file.flush(),
        }
    }
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
