//! `stancer eval`: metrics JSON, the quality gate, comparisons and gold errors.

use std::path::Path;

use crate::common::{stancer, tiny};

fn write_gold(dir: &Path) -> String {
    let gold = dir.join("gold.jsonl");
    std::fs::write(
        &gold,
        concat!(
            "{\"id\": \"a\", \"text\": \"China will broker peace in Ukraine.\", \"theme\": \"war-and-security\", \"stance\": {\"china-peace-broker\": \"favor\"}}\n",
            "{\"id\": \"b\", \"text\": \"The alignment is not durable.\", \"theme\": \"sino-russian-relations\", \"theme_also\": [\"great-power-status\"], \"stance\": {\"alignment-durable\": \"against\"}}\n",
            "{\"id\": \"c\", \"text\": \"Jane Doe is a researcher.\", \"theme\": \"other\"}\n",
            "{\"id\": \"d\", \"text\": \"Atheism is the way.\", \"target\": \"Atheism\", \"stance\": \"favor\"}\n",
        ),
    )
    .unwrap();
    gold.to_str().unwrap().to_string()
}

#[test]
fn json_report_has_the_stable_keys_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let gold = write_gold(dir.path());
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let out = stancer()
        .args(["eval", &gold, "--model", tiny(), "--quiet"])
        .args([
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("macro-F1"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["n"], 4);
    for key in [
        "accuracy",
        "accuracy_also",
        "macro_f1",
        "macro_f1_ci",
        "labels",
        "confusion",
    ] {
        assert!(report["theme"].get(key).is_some(), "theme.{key}");
    }
    assert_eq!(report["theme"]["n"], 3);
    for key in ["macro_f1", "f_avg", "targets"] {
        assert!(report["stance"].get(key).is_some(), "stance.{key}");
    }
    assert_eq!(report["stance"]["n"], 3);
    let targets: Vec<&str> = report["stance"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["china-peace-broker", "alignment-durable", "Atheism"]
    );
    assert!(report["run"]["paragraphs_per_second"].as_f64().unwrap() > 0.0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));

    // Same seed, same intervals.
    let again = dir.path().join("again.json");
    stancer()
        .args([
            "eval",
            &gold,
            "--model",
            tiny(),
            "--quiet",
            "--json",
            again.to_str().unwrap(),
        ])
        .assert()
        .success();
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(
        report["theme"]["macro_f1_ci"],
        second["theme"]["macro_f1_ci"]
    );
}

#[test]
fn min_macro_f1_gate_exits_1_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let gold = write_gold(dir.path());
    let out = stancer()
        .args([
            "eval",
            &gold,
            "--model",
            tiny(),
            "--quiet",
            "--min-macro-f1",
            "1.01",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("below --min-macro-f1 1.01"));
    stancer()
        .args([
            "eval",
            &gold,
            "--model",
            tiny(),
            "--quiet",
            "--min-macro-f1",
            "0",
        ])
        .assert()
        .code(0);
}

#[test]
fn compare_tests_every_pair() {
    let dir = tempfile::tempdir().unwrap();
    let gold = write_gold(dir.path());
    // The same tiny model in f32 and bf16: two configurations on the same gold.
    std::fs::write(
        dir.path().join("a.toml"),
        format!("name = \"f32\"\nmodel = \"{}\"\n", tiny()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        format!(
            "name = \"bf16\"\nmodel = \"{}\"\ndtype = \"bf16\"\n",
            tiny()
        ),
    )
    .unwrap();
    let json = dir.path().join("cmp.json");
    let out = stancer()
        .args([
            "eval",
            &gold,
            "--quiet",
            "--json",
            json.to_str().unwrap(),
            "--compare",
        ])
        .arg(dir.path().join("a.toml"))
        .arg(dir.path().join("b.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(comparison["configurations"].as_array().unwrap().len(), 2);
    assert_eq!(comparison["pairs"][0]["a"], "f32");
    assert_eq!(comparison["pairs"][0]["b"], "bf16");
    assert!(comparison["pairs"][0]["theme"]["mcnemar"]["p_value"].is_number());
}

#[test]
fn unknown_theme_label_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let gold = dir.path().join("gold.jsonl");
    std::fs::write(
        &gold,
        "{\"text\": \"x\", \"theme\": \"other\"}\n{\"text\": \"y\", \"theme\": \"Sports\"}\n",
    )
    .unwrap();
    let out = stancer()
        .args(["eval", gold.to_str().unwrap(), "--model", tiny(), "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gold.jsonl:2: theme \"Sports\" is not in the schema"),
        "{stderr}"
    );
}
