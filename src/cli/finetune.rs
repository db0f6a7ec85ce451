//! `stancer finetune`: train a stance cross-encoder (LoRA adapters and a head) on a base model.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use stancer::encode::model::adapter::BaseModel;
use stancer::encode::model::fetch::ModelSpec;
use stancer::eval::metrics::Metric;
use stancer::finetune::{self, Event, FinetuneOptions, Hyperparameters};

use super::setup::notice;

/// A flag given twice takes its last value (scripts append overrides to a base command).
#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct FinetuneArgs {
    /// Labelled pairs: JSON Lines of {"id", "text", "target", "stance"} (favor, against, none).
    #[arg(required = true, value_name = "DATA")]
    data: Vec<PathBuf>,
    /// What the model learns (stance: a (target, paragraph) cross-encoder).
    #[arg(long, value_enum, default_value = "stance")]
    task: FinetuneTask,
    /// Folder for adapter.safetensors, card.json, heldout-test.jsonl and checkpoint/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The base encoder: a manifest name or a model folder.
    #[arg(long, default_value = "minilm-l6", value_name = "MODEL")]
    base: String,
    /// LoRA rank.
    #[arg(long, default_value_t = 8, value_name = "R")]
    rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0, value_name = "A")]
    alpha: f64,
    /// The linear layers LoRA adapts, comma-separated (default: all six of each layer).
    #[arg(long, value_delimiter = ',', value_name = "LAYERS")]
    lora_targets: Vec<String>,
    /// Also train these, comma-separated: norms (every LayerNorm), biases (every linear bias),
    /// weights (every encoder weight matrix: full fine-tuning, with no LoRA unless
    /// --lora-targets names some; the adapter then holds whole matrices, ~40 MB for MiniLM-L6).
    #[arg(long, value_delimiter = ',', value_name = "WHAT")]
    unfreeze: Vec<String>,
    /// The longest pair in tokens, special tokens included (the paragraph is cut, never the
    /// target).
    #[arg(long, default_value_t = 160, value_name = "N")]
    max_tokens: usize,
    /// Pairs per batch.
    #[arg(long, default_value_t = 16, value_name = "N")]
    batch: usize,
    /// Batches whose gradients are summed into one optimizer step.
    #[arg(long, default_value_t = 1, value_name = "N")]
    accumulate: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4, value_name = "LR")]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01, value_name = "W")]
    weight_decay: f64,
    /// Share of the steps spent warming the learning rate up.
    #[arg(long, default_value_t = 0.06, value_name = "F")]
    warmup: f64,
    /// Passes over the (balanced) training rows.
    #[arg(long, default_value_t = 1, value_name = "N")]
    epochs: usize,
    /// Stop after this many optimizer steps (overrides --epochs for the schedule).
    #[arg(long, value_name = "N")]
    max_steps: Option<usize>,
    /// Seed of the initial weights and the order of the rows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Visit every row once per epoch instead of balancing files and classes.
    #[arg(long)]
    no_balance: bool,
    /// At most this many rows of one file per epoch (0: no cap); or one cap per file, in order,
    /// comma-separated (`0,3000`: all of the first file, 3000 of the second).
    #[arg(long, value_delimiter = ',', default_value = "0", value_name = "N")]
    per_file_cap: Vec<usize>,
    /// Extra `none` pairs per epoch, as a share of it: a text with another row's target.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    unrelated: f64,
    /// Take each unrelated pair's target from a row of the text's own file (a harder `none`, in
    /// the file's own style and domain) instead of from any file.
    #[arg(long)]
    unrelated_within_file: bool,
    /// A validation file instead of the validation part of the data.
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// Share of the texts held out for validation (early stopping), split by text.
    #[arg(long, default_value_t = 0.05, value_name = "F")]
    val_fraction: f64,
    /// Share of the texts held out for testing (never seen; written to heldout-test.jsonl).
    #[arg(long, default_value_t = 0.05, value_name = "F")]
    test_fraction: f64,
    /// Score at most this many validation rows each time.
    #[arg(long, default_value_t = 600, value_name = "N")]
    val_rows: usize,
    /// Score the validation rows every this many steps.
    #[arg(long, default_value_t = 200, value_name = "N")]
    eval_every: usize,
    /// Stop after this many scores without a better selected score (0: never).
    #[arg(long, default_value_t = 4, value_name = "N")]
    patience: usize,
    /// The validation score that picks the adapter kept and stops early: macro-f1 (over favor,
    /// against and none) or f-avg (the mean F1 of favor and against, SemEval-2016's score).
    #[arg(long, value_enum, default_value = "macro-f1", value_name = "SCORE")]
    select: Select,
    /// Stochastic weight averaging: from this share of the steps on (0.5: the second half),
    /// keep a running mean of the trained weights after every step; validation scores the mean,
    /// and the mean is what is kept and written (scores before the averaging begins are recorded
    /// but neither kept nor counted toward --patience).
    #[arg(long, value_name = "F")]
    average_from: Option<f64>,
    /// Save a checkpoint every this many steps.
    #[arg(long, default_value_t = 50, value_name = "N")]
    checkpoint_every: usize,
    /// Stop (with a checkpoint and an adapter) after this many minutes.
    #[arg(long, value_name = "M")]
    max_minutes: Option<f64>,
    /// Continue the run whose checkpoint is in --out.
    #[arg(long)]
    resume: bool,
    /// After training, shift the head's bias per class (favor and against, none fixed) to the best
    /// macro-F1 on the validation rows: a decision threshold chosen on held-out data. With
    /// --init and --max-steps 0 it calibrates a trained model without training it.
    #[arg(long)]
    calibrate: bool,
    /// Validation rows --calibrate reads (a superset of the rows scored during training).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    calibration_rows: usize,
    /// Start from a trained stance model's adapter and head (a name or a folder from
    /// `stancer finetune`) instead of fresh weights; its base and LoRA shape must match.
    #[arg(long, value_name = "MODEL")]
    init: Option<String>,
    /// With --unfreeze weights: write each weight matrix's change from the base as its best
    /// rank-R approximation (an adapter of LoRA rank R, alpha R, small enough to ship) instead of
    /// the whole matrices; the model card says what share of each change the rank keeps. With
    /// --init FULL --max-steps 0 it compresses a finished run without training.
    #[arg(long, default_value_t = 0, value_name = "R")]
    compress_rank: usize,
    /// Threads (default: one per core, or RAYON_NUM_THREADS).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Licence terms of each data file, in order, for the model card.
    #[arg(long, value_name = "TERMS")]
    licence: Vec<String>,
    /// Write each step's row ids to this file (for side-by-side speed comparisons).
    #[arg(long, value_name = "FILE", hide = true)]
    batches_out: Option<PathBuf>,
    /// Stop right after the checkpoint of step N, as a kill would (tests of --resume).
    #[arg(long, value_name = "N", hide = true)]
    stop_at_step: Option<usize>,
    /// No progress output on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// `--select`: the validation score that chooses the kept adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Select {
    MacroF1,
    FAvg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FinetuneTask {
    Stance,
}

