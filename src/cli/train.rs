//! `stancer train`: fit a theme or stance head on labelled paragraphs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use stancer::label::head::linear::TrainOptions;
use stancer::label::head::trained::{self, EncoderRecord, TrainingData};
use stancer::label::schema::Schema;

use super::setup::{embed_cached, load_embedder, notice};
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Labelled paragraphs (JSON Lines, the gold format of `stancer eval`).
    #[arg(required = true, value_name = "DATA")]
    data: Vec<PathBuf>,
    /// What the head predicts.
    #[arg(long, value_enum)]
    task: TaskArg,
    /// Schema the data's theme labels and target ids belong to (default: the built-in schema).
    #[arg(long, short = 's', value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Folder to write head.json and head.safetensors into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of the held-out split (the same seed and data give the same head).
    #[arg(long, default_value_t = 2016)]
    seed: u64,
    /// Encode every paragraph instead of reading known ones from the embedding cache.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TaskArg {
    Theme,
    Stance,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.model.quiet;
    let schema = match &args.schema {
        Some(path) => Schema::from_file(path)?,
        None => Schema::default_schema(),
    };
    let mut rows = Vec::new();
    let mut bytes = Vec::new();
    for file in &args.data {
        rows.extend(stancer::eval::gold::read(file, &schema)?);
        bytes.extend(std::fs::read(file).map_err(|e| stancer::Error::Read {
            path: file.clone(),
            source: e,
        })?);
    }
    let (embedder, resolved) = load_embedder(&args.model)?;
    let started = std::time::Instant::now();
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let embeddings = if args.no_cache {
        embedder.embed_passages(&texts)?
    } else {
        embed_cached(&embedder, &resolved, &texts, quiet)?
    };
    let embedded = started.elapsed().as_secs_f64();
    let vectors: Vec<&[f32]> = embeddings.iter().map(|e| e.vector.as_slice()).collect();
    let data = TrainingData {
        rows: &rows,
        vectors: &vectors,
        files: args.data.iter().map(|f| f.display().to_string()).collect(),
        sha256: stancer::encode::model::fetch::sha256_bytes(&bytes),
    };
    let encoder = EncoderRecord {
        name: resolved.name.clone(),
        sha256: resolved.weights_checksum()?,
    };
    let options = TrainOptions {
        seed: args.seed,
        ..TrainOptions::default()
    };
    let head = match args.task {
        TaskArg::Theme => trained::train_theme(&data, &schema, encoder, &options)?,
        TaskArg::Stance => trained::train_stance(&data, &schema, &embedder, encoder, &options)?,
    };
    head.save(&args.out)?;
    let m = &head.manifest;
    notice(
        quiet,
        &format!(
            "embedded {} paragraphs in {embedded:.1} s; fitted in {:.1} s ({} s in all)",
            rows.len(),
            m.training.seconds,
            format_args!("{:.1}", started.elapsed().as_secs_f64())
        ),
    );
    // The test part chose nothing, so its score is the one to trust; the selection part's is
    // the best over the L2 grid and reads high.
    let test = match &m.test {
        Some(test) => format!(
            "held-out test ({} rows) accuracy {:.3}, macro-F1 {:.3}",
            test.rows, test.accuracy, test.macro_f1
        ),
        None => "too few rows to hold out a test part".to_string(),
    };
    println!(
        "{} head: {} examples, {} labels, L2 {}, {} epochs; {test}; selection ({} rows) macro-F1 {:.3}; written to {}",
        m.task,
        m.training.rows,
        m.labels.len(),
        m.training.l2,
        m.training.epochs,
        m.validation.rows,
        m.validation.macro_f1,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
