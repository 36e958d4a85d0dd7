//! `repopt-tui scales import|derive|show|history`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use crate::interop::import_scales;
use crate::model::variant;
use crate::profile::{ScaleSource, ScalesProfile};
use crate::rundir::{EpochMeans, scales_history};
use crate::train::scales::{load_scale_source, resolve_scale_source};

#[derive(Subcommand, Debug)]
pub enum ScalesCommand {
    /// Import an official Hyper-Search scales file (.pth) as a RON scales profile.
    Import {
        /// The PyTorch file, e.g. RepOpt-VGG-B1-scales.pth.
        file: PathBuf,
        /// The variant the scales belong to (A0 … L2).
        #[arg(long)]
        variant: String,
        /// Where to write the profile.
        #[arg(short, long, value_name = "FILE.ron")]
        output: PathBuf,
    },
    /// Write the scales a Target profile's `scales` (+ `average_channels`) stands for as a scales
    /// profile: all ones, the HS initialization, or any scales averaged across channels (the
    /// paper's Table 4).
    Derive {
        /// A scales profile, an HS run directory, run:<hs profile or run id> (under --runs-dir),
        /// `ones` or `hs-init`.
        #[arg(long, value_name = "SOURCE")]
        from: String,
        /// The variant (needed for `ones` and `hs-init`; checked against a file's).
        #[arg(long)]
        variant: Option<String>,
        /// Replace each layer's s, t and u by their average across the layer's channels.
        #[arg(long)]
        average_channels: bool,
        /// Where to write the profile.
        #[arg(short, long, value_name = "FILE.ron")]
        output: PathBuf,
        #[command(flatten)]
        dir: super::RunsDirArg,
    },
    /// Per block: mean/min/max of s, t, u and how many are negative — of a scales profile or of
    /// any source `derive` takes.
    Show {
        /// A scales profile, an HS run directory, run:<hs profile or run id>, `ones` or `hs-init`.
        source: String,
        /// The variant (needed for `ones` and `hs-init`; checked against a file's).
        #[arg(long)]
        variant: Option<String>,
        /// Show each layer's scales averaged across its channels.
        #[arg(long)]
        average_channels: bool,
        #[command(flatten)]
        dir: super::RunsDirArg,
    },
    /// The paper's Fig. 6 as numbers: per epoch the network's mean s, t and u (the average over
    /// layers of each layer's channel mean) of one or more Hyper-Search runs, from their events.
    History {
        /// HS run directories, or run:<hs profile or run id> (under --runs-dir).
        #[arg(required = true)]
        runs: Vec<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: super::RunsDirArg,
    },
}

/// One run's per-epoch network means.
#[derive(Debug, Serialize)]
struct RunHistory {
    run: String,
    epochs: Vec<EpochMeans>,
}

fn history(spec: &str, runs_dir: &Path) -> anyhow::Result<RunHistory> {
    let dir = match spec.strip_prefix("run:") {
        Some(name) => crate::train::newest_run(runs_dir, name, Some(crate::rundir::EVENTS_FILE))
            .with_context(|| format!("no run of '{name}' under {}", runs_dir.display()))?,
        None => PathBuf::from(spec),
    };
    let events = dir.join(crate::rundir::EVENTS_FILE);
    let (events, _) = crate::rundir::read_all(&events).with_context(|| {
        format!(
            "{}: not a run directory (no readable events.jsonl)",
            dir.display()
        )
    })?;
    let epochs = scales_history(&events);
    if epochs.is_empty() {
        anyhow::bail!(
            "{}: no scales events (only Hyper-Search runs write them, after each epoch)",
            dir.display()
        );
    }
    let run = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(RunHistory { run, epochs })
}

fn history_table(runs: &[RunHistory]) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "network mean of s, t, u per epoch (average over layers of each layer's channel mean; the paper's Fig. 6)\n",
    );
    let cell = |v: Option<f64>| v.map_or(format!("{:>9}", "-"), |v| format!("{v:>9.5}"));
    for r in runs {
        let _ = writeln!(
            out,
            "{}\n{:>5} {:>9} {:>9} {:>9}",
            r.run, "epoch", "s", "t", "u"
        );
        for e in &r.epochs {
            let _ = writeln!(
                out,
                "{:>5} {} {} {}",
                e.epoch,
                cell(e.s),
                cell(e.t),
                cell(e.u)
            );
        }
    }
    out
}

/// The scales of `spec` for `variant_name` (or the file's own variant), averaged if asked.
fn scales_of(
    spec: &str,
    variant_name: Option<&str>,
    average: bool,
    runs_dir: &Path,
) -> anyhow::Result<ScalesProfile> {
    let source = resolve_scale_source(spec, runs_dir)?;
    let name = match (&source, variant_name) {
        (_, Some(name)) => name.to_string(),
        (ScaleSource::Path(path), None) => ScalesProfile::load(path)?.variant,
        (_, None) => anyhow::bail!(
            "{spec} depends on the model: give --variant (one of {})",
            crate::model::variant::known_variants()
        ),
    };
    let v = variant(&name).with_context(|| match (&source, variant_name) {
        (ScaleSource::Path(path), None) => {
            format!("{}: the profile names an unknown variant", path.display())
        }
        _ => "--variant".to_string(),
    })?;
    load_scale_source(&source, average, &v)
}

pub fn run(cmd: ScalesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ScalesCommand::Import {
            file,
            variant: name,
            output,
        } => {
            let v = variant(&name)?;
            let profile = import_scales(&file, &v)?;
            profile
                .save(&output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            crate::outln!(
                "wrote {} ({} blocks of variant {}, {} negative values)",
                output.display(),
                profile.blocks.len(),
                v.name,
                profile.negative_count()
            );
        }
        ScalesCommand::Derive {
            from,
            variant,
            average_channels,
            output,
            dir,
        } => {
            let profile = scales_of(&from, variant.as_deref(), average_channels, &dir.runs_dir)?;
            profile
                .save(&output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            crate::outln!(
                "wrote {} ({} blocks of variant {}; {})",
                output.display(),
                profile.blocks.len(),
                profile.variant,
                profile.source
            );
        }
        ScalesCommand::Show {
            source,
            variant,
            average_channels,
            dir,
        } => {
            let profile = scales_of(&source, variant.as_deref(), average_channels, &dir.runs_dir)?;
            crate::out!("{}", profile.summary_table());
        }
        ScalesCommand::History { runs, json, dir } => {
            let histories = runs
                .iter()
                .map(|r| history(r, &dir.runs_dir))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&histories)?);
            } else {
                crate::out!("{}", history_table(&histories));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
