//! Where results go: standard output, or a file that appears only when complete.
//!
//! `--output FILE` writes to a temporary file beside FILE and renames it at the end, so an
//! interrupted or failed run never leaves a half-written file under the real name.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub enum Output {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        writer: BufWriter<tempfile::NamedTempFile>,
        path: PathBuf,
    },
}

impl Output {
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Output::Stdout(BufWriter::new(std::io::stdout()))),
            Some(path) => {
                let folder = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let temporary = tempfile::Builder::new()
                    .prefix(".stancer-")
                    .suffix(".partial")
                    .tempfile_in(&folder)
                    .with_context(|| format!("cannot write to folder {}", folder.display()))?;
                Ok(Output::File {
                    writer: BufWriter::new(temporary),
                    path: path.to_path_buf(),
                })
            }
        }
    }

    /// Flushes and, for a file, moves it into place.
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Output::Stdout(mut writer) => Ok(writer.flush()?),
            Output::File { writer, path } => {
                let temporary = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                temporary
                    .persist(&path)
                    .map_err(|e| e.error)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File { writer, .. } => writer.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File { writer, .. } => writer.flush(),
        }
    }
}

/// Writes `contents` to `path` atomically (nothing, or the whole file), if a path is given.
pub fn write_file(path: Option<&Path>, contents: &str) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mut output = Output::open(Some(path))?;
        output.write_all(contents.as_bytes())?;
        output.finish()?;
    }
    Ok(())
}
