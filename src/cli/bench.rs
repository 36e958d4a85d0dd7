//! `repopt-tui bench model`: training-step figures, optionally beside the PyTorch peer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Subcommand};

use crate::bench::{ModelBenchConfig, ModelBenchResult, bench_models};
use crate::device::{BackendTask, DeviceChoice, DeviceSpec, dispatch};
use crate::model::{ModelKind, variant};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Seconds per training step and images/s of the target, RepVGG and HS models.
    Model(ModelArgs),
    /// Multi-node data parallel on loopback: two node processes on this machine, the all-reduce
    /// of each variant's step vector (MB/s) and a training step against one process.
    Collective(CollectiveArgs),
    /// One node of `bench collective` (started by it).
    #[command(hide = true)]
    CollectiveNode {
        #[command(flatten)]
        args: CollectiveArgs,
        /// This node's rank.
        #[arg(long)]
        rank: u32,
        /// Node 0's HOST:PORT.
        #[arg(long)]
        coordinator: String,
    },
    /// Images/s per worker thread of the CIFAR and ImageNet input pipelines.
    Data {
        /// Folder of JPEG photos (default: ../shared/data/imagenet-samples).
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Decoding and augmentation threads per pipeline.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seconds per pipeline.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Model variant (T0, T1, A0 … L2; `repopt-tui models` lists them).
    #[arg(long, default_value = "A0")]
    variant: String,
    /// Input resolution (square).
    #[arg(long, default_value_t = 32)]
    res: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Classes of the classifier head.
    #[arg(long, default_value_t = 100)]
    classes: usize,
    /// Comma-separated: target, repvgg, hs, deploy.
    #[arg(long, default_value = "target,repvgg,hs")]
    models: String,
    /// Timed training steps per model.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Rounds: each round measures every model, the PyTorch peer just before ours, so that
    /// each ratio compares two runs a few seconds apart; with more than one round the median
    /// ratio per model is printed too.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Untimed steps before the timed ones (allocations, kernel selection).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// CPU threads (rayon pool); default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Device: cpu, cuda:N, libtorch:cpu, libtorch:cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Also run the PyTorch peer (`scripts/peer_torch.py`) with this Python, in the same
    /// invocation and with the same settings and device, and print the ratio.
    #[arg(long, value_name = "PYTHON")]
    torch: Option<PathBuf>,
    /// Where the PyTorch peer script is (it gets `--device` for GPU devices).
    #[arg(long, default_value = "scripts/peer_torch.py")]
    torch_script: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CollectiveArgs {
    /// Comma-separated variants whose step vector (every float tensor of the target model with
    /// 1000 classes) is all-reduced.
    #[arg(long, default_value = "A0,B1")]
    variants: String,
    /// Timed all-reduces per variant (after one untimed).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Variant of the timed training steps.
    #[arg(long, default_value = "A0")]
    step_variant: String,
    /// Input resolution of the training steps.
    #[arg(long, default_value_t = 32)]
    res: usize,
    /// Images per node and step (weak scaling: two nodes train twice the images per step).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed training steps (after 2 untimed).
    #[arg(long, default_value_t = 5)]
    steps: usize,
}

impl CollectiveArgs {
    fn config(&self) -> anyhow::Result<crate::bench::CollectiveBenchConfig> {
        Ok(crate::bench::CollectiveBenchConfig {
            variants: self
                .variants
                .split(',')
                .map(|v| variant(v.trim()).map_err(|e| anyhow::anyhow!("--variants: {e}")))
                .collect::<anyhow::Result<_>>()?,
            iters: self.iters,
            step_variant: variant(&self.step_variant)
                .map_err(|e| anyhow::anyhow!("--step-variant: {e}"))?,
            resolution: self.res,
            batch: self.batch,
            classes: 100,
            warmup: 2,
            steps: self.steps,
        })
    }

    fn to_args(&self) -> Vec<String> {
        [
            ("--variants", self.variants.clone()),
            ("--iters", self.iters.to_string()),
            ("--step-variant", self.step_variant.clone()),
            ("--res", self.res.to_string()),
            ("--batch", self.batch.to_string()),
            ("--steps", self.steps.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }
}

/// A coordinator port whose next four ports are free too.
fn free_ports() -> anyhow::Result<u16> {
    // Below the ephemeral range (32768 on), which outgoing connections take ports from.
    for base in (29500u16..32760).step_by(7) {
        if (base..base + 5).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
    }
    anyhow::bail!("no 5 free consecutive ports on this machine")
}

/// `bench collective`: both nodes as child processes, each with half the cores; then the same
/// training step in this process alone with all of them.
fn collective(args: CollectiveArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let port = free_ports()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let half = (cores / 2).max(1);
    let children: Vec<_> = (0..2u32)
        .map(|rank| {
            std::process::Command::new(&exe)
                .args(["bench", "collective-node"])
                .args(args.to_args())
                .args(["--rank", &rank.to_string()])
                .args(["--coordinator", &format!("127.0.0.1:{port}")])
                .env("RAYON_NUM_THREADS", half.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("cannot start a node process")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut results = Vec::new();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "node {rank} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .rfind(|l| l.starts_with('{'))
            .with_context(|| format!("node {rank} printed no result: {stdout}"))?;
        results.push(serde_json::from_str::<crate::bench::CollectiveBenchResult>(
            line,
        )?);
    }
    type B = burn::backend::Autodiff<burn::backend::Flex>;
    let (one_s, _) = crate::bench::timed_dp_steps::<B>(None, &cfg, &Default::default())?;
    let r0 = &results[0];
    crate::outln!(
        "all-reduce of the step vector, 2 processes on loopback (burn-communication data service), mean of {}:",
        cfg.iters
    );
    crate::outln!(
        "{:<8} {:>12} {:>10} {:>10} {:>10}",
        "variant",
        "values",
        "MB",
        "ms",
        "MB/s"
    );
    for (name, n, s) in &r0.all_reduce {
        let mb = *n as f64 * 4.0 / 1e6;
        crate::outln!(
            "{name:<8} {n:>12} {mb:>10.1} {:>10.1} {:>10.1}",
            s * 1e3,
            mb / s
        );
    }
    let two_s = results.iter().map(|r| r.step_s).fold(0.0, f64::max);
    crate::outln!(
        "training step, {} target {}x{} batch {} per process, mean of {}:",
        cfg.step_variant.name,
        cfg.resolution,
        cfg.resolution,
        cfg.batch,
        cfg.steps
    );
    crate::outln!(
        "  1 process, {cores} threads: {:.3} s/step, {:.1} images/s",
        one_s,
        cfg.batch as f64 / one_s
    );
    crate::outln!(
        "  2 processes, {half} threads each: {:.3} s/step (all-reduce {:.3} s), {:.1} images/s in all",
        two_s,
        r0.step_all_reduce_s,
        2.0 * cfg.batch as f64 / two_s
    );
    crate::outln!("  step time, 2 processes against 1: {:.2}x", two_s / one_s);
    Ok(ExitCode::SUCCESS)
}

fn collective_node(
    args: CollectiveArgs,
    rank: u32,
    coordinator: String,
) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    let layout = crate::dist::DistOptions {
        nodes: 2,
        node_rank: rank,
        coordinator,
        data_port: None,
        timeout: std::time::Duration::from_secs(300),
    }
    .check()?;
    let c = crate::dist::Collective::join(layout, Default::default())?;
    let result = crate::bench::collective_node(&c, &cfg)?;
    crate::outln!("{}", serde_json::to_string(&result)?);
    c.finish();
    Ok(ExitCode::SUCCESS)
}

/// What the PyTorch peer measured of one model.
#[derive(Debug, Clone, Copy)]
struct PeerFigures {
    images_per_s: f64,
    /// Mean seconds of the optimizer part of a step (CPU only).
    optimizer_s: Option<f64>,
}

/// One model measured in one round: ours, and the PyTorch peer's figures when it ran.
struct Measured {
    round: usize,
    ours: ModelBenchResult,
    peer: Option<PeerFigures>,
}

/// The rounds of `bench model`: per round and model, the peer (when asked for) and then ours.
struct ModelTask<'a> {
    cfg: ModelBenchConfig,
    rounds: usize,
    peer: Option<&'a dyn Fn(ModelKind) -> anyhow::Result<Option<PeerFigures>>>,
}

impl BackendTask for ModelTask<'_> {
    type Output = anyhow::Result<Vec<Measured>>;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let mut measured = Vec::new();
        for round in 1..=self.rounds {
            for &kind in &self.cfg.models {
                let peer = match self.peer {
                    Some(run_peer) => run_peer(kind)?,
                    None => None,
                };
                let one = ModelBenchConfig {
                    models: vec![kind],
                    ..self.cfg.clone()
                };
                for ours in bench_models::<B>(&one, &devices[0]) {
                    print_row(self.rounds, round, &ours, peer);
                    measured.push(Measured { round, ours, peer });
                }
            }
        }
        Ok(measured)
    }
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Model(args) => model(args),
        BenchCommand::Collective(args) => collective(args),
        BenchCommand::CollectiveNode {
            args,
            rank,
            coordinator,
        } => collective_node(args, rank, coordinator),
        BenchCommand::Data {
            samples,
            threads,
            seconds,
        } => {
            if threads == 0 || threads > 1024 {
                anyhow::bail!("--threads must be between 1 and 1024");
            }
            if !(seconds.is_finite() && seconds > 0.0) {
                anyhow::bail!("--seconds must be a positive number");
            }
            crate::out!(
                "{}",
                crate::data::data_bench_command(samples.as_deref(), threads, seconds)?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn model(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let v = variant(&args.variant)?;
    let models = args
        .models
        .split(',')
        .map(|m| {
            ModelKind::parse(m.trim()).ok_or_else(|| {
                anyhow::anyhow!("unknown model '{m}': expected target, repvgg, hs or deploy")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(t) = args.threads
        && (t == 0 || t > 1024)
    {
        anyhow::bail!("--threads must be between 1 and 1024");
    }
    if args.batch == 0 || args.res == 0 || args.steps == 0 || args.classes == 0 || args.rounds == 0
    {
        anyhow::bail!("--batch, --res, --steps, --classes and --rounds must be at least 1");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    crate::device::set_compute_threads(threads);
    let cfg = ModelBenchConfig {
        variant: v,
        resolution: args.res,
        batch: args.batch,
        classes: args.classes,
        models: models.clone(),
        warmup: args.warmup,
        steps: args.steps,
    };
    crate::outln!(
        "bench model: {} at {}x{}, batch {}, {} classes, {}, {} (engine: {}), {} after {} warm-up",
        v.name,
        args.res,
        args.res,
        args.batch,
        args.classes,
        crate::output::plural(threads as u64, "thread"),
        args.device,
        crate::device::engine_description(args.device),
        crate::output::plural(args.steps as u64, "step"),
        args.warmup
    );
    let run_peer = |kind: ModelKind| -> anyhow::Result<Option<PeerFigures>> {
        let Some(python) = &args.torch else {
            return Ok(None);
        };
        if kind == ModelKind::Deploy {
            return Ok(None);
        }
        run_torch_peer(python, &args, kind, threads)
    };
    crate::outln!(
        "{:<8} {:>10} {:>10} {:>12} {:>13} {:>12} {:>12}",
        "model",
        "s/step",
        "images/s",
        "optimizer s",
        "PyTorch opt s",
        "PyTorch i/s",
        "ours/PyTorch"
    );
    let task = ModelTask {
        cfg,
        rounds: args.rounds,
        peer: args.torch.is_some().then_some(&run_peer as _),
    };
    let measured = dispatch(&[args.device], DeviceChoice::Flag, task)??;
    if args.rounds > 1 {
        print_medians(&models, &measured);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of the table (and the RepOptimizer's update against plain SGD's under it).
fn print_row(rounds: usize, round: usize, r: &ModelBenchResult, peer: Option<PeerFigures>) {
    let name = if rounds > 1 {
        format!("{} #{round}", r.kind.name())
    } else {
        r.kind.name().to_string()
    };
    crate::outln!(
        "{:<8} {:>10.4} {:>10.1} {:>12.4} {:>13} {:>12} {:>12}",
        name,
        r.step_s,
        r.images_per_s,
        r.optimizer_s,
        peer.and_then(|p| p.optimizer_s)
            .map_or("-".into(), |s| format!("{s:.4}")),
        peer.map_or("-".into(), |p| format!("{:.1}", p.images_per_s)),
        peer.map_or("-".into(), |p| format!(
            "{:.2}",
            r.images_per_s / p.images_per_s
        )),
    );
    if let Some(c) = r.sgd_comparison {
        crate::outln!(
            "         RepOptimizer step {:.4} s vs plain SGD step {:.4} s ({:+.1}%), in turn",
            c.repopt_s,
            c.plain_sgd_s,
            100.0 * c.overhead()
        );
    }
}

/// Per model over the rounds: the median images/s, ratio to the peer and optimizer overhead.
fn print_medians(models: &[ModelKind], measured: &[Measured]) {
    let rounds = measured.iter().map(|m| m.round).max().unwrap_or(0);
    crate::outln!("median of {rounds} rounds:");
    for &kind in models {
        let of = |f: &dyn Fn(&Measured) -> Option<f64>| {
            crate::output::median(
                measured
                    .iter()
                    .filter(|m| m.ours.kind == kind)
                    .filter_map(f),
            )
        };
        let ours = of(&|m| Some(m.ours.images_per_s));
        let ratio = of(&|m| m.peer.map(|p| m.ours.images_per_s / p.images_per_s));
        let overhead = of(&|m| m.ours.sgd_comparison.map(|c| c.overhead()));
        let mut line = format!("  {:<7} {:>8.1} images/s", kind.name(), ours.unwrap_or(0.0));
        if let Some(r) = ratio {
            line += &format!(", ours/PyTorch {r:.2}");
        }
        if let Some(o) = overhead {
            line += &format!(", RepOptimizer step vs plain SGD {:+.1}%", 100.0 * o);
        }
        crate::outln!("{line}");
    }
}

/// Runs the PyTorch peer on one model (not `deploy`, which it lacks) with the same settings;
/// returns its figures, None when it printed none for that model.
fn run_torch_peer(
    python: &PathBuf,
    args: &ModelArgs,
    kind: ModelKind,
    threads: usize,
) -> anyhow::Result<Option<PeerFigures>> {
    let out = std::process::Command::new(python)
        .arg(&args.torch_script)
        .args([
            "--variant",
            &args.variant,
            "--res",
            &args.res.to_string(),
            "--bs",
            &args.batch.to_string(),
        ])
        .args([
            "--classes",
            &args.classes.to_string(),
            "--steps",
            &args.steps.to_string(),
        ])
        .args([
            "--warm",
            &args.warmup.to_string(),
            "--threads",
            &threads.to_string(),
            "--kinds",
            kind.name(),
        ])
        .args(
            args.device
                .gpu_index()
                .map(|i| vec!["--device".to_string(), format!("cuda:{i}")])
                .unwrap_or_default(),
        )
        .output()
        .with_context(|| format!("cannot run the PyTorch peer with {}", python.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "the PyTorch peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("unexpected peer output: {line}"))?;
        if let (Some(k), Some(images_per_s)) = (
            v["kind"].as_str().and_then(ModelKind::parse),
            v["img_per_s"].as_f64(),
        ) && k == kind
        {
            return Ok(Some(PeerFigures {
                images_per_s,
                optimizer_s: v["optimizer_s"].as_f64(),
            }));
        }
    }
    Ok(None)
}
