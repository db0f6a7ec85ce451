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

    #[error("configuration {}: {message}", path.display())]
    Config { path: PathBuf, message: String },

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

/// An error and its sources on one line, `outer: cause: cause`, the way the binary prints it.
///
/// A candle error keeps its source chain but loses the backtrace it captured: with
/// `RUST_BACKTRACE=1` candle wraps errors in `WithBacktrace`, whose `Display` is the message
/// followed by every frame, which has no place in a one-line message. The backtrace stays in the
/// error value (its `Debug`) for whoever wants it.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let parts: Vec<String> = std::iter::successors(Some(error), |e| e.source())
        .map(|e| match e.downcast_ref::<candle_core::Error>() {
            Some(candle) => candle_message(candle),
            None => e.to_string(),
        })
        .collect();
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// candle's message without the backtraces it carries, at any depth.
fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        candle_core::Error::WithPath { inner, path } => {
            format!("{}: {}", path.display(), candle_message(inner))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_backtrace(inner: candle_core::Error) -> candle_core::Error {
        candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        }
    }

    /// Issue 11: with RUST_BACKTRACE=1 a candle error's message carried candle's whole
    /// backtrace into the one-line message the binary prints.
    #[test]
    fn issue_11_candle_backtraces_stay_out_of_the_message() {
        let candle = with_backtrace(candle_core::Error::CannotFindTensor {
            path: "embeddings.word_embeddings.weight".into(),
        });
        assert!(
            candle.to_string().lines().count() > 1,
            "candle's own Display shows the frames"
        );
        let error = Error::LoadWeights {
            path: "model/model.safetensors".into(),
            source: candle,
        };
        assert_eq!(
            one_line(&error),
            "cannot load the weights in model/model.safetensors: cannot find tensor embeddings.word_embeddings.weight"
        );
        // The source chain is kept.
        assert!(std::error::Error::source(&error).is_some());

        // Nested under a path and a context, as candle's loaders build them.
        let nested = candle_core::Error::Context {
            inner: Box::new(candle_core::Error::WithPath {
                inner: Box::new(with_backtrace(candle_core::Error::Msg(
                    "header too large".into(),
                ))),
                path: "w.safetensors".into(),
            }),
            context: Box::new("while reading"),
        };
        let message = one_line(&Error::encoder(nested));
        assert_eq!(
            message,
            "the encoder failed: while reading: w.safetensors: header too large"
        );
        assert!(
            !message.contains("backtrace") && !message.contains("::"),
            "{message}"
        );
    }
}
