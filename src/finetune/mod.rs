//! Fine-tuning: a stance cross-encoder trained from a base encoder, `[CLS] target [SEP]
//! paragraph [SEP]` in, favor / against / none out. LoRA adapters on the chosen linear layers
//! and a linear head are trained with AdamW (warm-up, linear decay); an epoch balances data
//! files and classes and groups pairs of similar length into batches; a validation part (split
//! by text, so no text is on both sides) is scored every N steps, with early stopping on
//! macro-F1. The run is seeded and deterministic, checkpoints let `--resume` continue exactly
//! where a killed run stopped, and the output is an adapter (merged into the base at load) with
//! a model card that says what it was trained on and how.

pub mod compress;
pub mod data;
pub mod engine;
pub mod model;
pub mod ops;
pub mod optim;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::encode::model::adapter::{
    AdapterCard, BaseModel, LoraSettings, CARD_FILE, WEIGHTS_FILE,
};
use crate::encode::model::packed::kernels;
use crate::encode::model::{Batch, ModelFiles};
use crate::encode::tokenize::TextTokenizer;
use crate::error::{Error, Result};
use crate::eval::metrics::{Confusion, Metric};
use crate::label::stance::Stance;
use data::{Example, PairRow, Part, Sampling};
use model::{TrainModel, Unfreeze};
use optim::{AdamW, AdamWSettings};

/// Steps at the start of a run left out of the speed figure (allocation, caches warming).
pub const WARMUP_STEPS_EXCLUDED: usize = 3;

/// Everything that decides what a run computes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hyperparameters {
    pub rank: usize,
    pub alpha: f64,
    pub lora_targets: Vec<String>,
    pub unfreeze_norms: bool,
    pub unfreeze_biases: bool,
    /// Every encoder linear layer's weight matrix is trained too (full fine-tuning).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unfreeze_weights: bool,
    pub max_tokens: usize,
    pub batch: usize,
    pub accumulate: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_fraction: f64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    pub seed: u64,
    pub balance: bool,
    pub per_file_cap: usize,
    /// Caps per file, in the order of the files (empty: `per_file_cap` for each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_file_caps: Vec<usize>,
    pub unrelated: f64,
    /// Unrelated pairs take their target from the text's own file (see `Sampling`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unrelated_within_file: bool,
    pub validation_per_mille: u32,
    pub test_per_mille: u32,
    pub validation_rows: usize,
    pub eval_every: usize,
    pub patience: usize,
    /// After training, shift the head's bias per class to the best validation macro-F1 (at most
    /// this many validation rows; 0: no calibration).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calibration_rows: usize,
    /// The validation score that picks the best step and stops early: macro-F1 over the three
    /// classes (the default), or F_avg (the mean F1 of favor and against, SemEval-2016's score).
    #[serde(default = "macro_f1", skip_serializing_if = "is_macro_f1")]
    pub select: Metric,
    /// From this share of the steps on, keep a running mean of the trained weights (stochastic
    /// weight averaging) and validate, keep and write the mean instead of the current weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_from: Option<f64>,
    /// With trained weight matrices: write each one's change from the base as its best
    /// approximation of this rank (a LoRA adapter; 0: the whole matrices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compress_rank: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn macro_f1() -> Metric {
    Metric::MacroF1
}

fn is_macro_f1(metric: &Metric) -> bool {
    *metric == Metric::MacroF1
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            lora_targets: model::LORA_TARGETS.iter().map(|s| s.to_string()).collect(),
            unfreeze_norms: false,
            unfreeze_biases: false,
            unfreeze_weights: false,
            max_tokens: 160,
            batch: 16,
            accumulate: 1,
            learning_rate: 3e-4,
            weight_decay: 0.01,
            warmup_fraction: 0.06,
            epochs: 1,
            max_steps: None,
            seed: 0,
            balance: true,
            per_file_cap: 0,
            per_file_caps: Vec::new(),
            unrelated: 0.0,
            unrelated_within_file: false,
            validation_per_mille: 50,
            test_per_mille: 50,
            validation_rows: 600,
            eval_every: 200,
            patience: 4,
            calibration_rows: 0,
            select: Metric::MacroF1,
            average_from: None,
            compress_rank: 0,
        }
    }
}

/// A run: data, base model, settings, and where the output goes.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub data: Vec<PathBuf>,
    /// A separate validation file; else the validation part of the data.
    pub validation_file: Option<PathBuf>,
    pub out: PathBuf,
    pub base: BaseModel,
    pub base_files: ModelFiles,
    /// Licence terms per data file, for the model card (same order as `data`; may be empty).
    pub licences: Vec<String>,
    pub hyper: Hyperparameters,
    pub threads: usize,
    pub max_minutes: Option<f64>,
    pub resume: bool,
    /// Checkpoint every this many optimizer steps.
    pub checkpoint_every: usize,
    /// Write each step's row ids here (for side-by-side speed comparisons).
    pub batches_out: Option<PathBuf>,
    /// The command line, for the model card.
    pub command: String,
    /// Stop right after the checkpoint of this step, as a kill would after it (tests of
    /// `--resume`).
    pub stop_at_step: Option<usize>,
    /// Start from a trained adapter's weights instead of fresh ones (continued training).
    pub init: Option<InitFrom>,
}

/// A trained adapter a run starts from: its name (as `--init` gave it) and the adapter.
#[derive(Clone)]
pub struct InitFrom {
    pub name: String,
    pub adapter: crate::encode::model::adapter::Adapter,
}

impl std::fmt::Debug for InitFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitFrom")
            .field("name", &self.name)
            .finish()
    }
}

