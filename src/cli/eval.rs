//! `stancer eval`: score labels against gold data, compare configurations, write reports.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use stancer::eval::config::CompareConfig;
use stancer::eval::gold::{self, GoldRow};
use stancer::eval::seen::{split_by_seen, FullReport};
use stancer::eval::{self, Bootstrap, Configuration, EvalReport, RunInfo};
use stancer::label::head::linear::TrainOptions;
use stancer::label::head::trained::EncoderRecord;
use stancer::label::schema::Schema;

use super::setup::{embed_cached, load_embedder, load_heads, notice, StanceArgs, ThemeHeadKind};
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

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    super::output::check_folder(args.json.as_deref())?;
    super::output::check_folder(args.html.as_deref())?;
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
        let rows = gold::read_all(&args.gold, &default_schema)?;
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
        let config = CompareConfig::read(path)?;
        let schema = match &config.schema {
            Some(s) => Schema::from_file(s)?,
            None => default_schema.clone(),
        };
        if configurations.is_empty() {
            labels = schema.theme_ids();
        }
        let rows = gold::read_all(&args.gold, &schema)?;
        let mut model = args.model.clone();
        if config.model.is_some() {
            model.model = config.model.clone();
        }
        if config.dtype.is_some() {
            model.dtype = config.dtype.clone();
        }
        let mut own = run.clone();
        if config.stance.is_some() {
            own.stance.stance = config.stance.clone();
        }
        if let Some(kind) = &config.theme_head {
            let parsed = <ThemeHeadKind as clap::ValueEnum>::from_str(kind, true);
            own.stance.theme_head = Some(parsed.map_err(|_| stancer::Error::Config {
                path: path.clone(),
                message: format!("theme_head '{kind}' is not one of prototype, entailment, nli"),
            })?);
        }
        let (name, heads) = (config.name, config.heads);
        notice(args.model.quiet, &format!("running configuration '{name}'"));
        configurations.push(run_configuration(Some(name), &model, &heads, &schema, &rows, &own)?.0);
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

/// How a configuration is run.
#[derive(Clone)]
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
        let stancer::eval::cross_validation::CrossValidation {
            themes,
            stances,
            grouping,
            folds,
        } = stancer::eval::cross_validation::cross_validate(
            rows, &vectors, schema, &embedder, &encoder, k, &options,
        )?;
        let split = match grouping {
            stancer::eval::cross_validation::Grouping::ByTarget => {
                "folds split by target, test texts left out of training"
            }
            stancer::eval::cross_validation::Grouping::ByRow => "folds split by paragraph text",
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
    let mut classifier = stancer::label::classify::Classifier::new(&embedder, &heads, schema, &[])?;
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

/// Exit code 1 when any report's macro-F1 is below the bar.
fn gate(reports: &[&EvalReport], bar: Option<f64>) -> ExitCode {
    let Some(bar) = bar else {
        return ExitCode::SUCCESS;
    };
    let failed = eval::below_bar(reports, bar);
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("stancer: below --min-macro-f1 {bar}: {}", failed.join("; "));
        ExitCode::from(1)
    }
}
