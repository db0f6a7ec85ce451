//! `stancer bench` (issue 7): the numbers it reports, and its refusals.

use std::path::Path;

use crate::common::{stancer, tiny_model_folder};

fn bench_json(args: &[&str], dir: &Path) -> serde_json::Value {
    let json = dir.join("bench.json");
    let output = stancer()
        .args(["bench", "--quiet", "--passes", "2", "--threads", "1"])
        .args(["--model", tiny_model_folder().to_str().unwrap()])
        .args(["--json", json.to_str().unwrap()])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("paragraphs/s"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn bench_on_the_builtin_corpus_reports_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_json(&[], dir.path());
    assert_eq!(report["paragraphs"], 300);
    assert_eq!(report["threads"], 1);
    assert_eq!(report["passes"].as_array().unwrap().len(), 2);
    assert!(report["device"].as_str().unwrap().contains("packed"));
    // The packed encoder computes no padding.
    assert_eq!(report["padding_ratio"], 0.0);
    for key in [
        "paragraphs_per_second",
        "tokens_per_second",
        "batch_p50_ms",
        "batch_p95_ms",
        "load_seconds",
    ] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert!(report["real_tokens"].as_u64().unwrap() > 300);
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 1.0);
}

#[test]
fn bench_on_inputs_with_the_candle_engine_counts_padding() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"peace\"}\n{\"text\": \"the war in ukraine is not over and china will broker peace\"}\n",
    )
    .unwrap();
    let report = bench_json(&[input.to_str().unwrap(), "--engine", "candle"], dir.path());
    assert_eq!(report["paragraphs"], 2);
    assert!(!report["device"].as_str().unwrap().contains("packed"));
    assert!(report["padding_ratio"].as_f64().unwrap() > 0.1);
}

#[test]
fn bench_classify_times_the_whole_classify_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.txt");
    std::fs::write(
        &input,
        "China will broker peace.\n\nThe war goes on.\n\nRussia is strong.\n",
    )
    .unwrap();
    let report = bench_json(&[input.to_str().unwrap(), "--classify"], dir.path());
    assert_eq!(report["paragraphs"], 3);
    assert!(report["paragraphs_per_second"].as_f64().unwrap() > 0.0);
}
