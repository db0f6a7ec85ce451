//! Issue 13: hub architectures (BERT, RoBERTa, XLM-R, DeBERTa-v3) as NLI sequence classifiers,
//! exact to transformers. The tiny random-weight models and their reference outputs are made by
//! `tests/reference/make_hub_reference.py` (transformers 5.23, fixed seeds) and committed under
//! `tests/reference/hub/`; nobody tuned these weights, so agreement cannot be arranged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use serde_json::Value;
use stancer::encode::model::fetch::{ModelSpec, ResolvedModel};
use stancer::encode::model::{Batch, BertEncoder, Engine, Matmul, Model};
use stancer::encode::tokenize::TextTokenizer;
use stancer::label::head::nli::{NliModel, NliTheme};
use stancer::label::schema::Schema;

use super::common::{floats, ids, max_abs_difference, stancer};

const ARCHITECTURES: &[&str] = &["bert", "roberta", "xlm-roberta", "deberta-v3"];

fn reference_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/hub")
}

fn model_folder(name: &str) -> PathBuf {
    reference_folder().join(name)
}

fn read_jsonl(file: &str) -> Vec<Value> {
    super::common::read_jsonl(&reference_folder().join(file))
}

fn resolved(name: &str) -> ResolvedModel {
    ModelSpec::parse(Some(model_folder(name).to_str().unwrap()))
        .unwrap()
        .resolve(&mut |_| {})
        .unwrap()
}

fn load(name: &str, engine: Engine) -> BertEncoder {
    BertEncoder::load_engine(
        &resolved(name).files,
        stancer::encode::model::Pooling::Cls,
        &Device::Cpu,
        DType::F32,
        engine,
        Matmul::F32,
    )
    .unwrap()
}

fn nli(name: &str, engine: Engine) -> NliModel {
    let resolved = resolved(name);
    stancer::label::head::nli::load(&resolved, Arc::new(load(name, engine))).unwrap()
}

fn cases(name: &str) -> Vec<Value> {
    read_jsonl("pairs.jsonl")
        .into_iter()
        .filter(|c| c["model"] == name)
        .collect()
}

/// The engines each family runs on: DeBERTa on candle only.
fn engines(name: &str) -> Vec<Engine> {
    if name.starts_with("deberta") {
        vec![Engine::Candle]
    } else {
        vec![Engine::Candle, Engine::Packed]
    }
}

#[test]
fn issue_13_every_architecture_has_at_least_30_reference_pairs_with_long_and_odd_premises() {
    for name in ARCHITECTURES {
        let cases = cases(name);
        assert!(cases.len() >= 30, "{name}: {} cases", cases.len());
        assert!(
            cases
                .iter()
                .any(|c| c["windows"].as_array().unwrap().len() > 1),
            "{name}: no premise past the window"
        );
        assert!(
            cases
                .iter()
                .any(|c| !c["premise"].as_str().unwrap().is_ascii()),
            "{name}: no non-ASCII premise"
        );
    }
}

#[test]
fn issue_13_pairs_are_tokenized_and_windowed_as_the_reference_does() {
    for name in ARCHITECTURES {
        let resolved = resolved(name);
        for case in cases(name) {
            let max_tokens = case["max_tokens"].as_u64().unwrap() as usize;
            let tokenizer = TextTokenizer::load(&resolved.files.tokenizer, max_tokens).unwrap();
            let premise = case["premise"].as_str().unwrap();
            let hypothesis = case["hypothesis"].as_str().unwrap();
            let pair = tokenizer
                .tokenize_premise_pairs(hypothesis, &[premise])
                .unwrap()
                .remove(0);
            let expected = case["windows"].as_array().unwrap();
            assert_eq!(
                pair.windows.len(),
                expected.len(),
                "{name} {}: windows",
                case["name"]
            );
            for (window, reference) in pair.windows.iter().zip(expected) {
                assert_eq!(
                    window.ids,
                    ids(&reference["ids"]),
                    "{name} {}",
                    case["name"]
                );
                assert_eq!(
                    window.type_ids,
                    ids(&reference["type_ids"]),
                    "{name} {}: type ids",
                    case["name"]
                );
            }
        }
    }
}

