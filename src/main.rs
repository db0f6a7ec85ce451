//! The `stancer` command line: parses flags, turns them into a validated run, and maps errors to
//! exit codes (0 ok, 1 a quality gate failed, 2 an error). Behaviour lives in the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_memory();
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

/// glibc hands large blocks (the encoder's activations, the trainer's tensors) straight back to
/// the kernel when they are freed, so every batch pays for fresh pages: page faults and zeroing,
/// about a tenth of a training step. Keeping freed memory in the heap for reuse makes
/// `finetune` faster (BENCHMARKS.md); peak memory is the same, and the process is short-lived.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tunables; called first thing in main, before any
    // other thread exists.
    unsafe {
        // Blocks up to 32 MiB (glibc's largest threshold) come from the heap, not fresh mmaps...
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // ...and the heap's free top is not trimmed back to the kernel below 1 GiB.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
