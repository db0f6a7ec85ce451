//! The `stancer` command line: parses flags, turns them into a validated run, and maps errors to
//! exit codes (0 ok, 1 a quality gate failed, 2 an error). Behaviour lives in the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(error) => {
            if cli::is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            let message = format!("{error:#}");
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("stancer: {message}");
            ExitCode::from(2)
        }
    }
}
