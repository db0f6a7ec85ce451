//! `stancer models list|fetch`.

use std::process::ExitCode;

use clap::Subcommand;
use stancer::encode::model::fetch::{self, ModelSpec};
use stancer::encode::model::Manifest;

use super::setup::notice;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Show the known models and whether each is in the local cache.
    List,
    /// Fetch a model into the cache ahead of time, verifying every file's sha256.
    Fetch {
        /// A manifest name or a manifest file (.toml).
        name: String,
        /// No progress output.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

pub fn run(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::List => {
            list();
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Fetch { name, quiet } => {
            let manifest = match ModelSpec::parse(Some(&name))? {
                ModelSpec::Manifest(manifest) => *manifest,
                ModelSpec::Folder(folder) => anyhow::bail!(
                    "{} is a local folder: there is nothing to fetch",
                    folder.display()
                ),
            };
            let folder = fetch::ensure_cached(&manifest, true, &mut |line| notice(quiet, line))?;
            println!(
                "{}: {} files verified in {}",
                manifest.name,
                manifest.files.len(),
                folder.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One row of `models list`.
struct Row {
    name: String,
    state: &'static str,
    can: &'static str,
    description: String,
    verified: String,
}

/// Every model stancer knows: what it can do (embed, pair-classify, NLI zero-shot), whether it
/// is cached, and how stancer's tests check it.
fn list() {
    use stancer::encode::model::adapter::{StanceManifest, BUILTIN_STANCE, DEFAULT_STANCE};
    use stancer::encode::model::manifest::{ModelTask, DEFAULT_MODEL};

    println!("cache: {}", fetch::stancer_home().join("models").display());
    let marker = |default: bool| if default { " (default)" } else { "" };
    let mut models = Vec::new();
    for manifest in Manifest::builtin() {
        let licence = manifest
            .license
            .as_deref()
            .map(|l| format!("; {l}"))
            .unwrap_or_default();
        models.push(Row {
            state: if fetch::is_cached(&manifest) {
                "cached"
            } else {
                "not cached"
            },
            can: match manifest.task {
                ModelTask::Embed => "embed",
                ModelTask::Nli => "NLI zero-shot",
            },
            description: format!(
                "{}{licence}{}",
                manifest.description,
                marker(manifest.name == DEFAULT_MODEL)
            ),
            verified: manifest.verified.clone(),
            name: manifest.name,
        });
    }
    let mut stance = Vec::new();
    for builtin in BUILTIN_STANCE {
        let description = toml::from_str::<StanceManifest>(builtin.manifest)
            .map(|m| format!("{} (on {})", m.description, m.base))
            .unwrap_or_default();
        stance.push(Row {
            name: builtin.name.to_string(),
            state: "built in",
            can: "pair-classify",
            description: format!("{description}{}", marker(builtin.name == DEFAULT_STANCE)),
            verified: "adapter sha256 checked on every load; merged equals unmerged forward, \
                       batch-invariant (tests/integration/finetune.rs); scores in its card.json"
                .into(),
        });
    }
    stance.push(Row {
        name: "prototype".into(),
        state: "built in",
        can: "vectors",
        description: format!(
            "zero-shot prototype head on the encoder's vectors{}",
            marker(DEFAULT_STANCE == "prototype")
        ),
        verified: String::new(),
    });
    let name_width = models
        .iter()
        .chain(&stance)
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0);
    let can_width = models
        .iter()
        .chain(&stance)
        .map(|r| r.can.len())
        .max()
        .unwrap_or(0);
    let print = |rows: &[Row]| {
        for row in rows {
            println!(
                "  {:<name_width$}  {:<10}  {:<can_width$}  {}",
                row.name, row.state, row.can, row.description
            );
            if !row.verified.is_empty() {
                println!(
                    "  {:<name_width$}  {:<10}  {:<can_width$}  verified: {}",
                    "", "", "", row.verified
                );
            }
        }
    };
    println!("models (--model NAME; an NLI model labels themes and stances zero-shot by itself):");
    print(&models);
    println!("stance models (--stance NAME; built in, no download):");
    print(&stance);
}
