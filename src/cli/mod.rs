//! The command line: `repopt-tui` opens the dashboard on a terminal, `--profile` runs headless,
//! and subcommands serve the tools around a run.

mod bench;
pub mod demo;
pub mod kernel_stats;
mod models;
mod probe;
mod quantize;
mod report;
mod scales;
mod verify;
mod weights;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "repopt-tui",
    version,
    // A run option before a subcommand would be ignored by it: refuse instead.
    args_conflicts_with_subcommands = true,
    about = "Train convnets with RepOptimizers: Hyper-Search, RepOpt-VGG, RepVGG baseline, live dashboard",
    long_about = "Train convnets with RepOptimizers (gradient re-parameterization, Ding et al., ICLR 2023).\n\n\
        With no arguments on a terminal: the dashboard. With --profile: a headless run in the \
        foreground (progress on stdout, everything else in the run directory)."
)]
pub struct Cli {
    /// Run this profile headless: a file (profiles/b1.ron) or a bare name (b1: profiles/b1.ron
    /// in the working directory or beside the binary).
    #[arg(long, value_name = "FILE.ron")]
    pub profile: Option<PathBuf>,
    /// Continue a run from its newest valid checkpoint (with --profile): the run --run-id names,
    /// else the newest unfinished run of the profile (a finished run is never continued).
    #[arg(long, requires = "profile")]
    pub resume: bool,
    /// Resume from this checkpoint file instead of the newest one (with --resume).
    #[arg(long, value_name = "FILE.ckpt", requires = "resume")]
    pub checkpoint: Option<PathBuf>,
    /// Stop after this many iterations (checkpoint + `stopped` event, as on SIGINT); for
    /// time-boxed runs and tests.
    #[arg(long, value_name = "N", requires = "profile")]
    pub stop_after: Option<u64>,
    /// Run id (folder name under the runs directory); default: <profile>-<UTC time>. With
    /// --resume: the run to continue.
    #[arg(long, value_name = "ID", requires = "profile")]
    pub run_id: Option<String>,
    /// Where run directories live (the headless run and the dashboard; subcommands that use
    /// one take their own --runs-dir).
    #[arg(long, value_name = "DIR", default_value = crate::train::DEFAULT_RUNS_DIR)]
    pub runs_dir: PathBuf,
    /// Multi-node data parallel: the number of nodes (processes) of the job, one per machine,
    /// each driving the profile's devices (README, "Multi-node").
    #[arg(
        long,
        value_name = "N",
        requires_all = ["profile", "node_rank", "coordinator"]
    )]
    pub nodes: Option<u32>,
    /// This node's rank, 0 to N-1 (with --nodes); node 0 hosts the coordinator and writes the
    /// run directory. Under Slurm: $SLURM_NODEID.
    #[arg(long, value_name = "R", requires = "nodes")]
    pub node_rank: Option<u32>,
    /// HOST:PORT of node 0, where the nodes meet (with --nodes); every node N also listens on
    /// PORT + 1 + N for tensor transfers, unless --data-port says otherwise.
    #[arg(long, value_name = "HOST:PORT", requires = "nodes")]
    pub coordinator: Option<String>,
    /// This node's port for tensor transfers (with --nodes); default: coordinator port + 1 + rank.
    #[arg(long, value_name = "PORT", requires = "nodes")]
    pub data_port: Option<u16>,
    /// Seconds any node waits for the others (joining, each step) before the job ends with an
    /// error on every node (with --nodes).
    #[arg(long, value_name = "SECONDS", requires = "nodes", default_value_t = crate::dist::DEFAULT_TIMEOUT_S)]
    pub collective_timeout: u64,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scales profiles: import the official .pth files, derive ablation scales, inspect them.
    #[command(subcommand)]
    Scales(scales::ScalesCommand),
    /// Every model variant with its parameter counts.
    Models(models::ModelsArgs),
    /// Check the RepOptimizer against the multi-branch model it stands for (CSLA ≡ RepOpt).
    Verify(verify::VerifyArgs),
    /// The method end to end on the CPU in minutes: a Hyper-Search on synthetic data, then
    /// RepOpt-VGG trained with the scales it found (profiles built in).
    Demo(demo::DemoArgs),
    /// The dashboard (what `repopt-tui` opens on a terminal): runs, charts, scales, GPUs, MaxBS.
    Dashboard(DashboardArgs),
    /// Data sets: what a spec resolves to, and a full read of every image.
    #[command(subcommand)]
    Data(DataCommand),
    /// Evaluate weights (official .pth, safetensors or a checkpoint) on a profile's validation data.
    Eval(weights::EvalArgs),
    /// Export a run's weights as safetensors with the official PyTorch names.
    Export(weights::ExportArgs),
    /// The largest batch whose training step fits, for RepOpt-VGG, RepVGG and HS (Table 2).
    Probe(probe::ProbeArgs),
    /// One trial of the probe, run in a child process.
    #[command(hide = true)]
    ProbeTrial(probe::TrialArgs),
    /// Per layer: the spread of the 3x3 kernels' centre taps against their eight surrounding
    /// taps, as trained, after BN fusion and after branch merging (the paper's Table 11).
    KernelStats(kernel_stats::KernelStatsArgs),
    /// INT8 post-training quantization (simulated) of the deploy form: FP32 and INT8 top-1 per
    /// scheme, and per layer why a kernel quantizes badly (the paper's Table 8).
    Quantize(quantize::QuantizeArgs),
    /// One page about some runs, to paste into a paper draft or an issue: report.md (a row per
    /// run, INT8 per scheme, MaxBS, kernel statistics) and SVG charts beside it.
    Report(report::ReportArgs),
    /// Benchmarks: training steps of the models.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// `--runs-dir` of the subcommands that read or write run directories (the others have none).
