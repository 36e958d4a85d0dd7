//! `repopt-tui demo`: the whole method end to end on the CPU in a few minutes, from profiles
//! built into the binary: a Hyper-Search of the small T1 model on the synthetic data set, then
//! RepOpt-VGG T1 trained with the RepOptimizer built from the scales it found.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::train::{RunOptions, RunOutcome, run};

/// The shipped demo profiles, embedded so the demo runs from any directory.
pub const DEMO_HS: &str = include_str!("../../profiles/demo-hs.ron");
pub const DEMO_TARGET: &str = include_str!("../../profiles/demo-target.ron");

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    runs: super::RunsDirArg,
}

pub fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runs_dir = args.runs.runs_dir;
    let dir = tempfile_dir()?;
    let finished = run_both(&dir, &runs_dir);
    let _ = std::fs::remove_dir_all(&dir);
    if !finished? {
        return Ok(ExitCode::FAILURE);
    }
    crate::outln!(
        "demo: done. Runs are in {}; watch or compare them with `repopt-tui` (the dashboard).",
        runs_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The HS demo, then the target demo; false when one did not finish.
fn run_both(dir: &std::path::Path, runs_dir: &std::path::Path) -> anyhow::Result<bool> {
    for (name, text) in [("demo-hs", DEMO_HS), ("demo-target", DEMO_TARGET)] {
        let profile = dir.join(format!("{name}.ron"));
        std::fs::write(&profile, text)
            .with_context(|| format!("cannot write {}", profile.display()))?;
        let opts = RunOptions {
            dist: None,
            profile,
            resume: false,
            checkpoint: None,
            run_id: None,
            runs_dir: runs_dir.to_path_buf(),
            stop_after: None,
            // The demo chains its runs itself: no "next" hints naming its temporary profiles.
            profile_arg: None,
        };
        let outcome = run(opts)?;
        if outcome != RunOutcome::Finished {
            crate::outln!("demo: {name} did not finish ({outcome:?})");
            return Ok(false);
        }
    }
    Ok(true)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("repopt-tui-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