#[test]
fn issue_13_window_logits_match_transformers_within_1e_4_on_every_engine() {
    for name in ARCHITECTURES {
        for engine in engines(name) {
            let model = load(name, engine);
            let mut worst = 0.0f32;
            for case in cases(name) {
                for (window, expected) in case["windows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(case["window_logits"].as_array().unwrap())
                {
                    let ids = ids(&window["ids"]);
                    let types = ids_or_zero(&window["type_ids"], ids.len());
                    let batch = Batch::new([(ids.as_slice(), Some(types.as_slice()))]);
                    let logits = model.predict(&batch).unwrap().remove(0);
                    worst = worst.max(max_abs_difference(&logits, &floats(expected)));
                }
            }
            eprintln!("{name} {engine:?}: worst window logit difference {worst:e}");
            assert!(worst <= 1e-4, "{name} {engine:?}: {worst}");
        }
    }
}

fn ids_or_zero(value: &Value, length: usize) -> Vec<u32> {
    if value.is_array() {
        ids(value)
    } else {
        vec![0; length]
    }
}

#[test]
fn issue_13_pair_logits_combine_windows_and_batched_equal_alone() {
    for name in ARCHITECTURES {
        for engine in engines(name) {
            let model = nli(name, engine);
            let cases = cases(name);
            let pairs: Vec<(&str, &str)> = cases
                .iter()
                .map(|c| {
                    (
                        c["premise"].as_str().unwrap(),
                        c["hypothesis"].as_str().unwrap(),
                    )
                })
                .collect();
            let batched = model.logits(&pairs).unwrap();
            let mut worst = 0.0f32;
            for ((case, pair), together) in cases.iter().zip(&pairs).zip(&batched) {
                let alone = model.logits(&[*pair]).unwrap().remove(0);
                worst = worst.max(max_abs_difference(&alone, &floats(&case["logits"])));
                let gap = max_abs_difference(&alone, together);
                match engine {
                    // The packed engine's bits do not depend on the batch.
                    Engine::Packed => assert_eq!(&alone, together, "{name} {}", case["name"]),
                    _ => assert!(gap <= 1e-6, "{name} {engine:?} {}: {gap}", case["name"]),
                }
            }
            assert!(worst <= 1e-4, "{name} {engine:?}: {worst}");
        }
    }
}

/// A schema whose themes are a pipeline case's candidate labels.
fn schema_for(case: &Value) -> Schema {
    let mut text = format!(
        "[nli]\ntheme_template = {}\nmulti_label = {}\n",
        toml_string(case["template"].as_str().unwrap()),
        case["multi_label"].as_bool().unwrap()
    );
    for (i, label) in case["candidate_labels"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "[[themes]]\nid = \"theme-{i}\"\nlabel = {}\ndescription = \"x\"\n",
            toml_string(label.as_str().unwrap())
        ));
    }
    Schema::parse(&text, Path::new("test.toml")).unwrap()
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

#[test]
fn issue_13_zero_shot_theme_scores_equal_the_transformers_pipeline_within_1e_5() {
    let cases: Vec<Value> = read_jsonl("zero_shot.jsonl")
        .into_iter()
        // A schema has two themes or more; the pipeline's one-label case is left out.
        .filter(|c| {
            c["truncated"].as_bool() != Some(true)
                && c["candidate_labels"].as_array().unwrap().len() >= 2
        })
        .collect();
    for name in ARCHITECTURES {
        let model = Arc::new(nli(name, Engine::Auto));
        let mine: Vec<&Value> = cases.iter().filter(|c| c["model"] == *name).collect();
        assert!(mine.len() >= 8, "{name}: {} pipeline cases", mine.len());
        assert!(mine.iter().any(|c| c["multi_label"] == true));
        assert!(mine.iter().any(|c| c["multi_label"] == false));
        for case in mine {
            let schema = schema_for(case);
            let head = NliTheme::new(model.clone(), &schema).unwrap();
            let scores = head
                .scores(&[case["sequence"].as_str().unwrap()])
                .unwrap()
                .remove(0);
            for (theme, score) in schema.themes.iter().zip(&scores) {
                let expected = case["scores"][theme.label.as_str()].as_f64().unwrap() as f32;
                assert!(
                    (score - expected).abs() <= 1e-5,
                    "{name} {} {}: {score} vs {expected}",
                    case["name"],
                    theme.label
                );
            }
        }
    }
}

