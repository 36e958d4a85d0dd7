//! repopt-tui: see `src/cli` for the command line, `src/lib.rs` for the layers.

use std::process::ExitCode;

fn main() -> ExitCode {
    repopt_tui::device::keep_freed_memory();
    match repopt_tui::cli::run() {
        Ok(code) => code,
        Err(e) => {
            repopt_tui::errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
