//! The library's one error type: each variant names the phase that failed and the object it failed on.
//!
//! Messages are lowercase, say what is wrong with which value and, where a mistake is common, what to
//! do. The underlying cause stays attached as `source`, so the binary can print the whole chain once.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not valid UTF-8 (first invalid byte at offset {offset}); convert it to UTF-8 first", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },

    #[error("{} looks like a binary file (it contains NUL bytes), not text", path.display())]
    Binary { path: PathBuf },

    #[error("{}:{line}: {message}", path.display())]
    Jsonl {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    #[error("model manifest {}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },

    #[error("unknown model '{name}': it is neither a model folder nor a manifest name (known: {known}); run `stancer models list`")]
    UnknownModel { name: String, known: String },

    #[error("{}: sha256 is {actual}, expected {expected} (a corrupt or different file); delete it and run `stancer models fetch {model}`", path.display())]
    Checksum {
        path: PathBuf,
        model: String,
        expected: String,
        actual: String,
    },

    #[error("cannot fetch model '{model}': {tried}")]
    Fetch { model: String, tried: String },

    #[error("model folder {}: {message}", path.display())]
    ModelFolder { path: PathBuf, message: String },

    #[error("{}: {message}", path.display())]
    ModelConfig { path: PathBuf, message: String },

    #[error("cannot load the weights in {}", path.display())]
    LoadWeights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },

    #[error("cannot load the tokenizer {}: {message}", path.display())]
    LoadTokenizer { path: PathBuf, message: String },

    #[error("cannot tokenize a paragraph: {message}")]
    Tokenize { message: String },

    #[error("the encoder failed")]
    Encoder {
        #[source]
        source: candle_core::Error,
    },

    #[error("schema {}:{line}: {message}", path.display())]
    Schema {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("head {}: {message}", path.display())]
    Head { path: PathBuf, message: String },

    #[error("{message}")]
    Device { message: String },

    #[error("{message}")]
    Usage { message: String },
}

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn encoder(source: candle_core::Error) -> Self {
        Error::Encoder { source }
    }
}