#[test]
fn issue_13_classify_with_a_tiny_deberta_v3_folder_gives_the_pipelines_theme_scores() {
    let cases: Vec<Value> = read_jsonl("zero_shot.jsonl")
        .into_iter()
        .filter(|c| {
            c["model"] == "deberta-v3"
                && c["truncated"].as_bool() != Some(true)
                && c["multi_label"] == false
                && c["template"] == "This example is {}."
        })
        .collect();
    let case = &cases[0];
    let labels: Vec<&str> = case["candidate_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut schema = String::from("[[targets]]\nid = \"tax\"\ntext = \"a carbon tax\"\n");
    for (i, label) in labels.iter().enumerate() {
        schema.push_str(&format!(
            "[[themes]]\nid = \"theme-{i}\"\nlabel = {}\ndescription = \"x\"\n",
            toml_string(label)
        ));
    }
    let schema_path = dir.path().join("schema.toml");
    std::fs::write(&schema_path, schema).unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n",
            serde_json::json!({"id": "p", "text": case["sequence"]})
        ),
    )
    .unwrap();
    let output = stancer()
        .arg("classify")
        .arg(&input)
        .arg("--model")
        .arg(model_folder("deberta-v3"))
        .arg("--schema")
        .arg(&schema_path)
        .arg("--format")
        .arg("jsonl")
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (i, label) in labels.iter().enumerate() {
        let got = record["theme"]["scores"][format!("theme-{i}")]
            .as_f64()
            .unwrap();
        let expected = case["scores"][*label].as_f64().unwrap();
        // Records round scores to 4 decimals.
        assert!(
            (got - expected).abs() <= 0.5e-4 + 1e-6,
            "{label}: {got} vs {expected}"
        );
    }
    let stance = &record["stance"]["tax"];
    let sum: f64 = ["favor", "against", "none"]
        .iter()
        .map(|s| stance["scores"][s].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-3, "{stance}");
}

