//! `stancer classify`: paragraphs, output formats, schemas and bad input.

use std::path::Path;

use crate::common::{stancer, tiny};

fn classify(args: &[&str]) -> std::process::Output {
    stancer()
        .arg("classify")
        .args(args)
        .args(["--model", tiny(), "--quiet"])
        .output()
        .unwrap()
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let mut texts: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/fixtures"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
    texts.sort();
    texts
}

#[test]
fn fixture_documents_split_into_their_gold_paragraphs() {
    let documents = fixtures();
    assert!(documents.len() >= 3);
    for document in documents {
        let text = std::fs::read_to_string(&document).unwrap();
        let paragraphs = stancer::text::input::document_paragraphs("doc", &text);
        let gold = std::fs::read_to_string(document.with_extension("jsonl")).unwrap();
        let gold: Vec<String> = gold
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let split: Vec<&str> = paragraphs.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(split, gold, "{}", document.display());
        for p in &paragraphs {
            assert_eq!(&text[p.start..p.end], p.text, "byte range of {}", p.id);
        }
    }
}

#[test]
fn jsonl_records_have_the_contract_fields_and_are_repeatable() {
    let reference = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("000_434d"))
        .unwrap();
    let reference = reference.to_str().unwrap();
    let first = classify(&[
        reference,
        "--format",
        "jsonl",
        "--target",
        "Europe should engage China",
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = classify(&[
        reference,
        "--format",
        "jsonl",
        "--target",
        "Europe should engage China",
    ]);
    assert_eq!(first.stdout, second.stdout, "output differs between runs");

    let stdout = String::from_utf8(first.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 25);
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "doc",
            "paragraph",
            "id",
            "section",
            "start",
            "end",
            "text",
            "theme",
            "stance",
            "tokens",
            "windows"
        ]
    );
    let schema = stancer::label::schema::Schema::default_schema();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["paragraph"], i + 1);
        let scores = row["theme"]["scores"].as_object().unwrap();
        assert_eq!(
            scores.keys().cloned().collect::<Vec<_>>(),
            schema.theme_ids()
        );
        let sum: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3, "theme scores sum to {sum}");
        assert!(scores.contains_key(row["theme"]["label"].as_str().unwrap()));
        let stance = row["stance"].as_object().unwrap();
        assert_eq!(
            stance.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "china-peace-broker",
                "alignment-durable",
                "Europe should engage China"
            ]
        );
        for decision in stance.values() {
            assert!(["favor", "against", "none"].contains(&decision["label"].as_str().unwrap()));
            let s = decision["scores"].as_object().unwrap();
            assert_eq!(
                s.keys().map(String::as_str).collect::<Vec<_>>(),
                ["favor", "against", "none"]
            );
        }
    }
    assert_eq!(rows[7]["section"], "Different from the Rest");
    assert_eq!(rows[24]["section"], "Lucjan Kubica");
}

#[test]
fn jsonl_input_rows_keep_ids_and_their_own_targets() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a1\", \"text\": \"The war goes on.\\n\\nSecond part stays in the row.\", \"target\": \"peace\"}\n\n{\"id\": 7, \"text\": \"Short.\"}\n",
    )
    .unwrap();
    let out = classify(&[input.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "a JSON Lines row is never split");
    assert_eq!(rows[0]["id"], "a1");
    assert_eq!(rows[1]["id"], "7");
    assert!(rows[0]["stance"]["peace"]["label"].is_string());
    assert!(rows[1]["stance"].get("peace").is_none());
}

#[test]
fn csv_has_one_row_per_paragraph_and_quotes_fields() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.txt");
    std::fs::write(
        &input,
        "China, they say, will \"broker\" peace.\n\nThe war goes on.\n",
    )
    .unwrap();
    let out = classify(&[input.to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("doc,paragraph,id,section,start,end,tokens,windows,theme,theme_score,stance:china-peace-broker"));
    assert!(
        lines[1].ends_with("\"China, they say, will \"\"broker\"\" peace.\""),
        "{}",
        lines[1]
    );
}

#[test]
fn output_file_appears_complete() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.txt");
    std::fs::write(&input, "One paragraph here.\n\nAnother one there.\n").unwrap();
    let target = dir.path().join("out.jsonl");
    let out = classify(&[
        input.to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&target).unwrap().lines().count(), 2);
}

#[test]
fn folders_are_read_recursively_in_sorted_order_and_binary_files_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("b/inner")).unwrap();
    std::fs::write(dir.path().join("b/inner/z.md"), "# Heading\n\nIn z.\n").unwrap();
    std::fs::write(dir.path().join("a.txt"), "In a.\n").unwrap();
    std::fs::write(dir.path().join("b/c.txt"), "In c.\n").unwrap();
    std::fs::write(dir.path().join("b/ignored.pdf"), "not read").unwrap();
    std::fs::write(dir.path().join("b/blob.txt"), b"\x00\x01\x02binary").unwrap();
    let out = stancer()
        .args([
            "classify",
            dir.path().to_str().unwrap(),
            "--format",
            "jsonl",
            "--model",
            tiny(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("blob.txt looks like a binary file"),
        "{stderr}"
    );
    let texts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, ["In a.", "In c.", "In z."]);

    let strict = classify(&[dir.path().to_str().unwrap(), "--strict"]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(strict.stdout.is_empty());
}

#[test]
fn empty_input_is_not_an_error_but_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.txt");
    std::fs::write(&input, "").unwrap();
    let out = stancer()
        .args(["classify", input.to_str().unwrap(), "--model", tiny()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no paragraphs in"));
}

#[test]
fn bad_input_fails_with_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"ok line\nCaf\xe9\n").unwrap();
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(&rows, "{\"text\": \"fine\"}\n{\"id\": 2}\n").unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, "[[themes]]\nid = \"a\"\ndescription = \"A.\"\n\n[[themes]]\nid = \"b\"\ndescripton = \"typo\"\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["missing.txt"], "cannot read missing.txt"),
        (
            vec![latin1.to_str().unwrap()],
            "latin1.txt is not valid UTF-8 (first invalid byte at offset 11)",
        ),
        (
            vec![rows.to_str().unwrap()],
            "rows.jsonl:2: no \"text\" string field",
        ),
        (
            vec![
                latin1.to_str().unwrap(),
                "--schema",
                schema.to_str().unwrap(),
            ],
            "schema.toml:7: unknown field `descripton`",
        ),
    ];
    for (args, expected) in cases {
        let out = classify(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn real_model_readme_command_prints_a_table_for_the_reference_document() {
    let reference = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("000_434d"))
        .unwrap();
    let out = stancer()
        .args([
            "classify",
            reference.to_str().unwrap(),
            "--format",
            "table",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 26, "header and 25 paragraphs");
    assert!(lines[0].contains("theme") && lines[0].contains("china-peace-bro"));
    // The two author biographies are the reference document's clearest `other` paragraphs.
    assert!(lines[24].contains("other"), "{}", lines[24]);
    assert!(lines[25].contains("other"), "{}", lines[25]);
}

#[test]
fn a_wrong_model_is_an_error_even_for_empty_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.txt");
    std::fs::write(&input, "").unwrap();
    let out = stancer()
        .args([
            "classify",
            input.to_str().unwrap(),
            "--model",
            "/no/such/model",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/model"));
}