#[derive(clap::Args, Debug, Clone)]
pub struct RunsDirArg {
    /// Where run directories live.
    #[arg(long, value_name = "DIR", default_value = crate::train::DEFAULT_RUNS_DIR)]
    pub runs_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct DashboardArgs {
    #[command(flatten)]
    runs: RunsDirArg,
    /// Where run profiles (`*.ron`) and scales profiles (`scales/*.ron`) are listed from.
    #[arg(long, default_value = "profiles")]
    profiles_dir: PathBuf,
    /// How often run directories are polled, in milliseconds.
    #[arg(long, default_value_t = 500)]
    refresh_ms: u64,
    /// Capture the mouse (click tabs and runs, scroll); turns off the terminal's text selection.
    #[arg(long)]
    mouse: bool,
}

fn dashboard(args: DashboardArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::tui::run_dashboard(crate::tui::DashboardOptions {
        runs_dir: args.runs.runs_dir,
        profiles_dir: args.profiles_dir,
        refresh: std::time::Duration::from_millis(args.refresh_ms.max(50)),
        mouse: args.mouse,
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Kind, path, images per split, classes and image size of a data set spec: `cifar10:PATH`,
    /// `cifar100:PATH`, `folder:PATH[,size=224]`, `synthetic:classes=10,size=32`, or a run profile.
    Show {
        /// A data set spec (see above) or a run profile (.ron) whose data is meant.
        spec: String,
    },
    /// Decode every image of a data set spec (finds corrupt files before a long run).
    Verify {
        /// A data set spec (as for `data show`) or a run profile (.ron) whose data is meant.
        spec: String,
    },
}

/// A flag set to the signal's number on SIGINT, SIGTERM or SIGHUP, for commands that stop
/// cleanly (`eval` checks it between batches). Installing handlers also undoes an inherited
/// "ignore" (a script's background job ignores SIGINT), so Ctrl-C always reaches the command.
pub(crate) fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicUsize::new(0));
        for signal in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            // Failing to install a handler leaves the default action (terminate): acceptable.
            let _ = signal_hook::flag::register_usize(signal, flag.clone(), signal as usize);
        }
        flag
    })
    .clone()
}