#[test]
fn issue_13_bad_hub_folders_and_templates_get_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| -> PathBuf {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for file in ["tokenizer.json", "model.safetensors"] {
            std::fs::copy(model_folder("deberta-v3").join(file), folder.join(file)).unwrap();
        }
        let mut config: serde_json::Map<String, Value> = serde_json::from_str(
            &std::fs::read_to_string(model_folder("deberta-v3").join("config.json")).unwrap(),
        )
        .unwrap();
        edit(&mut config);
        std::fs::write(
            folder.join("config.json"),
            serde_json::to_string(&config).unwrap(),
        )
        .unwrap();
        folder
    };
    let unsupported = copy("gpt2", &|c| {
        c.insert("model_type".into(), "gpt2".into());
    });
    let no_labels = copy("no-labels", &|c| {
        c.remove("id2label");
        c.remove("label2id");
    });
    let schema = dir.path().join("bad.toml");
    std::fs::write(
        &schema,
        "[nli]\ntheme_template = \"This example is about\"\n[[themes]]\nid = \"a\"\ndescription = \"x\"\n[[themes]]\nid = \"b\"\ndescription = \"y\"\n",
    )
    .unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "A paragraph about taxes and trade.\n").unwrap();
    for (model, schema, needle) in [
        (&unsupported, None, "model type 'gpt2' is not supported"),
        (&no_labels, None, "no id2label"),
        (
            &model_folder("deberta-v3"),
            Some(&schema),
            "must hold `{}` exactly once",
        ),
    ] {
        let mut command = stancer();
        command
            .arg("classify")
            .arg(&input)
            .arg("--model")
            .arg(model);
        if let Some(schema) = schema {
            command.arg("--schema").arg(schema);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// A hub layout, as `huggingface-cli download` leaves it, holding the tiny DeBERTa-v3 NLI model
/// under `repo` at `revision`; returns the HF_HOME folder.
fn fake_hub(root: &Path, repo: &str, revision: &str) -> PathBuf {
    let snapshot = root
        .join("hf/hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(revision);
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_folder("deberta-v3").join(file), snapshot.join(file)).unwrap();
    }
    root.join("hf")
}

fn hub_manifest(root: &Path, architecture: &str, sha256: &[(&str, String)]) -> PathBuf {
    let mut text = format!(
        "name = \"tiny-nli\"\narchitecture = \"{architecture}\"\ntask = \"nli\"\npooling = \"cls\"\n\
         normalize = false\nmax_tokens = 64\n[source.hub]\nrepo = \"test-org/tiny-nli\"\n\
         revision = \"0123456789abcdef0123456789abcdef01234567\"\n"
    );
    for (name, sum) in sha256 {
        text.push_str(&format!(
            "[[files]]\nname = \"{name}\"\nsha256 = \"{sum}\"\n"
        ));
    }
    let path = root.join("tiny-nli.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn offline(command: &mut assert_cmd::Command, root: &Path) {
    command
        .env("STANCER_HOME", root.join("home"))
        .env("HF_HOME", root.join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .env("STANCER_PYTHON", "/nonexistent/python");
}

/// Point 5: a manifest may say "unknown" for a file's sha256 (pinned hub revision only). The
/// first fetch records the checksum in the cache and says so on stderr; every later load checks
/// the file against the record, so a changed file is refused with one line.
#[test]
fn issue_13_unknown_sha256_is_recorded_on_first_fetch_and_verified_on_every_later_load() {
    let dir = tempfile::tempdir().unwrap();
    fake_hub(
        dir.path(),
        "test-org/tiny-nli",
        "0123456789abcdef0123456789abcdef01234567",
    );
    let weights = stancer::encode::model::fetch::sha256_file(
        &model_folder("deberta-v3").join("model.safetensors"),
    )
    .unwrap();
    let manifest = hub_manifest(
        dir.path(),
        "deberta-v2",
        &[
            ("config.json", "unknown".into()),
            ("tokenizer.json", "unknown".into()),
            ("model.safetensors", weights),
        ],
    );
    let mut fetch = stancer();
    fetch.args(["models", "fetch"]).arg(&manifest);
    offline(&mut fetch, dir.path());
    let output = fetch.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("has no sha256 in its manifest").count(),
        2,
        "{stderr}"
    );
    let cache = dir.path().join("home/models/tiny-nli");
    let record = std::fs::read_to_string(cache.join("recorded-sha256.txt")).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        let sum =
            stancer::encode::model::fetch::sha256_file(&model_folder("deberta-v3").join(file))
                .unwrap();
        assert!(record.contains(&format!("{sum}  {file}\n")), "{record}");
    }
    assert!(
        !record.contains("model.safetensors"),
        "a pinned file is not recorded"
    );

    // A later load verifies silently and labels with the NLI pipeline.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "The government should tax carbon emissions.\n").unwrap();
    let classify = |dir: &Path| {
        let mut command = stancer();
        command
            .arg("classify")
            .arg(&input)
            .arg("--model")
            .arg(&manifest)
            .args(["--format", "jsonl", "--target", "a carbon tax"]);
        offline(&mut command, dir);
        command.output().unwrap()
    };
    let output = classify(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("recorded"), "{stderr}");
    let record_json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        record_json["stance"]["a carbon tax"]["label"].is_string(),
        "{record_json}"
    );

    // A changed byte in a recorded file is refused, naming the record.
    let tokenizer = cache.join("tokenizer.json");
    let mut bytes = std::fs::read(&tokenizer).unwrap();
    bytes.push(b' ');
    std::fs::write(&tokenizer, bytes).unwrap();
    let output = classify(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("recorded by the first fetch"), "{stderr}");
    // `models fetch` replaces it from the hub, verified against the record.
    let output = fetch.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(classify(dir.path()).status.success());
}