/// What the loop tells its caller as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        total_steps: usize,
        first_step: usize,
        train_rows: usize,
        validation_rows: usize,
    },
    Step {
        step: usize,
        loss: f64,
        pairs_per_second: f64,
    },
    Validation {
        step: usize,
        macro_f1: f64,
        /// The score that selects (`Hyperparameters::select`).
        score: f64,
        best: bool,
    },
    Checkpoint {
        step: usize,
    },
    Stopped {
        reason: String,
    },
    /// The head's bias was shifted by `offsets` ([favor, against, none]) for validation
    /// macro-F1 `before` -> `after`.
    Calibrated {
        offsets: [f32; 3],
        before: f64,
        after: f64,
    },
}

/// One validation score in the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValidationPoint {
    pub step: usize,
    pub macro_f1: f64,
    pub accuracy: f64,
    /// Absent in checkpoints written before `--select` existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_avg: Option<f64>,
}

impl ValidationPoint {
    /// The score `metric` selects by (0 where it is undefined, so any defined score beats it).
    pub fn selected(&self, metric: Metric) -> f64 {
        match metric {
            Metric::MacroF1 => self.macro_f1,
            Metric::Accuracy => self.accuracy,
            Metric::FAvg => self.f_avg.unwrap_or(0.0),
        }
    }
}

/// The resumable part of a run's state (besides the tensors).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CheckpointState {
    fingerprint: String,
    step: usize,
    best_step: Option<usize>,
    /// The best score of `Hyperparameters::select` (macro-F1 unless chosen otherwise; the name
    /// predates the choice and is kept so older checkpoints resume).
    best_macro_f1: Option<f64>,
    evals_since_best: usize,
    history: Vec<ValidationPoint>,
    seconds: f64,
    timed_seconds: f64,
    timed_pairs: usize,
    loss_sum: f64,
    loss_count: usize,
    /// Steps in the running mean of the weights (`Hyperparameters::average_from`); the mean
    /// itself is in the checkpoint's `mean.*` tensors.
    #[serde(default)]
    averaged: usize,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct FinetuneReport {
    pub card: serde_json::Value,
    pub out: PathBuf,
    pub steps: usize,
    /// The best validation score of the selecting metric (`Hyperparameters::select`).
    pub best_score: Option<f64>,
    pub pairs_per_second: f64,
    pub stopped: String,
}

