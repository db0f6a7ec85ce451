//! Issue 15, part 1: `--shard K/N` and `--resume`, and what happens when a run is killed or the
//! disk fills up.

use std::path::Path;
use std::process::Stdio;

use super::common::{stancer, tiny};

fn rows(path: &Path, n: usize) {
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"id": format!("r{i}"), "text": format!("Paragraph {i}: China and Russia trade energy while the war in Ukraine goes on, and Europe watches closely.")})
            )
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Every run here classifies the same inputs with the prototype stance head.
fn arguments(model: &str) -> [&str; 9] {
    [
        "classify",
        "rows.jsonl",
        "doc-a.txt",
        "doc-b.md",
        "--stance",
        "prototype",
        "--quiet",
        "--model",
        model,
    ]
}

fn classify(dir: &Path, model: &str, extra: &[&str]) -> std::process::Output {
    stancer()
        .current_dir(dir)
        .args(arguments(model))
        .args(extra)
        .output()
        .unwrap()
}

fn documents(dir: &Path) {
    std::fs::write(
        dir.join("doc-a.txt"),
        "China offered to mediate.\n\nRussia declined the offer, citing its own plan.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("doc-b.md"),
        "# Notes\n\nEurope doubts that the partnership will last.\n",
    )
    .unwrap();
}

