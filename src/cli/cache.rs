//! `stancer cache info|clear`: the embedding cache.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Where the embedding cache is and how big it is.
    Info,
    /// Delete every cached embedding (models stay).
    Clear,
}

pub fn run(command: CacheCommand) -> anyhow::Result<ExitCode> {
    let folder = stancer::encode::embed_cache::cache_folder();
    match command {
        CacheCommand::Info => {
            let (files, bytes) = stancer::encode::embed_cache::usage();
            println!(
                "{}: {files} files, {:.1} MiB",
                folder.display(),
                bytes as f64 / (1 << 20) as f64
            );
        }
        CacheCommand::Clear => {
            let freed = stancer::encode::embed_cache::clear()?;
            println!(
                "cleared {} ({:.1} MiB freed)",
                folder.display(),
                freed as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
