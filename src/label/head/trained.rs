//! Trained heads: logistic regression on encoder vectors, fitted in seconds from labelled
//! paragraphs, saved as `head.safetensors` plus a `head.json` manifest.
//!
//! A theme head reads a paragraph's vector. A stance head reads a (paragraph, target) pair as
//! `[u, v, u*v, |u-v|]` (u the paragraph, v the target), so it applies to targets it never saw.
//! The manifest records the encoder (name and weights checksum) the head was trained on, the
//! labels, the training data's checksum and size, and the held-out scores (on the part that chose
//! the L2 strength, and on a test part that chose nothing); loading a head on
//! another encoder is an error that names the encoder it needs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::linear::{self, FitReport, LinearModel, TrainOptions, Validation};
use super::{PreparedTarget, StanceHead, ThemeHead};
use crate::encode::embed::Embedder;
use crate::error::{Error, Result};
use crate::eval::gold::GoldRow;
use crate::label::schema::{Schema, Target};
use crate::label::stance::Stance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Theme,
    Stance,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Theme => "theme",
            Task::Stance => "stance",
        })
    }
}

/// The encoder a head was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderRecord {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The training files as given.
    pub files: Vec<String>,
    /// sha256 of the training files' bytes, concatenated in order.
    pub sha256: String,
    /// Training examples: paragraphs for a theme head, (paragraph, target) pairs for a stance head.
    pub rows: usize,
    /// Targets seen in training (stance heads).
    pub targets: Vec<String>,
    pub options: TrainOptions,
    pub l2: f32,
    pub epochs: usize,
    pub seconds: f64,
}

/// `head.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadManifest {
    pub format: u32,
    pub task: Task,
    pub labels: Vec<String>,
    /// "paragraph" or "pair: [u, v, u*v, |u-v|]".
    pub features: String,
    pub encoder: EncoderRecord,
    pub training: TrainingRecord,
    /// Scores on the held-out part that chose the L2 strength and the epochs: the best over the
    /// grid, so optimistic.
    pub validation: Validation,
    /// Scores on the held-out part that chose nothing, the honest estimate. Absent in heads
    /// written before it existed, and `null` when the data is too small to hold it out.
    #[serde(default)]
    pub test: Option<Validation>,
    /// (l2, selection macro-F1, epochs) for every strength tried.
    pub grid: Vec<(f32, f64, usize)>,
}

pub const MANIFEST_FILE: &str = "head.json";
pub const WEIGHTS_FILE: &str = "head.safetensors";

#[derive(Debug, Clone)]
pub struct TrainedHead {
    pub manifest: HeadManifest,
    pub model: LinearModel,
}

impl TrainedHead {
    /// Writes `head.json` and `head.safetensors` into `folder`, each complete or not at all.
    pub fn save(&self, folder: &Path) -> Result<()> {
        std::fs::create_dir_all(folder).map_err(|e| Error::write(folder, e))?;
        let weight = Tensor::from_vec(
            self.model.weight.clone(),
            (self.model.classes, self.model.dimension),
            &Device::Cpu,
        )
        .map_err(Error::encoder)?;
        let bias = Tensor::from_vec(self.model.bias.clone(), self.model.classes, &Device::Cpu)
            .map_err(Error::encoder)?;
        let tensors: HashMap<String, Tensor> =
            [("weight".to_string(), weight), ("bias".to_string(), bias)].into();
        let weights_path = folder.join(WEIGHTS_FILE);
        let temporary =
            tempfile::NamedTempFile::new_in(folder).map_err(|e| Error::write(folder, e))?;
        candle_core::safetensors::save(&tensors, temporary.path()).map_err(|source| {
            Error::LoadWeights {
                path: weights_path.clone(),
                source,
            }
        })?;
        temporary
            .persist(&weights_path)
            .map_err(|e| Error::write(&weights_path, e.error))?;
        let manifest_path = folder.join(MANIFEST_FILE);
        let mut temporary =
            tempfile::NamedTempFile::new_in(folder).map_err(|e| Error::write(folder, e))?;
        let json =
            serde_json::to_string_pretty(&self.manifest).expect("this is a bug: manifest json");
        std::io::Write::write_all(&mut temporary, json.as_bytes())
            .map_err(|e| Error::write(&manifest_path, e))?;
        temporary
            .persist(&manifest_path)
            .map_err(|e| Error::write(&manifest_path, e.error))?;
        Ok(())
    }