/// Trains, checkpoints and writes the adapter and its card. `events` receives progress.
pub fn run(options: &FinetuneOptions, events: &mut dyn FnMut(Event)) -> Result<FinetuneReport> {
    let started = Instant::now();
    let hyper = &options.hyper;
    check(hyper)?;
    let device = Device::Cpu;

    // Data: every file, split by text.
    let mut files = Vec::new();
    let mut all: Vec<PairRow> = Vec::new();
    for (index, path) in options.data.iter().enumerate() {
        let (file, rows) = data::read_pairs(path, index)?;
        files.push(file);
        all.extend(rows);
    }
    let parts: Vec<Part> = all
        .iter()
        .map(|r| data::part_of(&r.text, hyper.validation_per_mille, hyper.test_per_mille))
        .collect();
    let mut train: Vec<PairRow> = Vec::new();
    let mut validation: Vec<PairRow> = Vec::new();
    let mut test: Vec<PairRow> = Vec::new();
    for (row, part) in all.iter().zip(&parts) {
        match part {
            Part::Train => train.push(row.clone()),
            Part::Validation => validation.push(row.clone()),
            Part::Test => test.push(row.clone()),
        }
    }
    let mut validation_file = None;
    if let Some(path) = &options.validation_file {
        let (file, rows) = data::read_pairs(path, files.len())?;
        validation_file = Some(file);
        // The file replaces the split's validation part, which goes back into training.
        train.append(&mut validation);
        validation = rows;
    }
    let classes_seen: std::collections::BTreeSet<usize> =
        train.iter().map(|r| r.stance.index()).collect();
    if classes_seen.len() < 2 {
        return Err(Error::Usage {
            message: format!(
                "the training rows have only one class ({}); stance fine-tuning needs at least two \
                 of favor, against and none",
                train
                    .first()
                    .map_or("none at all".to_string(), |r| r.stance.to_string())
            ),
        });
    }
    // A fixed, seeded subsample of the validation part keeps each score cheap.
    let mut validation_order: Vec<usize> = (0..validation.len()).collect();
    crate::eval::bootstrap::SplitMix64::new(hyper.seed ^ 0x0A11_DA7E)
        .shuffle(&mut validation_order);
    // Calibration reads more of the same shuffled order (a superset of the scored rows), from
    // the files whose rows hold all three classes: a file without `none` (IBM ArgQ, P-Stance)
    // would pull the threshold toward never saying `none`, whatever the truth elsewhere.
    let mut classes_of_file: HashMap<usize, std::collections::BTreeSet<usize>> = HashMap::new();
    for row in train.iter().chain(&validation) {
        classes_of_file
            .entry(row.source)
            .or_default()
            .insert(row.stance.index());
    }
    let mut calibration_order: Vec<usize> = validation_order
        .iter()
        .copied()
        .filter(|&i| {
            classes_of_file
                .get(&validation[i].source)
                .is_some_and(|classes| classes.len() == Stance::ALL.len())
        })
        .collect();
    calibration_order.truncate(hyper.calibration_rows);
    calibration_order.sort_unstable();
    let calibration_rows: Vec<PairRow> = calibration_order
        .iter()
        .map(|&i| validation[i].clone())
        .collect();
    validation_order.truncate(hyper.validation_rows);
    validation_order.sort_unstable();
    let validation: Vec<PairRow> = validation_order
        .iter()
        .map(|&i| validation[i].clone())
        .collect();

    // Model.
    let config = options.base_files.bert_config()?;
    let tokenizer = TextTokenizer::load(&options.base_files.tokenizer, hyper.max_tokens)?;
    if !tokenizer.encodes_pairs() {
        return Err(Error::Usage {
            message: "the base model's tokenizer does not encode text pairs".into(),
        });
    }
    let base = options.base_files.tensors()?;
    let lora = LoraSettings {
        rank: hyper.rank,
        alpha: hyper.alpha,
        targets: hyper.lora_targets.clone(),
    };
    let unfreeze = Unfreeze {
        norms: hyper.unfreeze_norms,
        biases: hyper.unfreeze_biases,
        weights: hyper.unfreeze_weights,
    };
    // Full fine-tuning from a trained model starts from its adapter merged into the base.
    let merged_init = hyper.unfreeze_weights && options.init.is_some();
    let base = match &options.init {
        Some(init) if merged_init => {
            init.adapter
                .check_base(&options.base.name, &options.base.sha256)?;
            init.adapter.merge_into(&options.base_files, &config)?
        }
        _ => base,
    };
    let model = TrainModel::new(&base, &config, &lora, unfreeze, 3, hyper.seed, &device)
        .map_err(Error::encoder)?;
    drop(base);
    match &options.init {
        Some(init) if merged_init => model
            .set_tensors_present(init.adapter.tensors())
            .map_err(Error::encoder)?,
        Some(init) => start_from(&model, init, &options.base, &lora)?,
        None => {}
    }
    // The output folder appears only once the data, base and --init have all been accepted.
    std::fs::create_dir_all(&options.out).map_err(|e| Error::write(&options.out, e))?;
    write_jsonl(&options.out.join("heldout-test.jsonl"), &test)?;
    let mut adam = AdamW::new(
        model.vars(),
        AdamWSettings {
            learning_rate: hyper.learning_rate,
            weight_decay: hyper.weight_decay,
            ..AdamWSettings::default()
        },
    )
    .map_err(Error::encoder)?;

    // The plan: epochs of balanced examples, cut into batches of similar length.
    let sampling = Sampling {
        balance: hyper.balance,
        per_file_cap: hyper.per_file_cap,
        file_caps: hyper.per_file_caps.clone(),
        unrelated: hyper.unrelated,
        unrelated_within_file: hyper.unrelated_within_file,
    };
    let lengths: Vec<usize> = train
        .iter()
        .map(|r| r.text.len() + r.target.len())
        .collect();
    let epoch_batches = |epoch: usize| -> Vec<Vec<Example>> {
        let examples = data::epoch_examples(&train, &sampling, hyper.seed, epoch);
        data::batches(
            examples,
            &lengths,
            hyper.batch,
            hyper.seed.wrapping_add(epoch as u64),
        )
    };
    let first_epoch = epoch_batches(0);
    let per_epoch = first_epoch.len();
    let total_steps = hyper
        .max_steps
        .unwrap_or(hyper.epochs * per_epoch / hyper.accumulate)
        // No steps at all only for a model that starts from a trained one (to calibrate it).
        .max(if options.init.is_some() { 0 } else { 1 });
    let warmup = ((total_steps as f64) * hyper.warmup_fraction).round() as usize;

    let fingerprint = fingerprint(options, &files, validation_file.as_ref());
    let checkpoint_dir = options.out.join("checkpoint");
    let mut state = CheckpointState {
        fingerprint: fingerprint.clone(),
        step: 0,
        best_step: None,
        best_macro_f1: None,
        evals_since_best: 0,
        history: Vec::new(),
        seconds: 0.0,
        timed_seconds: 0.0,
        timed_pairs: 0,
        loss_sum: 0.0,
        loss_count: 0,
        averaged: 0,
    };
    let average_after = hyper
        .average_from
        .map(|share| ((total_steps as f64) * share).floor() as usize);
    let mut kept = Kept::default();
    if options.resume {
        let (restored, tensors) = load_checkpoint(&checkpoint_dir)?;
        if restored.fingerprint != fingerprint {
            return Err(Error::Usage {
                message: format!(
                    "the checkpoint in {} is from a run with other data or settings; run without \
                     --resume to start again, or pass the same data and flags",
                    checkpoint_dir.display()
                ),
            });
        }
        for (name, var) in model.vars() {
            let value = tensors.get(name).ok_or_else(|| Error::Usage {
                message: format!(
                    "the checkpoint has no tensor {name}; start again without --resume"
                ),
            })?;
            var.set(value).map_err(Error::encoder)?;
        }
        adam.restore(&tensors, restored.step)
            .map_err(Error::encoder)?;
        kept = Kept::from_checkpoint(&tensors);
        state = restored;
    }
    events(Event::Started {
        total_steps,
        first_step: state.step,
        train_rows: train.len(),
        validation_rows: validation.len(),
    });

    let mut batches_log = match &options.batches_out {
        Some(path) => Some(
            std::fs::File::create(path)
                .map(std::io::BufWriter::new)
                .map_err(|e| Error::write(path, e))?,
        ),
        None => None,
    };
    let session_started = Instant::now();
    let seconds_before = state.seconds;
    let mut cached_epoch = (0usize, first_epoch);
    let mut stopped = "finished all steps".to_string();
    while state.step < total_steps {
        if let Some(limit) = options.max_minutes {
            if session_started.elapsed().as_secs_f64() / 60.0 >= limit {
                stopped = format!("stopped by --max-minutes {limit} at step {}", state.step);
                break;
            }
        }
        let step_started = Instant::now();
        let mut step_pairs = 0;
        let mut step_loss = 0.0;
        let mut grads_sum: Option<engine::Gradients> = None;
        let mut ids_log: Vec<String> = Vec::new();
        for micro in 0..hyper.accumulate {
            let global = state.step * hyper.accumulate + micro;
            let (epoch, index) = (global / per_epoch, global % per_epoch);
            if cached_epoch.0 != epoch {
                cached_epoch = (epoch, epoch_batches(epoch));
            }
            let examples = &cached_epoch.1[index];
            let pairs: Vec<(&str, &str)> = examples
                .iter()
                .map(|e| {
                    (
                        train[e.target_row].target.as_str(),
                        train[e.text_row].text.as_str(),
                    )
                })
                .collect();
            let sequences = tokenizer.tokenize_pairs_truncated(&pairs)?;
            let refs: Vec<&crate::encode::tokenize::Sequence> = sequences.iter().collect();
            let batch = Batch::from_sequences(&refs);
            let labels: Vec<u32> = examples.iter().map(|e| e.stance.index() as u32).collect();
            let (loss, grads) = model.step(&batch, &labels).map_err(Error::encoder)?;
            step_loss += f64::from(loss);
            grads_sum = Some(match grads_sum {
                None => grads,
                Some(mut sum) => {
                    for (total, g) in sum.0.iter_mut().zip(grads.0) {
                        match (total.as_mut(), g) {
                            (Some(total), Some(g)) => kernels::add(total, &g),
                            (None, g) => *total = g,
                            (Some(_), None) => {}
                        }
                    }
                    sum
                }
            });
            step_pairs += examples.len();
            if batches_log.is_some() {
                ids_log.extend(examples.iter().map(|e| e.id.clone()));
            }
        }
        let rate = optim::learning_rate(state.step, total_steps, warmup, hyper.learning_rate);
        let grads = grads_sum.expect("this is a bug: a step without batches");
        let grads: Vec<Option<Tensor>> = grads
            .0
            .into_iter()
            .zip(model.vars())
            .map(|(g, (_, var))| {
                g.map(|g| Tensor::from_vec(g, var.shape(), &device))
                    .transpose()
            })
            .collect::<candle_core::Result<_>>()
            .map_err(Error::encoder)?;
        adam.step(&grads, rate, 1.0 / hyper.accumulate as f64)
            .map_err(Error::encoder)?;
        state.step += 1;
        if average_after.is_some_and(|after| state.step > after) {
            state.averaged += 1;
            kept.mean = Some(running_mean(
                kept.mean.take(),
                model.tensors(),
                state.averaged,
            )?);
        }
        let loss = step_loss / hyper.accumulate as f64;
        state.loss_sum += loss;
        state.loss_count += 1;
        let seconds = step_started.elapsed().as_secs_f64();
        if state.step > WARMUP_STEPS_EXCLUDED {
            state.timed_seconds += seconds;
            state.timed_pairs += step_pairs;
        }
        if let Some(log) = batches_log.as_mut() {
            use std::io::Write;
            let line = serde_json::json!({"step": state.step, "ids": ids_log, "loss": loss});
            writeln!(log, "{line}")
                .map_err(|e| Error::write(options.batches_out.as_ref().unwrap(), e))?;
        }
        events(Event::Step {
            step: state.step,
            loss,
            pairs_per_second: step_pairs as f64 / seconds.max(1e-9),
        });

        let last = state.step == total_steps;
        if !validation.is_empty() && (state.step.is_multiple_of(hyper.eval_every) || last) {
            // With weight averaging under way, the mean is what is scored and kept.
            let current = kept.mean.as_ref().map(|mean| {
                let current = model.tensors();
                model.set_tensors(mean).map(|_| current)
            });
            let current = current.transpose().map_err(Error::encoder)?;
            let point = score(&model, &tokenizer, &validation, state.step)?;
            let macro_f1 = point.macro_f1;
            let selected = point.selected(hyper.select);
            // Under weight averaging only the mean competes: scores before it begins are kept
            // in the history but neither chosen nor counted toward --patience.
            let competes = average_after.is_none_or(|after| state.step > after);
            let improved = competes && state.best_macro_f1.is_none_or(|b| selected > b);
            state.history.push(point);
            if improved {
                state.best_macro_f1 = Some(selected);
                state.best_step = Some(state.step);
                state.evals_since_best = 0;
                kept.best = Some(model.tensors());
            } else if competes {
                state.evals_since_best += 1;
            }
            if let Some(current) = current {
                model.set_tensors(&current).map_err(Error::encoder)?;
            }
            events(Event::Validation {
                step: state.step,
                macro_f1,
                score: selected,
                best: improved,
            });
            if hyper.patience > 0 && state.evals_since_best >= hyper.patience {
                stopped = format!(
                    "early stop at step {}: no better validation {} in {} scores",
                    state.step,
                    hyper.select.name(),
                    hyper.patience
                );
                state.seconds = seconds_before + session_started.elapsed().as_secs_f64();
                save_checkpoint(&checkpoint_dir, &state, &model, &adam, &kept)?;
                break;
            }
        }
        let interrupt = options.stop_at_step == Some(state.step);
        if state.step.is_multiple_of(options.checkpoint_every.max(1)) || last || interrupt {
            state.seconds = seconds_before + session_started.elapsed().as_secs_f64();
            save_checkpoint(&checkpoint_dir, &state, &model, &adam, &kept)?;
            events(Event::Checkpoint { step: state.step });
        }
        if interrupt {
            return Err(Error::Usage {
                message: format!("interrupted after step {} (--stop-at-step)", state.step),
            });
        }
    }
    state.seconds = seconds_before + session_started.elapsed().as_secs_f64();
    if state.step < total_steps && !stopped.starts_with("early stop") {
        save_checkpoint(&checkpoint_dir, &state, &model, &adam, &kept)?;
    }
    events(Event::Stopped {
        reason: stopped.clone(),
    });

    // The adapter: the best-scoring weights where there was validation, else the mean of the
    // weights where they were averaged, else the last.
    let mut tensors = kept.best.or(kept.mean).unwrap_or_else(|| model.tensors());
    let calibration = if hyper.calibration_rows > 0 && !calibration_rows.is_empty() {
        model.set_tensors(&tensors).map_err(Error::encoder)?;
        let logits = logits(&model, &tokenizer, &calibration_rows)?;
        let gold: Vec<usize> = calibration_rows.iter().map(|r| r.stance.index()).collect();
        let found = calibrate(&logits, &gold);
        let bias = tensors
            .get("classifier.bias")
            .expect("this is a bug: the head has a bias");
        let offsets = Tensor::new(&found.offsets[..], &device).map_err(Error::encoder)?;
        let shifted = bias.add(&offsets).map_err(Error::encoder)?;
        tensors.insert("classifier.bias".into(), shifted);
        events(Event::Calibrated {
            offsets: found.offsets,
            before: found.before,
            after: found.after,
        });
        Some((found, calibration_rows.len()))
    } else {
        None
    };
    let pairs_per_second = if state.timed_seconds > 0.0 {
        state.timed_pairs as f64 / state.timed_seconds
    } else {
        0.0
    };
    let (card_lora, compression) = if hyper.compress_rank > 0 {
        let (settings, report) = compress_weights(
            &mut tensors,
            &options.base_files.tensors()?,
            hyper.compress_rank,
            hyper.seed,
        )
        .map_err(Error::encoder)?;
        (settings, Some(report))
    } else {
        (lora.clone(), None)
    };
    let test_counts = count_classes(&test);
    let card = model_card(CardInputs {
        options,
        files: &files,
        validation_file: validation_file.as_ref(),
        train: &train,
        validation: &validation,
        test_counts,
        state: &state,
        total_steps,
        per_epoch,
        stopped: &stopped,
        pairs_per_second,
        lora: &card_lora,
        started_seconds: started.elapsed().as_secs_f64(),
        calibration: calibration.as_ref(),
        compression,
    });
    write_adapter(&options.out, &tensors, &card)?;
    Ok(FinetuneReport {
        card,
        out: options.out.clone(),
        steps: state.step,
        best_score: state.best_macro_f1,
        pairs_per_second,
        stopped,
    })
}

