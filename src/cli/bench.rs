//! `stancer bench`: how fast the encoder runs on this machine, measured the same way every time.
//!
//! Measure, compute, render are separate: [`measure`] runs the passes and keeps raw timings,
//! [`Report::from_passes`] turns them into numbers (medians, percentiles), and the report is
//! printed as text or written as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use stancer::embed::{EmbedStats, Embedder};
use stancer::input;

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
    #[arg(long, default_value_t = stancer::embed::DEFAULT_MAX_ROWS, value_name = "N")]
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

/// One timed pass over the corpus.
#[derive(Debug, Clone, Serialize)]
struct Pass {
    seconds: f64,
    paragraphs_per_second: f64,
    tokens_per_second: f64,
}

/// CPU time of one stage of the packed encoder in one pass.
#[derive(Debug, Clone, Serialize)]
struct Stage {
    name: String,
    seconds: f64,
}

/// Everything a benchmark run found, as plain data.
#[derive(Debug, Clone, Serialize)]
struct Report {
    model: String,
    device: String,
    threads: usize,
    corpus: String,
    paragraphs: usize,
    sequences: usize,
    /// Real tokens per pass (special tokens included, padding not).
    real_tokens: usize,
    /// Padding tokens as a share of all tokens the model computed.
    padding_ratio: f64,
    batch_tokens: usize,
    batch_rows: usize,
    batches: usize,
    load_seconds: f64,
    warm_up_seconds: f64,
    /// The median pass.
    seconds: f64,
    paragraphs_per_second: f64,
    tokens_per_second: f64,
    batch_p50_ms: f64,
    batch_p95_ms: f64,
    /// Peak resident memory of the process (VmHWM), in MiB.
    peak_rss_mib: Option<f64>,
    passes: Vec<Pass>,
    /// Per-stage CPU seconds per pass, with --profile (packed encoder only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stages: Vec<Stage>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.passes == 0 {
        anyhow::bail!("--passes 0: at least one timed pass is needed");
    }
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

    stancer::model::packed::profile::enable(args.profile);
    let passes = if args.classify {
        // The whole classify path: embedding, the theme head and the stance model on the default
        // schema's targets (prototypes and targets are prepared once, outside the timed passes).
        let schema = stancer::schema::Schema::default_schema();
        let heads = load_heads(
            &embedder,
            &resolved,
            &schema,
            &[],
            &args.stance,
            &args.model,
        )?;
        let mut classifier = stancer::classify::Classifier::new(&embedder, &heads, &schema, &[])?;
        measure_classify(&mut classifier, &texts, args.passes, quiet)?
    } else {
        measure(&embedder, &texts, args.passes, quiet)?
    };
    stancer::model::packed::profile::enable(false);
    let embedder = &embedder;
    let stages: Vec<Stage> = stancer::model::packed::profile::take()
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

/// Like [`measure`], through the whole classify path.
fn measure_classify(
    classifier: &mut stancer::classify::Classifier,
    texts: &[&str],
    passes: usize,
    quiet: bool,
) -> anyhow::Result<Vec<(f64, EmbedStats)>> {
    let paragraphs: Vec<input::Paragraph> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| input::Paragraph {
            doc: "bench".into(),
            index: i + 1,
            id: format!("bench#{}", i + 1),
            section: None,
            start: 0,
            end: text.len(),
            text: text.to_string(),
            target: None,
        })
        .collect();
    let mut results = Vec::with_capacity(passes);
    for pass in 0..passes {
        classifier.stats = EmbedStats::default();
        let started = Instant::now();
        for chunk in paragraphs.chunks(512) {
            classifier.classify(chunk)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        notice(
            quiet,
            &format!(
                "bench: classify pass {}/{passes}: {:.2} s, {:.1} paragraphs/s",
                pass + 1,
                seconds,
                texts.len() as f64 / seconds
            ),
        );
        results.push((seconds, std::mem::take(&mut classifier.stats)));
    }
    Ok(results)
}

