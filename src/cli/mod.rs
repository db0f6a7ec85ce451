//! Flags (clap derive, no I/O) and the short match over subcommands.

mod bench;
mod cache;
mod classify;
mod embed;
mod eval;
mod finetune;
mod models;
mod output;
mod setup;
mod train;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use setup::is_broken_pipe;

#[derive(Parser, Debug)]
#[command(
    name = "stancer",
    version,
    about = "Label every paragraph of a document with a theme and a stance toward targets, with a local transformer.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Label every paragraph with a theme and a stance (favor, against, none) toward each target.
    Classify(classify::ClassifyArgs),
    /// Embed paragraphs and write one JSON line per paragraph: {"id", "vector", "tokens", "windows"}.
    Embed(embed::EmbedArgs),
    /// Score labels against gold data (theme and stance metrics with confidence intervals), or
    /// compare configurations with --compare.
    Eval(eval::EvalArgs),
    /// Fit a theme or stance head on labelled paragraphs (logistic regression on the encoder's
    /// vectors); use it with --head.
    Train(train::TrainArgs),
    /// Fine-tune a stance cross-encoder (LoRA adapters and a head) on a base model, from
    /// labelled (text, target, stance) pairs.
    Finetune(finetune::FinetuneArgs),
    /// Inspect or clear the embedding cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Time the encoder on a corpus: paragraphs/s, tokens/s, batch latency, peak memory.
    Bench(bench::BenchArgs),
    /// List, fetch and inspect models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
}

/// Flags shared by every command that runs a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A manifest name (see `stancer models list`), a manifest file (.toml), or a folder with
    /// config.json, tokenizer.json and model.safetensors.
    #[arg(long, short = 'm', value_name = "NAME|FILE|DIR")]
    pub model: Option<String>,
    /// Where the model runs: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: stancer::encode::device::DeviceChoice,
    /// Numeric type of the model's weights and activations: f32, f16 or bf16 (default: the
    /// manifest's, else f32).
    #[arg(long, value_name = "DTYPE")]
    pub dtype: Option<String>,
    /// Token budget of one batch (rows x longest sequence).
    #[arg(long, default_value_t = stancer::encode::embed::DEFAULT_BATCH_TOKENS, value_name = "N")]
    pub batch_tokens: usize,
    /// Which BERT forward to run: auto (packed on the CPU in f32, else candle), candle or packed.
    /// A diagnostic for comparing the two.
    #[arg(long, default_value = "auto", value_name = "ENGINE", hide = true)]
    pub engine: stancer::encode::model::Engine,
    /// No progress output on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl ModelArgs {
    /// The flags as the library's settings.
    pub fn settings(&self) -> stancer::pipeline::ModelSettings {
        stancer::pipeline::ModelSettings {
            model: self.model.clone(),
            device: self.device,
            dtype: self.dtype.clone(),
            batch_tokens: self.batch_tokens,
            engine: self.engine,
        }
    }
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Train(args) => train::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Cache(command) => cache::run(command),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Models(command) => models::run(command),
    }
}
