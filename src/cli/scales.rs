//! `repopt-tui scales import|show`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::interop::import_scales;
use crate::model::variant;
use crate::profile::ScalesProfile;

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
    /// Per block: mean/min/max of s, t, u and how many are negative.
    Show {
        /// The scales profile (.ron) to summarize.
        file: PathBuf,
    },
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
        ScalesCommand::Show { file } => {
            let profile = ScalesProfile::load(&file)?;
            let v = variant(&profile.variant).with_context(|| {
                format!("{}: the profile names an unknown variant", file.display())
            })?;
            profile
                .check(&v)
                .map_err(|m| anyhow::anyhow!("{}: {m}", file.display()))?;
            crate::out!("{}", profile.summary_table());
        }
    }
    Ok(ExitCode::SUCCESS)
}