/// A manifest whose architecture or task is not what the fetched config.json says is refused
/// before the model runs; an "unknown" sha256 needs a pinned revision and no PyPI source.
#[test]
fn issue_13_a_manifest_that_misnames_its_model_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    fake_hub(
        dir.path(),
        "test-org/tiny-nli",
        "0123456789abcdef0123456789abcdef01234567",
    );
    let unknown = |name: &'static str| (name, "unknown".to_string());
    let all_unknown = [
        unknown("config.json"),
        unknown("tokenizer.json"),
        unknown("model.safetensors"),
    ];
    let manifest = hub_manifest(dir.path(), "bert", &all_unknown);
    let mut command = stancer();
    command.args(["classify", "-", "--model"]).arg(&manifest);
    offline(&mut command, dir.path());
    let output = command.write_stdin("A paragraph.\n").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr
            .trim()
            .lines()
            .last()
            .map(|l| l.contains("model_type 'deberta-v2'")),
        Some(true),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("0123456789abcdef0123456789abcdef01234567", "main");
    std::fs::write(&manifest, text).unwrap();
    let mut command = stancer();
    command.args(["models", "fetch"]).arg(&manifest);
    offline(&mut command, dir.path());
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("must pin the hub revision"), "{stderr}");
}

/// Point 6: `eval --compare` runs an NLI model beside a sentence encoder, each configuration
/// with its own stance model, and each configuration's scores are those it gets alone.
#[test]
fn issue_13_eval_compare_runs_an_nli_model_beside_an_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let gold =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/fixtures/china-mediation-diplomacy.jsonl");
    let encoder = dir.path().join("encoder.toml");
    std::fs::write(
        &encoder,
        format!(
            "name = \"tiny encoder\"\nmodel = {}\nstance = \"prototype\"\n",
            toml_string(super::common::tiny())
        ),
    )
    .unwrap();
    let nli = dir.path().join("nli.toml");
    std::fs::write(
        &nli,
        format!(
            "name = \"tiny nli\"\nmodel = {}\n",
            toml_string(model_folder("deberta-v3").to_str().unwrap())
        ),
    )
    .unwrap();
    let json = dir.path().join("compare.json");
    let output = stancer()
        .arg("eval")
        .arg(&gold)
        .arg("--compare")
        .arg(&encoder)
        .arg(&nli)
        .arg("--json")
        .arg(&json)
        .args(["--quiet", "--resamples", "200"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let comparison: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let configurations = comparison["configurations"].as_array().unwrap();
    assert_eq!(configurations.len(), 2);
    assert!(
        configurations[0]["run"]["head"]
            .as_str()
            .unwrap()
            .contains("stance: zero-shot"),
        "{}",
        configurations[0]["run"]
    );
    assert!(
        configurations[1]["run"]["head"]
            .as_str()
            .unwrap()
            .contains("zero-shot stance (none below 0.5)"),
        "{}",
        configurations[1]["run"]
    );
    assert_eq!(comparison["pairs"].as_array().unwrap().len(), 1);
    assert!(comparison["pairs"][0]["stance"]["n"].as_u64().unwrap() > 0);

    let alone = dir.path().join("alone.json");
    let output = stancer()
        .arg("eval")
        .arg(&gold)
        .arg("--model")
        .arg(model_folder("deberta-v3"))
        .arg("--json")
        .arg(&alone)
        .args(["--quiet", "--resamples", "200"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let alone: Value = serde_json::from_str(&std::fs::read_to_string(&alone).unwrap()).unwrap();
    for task in ["theme", "stance"] {
        assert_eq!(
            configurations[1][task]["confusion"], alone[task]["confusion"],
            "{task}"
        );
    }
}

/// Point 6: `models list` says what each model can do and how it is verified.
#[test]
fn issue_13_models_list_says_what_each_model_can_do_and_how_it_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let output = stancer()
        .args(["models", "list"])
        .env("STANCER_HOME", dir.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&output.stdout);
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{list}"))
            .to_string()
    };
    assert!(row("minilm-l6").contains("embed"), "{list}");
    for name in [
        "nli-deberta-v3-xsmall",
        "mdeberta-v3-base-xnli",
        "deberta-v3-base-zeroshot-v2",
    ] {
        assert!(row(name).contains("NLI zero-shot"), "{list}");
    }
    assert!(row("minilm-l6-stance").contains("pair-classify"), "{list}");
    assert!(list.matches("verified: ").count() >= 6, "{list}");
    assert!(list.contains("tests/integration/hub.rs"), "{list}");
}

/// Point 1, "as sentence encoders where a sentence-transformers folder says so": each tiny
/// model's weights without its head, in a sentence-transformers folder (mean pooling, Normalize),
/// embed as transformers' base model does (`encoder.jsonl`), on every engine that runs the
/// architecture, and a text embedded in a batch equals it embedded alone.
#[test]
fn issue_13_every_architecture_embeds_as_a_sentence_encoder_like_transformers() {
    let references = read_jsonl("encoder.jsonl");
    let dir = tempfile::tempdir().unwrap();
    for (name, base_class) in [
        ("bert", "BertModel"),
        ("roberta", "RobertaModel"),
        ("xlm-roberta", "XLMRobertaModel"),
        ("deberta-v3", "DebertaV2Model"),
    ] {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(folder.join("1_Pooling")).unwrap();
        for file in ["tokenizer.json", "model.safetensors"] {
            std::fs::copy(model_folder(name).join(file), folder.join(file)).unwrap();
        }
        let mut config: serde_json::Map<String, Value> = serde_json::from_str(
            &std::fs::read_to_string(model_folder(name).join("config.json")).unwrap(),
        )
        .unwrap();
        config.remove("id2label");
        config.remove("label2id");
        config.insert("architectures".into(), serde_json::json!([base_class]));
        std::fs::write(
            folder.join("config.json"),
            Value::Object(config).to_string(),
        )
        .unwrap();
        std::fs::write(
            folder.join("modules.json"),
            r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::write(
            folder.join("1_Pooling/config.json"),
            r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true}"#,
        )
        .unwrap();
        let resolved = ModelSpec::parse(Some(folder.to_str().unwrap()))
            .unwrap()
            .resolve(&mut |_| {})
            .unwrap();
        let cases: Vec<&Value> = references.iter().filter(|r| r["model"] == name).collect();
        assert!(cases.len() >= 20, "{name}: {} texts", cases.len());
        let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
        for engine in engines(name) {
            let embedder = stancer::encode::embed::Embedder::load_engine(
                &resolved,
                &Device::Cpu,
                DType::F32,
                engine,
            )
            .unwrap();
            assert!(embedder.gives_vectors(), "{name}");
            let batched = embedder.embed_passages(&texts).unwrap();
            let mut worst = 0.0f32;
            for (case, embedding) in cases.iter().zip(&batched) {
                let tokenized = embedder
                    .tokenize(&[case["text"].as_str().unwrap()])
                    .unwrap();
                assert_eq!(
                    tokenized[0].windows[0],
                    ids(&case["ids"]),
                    "{name} {}",
                    case["name"]
                );
                worst = worst.max(max_abs_difference(
                    &embedding.vector,
                    &floats(&case["embedding"]),
                ));
                let alone = embedder
                    .embed_passages(&[case["text"].as_str().unwrap()])
                    .unwrap();
                let difference = max_abs_difference(&alone[0].vector, &embedding.vector);
                let bar = if engine == Engine::Packed { 0.0 } else { 1e-6 };
                assert!(
                    difference <= bar,
                    "{name} {engine:?} {}: batched vs alone {difference}",
                    case["name"]
                );
            }
            eprintln!("{name} {engine:?}: worst |vector - transformers| {worst:.1e}");
            assert!(worst <= 1e-5, "{name} {engine:?}: {worst}");
        }
    }
}
