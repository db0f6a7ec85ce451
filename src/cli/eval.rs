//! `stancer eval`: score labels against gold data, compare configurations, write reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use stancer::eval::{self, Bootstrap, Configuration, EvalReport, RunInfo};
use stancer::gold::{self, GoldRow};
use stancer::head::linear::TrainOptions;
use stancer::head::trained::EncoderRecord;
use stancer::schema::Schema;

use super::setup::{embed_cached, load_embedder, load_heads, notice, StanceArgs};
use super::ModelArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Gold files (JSON Lines): schema-form rows {"id", "text", "theme", "stance": {"<target id>": ...}}
    /// and free-target rows {"id", "text", "target", "stance"} may mix.
    #[arg(required = true, value_name = "GOLD")]
    gold: Vec<PathBuf>,
    /// Schema the gold's theme labels and target ids belong to (default: the built-in schema).
    #[arg(long, short = 's', value_name = "FILE")]
    schema: Option<PathBuf>,
    /// A trained head (from `stancer train`); repeat for a theme and a stance head.
    #[arg(long, value_name = "DIR")]
    head: Vec<PathBuf>,
    /// Compare configurations, each a TOML file naming `model`, `head` and `schema` (and
    /// optionally `name`, `dtype`); paths in it are relative to the file.
    #[arg(long, num_args = 1.., value_name = "CONFIG")]
    compare: Vec<PathBuf>,
    /// Write the full report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Exit with code 1 when a macro-F1 (theme or stance, whichever the gold has) is below X.
    #[arg(long, value_name = "X")]
    min_macro_f1: Option<f64>,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    resamples: usize,
    /// Seed of the bootstrap and of the cross-validation folds (the same seed gives the same
    /// numbers).
    #[arg(long, default_value_t = 2016, value_name = "N")]
    seed: u64,
    /// Cross-validate trained heads: train on K-1 folds, score the held-out one, K times.
    /// Folds are split by target when every stance row has a free-text target (training then
    /// leaves out rows sharing a text with the test fold), else by paragraph text.
    #[arg(long, value_name = "K")]
    cv: Option<usize>,
    /// Read and store paragraph embeddings in the on-disk cache (always on with --cv). The
    /// reported throughput then counts cache reads, not the encoder.
    #[arg(long)]
    cache: bool,
    #[command(flatten)]
    stance: StanceArgs,
    #[command(flatten)]
    model: ModelArgs,
}

/// A `--compare` configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    name: Option<String>,
    model: Option<String>,
    #[serde(default)]
    head: HeadList,
    schema: Option<String>,
    dtype: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum HeadList {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let bootstrap = Bootstrap::default()
        .resamples(args.resamples)
        .seed(args.seed);
    let default_schema = match &args.schema {
        Some(path) => Schema::from_file(path)?,
        None => Schema::default_schema(),
    };

    let run = Run {
        stance: args.stance.clone(),
        cv: args.cv,
        cache: args.cache,
        seed: args.seed,
    };
    if args.compare.is_empty() {
        let rows = read_gold(&args.gold, &default_schema)?;
        let (configuration, seen) =
            run_configuration(None, &args.model, &args.head, &default_schema, &rows, &run)?;
        let report = eval::evaluate(&configuration, &default_schema.theme_ids(), &bootstrap);
        print!("{}", eval::render_text(&report));
        let split = seen.map(|seen| split_by_seen(&configuration, &seen, &bootstrap));
        if let Some(split) = &split {
            print!("{}", split.render());
        }
        let full = FullReport {
            report: &report,
            stance_seen_targets: split.as_ref().and_then(|s| s.seen.as_ref()),
            stance_unseen_targets: split.as_ref().and_then(|s| s.unseen.as_ref()),
        };
        super::output::write_file(args.json.as_deref(), &serde_json::to_string_pretty(&full)?)?;
        super::output::write_file(args.html.as_deref(), &eval::render_html(&report))?;
        return Ok(gate(&[&report], args.min_macro_f1));
    }

    let mut configurations = Vec::new();
    let mut labels = default_schema.theme_ids();
    for path in &args.compare {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: ConfigFile = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "configuration {}: {}",
                path.display(),
                e.message().split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let schema = match &config.schema {
            Some(s) => Schema::from_file(&relative_to(folder, s))?,
            None => default_schema.clone(),
        };
        if configurations.is_empty() {
            labels = schema.theme_ids();
        }
        let rows = read_gold(&args.gold, &schema)?;
        let mut model = args.model.clone();
        if let Some(m) = &config.model {
            let candidate = relative_to(folder, m);
            model.model = Some(if candidate.exists() {
                candidate.display().to_string()
            } else {
                m.clone()
            });
        }
        if config.dtype.is_some() {
            model.dtype = config.dtype.clone();
        }
        let heads: Vec<PathBuf> = match &config.head {
            HeadList::None => Vec::new(),
            HeadList::One(h) => vec![relative_to(folder, h)],
            HeadList::Many(hs) => hs.iter().map(|h| relative_to(folder, h)).collect(),
        };
        let name = config.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        });
        notice(args.model.quiet, &format!("running configuration '{name}'"));
        configurations.push(run_configuration(Some(name), &model, &heads, &schema, &rows, &run)?.0);
    }
    let comparison = eval::compare(&configurations, &labels, &bootstrap)?;
    print!("{}", eval::render_comparison_text(&comparison));
    super::output::write_file(
        args.json.as_deref(),
        &serde_json::to_string_pretty(&comparison)?,
    )?;
    super::output::write_file(
        args.html.as_deref(),
        &eval::render_comparison_html(&comparison),
    )?;
    let reports: Vec<&EvalReport> = comparison.configurations.iter().collect();
    Ok(gate(&reports, args.min_macro_f1))
}

