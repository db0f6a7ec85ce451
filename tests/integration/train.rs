//! `stancer train` and trained heads: files, repeatability, encoder checks, and quality.

use std::path::Path;

use crate::common::{stancer, tiny};

/// Two themes and stances the tiny vocabulary can tell apart.
fn write_data(dir: &Path) -> String {
    let mut lines = String::new();
    for i in 0..20 {
        let (text, theme, stance) = if i % 2 == 0 {
            (
                "the war in ukraine is a threat",
                "war-and-security",
                "against",
            )
        } else {
            (
                "china will broker peace and power",
                "sino-russian-relations",
                "favor",
            )
        };
        lines.push_str(&format!(
            "{{\"id\": \"r{i}\", \"text\": \"{text} {i}\", \"theme\": \"{theme}\", \"stance\": {{\"china-peace-broker\": \"{stance}\"}}}}\n"
        ));
    }
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_string()
}

fn train(dir: &Path, data: &str, task: &str, out: &str) -> std::process::Output {
    stancer()
        .args([
            "train",
            data,
            "--task",
            task,
            "--out",
            out,
            "--model",
            tiny(),
        ])
        .env("STANCER_HOME", dir.join("home"))
        .output()
        .unwrap()
}

#[test]
fn train_writes_a_repeatable_head_with_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let first = dir.path().join("a");
    let second = dir.path().join("b");
    let out = train(dir.path(), &data, "theme", first.to_str().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 from the cache, 20 encoded"));
    let again = train(dir.path(), &data, "theme", second.to_str().unwrap());
    assert!(String::from_utf8_lossy(&again.stderr).contains("20 from the cache, 0 encoded"));
    assert_eq!(
        std::fs::read(first.join("head.safetensors")).unwrap(),
        std::fs::read(second.join("head.safetensors")).unwrap(),
        "same data and seed must give the same head"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("head.json")).unwrap()).unwrap();
    assert_eq!(manifest["task"], "theme");
    assert_eq!(
        manifest["labels"],
        serde_json::json!(["sino-russian-relations", "war-and-security"])
    );
    assert_eq!(manifest["training"]["rows"], 20);
    assert_eq!(manifest["training"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["encoder"]["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["validation"]["macro_f1"].is_number());
    // Issue 11: the score reported is the test part's, which chose nothing; the selection
    // part's (the best over the L2 grid) keeps its old field and is named as such.
    assert!(manifest["test"]["macro_f1"].is_number(), "{manifest}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("held-out test ("), "{stdout}");
    assert!(stdout.contains("selection ("), "{stdout}");

    // The head classifies through the same seam as the zero-shot one.
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, "the war in ukraine is a threat.\n").unwrap();
    let out = stancer()
        .args([
            "classify",
            doc.to_str().unwrap(),
            "--format",
            "jsonl",
            "--quiet",
            "--model",
            tiny(),
        ])
        .args(["--head", first.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels: Vec<&String> = row["theme"]["scores"].as_object().unwrap().keys().collect();
    assert_eq!(labels, ["sino-russian-relations", "war-and-security"]);
}

#[test]
fn a_head_refuses_another_encoder_and_names_the_one_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    let head = dir.path().join("head");
    assert!(train(dir.path(), &data, "stance", head.to_str().unwrap())
        .status
        .success());
    // Another encoder: the tiny model written with another seed.
    let other = dir.path().join("other-model");
    stancer::testkit::write_tiny_bert(&other, 99).unwrap();
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, "peace.\n").unwrap();
    let out = stancer()
        .args([
            "classify",
            doc.to_str().unwrap(),
            "--quiet",
            "--model",
            other.to_str().unwrap(),
        ])
        .args(["--head", head.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this head was trained on encoder"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("--model {}", tiny())), "{stderr}");
}

#[test]
fn cache_clear_empties_the_embedding_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path());
    assert!(train(
        dir.path(),
        &data,
        "theme",
        dir.path().join("h").to_str().unwrap()
    )
    .status
    .success());
    let home = dir.path().join("home");
    assert!(home.join("embeddings").read_dir().unwrap().count() > 0);
    let out = stancer()
        .args(["cache", "clear"])
        .env("STANCER_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!home.join("embeddings").exists());
}

/// Theme accuracy of heads cross-validated on the 83 fixture paragraphs (8 themes). Always
/// guessing the commonest theme scores 17/83 = 0.205; a guesser right with probability 0.205
/// reaches 0.35 (29 of 83) with probability below 1e-3 (binomial tail), so passing this bar
/// cannot happen by accident.
#[test]
fn real_model_trained_heads_beat_chance_on_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/fixtures");
    let mut gold: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    gold.sort();
    let json = dir.path().join("cv.json");
    let out = stancer()
        .arg("eval")
        .args(&gold)
        .args(["--cv", "5", "--quiet", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["theme"]["n"], 83);
    let accuracy = report["theme"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracy >= 0.35,
        "cross-validated theme accuracy {accuracy}"
    );
    // Stance: 166 (paragraph, target) rows, 122 of them `none`; a head that only says `none`
    // has macro-F1 0.28. The trained head must find favor and against.
    let stance = report["stance"]["macro_f1"].as_f64().unwrap();
    assert!(stance >= 0.33, "cross-validated stance macro-F1 {stance}");
}