/// Runs the timed passes; each pass embeds the whole corpus in one call, so batch planning sees
/// all of it, as a user's run would.
fn measure(
    embedder: &Embedder,
    texts: &[&str],
    passes: usize,
    quiet: bool,
) -> anyhow::Result<Vec<(f64, EmbedStats)>> {
    let mut results = Vec::with_capacity(passes);
    for pass in 0..passes {
        let mut stats = EmbedStats::default();
        let started = Instant::now();
        embedder.embed_passages_counted(texts, &mut stats)?;
        let seconds = started.elapsed().as_secs_f64();
        notice(
            quiet,
            &format!(
                "bench: pass {}/{passes}: {:.2} s, {:.1} paragraphs/s",
                pass + 1,
                seconds,
                texts.len() as f64 / seconds
            ),
        );
        results.push((seconds, stats));
    }
    Ok(results)
}

impl Report {
    fn from_passes(
        embedder: &Embedder,
        corpus: &str,
        passes: &[(f64, EmbedStats)],
        threads: usize,
        (batch_tokens, batch_rows): (usize, usize),
        (load_seconds, warm_up_seconds): (f64, f64),
        stages: Vec<Stage>,
    ) -> Self {
        let first = &passes[0].1;
        let seconds = median(passes.iter().map(|(s, _)| *s).collect());
        let mut latencies: Vec<f64> = passes
            .iter()
            .flat_map(|(_, stats)| stats.batch_seconds.iter().copied())
            .collect();
        latencies.sort_by(f64::total_cmp);
        let padding = first.padded_tokens.saturating_sub(first.real_tokens);
        Report {
            model: embedder.name().to_string(),
            device: embedder.device_label(),
            threads,
            corpus: corpus.to_string(),
            paragraphs: first.paragraphs,
            sequences: first.sequences,
            real_tokens: first.real_tokens,
            padding_ratio: padding as f64 / first.padded_tokens.max(1) as f64,
            batch_tokens,
            batch_rows,
            batches: first.batch_seconds.len(),
            load_seconds,
            warm_up_seconds,
            seconds,
            paragraphs_per_second: first.paragraphs as f64 / seconds,
            tokens_per_second: first.real_tokens as f64 / seconds,
            batch_p50_ms: percentile(&latencies, 0.50) * 1e3,
            batch_p95_ms: percentile(&latencies, 0.95) * 1e3,
            peak_rss_mib: peak_rss_mib(),
            passes: passes
                .iter()
                .map(|(s, stats)| Pass {
                    seconds: *s,
                    paragraphs_per_second: stats.paragraphs as f64 / s,
                    tokens_per_second: stats.real_tokens as f64 / s,
                })
                .collect(),
            stages,
        }
    }

    fn render(&self) -> String {
        let rss = self
            .peak_rss_mib
            .map_or_else(|| "unknown".to_string(), |m| format!("{m:.0} MiB"));
        let passes: Vec<String> = self
            .passes
            .iter()
            .map(|p| format!("{:.1}", p.paragraphs_per_second))
            .collect();
        let mut text = format!(
            "model            {} ({}, {} thread{})\n\
             corpus           {}: {} paragraphs, {} sequences, {} tokens\n\
             batches          {} (budget {} tokens, at most {} rows), padding {:.1}%\n\
             paragraphs/s     {:.1} (median of {} passes: {})\n\
             tokens/s         {:.0}\n\
             batch latency    p50 {:.1} ms, p95 {:.1} ms\n\
             model load       {:.2} s (warm-up {:.2} s)\n\
             peak RSS         {rss}\n",
            self.model,
            self.device,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.corpus,
            self.paragraphs,
            self.sequences,
            self.real_tokens,
            self.batches,
            self.batch_tokens,
            self.batch_rows,
            self.padding_ratio * 100.0,
            self.paragraphs_per_second,
            self.passes.len(),
            passes.join(", "),
            self.tokens_per_second,
            self.batch_p50_ms,
            self.batch_p95_ms,
            self.load_seconds,
            self.warm_up_seconds,
        );
        let total: f64 = self.stages.iter().map(|s| s.seconds).sum();
        if total > 0.0 {
            text.push_str(&format!(
                "stages           CPU seconds per pass, summed over threads ({total:.2} s):\n"
            ));
            for stage in &self.stages {
                text.push_str(&format!(
                    "  {:<45} {:>7.3} s {:>5.1}%\n",
                    stage.name,
                    stage.seconds,
                    100.0 * stage.seconds / total
                ));
            }
        }
        text
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values (0 when there are none).
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident memory, from /proc/self/status (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::{median, percentile};

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 10.0);
        assert_eq!(percentile(&sorted, 0.95), 19.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
