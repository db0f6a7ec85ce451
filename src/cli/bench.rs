//! `stancer bench`: how fast the encoder runs on this machine, measured the same way every time.
//!
//! The measuring, the numbers and their rendering are in the library ([`stancer::eval::bench`]); this
//! parses the flags, loads the model, calls, and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use stancer::encode::embed::EmbedStats;
use stancer::eval::bench::{measure, measure_classify, Report, Stage};
use stancer::text::input;

use super::setup::{load_embedder, load_heads, notice, StanceArgs};
use super::ModelArgs;

/// The corpus used without INPUT: ~300 paragraphs of 5 to ~360 tokens, made from the project's own
/// fixture prose by benches/make_corpus.py.
const BUILTIN_CORPUS: &str = include_str!("../../benches/corpus.jsonl");

/// Paragraphs embedded once before timing, so one-time costs (allocations, thread start-up, page
/// faults on the weights) stay out of the numbers.
const WARM_UP_PARAGRAPHS: usize = 64;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Files (.txt, .md, .jsonl) or folders to embed (default: the built-in corpus).
    #[arg(value_name = "INPUT")]
    inputs: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Threads for the CPU encoder (default: one per physical core, or RAYON_NUM_THREADS).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Most sequences in one batch (batches are also capped by --batch-tokens).
    #[arg(long, default_value_t = stancer::encode::embed::DEFAULT_MAX_ROWS, value_name = "N")]
    batch_rows: usize,
    /// Timed passes over the corpus; the median pass is reported.
    #[arg(long, default_value_t = 3, value_name = "N")]
    passes: usize,
    /// Also write the numbers to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Time the whole classify path instead of the encoder alone: embedding, the theme head and
    /// the stance model of --stance on the default schema's targets.
    #[arg(long)]
    classify: bool,
    #[command(flatten)]
    stance: StanceArgs,
    /// Also time each stage of the packed CPU encoder (CPU seconds summed over threads, per
    /// pass); the timers themselves cost a little.
    #[arg(long)]
    profile: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.passes == 0 {
        anyhow::bail!("--passes 0: at least one timed pass is needed");
    }
    super::output::check_folder(args.json.as_deref())?;
    // Thread counts are read by candle (RAYON_NUM_THREADS, per matrix product) and by rayon's
    // global pool (once, when it starts), so both are set before any work.
    if let Some(threads) = args.threads {
        if threads == 0 {
            anyhow::bail!("--threads 0: pass at least 1");
        }
        set_threads(threads)?;
    }
    let threads = candle_core::utils::get_num_threads();

    let (corpus, texts) = read_corpus(&args.inputs)?;
    if texts.is_empty() {
        anyhow::bail!("no paragraphs in {corpus} (empty or blank input); nothing to benchmark");
    }

    let started = Instant::now();
    let (embedder, resolved) = load_embedder(&args.model)?;
    let embedder = embedder.max_rows(args.batch_rows);
    let load_seconds = started.elapsed().as_secs_f64();

    let quiet = args.model.quiet;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    notice(
        quiet,
        &format!(
            "bench: {} paragraphs from {corpus}, {} on {}, {threads} threads, warm-up then {} passes",
            texts.len(),
            resolved.name,
            embedder.device_label(),
            args.passes
        ),
    );
    let started = Instant::now();
    let warm_up = &texts[..texts.len().min(WARM_UP_PARAGRAPHS)];
    embedder.embed_passages_counted(warm_up, &mut EmbedStats::default())?;
    let warm_up_seconds = started.elapsed().as_secs_f64();

    stancer::encode::model::packed::profile::enable(args.profile);
    let passes = if args.classify {
        // The whole classify path: embedding, the theme head and the stance model on the default
        // schema's targets (prototypes and targets are prepared once, outside the timed passes).
        let schema = stancer::label::schema::Schema::default_schema();
        let heads = load_heads(
            &embedder,
            &resolved,
            &schema,
            &[],
            &args.stance,
            &args.model,
        )?;
        let mut classifier =
            stancer::label::classify::Classifier::new(&embedder, &heads, &schema, &[])?;
        measure_classify(&mut classifier, &texts, args.passes, &mut |line| {
            notice(quiet, line)
        })?
    } else {
        measure(&embedder, &texts, args.passes, &mut |line| {
            notice(quiet, line)
        })?
    };
    stancer::encode::model::packed::profile::enable(false);
    let embedder = &embedder;
    let stages: Vec<Stage> = stancer::encode::model::packed::profile::take()
        .into_iter()
        .map(|(name, seconds)| Stage {
            name: name.to_string(),
            seconds: seconds / args.passes as f64,
        })
        .filter(|stage| stage.seconds > 0.0)
        .collect();
    let report = Report::from_passes(
        embedder,
        &corpus,
        &passes,
        threads,
        (args.model.batch_tokens, args.batch_rows),
        (load_seconds, warm_up_seconds),
        stages,
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        super::output::write_file(Some(path), &(text + "\n"))?;
    }
    print!("{}", report.render());
    Ok(ExitCode::SUCCESS)
}

/// Points candle's matrix products and rayon's global pool at `threads` threads.
pub(super) fn set_threads(threads: usize) -> anyhow::Result<()> {
    // Called before any thread is started, so no other thread reads the environment meanwhile.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("cannot start the thread pool")
}

fn read_corpus(inputs: &[String]) -> anyhow::Result<(String, Vec<String>)> {
    if inputs.is_empty() {
        let source = input::Source::File(PathBuf::from("benches/corpus.jsonl"));
        let paragraphs = input::jsonl_paragraphs(&source, BUILTIN_CORPUS)
            .context("the built-in corpus does not parse (this is a bug)")?;
        return Ok((
            "the built-in corpus".into(),
            paragraphs.into_iter().map(|p| p.text).collect(),
        ));
    }
    let mut texts = Vec::new();
    for source in input::expand(inputs)? {
        texts.extend(input::paragraphs(&source)?.into_iter().map(|p| p.text));
    }
    Ok((inputs.join(", "), texts))
}