    /// Reads a head and checks it was trained on the encoder with checksum `encoder_sha256`.
    pub fn load(folder: &Path, encoder_name: &str, encoder_sha256: &str) -> Result<Self> {
        let fail = |message: String| Error::Head {
            path: folder.to_path_buf(),
            message,
        };
        let manifest_path = folder.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail(format!("no {MANIFEST_FILE} here (a head folder is written by `stancer train --out DIR`)"))
            } else {
                Error::read(&manifest_path, e)
            }
        })?;
        let manifest: HeadManifest = serde_json::from_str(&text)
            .map_err(|e| fail(format!("{MANIFEST_FILE} is not a head manifest ({e})")))?;
        if manifest.encoder.sha256 != encoder_sha256 {
            return Err(fail(format!(
                "this head was trained on encoder '{}' (weights sha256 {}…), not on '{encoder_name}'; run with --model {}",
                manifest.encoder.name,
                &manifest.encoder.sha256[..manifest.encoder.sha256.len().min(12)],
                manifest.encoder.name
            )));
        }
        let weights_path = folder.join(WEIGHTS_FILE);
        let tensors =
            candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|source| {
                Error::LoadWeights {
                    path: weights_path.clone(),
                    source,
                }
            })?;
        let read = |name: &str| -> Result<Tensor> {
            tensors
                .get(name)
                .cloned()
                .ok_or_else(|| fail(format!("{WEIGHTS_FILE} has no tensor '{name}'")))
        };
        let weight = read("weight")?;
        let bias = read("bias")?;
        let (classes, dimension) = weight
            .dims2()
            .map_err(|_| fail("'weight' is not a matrix".into()))?;
        check_shape(&manifest, classes, dimension, bias.dims(), &weights_path)?;
        let to_vec = |t: &Tensor| -> Result<Vec<f32>> {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|source| Error::LoadWeights {
                    path: weights_path.clone(),
                    source,
                })
        };
        Ok(Self {
            model: LinearModel {
                classes,
                dimension,
                weight: to_vec(&weight)?,
                bias: to_vec(&bias)?,
            },
            manifest,
        })
    }
}

/// Checks that a head's weights fit its task, so that a wrong file fails here, naming it, rather
/// than panicking at predict time: a stance head has exactly the three stance classes in
/// [`Stance::ALL`] order and reads pair features (four times the encoder's width); a theme head
/// has one weight row per label and at least two labels; the bias has one value per class.
fn check_shape(
    manifest: &HeadManifest,
    classes: usize,
    dimension: usize,
    bias: &[usize],
    weights_path: &Path,
) -> Result<()> {
    let fail = |message: String| {
        Err(Error::Head {
            path: weights_path.to_path_buf(),
            message: format!(
                "{message}; retrain it with `stancer train --task {}`",
                manifest.task
            ),
        })
    };
    let labels = manifest.labels.len();
    if classes != labels {
        return fail(format!(
            "the weight matrix has {classes} rows but {MANIFEST_FILE} lists {labels} labels"
        ));
    }
    if bias != [classes] {
        return fail(format!(
            "the bias has shape {bias:?}, expected [{classes}] (one value per class)"
        ));
    }
    match manifest.task {
        Task::Stance => {
            let expected: Vec<String> = Stance::ALL.iter().map(|s| s.to_string()).collect();
            if manifest.labels != expected {
                return fail(format!(
                    "a stance head needs the labels {expected:?} in that order, {MANIFEST_FILE} has {:?}",
                    manifest.labels
                ));
            }
            if !dimension.is_multiple_of(4) {
                return fail(format!(
                    "a stance head reads [u, v, u*v, |u-v|], so its width is a multiple of 4; the weight matrix is {dimension} wide"
                ));
            }
        }
        Task::Theme => {
            if labels < 2 {
                return fail(format!(
                    "a theme head needs at least two labels, {MANIFEST_FILE} has {labels}"
                ));
            }
        }
    }
    Ok(())
}

/// `[u, v, u*v, |u-v|]`.
pub fn pair_features(paragraph: &[f32], target: &[f32]) -> Vec<f32> {
    let mut features = Vec::with_capacity(paragraph.len() * 4);
    features.extend_from_slice(paragraph);
    features.extend_from_slice(target);
    features.extend(paragraph.iter().zip(target).map(|(u, v)| u * v));
    features.extend(paragraph.iter().zip(target).map(|(u, v)| (u - v).abs()));
    features
}

pub struct TrainedTheme(pub TrainedHead);

impl ThemeHead for TrainedTheme {
    fn labels(&self) -> &[String] {
        &self.0.manifest.labels
    }

    fn predict(&self, paragraphs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        check_dimension(&self.0, paragraphs.first().map_or(0, |p| p.len()))?;
        Ok(paragraphs
            .iter()
            .map(|p| self.0.model.probabilities(p))
            .collect())
    }

    fn describe(&self) -> String {
        describe(&self.0)
    }
}

pub struct TrainedStance(pub TrainedHead);