fn check(hyper: &Hyperparameters) -> Result<()> {
    let fail = |message: String| Err(Error::Usage { message });
    if hyper.rank == 0 {
        return fail("--rank 0: pass at least 1".into());
    }
    if hyper.batch == 0 || hyper.accumulate == 0 {
        return fail("--batch and --accumulate must be at least 1".into());
    }
    if hyper.eval_every == 0 {
        return fail("--eval-every 0: pass at least 1".into());
    }
    if !(hyper.learning_rate > 0.0 && hyper.learning_rate.is_finite()) {
        return fail(format!(
            "--lr {}: pass a positive number",
            hyper.learning_rate
        ));
    }
    if hyper.validation_per_mille + hyper.test_per_mille >= 1000 {
        return fail("the validation and test parts leave nothing to train on".into());
    }
    if hyper.compress_rank > 0 && (!hyper.unfreeze_weights || !hyper.lora_targets.is_empty()) {
        return fail(
            "--compress-rank needs --unfreeze weights and no --lora-targets: it writes trained \
             weight matrices as low-rank updates"
                .into(),
        );
    }
    for target in &hyper.lora_targets {
        if !model::LORA_TARGETS.contains(&target.as_str()) {
            return fail(format!(
                "'{target}' is not a layer LoRA can adapt (one of: {})",
                model::LORA_TARGETS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Macro-F1, F_avg and accuracy of the model on `rows` (no gradients), as the history's point
/// for `step`.
pub fn score(
    model: &TrainModel,
    tokenizer: &TextTokenizer,
    rows: &[PairRow],
    step: usize,
) -> Result<ValidationPoint> {
    let pairs_seen: Vec<(usize, usize)> = rows
        .iter()
        .zip(logits(model, tokenizer, rows)?)
        .map(|(row, logits)| (row.stance.index(), crate::label::head::argmax(&logits)))
        .collect();
    let labels: Vec<String> = Stance::ALL.iter().map(|s| s.to_string()).collect();
    let confusion = Confusion::from_pairs(labels, pairs_seen);
    Ok(ValidationPoint {
        step,
        macro_f1: confusion.macro_f1().unwrap_or(0.0),
        accuracy: confusion.accuracy().unwrap_or(0.0),
        f_avg: confusion.f_avg(),
    })
}

/// The model's [favor, against, none] logits for `rows` (no gradients).
pub fn logits(
    model: &TrainModel,
    tokenizer: &TextTokenizer,
    rows: &[PairRow],
) -> Result<Vec<[f32; 3]>> {
    let mut all = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(32) {
        let pairs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|r| (r.target.as_str(), r.text.as_str()))
            .collect();
        let sequences = tokenizer.tokenize_pairs_truncated(&pairs)?;
        let refs: Vec<&crate::encode::tokenize::Sequence> = sequences.iter().collect();
        let logits = model
            .forward(&Batch::from_sequences(&refs))
            .and_then(|l| l.detach().to_vec2::<f32>())
            .map_err(Error::encoder)?;
        all.extend(logits.into_iter().map(|l| [l[0], l[1], l[2]]));
    }
    Ok(all)
}

/// Per-class offsets to the logits and the macro-F1 they give.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// [favor, against, none]; none is always 0.
    pub offsets: [f32; 3],
    pub before: f64,
    pub after: f64,
}

/// The offsets (favor and against on a grid of -2..2 by 0.1, none fixed at 0) with the best
/// macro-F1 of `logits` against `gold` (class indices); ties go to the smallest offsets, so no
/// evidence means no change.
pub fn calibrate(logits: &[[f32; 3]], gold: &[usize]) -> Calibration {
    let macro_f1 = |offsets: [f32; 3]| {
        let pairs = logits.iter().zip(gold).map(|(l, &g)| {
            let shifted = [l[0] + offsets[0], l[1] + offsets[1], l[2] + offsets[2]];
            (g, crate::label::head::argmax(&shifted))
        });
        let labels: Vec<String> = Stance::ALL.iter().map(|s| s.to_string()).collect();
        Confusion::from_pairs(labels, pairs)
            .macro_f1()
            .unwrap_or(0.0)
    };
    let before = macro_f1([0.0; 3]);
    let mut best = ([0.0f32; 3], before, 0i32);
    for favor in -20i32..=20 {
        for against in -20i32..=20 {
            let offsets = [favor as f32 / 10.0, against as f32 / 10.0, 0.0];
            let score = macro_f1(offsets);
            let size = favor.abs() + against.abs();
            if score > best.1 + 1e-12 || ((score - best.1).abs() <= 1e-12 && size < best.2) {
                best = (offsets, score, size);
            }
        }
    }
    Calibration {
        offsets: best.0,
        before,
        after: best.1,
    }
}

fn count_classes(rows: &[PairRow]) -> [usize; 3] {
    let mut counts = [0; 3];
    for row in rows {
        counts[row.stance.index()] += 1;
    }
    counts
}

/// A digest of everything that decides the run's numbers, so `--resume` refuses a checkpoint
/// from another run.
fn fingerprint(
    options: &FinetuneOptions,
    files: &[data::DataFile],
    validation: Option<&data::DataFile>,
) -> String {
    let text = serde_json::json!({
        "hyper": options.hyper,
        "base": options.base,
        "files": files.iter().map(|f| &f.sha256).collect::<Vec<_>>(),
        "validation": validation.map(|f| &f.sha256),
        "threads": options.threads,
        "init": options.init.as_ref().map(init_digest),
    })
    .to_string();
    crate::encode::model::fetch::sha256_bytes(text.as_bytes())
}

/// Weights a run keeps beside the current ones, saved in the checkpoint under a prefix each.
#[derive(Default)]
struct Kept {
    /// The best-scoring weights so far (`best.*`).
    best: Option<HashMap<String, Tensor>>,
    /// The running mean of the weights (`mean.*`, `Hyperparameters::average_from`).
    mean: Option<HashMap<String, Tensor>>,
}

impl Kept {
    const PREFIXES: [&'static str; 2] = ["best.", "mean."];

    fn from_checkpoint(tensors: &HashMap<String, Tensor>) -> Self {
        let [best, mean] = Self::PREFIXES.map(|prefix| {
            let set: HashMap<String, Tensor> = tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
                .collect();
            (!set.is_empty()).then_some(set)
        });
        Kept { best, mean }
    }

    fn add_to(&self, tensors: &mut HashMap<String, Tensor>) {
        for (prefix, set) in Self::PREFIXES.iter().zip([&self.best, &self.mean]) {
            for (k, v) in set.iter().flatten() {
                tensors.insert(format!("{prefix}{k}"), v.clone());
            }
        }
    }
}

/// The running mean of the weights after its `count`-th member `weights`:
/// mean + (weights - mean) / count (the first member is the mean).
fn running_mean(
    mean: Option<HashMap<String, Tensor>>,
    weights: HashMap<String, Tensor>,
    count: usize,
) -> Result<HashMap<String, Tensor>> {
    let Some(mut mean) = mean else {
        return Ok(weights);
    };
    let share = 1.0 / count as f64;
    for (name, value) in weights {
        let old = mean
            .get(&name)
            .expect("this is a bug: the mean has every trained tensor");
        let new = value
            .sub(old)
            .and_then(|step| step.affine(share, 0.0))
            .and_then(|step| old.add(&step))
            .map_err(Error::encoder)?;
        mean.insert(name, new);
    }
    Ok(mean)
}

/// Sets the model's trained tensors from `init`, after checking it was made on the same base
/// with the same LoRA shape (else its tensors would not fit, or would mean something else).
fn start_from(
    model: &TrainModel,
    init: &InitFrom,
    base: &BaseModel,
    lora: &LoraSettings,
) -> Result<()> {
    let adapter = &init.adapter;
    adapter.check_base(&base.name, &base.sha256)?;
    let card = &adapter.card;
    if card.lora.rank != lora.rank
        || card.lora.alpha != lora.alpha
        || card.lora.targets != lora.targets
    {
        return Err(Error::Usage {
            message: format!(
                "--init {}: its LoRA is rank {} alpha {} on {}; pass the same --rank, --alpha \
                 and --lora-targets",
                init.name,
                card.lora.rank,
                card.lora.alpha,
                card.lora.targets.join(",")
            ),
        });
    }
    let missing: Vec<&str> = model
        .vars()
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !adapter.tensors().contains_key(*name))
        .collect();
    if let Some(name) = missing.first() {
        return Err(Error::Usage {
            message: format!(
                "--init {}: the adapter has no {name} (was it trained with other --unfreeze \
                 settings?)",
                init.name
            ),
        });
    }
    model.set_tensors(adapter.tensors()).map_err(Error::encoder)
}

/// What identifies an `--init` adapter: its name and the digest of its card and tensors' names
/// and shapes (a different adapter of the same name gives a different digest).
fn init_digest(init: &InitFrom) -> String {
    let mut names: Vec<String> = init
        .adapter
        .tensors()
        .iter()
        .map(|(k, v)| format!("{k}{:?}", v.dims()))
        .collect();
    names.sort();
    let card = serde_json::to_string(&init.adapter.card).unwrap_or_default();
    crate::encode::model::fetch::sha256_bytes(
        format!("{}\n{card}\n{}", init.name, names.join(",")).as_bytes(),
    )
}

fn write_jsonl(path: &Path, rows: &[PairRow]) -> Result<()> {
    let mut text = String::new();
    for row in rows {
        let line = serde_json::json!({
            "id": row.id, "text": row.text, "target": row.target, "stance": row.stance.as_str(),
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Writes through a temporary file in the same folder and a rename, so a kill never leaves a
/// half-written file under the final name.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|e| Error::write(path, e))?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| Error::write(path, e))?;
    file.persist(path)
        .map_err(|e| Error::write(path, e.error))?;
    Ok(())
}

fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let temporary = tempfile::NamedTempFile::new_in(folder).map_err(|e| Error::write(path, e))?;
    candle_core::safetensors::save(tensors, temporary.path()).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    temporary
        .persist(path)
        .map_err(|e| Error::write(path, e.error))?;
    Ok(())
}

fn save_checkpoint(
    folder: &Path,
    state: &CheckpointState,
    model: &TrainModel,
    adam: &AdamW,
    kept: &Kept,
) -> Result<()> {
    std::fs::create_dir_all(folder).map_err(|e| Error::write(folder, e))?;
    let mut tensors = model.tensors();
    tensors.extend(adam.state());
    kept.add_to(&mut tensors);
    // The tensors first, under the step's own name, then the state that names them: a kill
    // between the two leaves the previous state and its tensors as they were.
    let tensors_path = folder.join(format!("state-{}.safetensors", state.step));
    save_tensors(&tensors_path, &tensors)?;
    let json = serde_json::to_vec_pretty(state).expect("this is a bug: state serialises");
    write_atomic(&folder.join("state.json"), &json)?;
    // Older tensor files are no longer named by state.json.
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("state-") && name != format!("state-{}.safetensors", state.step) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

fn load_checkpoint(folder: &Path) -> Result<(CheckpointState, HashMap<String, Tensor>)> {
    let path = folder.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage {
            message: format!(
                "--resume: no checkpoint in {}; run without --resume to start",
                folder.display()
            ),
        },
        _ => Error::read(&path, e),
    })?;
    let state: CheckpointState = serde_json::from_str(&text).map_err(|e| Error::Usage {
        message: format!("{} is not a stancer checkpoint ({e})", path.display()),
    })?;
    let tensors_path = folder.join(format!("state-{}.safetensors", state.step));
    let tensors =
        candle_core::safetensors::load(&tensors_path, &Device::Cpu).map_err(|source| {
            Error::LoadWeights {
                path: tensors_path.clone(),
                source,
            }
        })?;
    Ok((state, tensors))
}

struct CardInputs<'a> {
    options: &'a FinetuneOptions,
    files: &'a [data::DataFile],
    validation_file: Option<&'a data::DataFile>,
    train: &'a [PairRow],
    validation: &'a [PairRow],
    test_counts: [usize; 3],
    state: &'a CheckpointState,
    total_steps: usize,
    per_epoch: usize,
    stopped: &'a str,
    pairs_per_second: f64,
    lora: &'a LoraSettings,
    started_seconds: f64,
    calibration: Option<&'a (Calibration, usize)>,
    compression: Option<serde_json::Value>,
}

fn model_card(inputs: CardInputs) -> serde_json::Value {
    let options = inputs.options;
    let hyper = &options.hyper;
    let file_entry = |f: &data::DataFile, index: usize, role: &str| {
        let used = inputs.train.iter().filter(|r| r.source == index).count();
        serde_json::json!({
            "file": f.path.file_name().map(|n| n.to_string_lossy().to_string()),
            "sha256": f.sha256,
            "rows": f.rows,
            "classes": {"favor": f.classes[0], "against": f.classes[1], "none": f.classes[2]},
            "rows_in_training_part": used,
            "role": role,
            "licence": options.licences.get(index).cloned().unwrap_or_else(|| "not stated".into()),
        })
    };
    let mut data: Vec<serde_json::Value> = inputs
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| file_entry(f, i, "training"))
        .collect();
    if let Some(f) = inputs.validation_file {
        data.push(file_entry(f, inputs.files.len(), "validation"));
    }
    let card = AdapterCard {
        task: "stance".into(),
        base: options.base.clone(),
        lora: inputs.lora.clone(),
        labels: Stance::ALL.iter().map(|s| s.to_string()).collect(),
        max_tokens: hyper.max_tokens,
        rest: serde_json::Map::new(),
    };
    let mut value = serde_json::to_value(&card).expect("this is a bug: card serialises");
    let extra = serde_json::json!({
        "input": "[CLS] target [SEP] paragraph [SEP], token types 0 then 1; mean pooling over all tokens; linear head",
        "data": data,
        "split": {
            "method": "sha256 of the normalised text (lower case, whitespace collapsed): the same text is always in the same part",
            "validation_per_mille": hyper.validation_per_mille,
            "test_per_mille": hyper.test_per_mille,
            "train_rows": inputs.train.len(),
            "validation_rows_scored": inputs.validation.len(),
            "test_rows": inputs.test_counts.iter().sum::<usize>(),
            "test_classes": {"favor": inputs.test_counts[0], "against": inputs.test_counts[1], "none": inputs.test_counts[2]},
        },
        "hyperparameters": hyper,
        "optimizer": "AdamW (beta1 0.9, beta2 0.999, eps 1e-8), linear warm-up then linear decay",
        "calibration": inputs.calibration.map(|(c, rows)| serde_json::json!({
            "method": "per-class offsets added to the head's bias (none fixed at 0, favor and against on a grid of -2..2 by 0.1), chosen for the best macro-F1 on the validation rows of the files that hold all three classes; ties go to the smallest offsets",
            "rows": rows,
            "offsets": {"favor": c.offsets[0], "against": c.offsets[1], "none": c.offsets[2]},
            "macro_f1_before": c.before,
            "macro_f1_after": c.after,
        })),
        "compression": inputs.compression,
        "initialised_from": options.init.as_ref().map(|init| serde_json::json!({
            "name": init.name,
            "card": init.adapter.card,
        })),
        "threads": options.threads,
        "command": options.command,
        "training": {
            "steps": inputs.state.step,
            "planned_steps": inputs.total_steps,
            "batches_per_epoch": inputs.per_epoch,
            "pairs": inputs.state.step * hyper.batch * hyper.accumulate,
            "mean_loss": if inputs.state.loss_count > 0 { inputs.state.loss_sum / inputs.state.loss_count as f64 } else { 0.0 },
            "stopped": inputs.stopped,
            "seconds": inputs.state.seconds,
            "seconds_this_session": inputs.started_seconds,
        },
        "validation": {
            "history": inputs.state.history,
            "selected_by": hyper.select.name(),
            "best_step": inputs.state.best_step,
            "best_score": inputs.state.best_macro_f1,
            "best_macro_f1": inputs.state.best_step.and_then(|step| inputs.state.history.iter().find(|p| p.step == step)).map(|p| p.macro_f1),
            "adapter_is": match (inputs.state.best_step.is_some(), inputs.state.averaged > 0) {
                (true, false) => "the weights at best_step",
                (true, true) => "the running mean of the weights (averaged from step average_from x planned_steps) as it stood at best_step",
                (false, true) => "the running mean of the weights over the last averaged steps",
                (false, false) => "the weights at the last step",
            },
            "averaged_steps": inputs.state.averaged,
        },
        "speed": {
            "pairs_per_second": inputs.pairs_per_second,
            "steps": inputs.state.step.saturating_sub(WARMUP_STEPS_EXCLUDED),
            "seconds": inputs.state.timed_seconds,
            "warmup_steps_excluded": WARMUP_STEPS_EXCLUDED,
        },
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        map.extend(extra);
    }
    value
}

/// Replaces each trained weight matrix `NAME.weight` of the encoder's linear layers in
/// `tensors` by `NAME.lora_a` and `NAME.lora_b`, the best rank-`rank` approximation of its change
/// from the base (`compress::low_rank`); returns the LoRA settings that load it (alpha = rank,
/// so scale 1) and, for the model card, the share of each change's `‖W - W0‖²` kept.
fn compress_weights(
    tensors: &mut HashMap<String, Tensor>,
    base: &HashMap<String, Tensor>,
    rank: usize,
    seed: u64,
) -> candle_core::Result<(LoraSettings, serde_json::Value)> {
    let root = if base.contains_key("embeddings.word_embeddings.weight") {
        ""
    } else {
        "bert."
    };
    let mut names: Vec<String> = tensors
        .keys()
        .filter(|name| {
            name.starts_with("encoder.layer.")
                && model::LORA_TARGETS
                    .iter()
                    .any(|t| name.ends_with(&format!(".{t}.weight")))
        })
        .cloned()
        .collect();
    names.sort();
    let mut kept = serde_json::Map::new();
    let mut targets: Vec<String> = Vec::new();
    for name in &names {
        let trained = tensors.remove(name).expect("listed above");
        let original = base
            .get(&format!("{root}{name}"))
            .ok_or_else(|| candle_core::Error::Msg(format!("the base has no {root}{name}")))?
            .to_dtype(DType::F32)?;
        let (outputs, inputs) = trained.dims2()?;
        let delta = (trained.to_dtype(DType::F32)? - original)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let low = compress::low_rank(&delta, outputs, inputs, rank, seed);
        let device = &Device::Cpu;
        let module = name.strip_suffix(".weight").expect("filtered above");
        tensors.insert(
            format!("{module}.lora_a"),
            Tensor::from_vec(low.a, (low.rank, inputs), device)?,
        );
        tensors.insert(
            format!("{module}.lora_b"),
            Tensor::from_vec(low.b, (outputs, low.rank), device)?,
        );
        kept.insert(module.to_string(), serde_json::json!(low.kept));
        let target = model::LORA_TARGETS
            .iter()
            .find(|t| module.ends_with(&format!(".{t}")))
            .expect("filtered above");
        if !targets.iter().any(|t| t == target) {
            targets.push(target.to_string());
        }
    }
    let order = |t: &String| model::LORA_TARGETS.iter().position(|x| x == t);
    targets.sort_by_key(order);
    let shares: Vec<f64> = kept.values().filter_map(|v| v.as_f64()).collect();
    let report = serde_json::json!({
        "method": "each trained weight matrix's change from the base, W - W0, written as its best rank-r approximation B · A (truncated SVD by subspace iteration in f64), so the adapter is LoRA of rank r with alpha r",
        "rank": rank,
        "share_of_change_kept_mean": shares.iter().sum::<f64>() / shares.len().max(1) as f64,
        "share_of_change_kept_min": shares.iter().copied().fold(f64::INFINITY, f64::min),
        "share_of_change_kept": kept,
    });
    Ok((
        LoraSettings {
            rank,
            alpha: rank as f64,
            targets,
        },
        report,
    ))
}

fn write_adapter(
    folder: &Path,
    tensors: &HashMap<String, Tensor>,
    card: &serde_json::Value,
) -> Result<()> {
    let tensors: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.to_dtype(DType::F32).unwrap_or_else(|_| v.clone()),
            )
        })
        .collect();
    save_tensors(&folder.join(WEIGHTS_FILE), &tensors)?;
    let mut json = serde_json::to_vec_pretty(card).expect("this is a bug: card serialises");
    json.push(b'\n');
    write_atomic(&folder.join(CARD_FILE), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_finds_the_offset_that_undoes_a_bias_toward_none() {
        // Each row's true class has a margin of 1, but none carries an extra 1.5: plain argmax
        // calls every favor and against row none.
        let mut logits = Vec::new();
        let mut gold = Vec::new();
        for i in 0..90 {
            let class = i % 3;
            let mut l = [0.0f32; 3];
            l[class] += 1.0;
            l[2] += 1.5;
            logits.push(l);
            gold.push(class);
        }
        let found = calibrate(&logits, &gold);
        assert!(found.before < 0.5, "{found:?}");
        assert!((found.after - 1.0).abs() < 1e-9, "{found:?}");
        // The smallest offsets that separate the classes: 0.5 makes a tie with none, which
        // argmax gives to the earlier class.
        assert!(
            found.offsets[0] >= 0.5 && found.offsets[0] < 1.5,
            "{found:?}"
        );
        assert!(
            found.offsets[1] >= 0.5 && found.offsets[1] < 1.5,
            "{found:?}"
        );
        assert_eq!(found.offsets[2], 0.0);
        // Logits that are already right are left alone.
        let right: Vec<[f32; 3]> = gold
            .iter()
            .map(|&g| {
                let mut l = [0.0f32; 3];
                l[g] = 1.0;
                l
            })
            .collect();
        assert_eq!(calibrate(&right, &gold).offsets, [0.0; 3]);
    }
}
