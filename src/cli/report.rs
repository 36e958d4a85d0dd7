//! `repopt-tui report RUN_DIR... -o DIR`: one page (Markdown + SVG charts) about some runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::report::{load_run, prepare_out_dir, write_report};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories (training runs, and probe directories for the MaxBS column), e.g.
    /// checkpoints/<run-id>.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// Where report.md and its charts go (created if needed; never inside a run directory).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // The output is checked first, so a bad -o fails before any run is read.
    let out = prepare_out_dir(&args.output, &args.runs)?;
    let mut runs = Vec::new();
    for dir in &args.runs {
        // The same directory twice would be two identical rows.
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if runs.iter().any(|(k, _): &(PathBuf, _)| *k == key) {
            continue;
        }
        runs.push((key, load_run(dir)?));
    }
    let runs: Vec<_> = runs.into_iter().map(|(_, r)| r).collect();
    for r in &runs {
        for note in &r.notes {
            crate::errln!("{}: {note}", r.dir.display());
        }
    }
    let written = write_report(&runs, &out)?;
    crate::outln!(
        "wrote {} ({} run{}, {} chart{}{})",
        written.markdown.display(),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        written.charts.len(),
        if written.charts.len() == 1 { "" } else { "s" },
        if written.charts.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                written
                    .charts
                    .iter()
                    .filter_map(|c| c.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}