fn relative_to(folder: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        folder.join(path)
    }
}

fn read_gold(files: &[PathBuf], schema: &Schema) -> anyhow::Result<Vec<GoldRow>> {
    let mut rows = Vec::new();
    for file in files {
        rows.extend(gold::read(file, schema)?);
    }
    if rows.is_empty() {
        anyhow::bail!("no gold rows in {}", display_list(files));
    }
    Ok(rows)
}

fn display_list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a configuration is run.
struct Run {
    stance: StanceArgs,
    cv: Option<usize>,
    cache: bool,
    seed: u64,
}

/// Loads a model and heads, labels every gold row, and times it. Also returns the targets a
/// trained stance head saw in training, if one is used.
fn run_configuration(
    name: Option<String>,
    model: &ModelArgs,
    head_dirs: &[PathBuf],
    schema: &Schema,
    rows: &[GoldRow],
    run: &Run,
) -> anyhow::Result<(Configuration, Option<Vec<String>>)> {
    let (embedder, resolved) = load_embedder(model)?;
    let started = Instant::now();
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    if let Some(k) = run.cv {
        if !head_dirs.is_empty() {
            anyhow::bail!("--cv trains its own heads on each fold; leave out --head");
        }
        let embeddings = embed_cached(&embedder, &resolved, &texts, model.quiet)?;
        let vectors: Vec<&[f32]> = embeddings.iter().map(|e| e.vector.as_slice()).collect();
        let encoder = EncoderRecord {
            name: resolved.name.clone(),
            sha256: resolved.weights_checksum()?,
        };
        let options = TrainOptions {
            seed: run.seed,
            ..TrainOptions::default()
        };
        let stancer::cross_validation::CrossValidation {
            themes,
            stances,
            grouping,
            folds,
        } = stancer::cross_validation::cross_validate(
            rows, &vectors, schema, &embedder, &encoder, k, &options,
        )?;
        let split = match grouping {
            stancer::cross_validation::Grouping::ByTarget => {
                "folds split by target, test texts left out of training"
            }
            stancer::cross_validation::Grouping::ByRow => "folds split by paragraph text",
        };
        let sizes: Vec<String> = folds
            .iter()
            .map(|s| format!("{}/{}", s.test, s.train))
            .collect();
        notice(
            model.quiet,
            &format!("{split}; rows per fold (test/train): {}", sizes.join(", ")),
        );
        let head = format!("trained heads, {k}-fold cross-validation ({split})");
        let info = RunInfo::new(
            resolved.name.clone(),
            head,
            schema.origin.clone(),
            embedder.device_label(),
            rows.len(),
            started.elapsed().as_secs_f64(),
        );
        let configuration = Configuration {
            name: name.unwrap_or_else(|| format!("{} + trained ({k}-fold)", resolved.name)),
            run: info,
            themes,
            stances,
        };
        return Ok((configuration, None));
    }
    let heads = load_heads(&embedder, &resolved, schema, head_dirs, &run.stance, model)?;
    let embeddings = if run.cache {
        embed_cached(&embedder, &resolved, &texts, model.quiet)?
    } else {
        embedder.embed_passages(&texts)?
    };
    let vectors: Vec<&[f32]> = embeddings.iter().map(|e| e.vector.as_slice()).collect();
    let mut classifier = stancer::classify::Classifier::new(&embedder, &heads, schema, &[])?;
    let (themes, stances) = stancer::eval::run::label_gold(&mut classifier, rows, &vectors)?;
    let seconds = started.elapsed().as_secs_f64();
    let info = RunInfo::new(
        resolved.name.clone(),
        heads.describe(),
        schema.origin.clone(),
        embedder.device_label(),
        rows.len(),
        seconds,
    );
    let configuration = Configuration {
        name: name.unwrap_or_else(|| format!("{} + {}", resolved.name, heads.short_name())),
        run: info,
        themes,
        stances,
    };
    Ok((configuration, heads.seen_targets.clone()))
}