impl StanceHead for TrainedStance {
    fn prepare(&self, embedder: &Embedder, target: &Target) -> Result<PreparedTarget> {
        let vector = embedder
            .embed_queries(&[target.text.as_str()])?
            .remove(0)
            .vector;
        Ok(PreparedTarget {
            id: target.id.clone(),
            text: target.text.clone(),
            vectors: vec![vector],
            ..PreparedTarget::default()
        })
    }

    fn predict(&self, paragraphs: &[&[f32]], target: &PreparedTarget) -> Result<Vec<[f32; 3]>> {
        if let Some(p) = paragraphs.first() {
            check_dimension(&self.0, p.len() * 4)?;
        }
        Ok(paragraphs
            .iter()
            .map(|p| {
                let probabilities = self
                    .0
                    .model
                    .probabilities(&pair_features(p, &target.vectors[0]));
                // Labels are stored in Stance::ALL order.
                [probabilities[0], probabilities[1], probabilities[2]]
            })
            .collect())
    }

    fn describe(&self) -> String {
        describe(&self.0)
    }
}

fn check_dimension(head: &TrainedHead, got: usize) -> Result<()> {
    if got != head.model.dimension && got != 0 {
        return Err(Error::Head {
            path: head.manifest.encoder.name.clone().into(),
            message: format!(
                "the head expects {} features, the encoder gives {got}",
                head.model.dimension
            ),
        });
    }
    Ok(())
}

fn describe(head: &TrainedHead) -> String {
    let m = &head.manifest;
    let score = match &m.test {
        Some(test) => format!("held-out test macro-F1 {:.3}", test.macro_f1),
        None => format!("selection macro-F1 {:.3}", m.validation.macro_f1),
    };
    format!(
        "trained {} head (logistic regression, L2 {}, {} rows, {score})",
        m.task, m.training.l2, m.training.rows
    )
}

/// What a training run is fed: gold rows, their vectors, and where the data came from.
pub struct TrainingData<'a> {
    pub rows: &'a [GoldRow],
    pub vectors: &'a [&'a [f32]],
    pub files: Vec<String>,
    pub sha256: String,
}

