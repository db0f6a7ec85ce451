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
            // The whole chain on one line, candle's captured backtraces left out.
            eprintln!("stancer: {}", stancer::error::one_line(error.as_ref()));
            ExitCode::from(2)
        }
    }
}