fn per_mille(fraction: f64, flag: &str) -> anyhow::Result<u32> {
    if !(0.0..1.0).contains(&fraction) {
        anyhow::bail!("{flag} {fraction}: pass a share between 0 and 1");
    }
    Ok((fraction * 1000.0).round() as u32)
}

pub fn run(args: FinetuneArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    let FinetuneTask::Stance = args.task;
    if let Some(threads) = args.threads {
        super::bench::set_threads(threads)?;
    }
    let threads = candle_core::utils::get_num_threads();
    for what in &args.unfreeze {
        if !["norms", "biases", "weights"].contains(&what.as_str()) {
            anyhow::bail!("--unfreeze {what}: expected norms, biases or weights");
        }
    }
    let unfreeze_weights = args.unfreeze.iter().any(|u| u == "weights");
    let spec = ModelSpec::parse(Some(&args.base))?;
    let resolved = spec.resolve(&mut |line| notice(quiet, line))?;
    let base = BaseModel {
        name: resolved.name.clone(),
        sha256: resolved.weights_checksum()?,
    };
    let defaults = Hyperparameters::default();
    let hyper = Hyperparameters {
        rank: args.rank,
        alpha: args.alpha,
        // Trained weight matrices make LoRA redundant: none unless asked for.
        lora_targets: if args.lora_targets.is_empty() && unfreeze_weights {
            Vec::new()
        } else if args.lora_targets.is_empty() {
            defaults.lora_targets
        } else {
            args.lora_targets.clone()
        },
        unfreeze_norms: args.unfreeze.iter().any(|u| u == "norms"),
        unfreeze_biases: args.unfreeze.iter().any(|u| u == "biases"),
        unfreeze_weights,
        max_tokens: args.max_tokens,
        batch: args.batch,
        accumulate: args.accumulate,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        warmup_fraction: args.warmup,
        epochs: args.epochs,
        max_steps: args.max_steps,
        seed: args.seed,
        balance: !args.no_balance,
        per_file_cap: if args.per_file_cap.len() == 1 {
            args.per_file_cap[0]
        } else {
            0
        },
        per_file_caps: if args.per_file_cap.len() == 1 {
            Vec::new()
        } else if args.per_file_cap.len() == args.data.len() {
            args.per_file_cap.clone()
        } else {
            anyhow::bail!(
                "--per-file-cap: {} caps for {} data files; pass one cap, or one per file",
                args.per_file_cap.len(),
                args.data.len()
            );
        },
        unrelated: args.unrelated,
        unrelated_within_file: args.unrelated_within_file,
        validation_per_mille: if args.val.is_some() {
            0
        } else {
            per_mille(args.val_fraction, "--val-fraction")?
        },
        test_per_mille: per_mille(args.test_fraction, "--test-fraction")?,
        validation_rows: args.val_rows,
        eval_every: args.eval_every,
        patience: args.patience,
        average_from: match args.average_from {
            Some(share) if !(0.0..1.0).contains(&share) => {
                anyhow::bail!("--average-from {share}: pass a share of the steps, from 0 up to 1")
            }
            other => other,
        },
        select: match args.select {
            Select::MacroF1 => Metric::MacroF1,
            Select::FAvg => Metric::FAvg,
        },
        calibration_rows: if args.calibrate {
            args.calibration_rows
        } else {
            0
        },
        compress_rank: args.compress_rank,
    };
    let options = FinetuneOptions {
        data: args.data.clone(),
        validation_file: args.val.clone(),
        out: args.out.clone(),
        base,
        base_files: resolved.files.clone(),
        licences: args.licence.clone(),
        hyper,
        threads,
        max_minutes: args.max_minutes,
        resume: args.resume,
        checkpoint_every: args.checkpoint_every,
        batches_out: args.batches_out.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        stop_at_step: args.stop_at_step,
        init: match &args.init {
            None => None,
            Some(name) => {
                let spec = stancer::encode::model::adapter::StanceSpec::parse_flag("--init", name)?;
                let adapter = spec.load()?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "--init prototype: pass a stance model name or an adapter folder"
                    )
                })?;
                Some(stancer::finetune::InitFrom {
                    name: name.clone(),
                    adapter,
                })
            }
        },
    };
    // On a terminal the bar shows progress; in a log, a line every 50 steps does.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());

    let bar = indicatif::ProgressBar::hidden();
    let mut smoothed: Option<f64> = None;
    let mut rate: Option<f64> = None;
    let select = options.hyper.select;
    let mut on_event = |event: Event| match event {
        Event::Started {
            total_steps,
            first_step,
            train_rows,
            validation_rows,
        } => {
            notice(
                quiet,
                &format!(
                    "finetune: {train_rows} training rows, {validation_rows} validation rows, \
                     {total_steps} steps of {} pairs{}; {threads} threads",
                    args.batch * args.accumulate,
                    if first_step > 0 {
                        format!(", resuming at step {first_step}")
                    } else {
                        String::new()
                    }
                ),
            );
            if !quiet {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(total_steps as u64);
                bar.set_position(first_step as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
                    )
                    .expect("this is a bug: the template parses"),
                );
                bar.reset_eta();
            }
        }
        Event::Step {
            step,
            loss,
            pairs_per_second,
        } => {
            let s = smoothed.map_or(loss, |s| 0.95 * s + 0.05 * loss);
            smoothed = Some(s);
            let r = rate.map_or(pairs_per_second, |r| 0.9 * r + 0.1 * pairs_per_second);
            rate = Some(r);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {s:.3}  {r:.1} pairs/s"));
            if !terminal && step % 50 == 0 {
                notice(quiet, &format!("step {step}: loss {s:.3}, {r:.1} pairs/s"));
            }
        }
        Event::Validation {
            step,
            macro_f1,
            score,
            best,
        } => {
            let selected = match select {
                Metric::MacroF1 => String::new(),
                other => format!(", {} {score:.3}", other.name()),
            };
            bar.suspend(|| {
                notice(
                    quiet,
                    &format!(
                        "step {step}: validation macro-F1 {macro_f1:.3}{selected}{}",
                        if best { " (best so far)" } else { "" }
                    ),
                )
            });
        }
        Event::Checkpoint { .. } => {}
        Event::Stopped { reason } => {
            bar.finish_and_clear();
            notice(quiet, &reason);
        }
        Event::Calibrated {
            offsets,
            before,
            after,
        } => notice(
            quiet,
            &format!(
                "calibrated the head: bias offsets favor {:+.1}, against {:+.1} (none 0); \
                 validation macro-F1 {before:.3} -> {after:.3}",
                offsets[0], offsets[1]
            ),
        ),
    };
    let report = finetune::run(&options, &mut on_event)?;
    notice(
        quiet,
        &format!(
            "wrote {} after {} steps ({:.1} pairs/s{}); model card: {}",
            report.out.join("adapter.safetensors").display(),
            report.steps,
            report.pairs_per_second,
            report
                .best_score
                .map(|f| format!(", best validation {} {f:.3}", options.hyper.select.name()))
                .unwrap_or_default(),
            report.out.join("card.json").display()
        ),
    );
    Ok(ExitCode::SUCCESS)
}
