//! Benchmarks: how fast the encoder, or the whole classify path, runs on this machine,
//! measured the same way every time.
//!
//! Measure, compute, render are separate: [`measure`] and [`measure_classify`] run the passes and
//! keep raw timings, [`Report::from_passes`] turns them into numbers (medians, percentiles), and
//! [`Report::render`] writes the text (the report is also plain serialisable data).

use std::time::Instant;

use serde::Serialize;

use crate::encode::embed::{EmbedStats, Embedder};
use crate::error::Result;
use crate::label::classify::Classifier;
use crate::text::input::Paragraph;

/// One timed pass over the corpus.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub seconds: f64,
    pub paragraphs_per_second: f64,
    pub tokens_per_second: f64,
}

/// CPU time of one stage of the packed encoder in one pass.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    pub seconds: f64,
}

/// Everything a benchmark run found, as plain data.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub device: String,
    pub threads: usize,
    pub corpus: String,
    pub paragraphs: usize,
    pub sequences: usize,
    /// Real tokens per pass (special tokens included, padding not).
    pub real_tokens: usize,
    /// Padding tokens as a share of all tokens the model computed.
    pub padding_ratio: f64,
    pub batch_tokens: usize,
    pub batch_rows: usize,
    pub batches: usize,
    pub load_seconds: f64,
    pub warm_up_seconds: f64,
    /// The median pass.
    pub seconds: f64,
    pub paragraphs_per_second: f64,
    pub tokens_per_second: f64,
    pub batch_p50_ms: f64,
    pub batch_p95_ms: f64,
    /// Peak resident memory of the process (VmHWM), in MiB.
    pub peak_rss_mib: Option<f64>,
    pub passes: Vec<Pass>,
    /// Per-stage CPU seconds per pass, with --profile (packed encoder only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
}

/// Like [`measure`], through the whole classify path.
pub fn measure_classify(
    classifier: &mut Classifier<'_>,
    texts: &[&str],
    passes: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(f64, EmbedStats)>> {
    let paragraphs: Vec<Paragraph> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Paragraph {
            doc: "bench".into(),
            index: i + 1,
            id: format!("bench#{}", i + 1),
            section: None,
            start: 0,
            end: text.len(),
            text: text.to_string(),
            target: None,
            row: true,
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
        progress(&format!(
            "bench: classify pass {}/{passes}: {:.2} s, {:.1} paragraphs/s",
            pass + 1,
            seconds,
            texts.len() as f64 / seconds
        ));
        results.push((seconds, std::mem::take(&mut classifier.stats)));
    }
    Ok(results)
}

/// Runs the timed passes; each pass embeds the whole corpus in one call, so batch planning sees
/// all of it, as a user's run would.
pub fn measure(
    embedder: &Embedder,
    texts: &[&str],
    passes: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(f64, EmbedStats)>> {
    let mut results = Vec::with_capacity(passes);
    for pass in 0..passes {
        let mut stats = EmbedStats::default();
        let started = Instant::now();
        embedder.embed_passages_counted(texts, &mut stats)?;
        let seconds = started.elapsed().as_secs_f64();
        progress(&format!(
            "bench: pass {}/{passes}: {:.2} s, {:.1} paragraphs/s",
            pass + 1,
            seconds,
            texts.len() as f64 / seconds
        ));
        results.push((seconds, stats));
    }
    Ok(results)
}

impl Report {
    pub fn from_passes(
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

    pub fn render(&self) -> String {
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

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident memory, from /proc/self/status (Linux only).
pub fn peak_rss_mib() -> Option<f64> {
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