/// N = 3 shards together give every record of one unsharded run exactly once, and a text
/// document goes to one shard whole.
#[test]
fn issue_15_three_shards_together_equal_one_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    rows(&dir.path().join("rows.jsonl"), 300);
    documents(dir.path());
    let all = classify(dir.path(), tiny(), &["-o", "all.jsonl"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let mut union = Vec::new();
    for k in 0..3 {
        let out = format!("shard-{k}.jsonl");
        let spec = format!("{k}/3");
        let run = classify(dir.path(), tiny(), &["--shard", &spec, "-o", &out]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join(&out)).unwrap();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        assert!(
            !lines.is_empty() && lines.len() < 300,
            "shard {k}: {} records",
            lines.len()
        );
        // A document's paragraphs stay together.
        for doc in ["doc-a.txt", "doc-b.md"] {
            let here = lines
                .iter()
                .filter(|l| l.contains(&format!("\"doc\":\"{doc}\"")))
                .count();
            assert!(
                here == 0 || here == if doc == "doc-a.txt" { 2 } else { 1 },
                "{doc} split"
            );
        }
        union.extend(lines);
    }
    let mut expected: Vec<String> = std::fs::read_to_string(dir.path().join("all.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(expected.len(), 303);
    union.sort();
    expected.sort();
    assert_eq!(union, expected);
}

/// Malformed shard specs, and --resume where it cannot apply, are one clear error and exit 2.
#[test]
fn issue_15_malformed_shards_and_unresumable_runs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    rows(&dir.path().join("rows.jsonl"), 3);
    documents(dir.path());
    for spec in ["3/2", "0/0", "1", "a/b", "-1/2"] {
        let flag = format!("--shard={spec}");
        let run = classify(dir.path(), tiny(), &[&flag, "-o", "x.jsonl"]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{spec}: {stderr}");
        assert!(
            stderr
                .lines()
                .next()
                .unwrap()
                .contains("is not a shard: write K/N with 0 <= K < N"),
            "{stderr}"
        );
        assert!(!dir.path().join("x.jsonl").exists());
    }
    // A model that cannot load leaves no partial output behind.
    let broken = dir.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(broken.join(file), "{").unwrap();
    }
    let run = classify(dir.path(), broken.to_str().unwrap(), &["-o", "y.jsonl"]);
    assert_eq!(
        run.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!dir.path().join("y.jsonl.partial").exists());
    assert!(!dir.path().join("y.jsonl").exists());
    let run = classify(
        dir.path(),
        tiny(),
        &["--resume", "--format", "table", "-o", "x.txt"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // A partial output continues only the command that made it.
    let dir2 = tempfile::tempdir().unwrap();
    rows(&dir2.path().join("rows.jsonl"), 20);
    documents(dir2.path());
    let full = classify(dir2.path(), tiny(), &["-o", "out.jsonl"]);
    assert!(full.status.success());
    std::fs::write(dir2.path().join("out.jsonl.partial"), "").unwrap();
    std::fs::write(
        dir2.path().join("out.jsonl.partial.json"),
        r#"{"command": "another command", "bytes": 0, "records": 0}"#,
    )
    .unwrap();
    let run = classify(dir2.path(), tiny(), &["--resume", "-o", "out.jsonl"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("was started by a different command"),
        "{stderr}"
    );
}

/// A disk that fills up mid-run: one line, exit 2, the finished records kept in the partial, no
/// FILE; once there is room again, --resume finishes it byte-identical to an uninterrupted run.
#[test]
fn issue_15_a_full_disk_loses_nothing_and_resume_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    rows(&dir.path().join("rows.jsonl"), 1500);
    documents(dir.path());
    let full = classify(dir.path(), tiny(), &["-o", "expected.jsonl"]);
    assert!(full.status.success());
    let size = std::fs::metadata(dir.path().join("expected.jsonl"))
        .unwrap()
        .len();
    let failing = stancer()
        .current_dir(dir.path())
        .env("STANCER_TEST_FULL_AFTER", (size / 2).to_string())
        .args(arguments(tiny()))
        .args(["-o", "out.jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert_eq!(failing.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("out.jsonl.partial") && stderr.contains("No space left"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.jsonl").exists());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out.jsonl.partial.json")).unwrap(),
    )
    .unwrap();
    assert!(state["records"].as_u64().unwrap() >= 512, "{state}");
    let resumed = classify(dir.path(), tiny(), &["--resume", "-o", "out.jsonl"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("out.jsonl")).unwrap(),
        std::fs::read(dir.path().join("expected.jsonl")).unwrap()
    );
    assert!(!dir.path().join("out.jsonl.partial").exists());
    assert!(!dir.path().join("out.jsonl.partial.json").exists());
}

/// kill -9 twice in the middle of a sharded run, --resume each time: the file ends byte-identical
/// to an uninterrupted run of the same shard (the real model, so the run is slow enough to kill).
#[test]
fn real_model_issue_15_a_run_killed_twice_and_resumed_ends_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    rows(&dir.path().join("rows.jsonl"), 9000);
    documents(dir.path());
    let args = ["--shard", "1/2", "--format", "csv"];
    let full = classify(
        dir.path(),
        "minilm-l6",
        &[&args[..], &["-o", "expected.csv"]].concat(),
    );
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let state_path = dir.path().join("out.csv.partial.json");
    let records = || -> u64 {
        std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["records"].as_u64())
            .unwrap_or(0)
    };
    let mut kills = 0;
    for (attempt, after) in [(0, 512u64), (1, 2048)] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("stancer"))
            .current_dir(dir.path())
            .args(arguments("minilm-l6"))
            .args(args)
            .args(["-o", "out.csv", "--resume"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if records() >= after {
                // SAFETY: a plain kill(2) of our own child process.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                child.wait().unwrap();
                kills += 1;
                break;
            }
            assert!(
                started.elapsed().as_secs() < 300,
                "attempt {attempt} never reached {after}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A torn record after the last checkpoint, as a kill mid-write leaves.
        let partial = dir.path().join("out.csv.partial");
        if partial.exists() {
            let mut text = std::fs::read(&partial).unwrap();
            text.extend_from_slice(b"\"torn,half a reco");
            std::fs::write(&partial, text).unwrap();
        }
    }
    assert_eq!(kills, 2, "the run finished before it could be killed twice");
    let last = classify(
        dir.path(),
        "minilm-l6",
        &[&args[..], &["-o", "out.csv", "--resume"]].concat(),
    );
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("out.csv")).unwrap(),
        std::fs::read(dir.path().join("expected.csv")).unwrap()
    );
}
