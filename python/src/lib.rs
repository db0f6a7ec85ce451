//! The Python module `stancer._stancer`: a classifier built once (model, heads, schema and
//! targets loaded through `stancer::pipeline`, exactly as the command line loads them), whose
//! calls release the GIL while the model runs. Records are the command line's JSON Lines, byte
//! for byte; the Python wrapper (`stancer/__init__.py`) turns them into dicts.

use std::path::PathBuf;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use stancer::encode::embed::Embedder;
use stancer::label::head::Heads;
use stancer::label::records::{Format, RecordWriter};
use stancer::label::schema::Schema;
use stancer::pipeline::{ModelSettings, StanceSettings, ThemeHead};
use stancer::text::input::{self, Source};

/// The error's whole chain on one line, as the command line prints it.
fn message(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Bad input and usage errors are ValueError; everything else RuntimeError.
fn to_python(error: anyhow::Error) -> PyErr {
    let usage = error.chain().any(|cause| {
        cause.downcast_ref::<stancer::Error>().is_some_and(|e| {
            !matches!(
                e,
                stancer::Error::Encoder { .. } | stancer::Error::Write { .. }
            )
        })
    });
    if usage {
        PyValueError::new_err(message(&error))
    } else {
        PyRuntimeError::new_err(message(&error))
    }
}

#[pyclass(frozen)]
struct Classifier {
    embedder: Embedder,
    heads: Heads,
    schema: Schema,
    targets: Vec<String>,
    model: String,
}

fn parse_theme_head(name: Option<&str>) -> PyResult<Option<ThemeHead>> {
    match name {
        None => Ok(None),
        Some("prototype") => Ok(Some(ThemeHead::Prototype)),
        Some("entailment") => Ok(Some(ThemeHead::Entailment)),
        Some("nli") => Ok(Some(ThemeHead::Nli)),
        Some(other) => Err(PyValueError::new_err(format!(
            "theme_head '{other}' is not one of prototype, entailment, nli"
        ))),
    }
}

#[pymethods]
impl Classifier {
    /// Loads the model (fetching it into the cache if needed), the heads and the schema once.
    /// `model`, `heads`, `stance`, `theme_head` and `device` mean what `--model`, `--head`,
    /// `--stance`, `--theme-head` and `--device` mean on the command line.
    #[new]
    #[pyo3(signature = (model=None, schema=None, heads=None, targets=None, stance=None, theme_head=None, device="auto", quiet=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        schema: Option<PathBuf>,
        heads: Option<Vec<PathBuf>>,
        targets: Option<Vec<String>>,
        stance: Option<String>,
        theme_head: Option<&str>,
        device: &str,
        quiet: bool,
    ) -> PyResult<Self> {
        let device = device
            .parse()
            .map_err(|e: String| PyValueError::new_err(e))?;
        let settings = ModelSettings {
            model,
            device,
            ..ModelSettings::default()
        };
        let stance = StanceSettings {
            stance,
            theme_head: parse_theme_head(theme_head)?,
        };
        let heads = heads.unwrap_or_default();
        let targets = targets.unwrap_or_default();
        py.detach(move || -> anyhow::Result<Self> {
            let mut notice = |line: &str| {
                if !quiet {
                    eprintln!("stancer: {line}");
                }
            };
            let schema = match &schema {
                Some(path) => Schema::from_file(path)?,
                None => Schema::default_schema(),
            };
            let (embedder, resolved) = stancer::pipeline::load_embedder(&settings, &mut notice)?;
            let loaded = stancer::pipeline::load_heads(
                &embedder,
                &resolved,
                &schema,
                &heads,
                &stance,
                &settings,
                &mut notice,
            )?;
            Ok(Self {
                embedder,
                heads: loaded,
                schema,
                targets,
                model: resolved.name,
            })
        })
        .map_err(to_python)
    }

    /// The model's name.
    #[getter]
    fn model(&self) -> &str {
        &self.model
    }

    /// One JSON Lines record per row of `rows` (a JSON Lines text of {"id", "text", "target"?}
    /// rows, read as the command line reads a .jsonl file named `doc`), with `targets` scored
    /// besides the classifier's own.
    #[pyo3(signature = (rows, doc, targets=None))]
    fn classify_jsonl(
        &self,
        py: Python<'_>,
        rows: String,
        doc: String,
        targets: Option<Vec<String>>,
    ) -> PyResult<String> {
        py.detach(move || -> anyhow::Result<String> {
            let source = Source::File(PathBuf::from(&doc));
            let paragraphs = input::jsonl_paragraphs(&source, &rows)?;
            // Classifier::new drops a target named twice.
            let mut all = self.targets.clone();
            all.extend(targets.unwrap_or_default());
            let mut classifier = stancer::label::classify::Classifier::new(
                &self.embedder,
                &self.heads,
                &self.schema,
                &all,
            )?;
            let mut writer = RecordWriter::new(Format::Jsonl, classifier.target_ids());
            let mut out = Vec::new();
            for chunk in paragraphs.chunks(512) {
                let classified = classifier.classify(chunk)?;
                for (paragraph, result) in chunk.iter().zip(&classified) {
                    writer.write(&mut out, paragraph, result)?;
                }
            }
            Ok(String::from_utf8(out)?)
        })
        .map_err(to_python)
    }

    /// The passage vectors of `texts`, row-major little-endian f32 bytes, and their dimension.
    fn embed_bytes(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<(Vec<u8>, usize)> {
        py.detach(move || -> anyhow::Result<(Vec<u8>, usize)> {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let embeddings = self.embedder.embed_passages(&refs)?;
            let dimension = self.embedder.dimension();
            let mut bytes = Vec::with_capacity(embeddings.len() * dimension * 4);
            for embedding in &embeddings {
                for value in &embedding.vector {
                    bytes.extend_from_slice(&value.to_le_bytes());
                }
            }
            Ok((bytes, dimension))
        })
        .map_err(to_python)
    }
}

#[pymodule]
fn _stancer(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Classifier>()?;
    Ok(())
}
