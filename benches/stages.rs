//! Criterion benches of the pipeline's stages on the CPU: paragraph splitting, tokenization,
//! batch planning, and the encoder forward on the tiny random model and, when it is already in
//! the cache, on the real default model (all-MiniLM-L6-v2).
//!
//!     cargo bench --bench stages
//!     cargo bench --bench stages -- cpu_encoder_minilm   # one group
//!
//! Nothing here fetches: without a cached model its rows are skipped with a message. Names
//! start with the device (`cpu_`), as candle's benches do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stancer::encode::embed::Embedder;
use stancer::encode::model::fetch::{self, ModelSpec, ResolvedModel};
use stancer::encode::model::{Engine, Manifest, Matmul};

const CORPUS: &str = include_str!("corpus.jsonl");

fn corpus() -> Vec<String> {
    let source = stancer::text::input::Source::File(PathBuf::from("benches/corpus.jsonl"));
    stancer::text::input::jsonl_paragraphs(&source, CORPUS)
        .expect("the bench corpus parses")
        .into_iter()
        .map(|p| p.text)
        .collect()
}

fn fixture_documents() -> Vec<(String, String)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/fixtures");
    let mut documents: Vec<(String, String)> = std::fs::read_dir(&folder)
        .expect("eval/fixtures exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("fixture text"))
        })
        .collect();
    documents.sort();
    documents
}

fn tiny_model() -> ResolvedModel {
    let folder = std::env::temp_dir().join(format!("stancer-bench-tiny-{}", std::process::id()));
    stancer::testkit::write_tiny_bert(&folder, 7).expect("write the tiny model");
    ModelSpec::parse(Some(folder.to_str().unwrap()))
        .and_then(|spec| spec.resolve(&mut |_| {}))
        .expect("resolve the tiny model")
}

/// The default model if every file is already cached; never fetches.
fn cached_real_model() -> Option<ResolvedModel> {
    let manifest = Manifest::builtin_named("minilm-l6")?;
    if !fetch::is_cached(&manifest) {
        eprintln!(
            "skipping cpu_*_minilm benches: minilm-l6 is not in {} (run `stancer models fetch minilm-l6`)",
            fetch::cache_folder(&manifest).display()
        );
        return None;
    }
    ModelSpec::Manifest(Box::new(manifest))
        .resolve(&mut |_| {})
        .map_err(|e| eprintln!("skipping cpu_*_minilm benches: {e}"))
        .ok()
}

fn load(model: &ResolvedModel, engine: Engine) -> Embedder {
    Embedder::load_engine(model, &Device::Cpu, DType::F32, engine).expect("load the model")
}

fn split(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_split");
    for (name, text) in fixture_documents() {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(&name), &text, |b, text| {
            b.iter(|| stancer::text::document::split(text))
        });
    }
    group.finish();
}

fn tokenize(c: &mut Criterion) {
    let texts = corpus();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("cpu_tokenize");
    group.throughput(Throughput::Elements(texts.len() as u64));
    let tiny = load(&tiny_model(), Engine::Auto);
    group.bench_function("tiny_corpus", |b| b.iter(|| tiny.tokenize(&texts).unwrap()));
    if let Some(real) = cached_real_model() {
        let real = load(&real, Engine::Auto);
        group.bench_function("minilm_corpus", |b| {
            b.iter(|| real.tokenize(&texts).unwrap())
        });
    }
    group.finish();
}

fn plan(c: &mut Criterion) {
    // Lengths with the corpus's spread, repeated to a realistic large input.
    let mut lengths = Vec::with_capacity(100_000);
    let mut state = 7u64;
    while lengths.len() < 100_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        lengths.push(5 + (state >> 33) as usize % 300);
    }
    let mut group = c.benchmark_group("cpu_batch_plan");
    for rows in [1_000usize, 100_000] {
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, &rows| {
            b.iter(|| stancer::encode::batch::plan(&lengths[..rows], 4096, 128))
        });
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let texts = corpus();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();

    let tiny = tiny_model();
    let mut group = c.benchmark_group("cpu_encoder_tiny");
    group.sample_size(10);
    group.throughput(Throughput::Elements(texts.len() as u64));
    for (name, engine) in [("packed", Engine::Packed), ("candle", Engine::Candle)] {
        let embedder = load(&tiny, engine);
        group.bench_function(name, |b| {
            b.iter(|| embedder.embed_passages(&texts).unwrap())
        });
    }
    group.finish();

    let Some(real) = cached_real_model() else {
        return;
    };
    let mut group = c.benchmark_group("cpu_encoder_minilm");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    // One batch of 32 short paragraphs and one of 8 long ones, as the planner would make them.
    let mut by_length = texts.clone();
    by_length.sort_by_key(|t| t.len());
    let short: Vec<&str> = by_length[..32].to_vec();
    let long: Vec<&str> = by_length[by_length.len() - 8..].to_vec();
    for (name, engine, matmul) in [
        ("packed", Engine::Packed, Matmul::F32),
        ("packed_bf16", Engine::Packed, Matmul::Bf16),
        ("packed_int8", Engine::Packed, Matmul::Int8),
        ("candle", Engine::Candle, Matmul::F32),
    ] {
        let variant = ResolvedModel {
            matmul,
            ..real.clone()
        };
        let embedder = load(&variant, engine);
        for (size, batch) in [("32_short", &short), ("8_long", &long)] {
            let tokens: usize = embedder
                .tokenize(batch)
                .unwrap()
                .iter()
                .flat_map(|t| t.windows.iter().map(Vec::len))
                .sum();
            group.throughput(Throughput::Elements(tokens as u64));
            group.bench_function(format!("{name}_{size}"), |b| {
                b.iter(|| embedder.embed_passages(batch).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, split, tokenize, plan, encoder);
criterion_main!(benches);
