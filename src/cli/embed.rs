//! `stancer embed`: one JSON line per paragraph with its vector.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use stancer::text::input::{self, Paragraph};

use super::output::Output;
use super::setup::{load_embedder, notice};
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Files (.txt, .md, .jsonl), folders, or - for standard input.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Write to FILE (complete or not at all) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Fail on a binary file instead of skipping it with a warning.
    #[arg(long)]
    strict: bool,
}

#[derive(Serialize)]
struct Record<'a> {
    id: &'a str,
    vector: &'a [f32],
    tokens: usize,
    windows: usize,
}

/// Paragraphs are embedded this many at a time, so memory stays flat on large inputs.
const CHUNK: usize = 1024;

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let sources = input::expand(&args.inputs)?;
    super::output::check_folder(args.output.as_deref())?;
    let (embedder, _) = load_embedder(&args.model)?;
    let mut output = Output::open(args.output.as_deref())?;
    let mut total = 0;
    for source in &sources {
        let paragraphs = match input::paragraphs(source) {
            Ok(p) => p,
            Err(e @ stancer::Error::Binary { .. }) if !args.strict => {
                notice(
                    false,
                    &format!("skipping {e} (pass --strict to fail instead)"),
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for chunk in paragraphs.chunks(CHUNK) {
            write_chunk(&embedder, chunk, &mut output)?;
        }
        total += paragraphs.len();
    }
    if total == 0 {
        anyhow::bail!(
            "no paragraphs in {} (empty or blank input); nothing to embed",
            args.inputs.join(", ")
        );
    }
    output.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn write_chunk(
    embedder: &stancer::encode::embed::Embedder,
    chunk: &[Paragraph],
    output: &mut Output,
) -> anyhow::Result<()> {
    let texts: Vec<&str> = chunk.iter().map(|p| p.text.as_str()).collect();
    let embeddings = embedder.embed_passages(&texts)?;
    for (paragraph, embedding) in chunk.iter().zip(&embeddings) {
        let record = Record {
            id: &paragraph.id,
            vector: &embedding.vector,
            tokens: embedding.tokens,
            windows: embedding.windows,
        };
        serde_json::to_writer(&mut *output, &record)?;
        output.write_all(b"\n")?;
    }
    Ok(())
}
