//! `stancer models list|fetch`.

use std::process::ExitCode;

use clap::Subcommand;
use stancer::model::fetch::{self, ModelSpec};
use stancer::model::Manifest;

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
            let width = manifests.iter().map(|m| m.name.len()).max().unwrap_or(0);
            for manifest in manifests {
                let state = if fetch::is_cached(&manifest) {
                    "cached"
                } else {
                    "not cached"
                };
                let default = if manifest.name == stancer::model::manifest::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<width$} {:<11} {}{default}",
                    manifest.name, state, manifest.description
                );
            }
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