/// The report's JSON, with the stance scores split by whether a trained head saw the target.
#[derive(serde::Serialize)]
struct FullReport<'a> {
    #[serde(flatten)]
    report: &'a EvalReport,
    stance_seen_targets: Option<&'a stancer::eval::StanceReport>,
    stance_unseen_targets: Option<&'a stancer::eval::StanceReport>,
}

struct SeenSplit {
    seen: Option<stancer::eval::StanceReport>,
    unseen: Option<stancer::eval::StanceReport>,
}

fn split_by_seen(
    configuration: &Configuration,
    seen: &[String],
    bootstrap: &Bootstrap,
) -> SeenSplit {
    let part = |keep: bool| {
        let subset = Configuration {
            name: configuration.name.clone(),
            run: configuration.run.clone(),
            themes: Vec::new(),
            stances: configuration
                .stances
                .iter()
                .filter(|s| seen.contains(&s.target) == keep)
                .cloned()
                .collect(),
        };
        eval::evaluate(&subset, &[] as &[&str], bootstrap).stance
    };
    SeenSplit {
        seen: part(true),
        unseen: part(false),
    }
}

impl SeenSplit {
    fn render(&self) -> String {
        let mut text =
            String::from("\nstance by whether the trained head saw the target in training\n");
        for (name, report) in [
            ("seen targets", &self.seen),
            ("unseen targets", &self.unseen),
        ] {
            match report {
                Some(r) => {
                    let ci = r.scores.macro_f1_ci.map_or(String::new(), |c| {
                        format!("  [{:.3}, {:.3}]", c.low, c.high)
                    });
                    let f_avg = r
                        .scores
                        .f_avg
                        .map_or("-".to_string(), |f| format!("{f:.3}"));
                    text.push_str(&format!(
                        "  {name:<15} {:>5} rows  macro-F1 {:.3}{ci}  F_avg {f_avg}\n",
                        r.scores.n, r.scores.macro_f1
                    ));
                }
                None => text.push_str(&format!("  {name:<15}     0 rows\n")),
            }
        }
        text
    }
}

/// Exit code 1 when any report's macro-F1 is below the bar.
fn gate(reports: &[&EvalReport], bar: Option<f64>) -> ExitCode {
    let Some(bar) = bar else {
        return ExitCode::SUCCESS;
    };
    let mut failed = Vec::new();
    for report in reports {
        if let Some(theme) = &report.theme {
            if theme.macro_f1 < bar {
                failed.push(format!(
                    "{}: theme macro-F1 {:.3}",
                    report.name, theme.macro_f1
                ));
            }
        }
        if let Some(stance) = &report.stance {
            if stance.scores.macro_f1 < bar {
                failed.push(format!(
                    "{}: stance macro-F1 {:.3}",
                    report.name, stance.scores.macro_f1
                ));
            }
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("stancer: below --min-macro-f1 {bar}: {}", failed.join("; "));
        ExitCode::from(1)
    }
}
