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
            println!("cache: {}", fetch::stancer_home().join("models").display());
            let manifests = Manifest::builtin();
            let width = manifests
                .iter()
                .map(|m| m.name.len())
                .chain(
                    stancer::encode::model::adapter::BUILTIN_STANCE
                        .iter()
                        .map(|b| b.name.len()),
                )
                .chain(["prototype".len()])
                .max()
                .unwrap_or(0);
            for manifest in manifests {
                let state = if fetch::is_cached(&manifest) {
                    "cached"
                } else {
                    "not cached"
                };
                let default = if manifest.name == stancer::encode::model::manifest::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<width$} {:<11} {}{default}",
                    manifest.name, state, manifest.description
                );
            }
            println!("stance models (--stance; built in, no download):");
            let adapters = stancer::encode::model::adapter::BUILTIN_STANCE;
            let default = stancer::encode::model::adapter::DEFAULT_STANCE;
            for builtin in adapters {
                let description =
                    toml::from_str::<stancer::encode::model::adapter::StanceManifest>(
                        builtin.manifest,
                    )
                    .map(|m| format!("{} (on {})", m.description, m.base))
                    .unwrap_or_default();
                let marker = if builtin.name == default {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<width$} {:<11} {description}{marker}",
                    builtin.name, "built in"
                );
            }
            let marker = if default == "prototype" {
                " (default)"
            } else {
                ""
            };
            println!(
                "{:<width$} {:<11} zero-shot prototype head on the encoder's vectors{marker}",
                "prototype", "built in"
            );
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
