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
                let folder = output_folder(path)?;
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

/// A `-o FILE` run of `classify` that survives being killed: records go to `FILE.partial` as they
/// are made, and after every chunk the partial is flushed and synced and `FILE.partial.json`
/// (written atomically) records how many bytes and records are safely on disk and which command
/// made them. `--resume` cuts the partial back to that point (so a torn last record is dropped),
/// skips that many records, and appends; the finished partial is renamed to FILE, so FILE is
/// always complete or absent, and byte-identical to an uninterrupted run's.
pub struct Resumable {
    writer: BufWriter<FailAfter<std::fs::File>>,
    path: PathBuf,
    partial: PathBuf,
    state: PathBuf,
    identity: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ResumeState {
    /// sha256 of the command's inputs and settings: a partial continues only the same command.
    command: String,
    bytes: u64,
    records: u64,
}

impl Resumable {
    /// Opens FILE's partial: afresh, or with `resume` where one is there; returns the records
    /// already written (0 when starting afresh) and whether the output was started before.
    pub fn open(
        path: &Path,
        identity: &str,
        resume: bool,
        notice: &mut dyn FnMut(&str),
    ) -> anyhow::Result<(Self, u64, bool)> {
        output_folder(path)?;
        let partial = sibling(path, ".partial");
        let state_path = sibling(path, ".partial.json");
        let write_error = |target: &Path| format!("cannot write {}", target.display());
        let previous = if resume {
            match std::fs::read_to_string(&state_path) {
                Ok(text) => Some(serde_json::from_str::<ResumeState>(&text).map_err(|_| {
                    anyhow::anyhow!(stancer::Error::Usage {
                        message: format!(
                            "{} is damaged; delete it and {} to start afresh",
                            state_path.display(),
                            partial.display()
                        )
                    })
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {}", state_path.display()))
                }
            }
        } else {
            None
        };
        let (file, bytes, records) = match previous {
            Some(state) => {
                if state.command != identity {
                    anyhow::bail!(stancer::Error::Usage {
                        message: format!(
                            "{} was started by a different command (other inputs, model, schema, \
                             targets, heads, format or shard); rerun that command with --resume, \
                             or delete {} and {} to start afresh",
                            partial.display(),
                            partial.display(),
                            state_path.display()
                        )
                    });
                }
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&partial)
                    .with_context(|| format!("cannot resume: cannot open {}", partial.display()))?;
                let on_disk = file.metadata()?.len();
                if on_disk < state.bytes {
                    anyhow::bail!(stancer::Error::Usage {
                        message: format!(
                            "{} is shorter ({on_disk} bytes) than its last checkpoint ({} bytes); \
                             delete it and {} to start afresh",
                            partial.display(),
                            state.bytes,
                            state_path.display()
                        )
                    });
                }
                // Anything after the last checkpoint (a torn record) is cut.
                file.set_len(state.bytes)
                    .with_context(|| write_error(&partial))?;
                notice(&format!(
                    "resuming {}: {} records already written, continuing after them",
                    path.display(),
                    state.records
                ));
                (file, state.bytes, state.records)
            }
            None => {
                if resume {
                    notice(&format!(
                        "no partial run of {} to resume; starting afresh",
                        path.display()
                    ));
                }
                let file =
                    std::fs::File::create(&partial).with_context(|| write_error(&partial))?;
                (file, 0, 0)
            }
        };
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        let started = bytes > 0 || records > 0;
        let mut this = Self {
            writer: BufWriter::new(FailAfter::from_env(file, bytes)),
            path: path.to_path_buf(),
            partial,
            state: state_path,
            identity: identity.to_string(),
        };
        if !started {
            this.checkpoint(0)?;
        }
        Ok((this, records, started))
    }

    /// Makes everything written so far durable and records it: `records` in all.
    pub fn checkpoint(&mut self, records: u64) -> anyhow::Result<()> {
        let synced = self
            .writer
            .flush()
            .and_then(|()| self.writer.get_ref().inner.sync_data());
        if let Err(e) = synced {
            return Err(self.explain(e).into());
        }
        let state = ResumeState {
            command: self.identity.clone(),
            bytes: self.writer.get_ref().written,
            records,
        };
        let folder = self.state.parent().unwrap_or(Path::new("."));
        let mut temporary = tempfile::NamedTempFile::new_in(folder)
            .with_context(|| format!("cannot write {}", self.state.display()))?;
        temporary.write_all(serde_json::to_string(&state)?.as_bytes())?;
        temporary.as_file().sync_data()?;
        temporary
            .persist(&self.state)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", self.state.display()))?;
        Ok(())
    }

    /// Flushes, syncs and moves the partial into place as FILE.
    pub fn finish(mut self, records: u64) -> anyhow::Result<()> {
        self.checkpoint(records)?;
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        let _ = std::fs::remove_file(&self.state);
        Ok(())
    }
}

impl Resumable {
    /// An I/O error on the partial, naming it and saying how to continue.
    fn explain(&self, error: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            error.kind(),
            format!(
                "cannot write {}: {error}; what was written before is kept: make room and rerun \
                 the same command with --resume",
                self.partial.display()
            ),
        )
    }
}

impl Write for Resumable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf).map_err(|e| self.explain(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush().map_err(|e| self.explain(e))
    }
}

/// `FILE` + suffix, in FILE's folder.
/// Refuses, before any work, an output file whose folder does not exist: the commands call this
/// first, so that a mistyped `-o`, `--json` or `--html` fails before models load and inputs are
/// scored rather than after (the writers check again when they open).
pub fn check_folder(path: Option<&Path>) -> anyhow::Result<()> {
    path.map_or(Ok(()), |path| output_folder(path).map(|_| ()))
}

/// The folder an output file goes in ("." for a bare name), refused with a usage error when it
/// does not exist, before anything is written.
fn output_folder(path: &Path) -> anyhow::Result<PathBuf> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        anyhow::bail!(stancer::Error::Usage {
            message: format!(
                "cannot write {}: the folder {} does not exist; create it first",
                path.display(),
                folder.display()
            )
        });
    }
    Ok(folder)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// A file that counts what is written to it and, for the fault tests only, fails with "no space
/// left on device" once `STANCER_TEST_FULL_AFTER` bytes are in it, as a full disk would.
struct FailAfter<W> {
    inner: W,
    written: u64,
    limit: Option<u64>,
}

impl<W> FailAfter<W> {
    fn from_env(inner: W, written: u64) -> Self {
        let limit = std::env::var("STANCER_TEST_FULL_AFTER")
            .ok()
            .and_then(|v| v.parse().ok());
        Self {
            inner,
            written,
            limit,
        }
    }
}

impl<W: Write> Write for FailAfter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(limit) = self.limit {
            if self.written + buf.len() as u64 > limit {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
