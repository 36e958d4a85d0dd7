//! `repopt-tui scales import|derive|show`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::interop::import_scales;
use crate::model::variant;
use crate::profile::{ScaleSource, ScalesProfile};
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
    },
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

pub fn run(cmd: ScalesCommand, runs_dir: &Path) -> anyhow::Result<ExitCode> {
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
        } => {
            let profile = scales_of(&from, variant.as_deref(), average_channels, runs_dir)?;
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
        } => {
            let profile = scales_of(&source, variant.as_deref(), average_channels, runs_dir)?;
            crate::out!("{}", profile.summary_table());
        }
    }
    Ok(ExitCode::SUCCESS)
}