/// For commands with nothing to save (`verify`): on SIGINT, SIGTERM or SIGHUP, say so and exit
/// (130 for SIGINT, 128 + the signal otherwise) within about 50 ms, whatever the command is doing.
pub(crate) fn exit_on_interrupt(command: &'static str) {
    let flag = interrupt_flag();
    std::thread::spawn(move || {
        loop {
            let signal = flag.load(std::sync::atomic::Ordering::SeqCst);
            if signal != 0 {
                crate::errln!(
                    "{command}: interrupted ({})",
                    crate::train::trainer::signal_name(signal)
                );
                std::process::exit(128 + signal as i32);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
}

/// A data spec argument may also be a run profile: its `data` section is used.
fn data_spec_arg(spec: &str) -> anyhow::Result<String> {
    if spec.ends_with(".ron") && std::path::Path::new(spec).is_file() {
        let profile = crate::profile::RunProfile::load(std::path::Path::new(spec))?;
        // Plain RON (explicit `Some`), the form the data spec parser reads.
        return Ok(ron::to_string(&profile.data)?);
    }
    Ok(spec.to_string())
}

/// Parses the command line and runs it. Errors are printed by `main` as one clear line.
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Scales(cmd)) => scales::run(cmd),
        Some(Command::Models(args)) => models::run(args),
        Some(Command::KernelStats(args)) => kernel_stats::run(args),
        Some(Command::Verify(args)) => verify::run(args),
        Some(Command::Bench(cmd)) => bench::run(cmd),
        Some(Command::Dashboard(args)) => dashboard(args),
        Some(Command::Data(DataCommand::Show { spec })) => {
            crate::out!(
                "{}",
                crate::data::data_show_command(&data_spec_arg(&spec)?)?
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Some(Command::Data(DataCommand::Verify { spec })) => {
            crate::out!(
                "{}",
                crate::data::data_verify_command(&data_spec_arg(&spec)?)?
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Some(Command::Probe(args)) => probe::probe(args),
        Some(Command::ProbeTrial(args)) => probe::trial(args),
        Some(Command::Eval(args)) => weights::eval(args),
        Some(Command::Quantize(args)) => quantize::run(args),
        Some(Command::Export(args)) => weights::export(args),
        Some(Command::Report(args)) => report::run(args),
        Some(Command::Demo(args)) => demo::run_demo(args),
        None => match cli.profile {
            Some(arg) => {
                // `--profile b1` is profiles/b1.ron. A resumed run needs only the name when its
                // profile file is gone (the run continues with its frozen copy).
                let profile = match crate::profile::resolve_run_profile(&arg) {
                    Ok(p) => p,
                    Err(_) if cli.resume => arg.clone(),
                    Err(e) => return Err(e.into()),
                };
                let outcome = crate::train::run(crate::train::RunOptions {
                    profile_arg: Some(arg.display().to_string()),
                    profile,
                    resume: cli.resume,
                    checkpoint: cli.checkpoint,
                    run_id: cli.run_id,
                    runs_dir: cli.runs_dir,
                    stop_after: cli.stop_after,
                    dist: cli.nodes.map(|nodes| crate::dist::DistOptions {
                        nodes,
                        node_rank: cli.node_rank.unwrap_or(0),
                        coordinator: cli.coordinator.clone().unwrap_or_default(),
                        data_port: cli.data_port,
                        timeout: std::time::Duration::from_secs(cli.collective_timeout),
                    }),
                })?;
                Ok(match outcome {
                    crate::train::RunOutcome::Failed(_) => std::process::ExitCode::FAILURE,
                    _ => std::process::ExitCode::SUCCESS,
                })
            }
            None => {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
                    let args = DashboardArgs {
                        runs: RunsDirArg {
                            runs_dir: cli.runs_dir,
                        },
                        profiles_dir: "profiles".into(),
                        refresh_ms: 500,
                        mouse: false,
                    };
                    return dashboard(args);
                }
                // Not a terminal (a pipe, cron, CI): say what the tool does instead.
                use clap::CommandFactory;
                crate::out!("{}", Cli::command().render_help());
                Ok(std::process::ExitCode::SUCCESS)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every visible command and subcommand, with its path (`""` for the top level).
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(path: String, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            out.push((path.clone(), cmd.clone()));
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let p = format!("{path} {}", sub.get_name()).trim().to_string();
                walk(p, sub, out);
            }
        }
        let mut out = Vec::new();
        walk(String::new(), &Cli::command(), &mut out);
        out
    }

    #[test]
    fn every_argument_has_help_text() {
        let mut missing = Vec::new();
        for (path, cmd) in commands() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("repopt-tui {path} {id}"));
                }
            }
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn runs_dir_only_where_run_directories_are_used() {
        let users = [
            "",
            "dashboard",
            "probe",
            "demo",
            "scales derive",
            "scales show",
            "scales history",
        ];
        for (path, cmd) in commands() {
            let has = cmd
                .get_arguments()
                .any(|a| a.get_long() == Some("runs-dir"));
            assert_eq!(has, users.contains(&path.as_str()), "`{path}`");
        }
        // Given before a subcommand it would be ignored: an error instead.
        assert!(Cli::try_parse_from(["repopt-tui", "--runs-dir", "x", "models"]).is_err());
        let cli = Cli::try_parse_from([
            "repopt-tui",
            "probe",
            "--profile",
            "p.ron",
            "--runs-dir",
            "r",
        ])
        .unwrap();
        let Some(Command::Probe(args)) = cli.command else {
            panic!("probe expected");
        };
        assert_eq!(args.runs.runs_dir, PathBuf::from("r"));
    }
}
