//! `eval --compare` configuration files: TOML naming a `model`, its `head`s and a `schema`
//! (and optionally `name`, `dtype`, and the `stance` model and `theme_head` of `--stance` and
//! `--theme-head`), with paths relative to the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// A configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    name: Option<String>,
    model: Option<String>,
    #[serde(default)]
    head: HeadList,
    schema: Option<String>,
    dtype: Option<String>,
    stance: Option<String>,
    theme_head: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum HeadList {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

/// A configuration with its paths resolved against the file's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// `name`, else the file's stem.
    pub name: String,
    /// A model folder (where the path exists) or a manifest name.
    pub model: Option<String>,
    pub heads: Vec<PathBuf>,
    pub schema: Option<PathBuf>,
    pub dtype: Option<String>,
    /// As `--stance`: a stance model name or folder, `prototype`, or `nli`.
    pub stance: Option<String>,
    /// As `--theme-head`: `prototype`, `entailment` or `nli`.
    pub theme_head: Option<String>,
}

impl CompareConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::read(path, e))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: ConfigFile = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        // A model or stance model is a folder (relative to this file) where one exists, else a name.
        let name_or_folder = |m: String| {
            let candidate = relative_to(folder, &m);
            if candidate.exists() {
                candidate.display().to_string()
            } else {
                m
            }
        };
        let model = config.model.map(name_or_folder);
        let stance = config.stance.map(name_or_folder);
        let heads = match &config.head {
            HeadList::None => Vec::new(),
            HeadList::One(h) => vec![relative_to(folder, h)],
            HeadList::Many(hs) => hs.iter().map(|h| relative_to(folder, h)).collect(),
        };
        let name = config.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        });
        Ok(Self {
            name,
            model,
            heads,
            schema: config.schema.map(|s| relative_to(folder, &s)),
            dtype: config.dtype,
            stance,
            theme_head: config.theme_head,
        })
    }
}

fn relative_to(folder: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        folder.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_file_and_the_name_defaults_to_its_stem() {
        let config = CompareConfig::parse(
            "model = \"minilm-l6\"\nhead = [\"heads/theme\", \"/abs/stance\"]\nschema = \"s.toml\"\n",
            Path::new("configs/base.toml"),
        )
        .unwrap();
        assert_eq!(config.name, "base");
        assert_eq!(config.model.as_deref(), Some("minilm-l6"));
        assert_eq!(
            config.heads,
            [
                PathBuf::from("configs/heads/theme"),
                PathBuf::from("/abs/stance")
            ]
        );
        assert_eq!(config.schema, Some(PathBuf::from("configs/s.toml")));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_file() {
        let error = CompareConfig::parse("modle = \"x\"\n", Path::new("c.toml")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("configuration c.toml: unknown field `modle`"),
            "{text}"
        );
    }
}
