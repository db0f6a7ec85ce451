//! `stancer finetune` and stance models (issue 12): the merged adapter equals the training
//! forward on both engines, runs are repeatable and resume exactly, bad input is one line and
//! exit 2, and training on real data beats the untrained model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use stancer::encode::model::adapter::{Adapter, AdapterCard, BaseModel, LoraSettings};
use stancer::encode::model::{Batch, BertEncoder, Engine, LoadOptions, Matmul, Model, ModelFiles};
use stancer::encode::tokenize::TextTokenizer;
use stancer::finetune::model::{TrainModel, Unfreeze, LORA_TARGETS};

use crate::common::{max_abs_difference, stancer, tiny, tiny_model_folder};

const PAIRS: &[(&str, &str)] = &[
    ("china", "the china and russia alignment is strong"),
    ("peace in ukraine", "the west will broker a durable peace"),
    ("war", "war"),
    ("russia", "the great power threat of russia to ukraine is not a strong alignment of the west and china in the war"),
];

/// A training model on `folder`'s base weights with every LoRA B set to random values, so the
/// adapter changes the forward; and the adapter built from it.
fn trained_and_adapter(folder: &Path, rank: usize) -> (TrainModel, Adapter) {
    let files = ModelFiles::in_folder(folder);
    let config = stancer::encode::model::read_bert_config(&files.config).unwrap();
    let base = candle_core::safetensors::load(&files.weights, &Device::Cpu).unwrap();
    let lora = LoraSettings {
        rank,
        alpha: 2.0 * rank as f64,
        targets: LORA_TARGETS.iter().map(|s| s.to_string()).collect(),
    };
    let model = TrainModel::new(
        &base,
        &config,
        &lora,
        Unfreeze::default(),
        3,
        5,
        &Device::Cpu,
    )
    .unwrap();
    for (i, (name, var)) in model.vars().iter().enumerate() {
        if name.ends_with(".lora_b") {
            let count = var.as_tensor().elem_count();
            let fixed: Vec<f32> = (0..count)
                .map(|k| (((k * 31 + i * 17) % 23) as f32 - 11.0) * 0.004)
                .collect();
            var.set(&Tensor::from_vec(fixed, var.as_tensor().shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let card = AdapterCard {
        task: "stance".into(),
        base: BaseModel {
            name: "test".into(),
            sha256: stancer::encode::model::fetch::sha256_file(&files.weights).unwrap(),
        },
        lora,
        labels: vec!["favor".into(), "against".into(), "none".into()],
        max_tokens: config.max_position_embeddings,
        rest: serde_json::Map::new(),
    };
    let adapter = Adapter::from_tensors(card, model.tensors()).unwrap();
    (model, adapter)
}

fn pair_batch(folder: &Path, max_tokens: usize) -> Batch {
    let tokenizer = TextTokenizer::load(&folder.join("tokenizer.json"), max_tokens).unwrap();
    let sequences = tokenizer.tokenize_pairs_truncated(PAIRS).unwrap();
    let refs: Vec<_> = sequences.iter().collect();
    Batch::from_sequences(&refs)
}

fn merged(folder: &Path, adapter: &Adapter, engine: Engine, matmul: Matmul) -> BertEncoder {
    let options = LoadOptions {
        engine,
        matmul,
        ..LoadOptions::default()
    };
    BertEncoder::load_weights(&ModelFiles::in_folder(folder), Some(adapter), &options).unwrap()
}

fn flat(rows: &[Vec<f32>]) -> Vec<f32> {
    rows.iter().flatten().copied().collect()
}

#[test]
fn tiny_merged_adapter_on_both_engines_equals_the_unmerged_training_forward() {
    let folder = tiny_model_folder();
    let (model, adapter) = trained_and_adapter(folder, 4);
    let batch = pair_batch(folder, 64);
    // Pairs have two segments: both type ids occur.
    assert!(batch.type_ids.contains(&0) && batch.type_ids.contains(&1));
    let expected = model.forward(&batch).unwrap().to_vec2::<f32>().unwrap();
    for engine in [Engine::Packed, Engine::Candle] {
        let logits = merged(folder, &adapter, engine, Matmul::F32)
            .predict(&batch)
            .unwrap();
        let difference = max_abs_difference(&flat(&logits), &flat(&expected));
        assert!(difference <= 1e-4, "{engine:?}: {difference}");
    }
    // The update changed the model: the base with only the head differs.
    let (base_model, _) = {
        let files = ModelFiles::in_folder(folder);
        let config = stancer::encode::model::read_bert_config(&files.config).unwrap();
        let base = candle_core::safetensors::load(&files.weights, &Device::Cpu).unwrap();
        let lora = adapter.card.lora.clone();
        (
            TrainModel::new(
                &base,
                &config,
                &lora,
                Unfreeze::default(),
                3,
                5,
                &Device::Cpu,
            )
            .unwrap(),
            (),
        )
    };
    let untouched = base_model
        .forward(&batch)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(max_abs_difference(&flat(&untouched), &flat(&expected)) > 1e-3);
}

#[test]
fn tiny_merged_adapter_is_batch_invariant_and_runs_in_every_precision() {
    let folder = tiny_model_folder();
    let (_, adapter) = trained_and_adapter(folder, 2);
    let batch = pair_batch(folder, 64);
    let f32_model = merged(folder, &adapter, Engine::Auto, Matmul::F32);
    let together = f32_model.predict(&batch).unwrap();
    for (i, expected) in together.iter().enumerate() {
        let range = batch.range(i);
        let alone = Batch::new([(
            &batch.ids[range.clone()],
            Some(&batch.type_ids[range.clone()]),
        )]);
        assert_eq!(&f32_model.predict(&alone).unwrap()[0], expected, "pair {i}");
    }
    for matmul in [Matmul::Int8, Matmul::Bf16] {
        let logits = merged(folder, &adapter, Engine::Packed, matmul)
            .predict(&batch)
            .unwrap();
        let difference = max_abs_difference(&flat(&logits), &flat(&together));
        let scale = flat(&together).iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            difference <= 0.05 * scale.max(1.0),
            "{matmul:?}: {difference}"
        );
    }
}

fn write_pairs(dir: &Path, name: &str, rows: &[(&str, &str, &str)]) -> String {
    let path = dir.join(name);
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (text, target, stance))| {
            serde_json::json!({"id": format!("r{i}"), "text": text, "target": target, "stance": stance})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn tiny_rows() -> Vec<(String, String, String)> {
    let words = [
        "china",
        "russia",
        "peace",
        "war",
        "ukraine",
        "west",
        "alignment",
        "threat",
    ];
    (0..48)
        .map(|i| {
            let text = format!(
                "the {} and {} of {} is {} {}",
                words[i % 8],
                words[(i / 8) % 8],
                words[(i * 3) % 8],
                if i % 2 == 0 { "strong" } else { "not strong" },
                i
            );
            let target = words[(i * 5) % 8].to_string();
            let stance = ["favor", "against", "none"][i % 3].to_string();
            (text, target, stance)
        })
        .collect()
}

/// `tiny_rows()` as pairs.jsonl in `dir`; its path.
fn write_tiny_pairs(dir: &Path) -> String {
    let rows = tiny_rows();
    let borrowed: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    write_pairs(dir, "pairs.jsonl", &borrowed)
}

/// A successful `finetune` run's model card.
fn finetune_card(dir: &Path, data: &str, out: &str, extra: &[&str]) -> serde_json::Value {
    let run = finetune(dir, data, out, extra);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join(out).join("card.json")).unwrap()).unwrap()
}

fn finetune(dir: &Path, data: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut command = stancer();
    command.current_dir(dir).args([
        "finetune",
        data,
        "--base",
        tiny(),
        "--out",
        out,
        "--max-steps",
        "6",
        "--batch",
        "4",
        "--rank",
        "2",
        "--max-tokens",
        "48",
        "--eval-every",
        "3",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0",
        "--threads",
        "2",
        "-q",
    ]);
    command.args(extra).output().unwrap()
}

#[test]
fn finetune_is_repeatable_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    // Compared by digest: a failure prints two lines, not two files' bytes.
    let read = |out: &str| {
        stancer::encode::model::fetch::sha256_file(
            &dir.path().join(out).join("adapter.safetensors"),
        )
        .unwrap()
    };

    let first = finetune(dir.path(), &data, "a", &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = finetune(dir.path(), &data, "b", &[]);
    assert!(second.status.success());
    assert_eq!(
        read("a"),
        read("b"),
        "same data, seed and threads: same adapter bytes"
    );

    // Killed after step 4's checkpoint, then resumed: the same adapter as the whole run.
    let interrupted = finetune(dir.path(), &data, "c", &["--stop-at-step", "4"]);
    assert_eq!(interrupted.status.code(), Some(2));
    assert!(!dir.path().join("c/adapter.safetensors").exists());
    let resumed = finetune(dir.path(), &data, "c", &["--resume"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        read("a"),
        read("c"),
        "a resumed run ends where the whole run ends"
    );

    // The card names the base, every file with its sha256, the settings and the scores.
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a/card.json")).unwrap()).unwrap();
    let sha = stancer::encode::model::fetch::sha256_file(Path::new(&data)).unwrap();
    assert_eq!(card["data"][0]["sha256"], sha);
    assert_eq!(card["hyperparameters"]["seed"], 0);
    assert_eq!(card["lora"]["rank"], 2);
    assert!(card["validation"]["history"].as_array().unwrap().len() >= 2);
    assert!(card["speed"]["pairs_per_second"].as_f64().unwrap() > 0.0);

    // Resuming with other settings is refused.
    let other = finetune(dir.path(), &data, "c", &["--resume", "--lr", "1e-3"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("other data or settings"));

    // --init: a run that starts from adapter a, with steps too small to move anything, ends
    // at a's weights; a fresh run with those steps does not. Its card names where it started.
    let tensors = |out: &str| {
        candle_core::safetensors::load(
            dir.path().join(out).join("adapter.safetensors"),
            &Device::Cpu,
        )
        .unwrap()
    };
    let largest_gap = |x: &HashMap<String, Tensor>, y: &HashMap<String, Tensor>| {
        assert_eq!(x.len(), y.len());
        x.iter()
            .map(|(name, t)| {
                let (a, b) = (
                    t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    y[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                max_abs_difference(&a, &b)
            })
            .fold(0.0f32, f32::max)
    };
    let one_step = ["--lr", "1e-12"];
    let started = finetune(
        dir.path(),
        &data,
        "d",
        &[&one_step[..], &["--init", "a"]].concat(),
    );
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let fresh = finetune(dir.path(), &data, "e", &one_step);
    assert!(fresh.status.success());
    let (kept, moved) = (
        largest_gap(&tensors("a"), &tensors("d")),
        largest_gap(&tensors("a"), &tensors("e")),
    );
    assert!(
        kept < 1e-7 && moved > 1e-4,
        "from a: {kept}, fresh: {moved}"
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("d/card.json")).unwrap()).unwrap();
    assert_eq!(card["initialised_from"]["name"], "a");
    assert_eq!(card["initialised_from"]["card"]["lora"]["rank"], 2);
    // --init with no steps and --calibrate: a's weights, with only the head's bias shifted by
    // the offsets the card reports.
    let calibrated = finetune(
        dir.path(),
        &data,
        "g",
        &["--init", "a", "--max-steps", "0", "--calibrate"],
    );
    assert!(
        calibrated.status.success(),
        "{}",
        String::from_utf8_lossy(&calibrated.stderr)
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("g/card.json")).unwrap()).unwrap();
    let offsets = &card["calibration"]["offsets"];
    let (a, g) = (tensors("a"), tensors("g"));
    for (name, tensor) in &a {
        let (x, y) = (
            tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            g[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        if name == "classifier.bias" {
            for (k, class) in ["favor", "against", "none"].iter().enumerate() {
                let offset = offsets[class].as_f64().unwrap() as f32;
                assert!(
                    (y[k] - x[k] - offset).abs() < 1e-6,
                    "{class}: {} vs {offset}",
                    y[k] - x[k]
                );
            }
        } else {
            assert_eq!(x, y, "{name} changed");
        }
    }
    assert!(
        card["calibration"]["macro_f1_after"].as_f64().unwrap()
            >= card["calibration"]["macro_f1_before"].as_f64().unwrap()
    );
    assert_eq!(card["training"]["steps"], 0);

    // Another LoRA shape is refused, naming the flags.
    let other = finetune(dir.path(), &data, "f", &["--init", "a", "--alpha", "3"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("pass the same --rank"));
    assert!(
        !dir.path().join("f").exists(),
        "a refused --init left an output folder"
    );
}

#[test]
fn select_f_avg_keeps_the_step_with_the_best_validation_f_avg() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    let flags = [
        "--eval-every",
        "1",
        "--patience",
        "0",
        "--lr",
        "0.05",
        "--max-steps",
        "12",
    ];
    let card = |out: &str, extra: &[&str]| {
        finetune_card(dir.path(), &data, out, &[&flags[..], extra].concat())
    };
    let mut chosen = Vec::new();
    for (out, extra, name, field) in [
        ("m", &[][..], "macro-F1", "macro_f1"),
        ("f", &["--select", "f-avg"][..], "F_avg", "f_avg"),
    ] {
        let card = card(out, extra);
        let validation = &card["validation"];
        assert_eq!(validation["selected_by"], name);
        let history = validation["history"].as_array().unwrap();
        assert_eq!(history.len(), 12, "one score per step");
        let score = |p: &serde_json::Value| p[field].as_f64().unwrap();
        // The first of the best scores is kept (a later tie is not an improvement).
        let best = history
            .iter()
            .fold(None::<&serde_json::Value>, |b, p| match b {
                Some(b) if score(b) >= score(p) => Some(b),
                _ => Some(p),
            })
            .unwrap();
        assert_eq!(validation["best_step"], best["step"], "{name}");
        assert_eq!(
            validation["best_score"].as_f64(),
            Some(score(best)),
            "{name}"
        );
        assert_eq!(validation["best_macro_f1"], best["macro_f1"], "{name}");
        chosen.push(best["step"].clone());
    }
    // Same run, same history: only the selecting score differs, and here it picks another step.
    assert_ne!(chosen[0], chosen[1]);
}

#[test]
fn under_weight_averaging_only_the_mean_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    let flags = [
        "--eval-every",
        "1",
        "--lr",
        "0.05",
        "--max-steps",
        "12",
        "--select",
        "f-avg",
    ];
    let card = |out: &str, extra: &[&str]| {
        finetune_card(dir.path(), &data, out, &[&flags[..], extra].concat())
    };
    // Without averaging this run keeps an early step; with it, only steps 7-12 (the mean) compete,
    // and the steps before do not count toward --patience (which would stop it at step 10).
    let plain = card("plain", &["--patience", "0"]);
    assert!(plain["validation"]["best_step"].as_u64().unwrap() <= 6);
    let averaged = card("mean", &["--average-from", "0.5", "--patience", "6"]);
    let best = averaged["validation"]["best_step"].as_u64().unwrap();
    assert!(best > 6, "kept step {best}");
    assert_eq!(
        averaged["training"]["steps"], 12,
        "early-stopped before the mean"
    );
    assert!(averaged["validation"]["averaged_steps"].as_u64().unwrap() >= 6);
}

#[test]
fn weight_averaging_writes_the_mean_of_the_weights_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    // No validation part: the mean of the weights after steps 4, 5 and 6 is the adapter.
    let settings = [
        "--val-fraction",
        "0",
        "--average-from",
        "0.5",
        "--lr",
        "0.01",
        "--checkpoint-every",
        "1",
    ];
    let run = |out: &str, extra: &[&str]| {
        let output = finetune(dir.path(), &data, out, &[&settings[..], extra].concat());
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let load = |path: PathBuf| candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let checkpoint = |out: &str, step: usize| {
        load(
            dir.path()
                .join(out)
                .join(format!("checkpoint/state-{step}.safetensors")),
        )
    };

    let (code, stderr) = run("whole", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut weights = Vec::new();
    for (step, resume) in [(4, false), (5, true), (6, true)] {
        let mut extra = vec!["--stop-at-step".to_string(), step.to_string()];
        if resume {
            extra.push("--resume".into());
        }
        let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
        let (code, stderr) = run("parts", &extra);
        assert!(code == Some(2) || code == Some(0), "{stderr}");
        let saved = checkpoint("parts", step);
        weights.push(saved.clone());
        // The running mean so far, as the checkpoint keeps it.
        for (name, mean) in saved
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("mean.").map(|n| (n, v)))
        {
            let members: Vec<Vec<f32>> = weights.iter().map(|w| values(&w[name])).collect();
            let expected: Vec<f32> = (0..members[0].len())
                .map(|i| members.iter().map(|m| m[i]).sum::<f32>() / members.len() as f32)
                .collect();
            let gap = max_abs_difference(&values(mean), &expected);
            assert!(gap < 1e-6, "step {step}, {name}: {gap}");
        }
    }
    let (code, stderr) = run("parts", &["--resume"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (whole, parts) = (
        load(dir.path().join("whole/adapter.safetensors")),
        load(dir.path().join("parts/adapter.safetensors")),
    );
    let last = &weights[2];
    let mut moved = 0.0f32;
    for (name, tensor) in &whole {
        assert_eq!(
            values(tensor),
            values(&parts[name]),
            "{name}: resumed differs"
        );
        let mean = values(&last[&format!("mean.{name}")]);
        assert_eq!(values(tensor), mean, "{name}: the adapter is the mean");
        moved = moved.max(max_abs_difference(&mean, &values(&last[name])));
    }
    assert!(
        moved > 1e-5,
        "the mean differs from the last weights ({moved})"
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("whole/card.json")).unwrap())
            .unwrap();
    assert_eq!(card["validation"]["averaged_steps"], 3);
    assert_eq!(card["hyperparameters"]["average_from"], 0.5);
}

#[test]
fn finetune_bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no target",
            "{\"id\": \"a\", \"text\": \"the war\", \"stance\": \"favor\"}\n".into(),
            "has no \"target\"",
        ),
        (
            "unknown label",
            "{\"id\": \"a\", \"text\": \"the war\", \"target\": \"war\", \"stance\": \"neutral\"}\n".into(),
            "unknown stance 'neutral'",
        ),
        (
            "one class",
            (0..20)
                .map(|i| format!("{{\"text\": \"the war {i}\", \"target\": \"war\", \"stance\": \"favor\"}}\n"))
                .collect(),
            "only one class",
        ),
        ("empty", String::new(), "no rows"),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(format!("{}.jsonl", name.replace(' ', "-")));
        std::fs::write(&path, text).unwrap();
        let output = finetune(dir.path(), path.to_str().unwrap(), "out", &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[test]
fn an_adapter_made_for_another_base_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    assert!(finetune(dir.path(), &data, "adapter", &[]).status.success());
    // The card now names a base of the same architecture with other weights.
    let other = dir.path().join("other-base");
    stancer::testkit::write_tiny_bert(&other, 99).unwrap();
    let card_path = dir.path().join("adapter/card.json");
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&card_path).unwrap()).unwrap();
    card["base"]["name"] = other.to_str().unwrap().into();
    std::fs::write(&card_path, card.to_string()).unwrap();
    let text = dir.path().join("doc.txt");
    std::fs::write(&text, "The war in Ukraine is a threat.\n").unwrap();
    let output = stancer()
        .args([
            "classify",
            text.to_str().unwrap(),
            "--model",
            other.to_str().unwrap(),
        ])
        .args([
            "--stance",
            dir.path().join("adapter").to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the adapter was trained on"), "{stderr}");

    // On its own base it scores pairs, and the scores do not depend on the batch.
    let output = stancer()
        .args([
            "classify",
            text.to_str().unwrap(),
            "--model",
            tiny(),
            "--format",
            "jsonl",
        ])
        .args([
            "--stance",
            dir.path().join("adapter").to_str().unwrap(),
            "-q",
        ])
        .args(["--target", "peace in ukraine"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_slice(output.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let scores = &record["stance"]["peace in ukraine"]["scores"];
    let sum: f64 = ["favor", "against", "none"]
        .iter()
        .map(|k| scores[k].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "{record}");
}

/// Rows of a real stance file, the first `n` of each label.
fn real_rows(path: &Path, per_label: usize) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|row| {
            let label = row["stance"].as_str().unwrap().to_lowercase();
            let count = counts.entry(label).or_default();
            *count += 1;
            *count <= per_label
        })
        .collect()
}

#[test]
fn real_model_finetuning_raises_held_out_macro_f1_above_the_untrained_head() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/semeval2016-train.jsonl");
    if !data.exists() {
        eprintln!("skipping: {} is not here", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = real_rows(&data, 120);
    let path = dir.path().join("pairs.jsonl");
    std::fs::write(
        &path,
        rows.iter()
            .map(|r| r.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let run = |out: &str, steps: &str| {
        let output = stancer()
            .current_dir(dir.path())
            .args([
                "finetune",
                path.to_str().unwrap(),
                "--out",
                out,
                "--max-steps",
                steps,
            ])
            .args([
                "--batch",
                "16",
                "--lr",
                "1e-3",
                "--max-tokens",
                "64",
                "--val-fraction",
                "0.25",
            ])
            .args([
                "--test-fraction",
                "0",
                "--eval-every",
                "1000",
                "--patience",
                "0",
                "-q",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let card: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(out).join("card.json")).unwrap())
                .unwrap();
        card["validation"]["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["macro_f1"]
            .as_f64()
            .unwrap()
    };
    // One step at a vanishing share of the schedule is the untrained model (B = 0) with a
    // barely moved head; sixty steps (about two and a half passes) train it.
    let untrained = run("untrained", "1");
    let trained = run("trained", "60");
    eprintln!("held-out macro-F1: untrained {untrained:.3}, trained {trained:.3}");
    assert!(
        trained > untrained + 0.03,
        "untrained {untrained:.3}, trained {trained:.3}"
    );
}

#[test]
fn real_model_shipped_stance_model_merged_equals_its_unmerged_forward() {
    let Some(builtin) = stancer::encode::model::adapter::BUILTIN_STANCE.first() else {
        eprintln!("skipping: no stance model is built in");
        return;
    };
    let spec = stancer::encode::model::adapter::StanceSpec::parse(builtin.name).unwrap();
    let adapter = spec.load().unwrap().unwrap();
    let base = stancer::encode::model::fetch::ModelSpec::parse(Some(&adapter.card.base.name))
        .unwrap()
        .resolve(&mut |line| eprintln!("{line}"))
        .unwrap();
    adapter
        .check_base(&base.name, &base.weights_checksum().unwrap())
        .unwrap();
    let config = stancer::encode::model::read_bert_config(&base.files.config).unwrap();
    let tensors = candle_core::safetensors::load(&base.files.weights, &Device::Cpu).unwrap();
    let unfreeze = Unfreeze::default();
    let model = TrainModel::new(
        &tensors,
        &config,
        &adapter.card.lora,
        unfreeze,
        3,
        0,
        &Device::Cpu,
    )
    .unwrap();
    model.set_tensors(adapter.tensors()).unwrap();
    let tokenizer = TextTokenizer::load(&base.files.tokenizer, adapter.card.max_tokens).unwrap();
    let pairs = [
        ("renewable energy subsidies", "We must expand subsidies for wind and solar power now; they pay for themselves."),
        ("the death penalty", "Executions are irreversible, and innocent people have been put to death."),
        ("China can be leveraged to broker peace in Ukraine", "The summit in Astana discussed trade corridors through Central Asia and new rail links."),
    ];
    let sequences = tokenizer.tokenize_pairs_truncated(&pairs).unwrap();
    let refs: Vec<_> = sequences.iter().collect();
    let batch = Batch::from_sequences(&refs);
    let expected = model.forward(&batch).unwrap().to_vec2::<f32>().unwrap();
    let folder = base.files.weights.parent().unwrap().to_path_buf();
    for engine in [Engine::Packed, Engine::Candle] {
        let logits = merged(&folder, &adapter, engine, Matmul::F32)
            .predict(&batch)
            .unwrap();
        let difference = max_abs_difference(&flat(&logits), &flat(&expected));
        eprintln!("{engine:?}: merged vs unmerged max |difference| {difference:.2e}");
        assert!(difference <= 1e-4, "{engine:?}: {difference}");
    }
    // The reduced-precision variants run the same merged matrices and agree on the labels.
    let labels = |rows: &[Vec<f32>]| {
        rows.iter()
            .map(|r| stancer::label::head::argmax(r))
            .collect::<Vec<_>>()
    };
    for matmul in [Matmul::Int8, Matmul::Bf16] {
        let logits = merged(&folder, &adapter, Engine::Packed, matmul)
            .predict(&batch)
            .unwrap();
        let difference = max_abs_difference(&flat(&logits), &flat(&expected));
        eprintln!("{matmul:?}: max |difference| to f32 {difference:.3}");
        assert_eq!(labels(&logits), labels(&expected), "{matmul:?}");
    }
}

#[test]
fn a_built_in_stance_model_with_a_changed_byte_is_refused() {
    let Some(builtin) = stancer::encode::model::adapter::BUILTIN_STANCE.first() else {
        eprintln!("skipping: no stance model is built in");
        return;
    };
    let mut weights = builtin.weights.to_vec();
    let last = weights.len() - 1;
    weights[last] ^= 1;
    let tampered = Box::leak(Box::new(stancer::encode::model::adapter::BuiltinAdapter {
        name: builtin.name,
        manifest: builtin.manifest,
        weights: Box::leak(weights.into_boxed_slice()),
        card: builtin.card,
    }));
    let error = stancer::encode::model::adapter::StanceSpec::Builtin(tampered)
        .load()
        .err()
        .expect("a changed byte must fail the checksum");
    assert!(error.to_string().contains("sha256"), "{error}");
    // The intact one loads, and its card names the base and the data it was trained on.
    let adapter = stancer::encode::model::adapter::StanceSpec::Builtin(builtin)
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(adapter.card.task, "stance");
    assert!(adapter.card.rest["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["sha256"].as_str().unwrap().len() == 64));
}

#[test]
fn entailment_themes_are_the_softmax_of_favor_logits_across_the_themes() {
    use stancer::label::head::entailment::{hypothesis, EntailmentTheme};
    use stancer::label::head::ThemeHead;
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    assert!(finetune(dir.path(), &data, "adapter", &[]).status.success());
    let adapter = Adapter::load(&dir.path().join("adapter")).unwrap();
    let model = std::sync::Arc::new(
        stancer::label::head::cross_encoder::load(
            &adapter,
            &crate::common::tiny_resolved(),
            &LoadOptions::default(),
            "tiny-stance",
        )
        .unwrap(),
    );
    // Short theme ids: the tiny model's tokenizer is character-level and its window small.
    let schema = stancer::label::schema::Schema::parse(
        "[[themes]]\nid = \"war\"\ndescription = \"War.\"\n\n\
         [[themes]]\nid = \"trade\"\ndescription = \"Trade.\"\n\n\
         [[themes]]\nid = \"gas\"\ndescription = \"Gas.\"\n",
        Path::new("test.toml"),
    )
    .unwrap();
    let head = EntailmentTheme::new(model.clone(), &schema, "tiny-stance").unwrap();
    let texts = [
        "China and Russia signed a gas deal.",
        "The ceasefire held for a week before shelling resumed near the border, and talks stalled.",
    ];
    let vectors: Vec<&[f32]> = vec![&[], &[]];
    let predicted = head.predict_texts(&vectors, &texts).unwrap();
    for (text, probabilities) in texts.iter().zip(&predicted) {
        let hypotheses: Vec<String> = schema.themes.iter().map(|t| hypothesis(&t.id)).collect();
        let pairs: Vec<(&str, &str)> = hypotheses.iter().map(|h| (h.as_str(), *text)).collect();
        let favor: Vec<f32> = model
            .pair_logits(&pairs)
            .unwrap()
            .iter()
            .map(|l| l[0])
            .collect();
        let expected = stancer::label::head::softmax(&favor);
        assert_eq!(probabilities.len(), schema.themes.len());
        assert!(max_abs_difference(probabilities, &expected) < 1e-6);
        // Not uniform: the pairs differ, so the logits do.
        assert!(expected.iter().any(|p| (p - expected[0]).abs() > 1e-6));
    }

    // Without a stance model there is nothing to read the pairs with: one line, exit 2.
    let text = dir.path().join("doc.txt");
    std::fs::write(&text, "The war in Ukraine is a threat.\n").unwrap();
    let output = stancer()
        .args(["classify", text.to_str().unwrap(), "--model", tiny()])
        .args(["--stance", "prototype", "--theme-head", "entailment", "-q"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--theme-head entailment"), "{stderr}");
}

#[test]
fn every_built_in_stance_model_loads_verified_on_its_base() {
    let builtins = stancer::encode::model::adapter::BUILTIN_STANCE;
    assert!(builtins
        .iter()
        .any(|b| b.name == stancer::encode::model::adapter::DEFAULT_STANCE));
    for builtin in builtins {
        let spec = stancer::encode::model::adapter::StanceSpec::parse(builtin.name).unwrap();
        let adapter = spec
            .load()
            .unwrap_or_else(|e| panic!("{}: {e}", builtin.name))
            .unwrap();
        assert_eq!(adapter.card.base.name, "minilm-l6", "{}", builtin.name);
        assert!(adapter.card.max_tokens > 0);
    }
}

/// Logits of PAIRS through `adapter` merged into the tiny base, on the packed engine.
fn merged_logits(adapter: &Adapter) -> Vec<f32> {
    let folder = tiny_model_folder();
    flat(
        &merged(folder, adapter, Engine::Packed, Matmul::F32)
            .predict(&pair_batch(folder, 64))
            .unwrap(),
    )
}

#[test]
fn full_finetuning_merges_exactly_and_compresses_at_full_rank_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_tiny_pairs(dir.path());
    let weights = ["--unfreeze", "weights", "--lr", "1e-2"];
    let card = finetune_card(dir.path(), &data, "full", &weights);
    // No LoRA: the adapter holds the trained matrices themselves.
    assert_eq!(card["lora"]["targets"], serde_json::json!([]));
    let full = Adapter::load(&dir.path().join("full")).unwrap();
    assert!(full
        .tensors()
        .contains_key("encoder.layer.0.attention.self.query.weight"));

    // The merged model equals the training forward with the same weights.
    let folder = tiny_model_folder();
    let files = ModelFiles::in_folder(folder);
    let config = stancer::encode::model::read_bert_config(&files.config).unwrap();
    let base = candle_core::safetensors::load(&files.weights, &Device::Cpu).unwrap();
    let unfreeze = Unfreeze {
        weights: true,
        ..Unfreeze::default()
    };
    let model = TrainModel::new(
        &base,
        &config,
        &full.card.lora,
        unfreeze,
        3,
        5,
        &Device::Cpu,
    )
    .unwrap();
    model.set_tensors(full.tensors()).unwrap();
    let training = model
        .forward(&pair_batch(folder, 64))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let merged_full = merged_logits(&full);
    let difference = max_abs_difference(&merged_full, &training);
    assert!(difference <= 1e-4, "merged vs training: {difference}");

    // Compressed at the smaller side of every matrix (the tiny model's hidden size), the
    // low-rank adapter is the same model; at rank 1 it is not, and its card says how much
    // of the change it kept.
    let compress = |out: &str, rank: &str| {
        let mut extra = vec![
            "--init",
            "full",
            "--max-steps",
            "0",
            "--compress-rank",
            rank,
        ];
        extra.extend(["--unfreeze", "weights"]);
        let card = finetune_card(dir.path(), &data, out, &extra);
        (card, Adapter::load(&dir.path().join(out)).unwrap())
    };
    let hidden = config.hidden_size.to_string();
    let (card, exact) = compress("exact", &hidden);
    assert_eq!(card["lora"]["rank"], config.hidden_size);
    assert_eq!(card["lora"]["targets"].as_array().unwrap().len(), 6);
    assert!(
        card["compression"]["share_of_change_kept_min"]
            .as_f64()
            .unwrap()
            > 0.999_999
    );
    let difference = max_abs_difference(&merged_logits(&exact), &merged_full);
    assert!(difference <= 1e-4, "full-rank compression: {difference}");
    let (card, one) = compress("one", "1");
    let kept = card["compression"]["share_of_change_kept_mean"]
        .as_f64()
        .unwrap();
    assert!(kept < 0.99 && kept > 0.0, "rank 1 kept {kept}");
    assert!(max_abs_difference(&merged_logits(&one), &merged_full) > 1e-4);

    // Compression without trained matrices is refused in one line.
    let output = finetune(dir.path(), &data, "bad", &["--compress-rank", "2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--compress-rank needs --unfreeze weights"),
        "{stderr}"
    );
}