/// Trains a theme head on the rows with a gold theme. Labels are the schema's themes that occur
/// in the data, in schema order.
pub fn train_theme(
    data: &TrainingData<'_>,
    schema: &Schema,
    encoder: EncoderRecord,
    options: &TrainOptions,
) -> Result<TrainedHead> {
    let started = std::time::Instant::now();
    let present: Vec<String> = schema
        .theme_ids()
        .into_iter()
        .filter(|id| data.rows.iter().any(|r| r.theme.as_deref() == Some(id)))
        .collect();
    if present.len() < 2 {
        return Err(Error::Usage {
            message: format!(
                "a theme head needs rows of at least two themes; the training data has {}",
                present.len()
            ),
        });
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (row, vector) in data.rows.iter().zip(data.vectors) {
        if let Some(theme) = &row.theme {
            features.push(vector.to_vec());
            labels.push(present.iter().position(|p| p == theme).expect("present"));
        }
    }
    let (model, report) = linear::fit(&features, &labels, present.len(), options);
    Ok(assemble(
        Task::Theme,
        present,
        "paragraph".into(),
        encoder,
        data,
        Vec::new(),
        features.len(),
        options,
        model,
        report,
        started.elapsed().as_secs_f64(),
    ))
}

/// Trains a stance head on every (row, target) pair with a gold stance.
pub fn train_stance(
    data: &TrainingData<'_>,
    schema: &Schema,
    embedder: &Embedder,
    encoder: EncoderRecord,
    options: &TrainOptions,
) -> Result<TrainedHead> {
    let started = std::time::Instant::now();
    let mut target_keys: Vec<String> = Vec::new();
    for row in data.rows {
        for (target, _) in &row.stances {
            if !target_keys.contains(target) {
                target_keys.push(target.clone());
            }
        }
    }
    if target_keys.is_empty() {
        return Err(Error::Usage {
            message: "the training data has no stance labels".into(),
        });
    }
    let target_texts: Vec<String> = target_keys
        .iter()
        .map(|key| {
            schema
                .targets
                .iter()
                .find(|t| &t.id == key)
                .map_or(key.clone(), |t| t.text.clone())
        })
        .collect();
    let refs: Vec<&str> = target_texts.iter().map(String::as_str).collect();
    let target_vectors: Vec<Vec<f32>> = embedder
        .embed_queries(&refs)?
        .into_iter()
        .map(|e| e.vector)
        .collect();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (row, vector) in data.rows.iter().zip(data.vectors) {
        for (target, stance) in &row.stances {
            let t = target_keys.iter().position(|k| k == target).expect("seen");
            features.push(pair_features(vector, &target_vectors[t]));
            labels.push(stance.index());
        }
    }
    let (model, report) = linear::fit(&features, &labels, 3, options);
    Ok(assemble(
        Task::Stance,
        Stance::ALL.iter().map(|s| s.to_string()).collect(),
        "pair: [u, v, u*v, |u-v|]".into(),
        encoder,
        data,
        target_keys,
        features.len(),
        options,
        model,
        report,
        started.elapsed().as_secs_f64(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    task: Task,
    labels: Vec<String>,
    features: String,
    encoder: EncoderRecord,
    data: &TrainingData<'_>,
    targets: Vec<String>,
    rows: usize,
    options: &TrainOptions,
    model: LinearModel,
    report: FitReport,
    seconds: f64,
) -> TrainedHead {
    TrainedHead {
        manifest: HeadManifest {
            format: 1,
            task,
            labels,
            features,
            encoder,
            training: TrainingRecord {
                files: data.files.clone(),
                sha256: data.sha256.clone(),
                rows,
                targets,
                options: options.clone(),
                l2: report.l2,
                epochs: report.epochs,
                seconds,
            },
            validation: report.validation,
            test: report.test,
            grid: report.grid,
        },
        model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(task: Task, labels: &[&str], classes: usize, dimension: usize) -> TrainedHead {
        TrainedHead {
            manifest: HeadManifest {
                format: 1,
                task,
                labels: labels.iter().map(|l| l.to_string()).collect(),
                features: "paragraph".into(),
                encoder: EncoderRecord {
                    name: "tiny".into(),
                    sha256: "ab".repeat(32),
                },
                training: TrainingRecord {
                    files: Vec::new(),
                    sha256: String::new(),
                    rows: 0,
                    targets: Vec::new(),
                    options: TrainOptions::default(),
                    l2: 0.0,
                    epochs: 0,
                    seconds: 0.0,
                },
                validation: Validation {
                    rows: 0,
                    accuracy: 0.0,
                    macro_f1: 0.0,
                    loss: 0.0,
                },
                test: None,
                grid: Vec::new(),
            },
            model: LinearModel {
                classes,
                dimension,
                weight: vec![0.1; classes * dimension],
                bias: vec![0.0; classes],
            },
        }
    }

    fn load(head: &TrainedHead) -> Result<TrainedHead> {
        let dir = tempfile::tempdir().unwrap();
        head.save(dir.path()).unwrap();
        TrainedHead::load(dir.path(), "tiny", &"ab".repeat(32))
    }

    /// Issue 11: a stance head whose weight matrix has two rows (and a manifest that agrees)
    /// loaded fine and panicked at predict time, indexing the third class. It is now an error at
    /// load time that names the weights file and says what to do.
    #[test]
    fn issue_11_a_stance_head_without_three_classes_fails_at_load() {
        let error = load(&head(Task::Stance, &["favor", "against"], 2, 8))
            .unwrap_err()
            .to_string();
        assert!(error.contains(WEIGHTS_FILE), "{error}");
        assert!(error.contains("a stance head needs the labels"), "{error}");
        assert!(error.contains("stancer train --task stance"), "{error}");

        let error = load(&head(Task::Stance, &["favor", "against", "none"], 3, 6))
            .unwrap_err()
            .to_string();
        assert!(error.contains("multiple of 4"), "{error}");
    }

    /// Issue 11: a theme head whose rows don't match its labels names the file and both counts.
    #[test]
    fn issue_11_a_theme_head_whose_rows_do_not_match_its_labels_fails_at_load() {
        let mut wrong = head(Task::Theme, &["a", "b", "c"], 3, 4);
        wrong.manifest.labels.pop();
        let error = load(&wrong).unwrap_err().to_string();
        assert!(error.contains(WEIGHTS_FILE), "{error}");
        assert!(
            error.contains("the weight matrix has 3 rows but head.json lists 2 labels"),
            "{error}"
        );
        let error = load(&head(Task::Theme, &["a"], 1, 4))
            .unwrap_err()
            .to_string();
        assert!(error.contains("at least two labels"), "{error}");
    }

    #[test]
    fn well_formed_heads_load_and_predict() {
        let stance = load(&head(Task::Stance, &["favor", "against", "none"], 3, 8)).unwrap();
        let scores = TrainedStance(stance)
            .predict(
                &[&[0.5; 2]],
                &PreparedTarget {
                    id: "t".into(),
                    text: "t".into(),
                    vectors: vec![vec![0.25; 2]],
                    ..PreparedTarget::default()
                },
            )
            .unwrap();
        assert!((scores[0].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let theme = load(&head(Task::Theme, &["a", "b"], 2, 4)).unwrap();
        assert_eq!(
            TrainedTheme(theme).predict(&[&[1.0; 4]]).unwrap()[0].len(),
            2
        );
    }
}
