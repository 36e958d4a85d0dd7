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

struct ModelTask(ModelBenchConfig);

impl BackendTask for ModelTask {
    type Output = Vec<ModelBenchResult>;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        bench_models::<B>(&self.0, &devices[0])
    }
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Model(args) => model(args),
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
    if args.batch == 0 || args.res == 0 || args.steps == 0 || args.classes == 0 {
        anyhow::bail!("--batch, --res, --steps and --classes must be at least 1");
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
    let torch = match &args.torch {
        Some(python) => Some(run_torch_peer(python, &args, &models, threads)?),
        None => None,
    };
    let results = dispatch(&[args.device], DeviceChoice::Flag, ModelTask(cfg))?;
    crate::outln!(
        "{:<8} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "model",
        "s/step",
        "images/s",
        "optimizer s",
        "PyTorch i/s",
        "ours/PyTorch"
    );
    for r in &results {
        let peer = torch
            .as_ref()
            .and_then(|t| t.iter().find(|(k, _)| *k == r.kind).map(|(_, ips)| *ips));
        crate::outln!(
            "{:<8} {:>10.4} {:>10.1} {:>12.4} {:>12} {:>12}",
            r.kind.name(),
            r.step_s,
            r.images_per_s,
            r.optimizer_s,
            peer.map_or("-".into(), |p| format!("{p:.1}")),
            peer.map_or("-".into(), |p| format!("{:.2}", r.images_per_s / p)),
        );
        if let Some(plain) = r.plain_sgd_s {
            crate::outln!(
                "         RepOptimizer step {:.4} s vs plain SGD step {:.4} s ({:+.1}%)",
                r.optimizer_s,
                plain,
                100.0 * (r.optimizer_s / plain - 1.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the PyTorch peer with the same settings; returns images/s per model kind.
fn run_torch_peer(
    python: &PathBuf,
    args: &ModelArgs,
    models: &[ModelKind],
    threads: usize,
) -> anyhow::Result<Vec<(ModelKind, f64)>> {
    let kinds: Vec<&str> = models
        .iter()
        .filter(|k| **k != ModelKind::Deploy)
        .map(|k| k.name())
        .collect();
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
            &kinds.join(","),
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
    let mut figures = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("unexpected peer output: {line}"))?;
        if let (Some(kind), Some(ips)) = (
            v["kind"].as_str().and_then(ModelKind::parse),
            v["img_per_s"].as_f64(),
        ) {
            figures.push((kind, ips));
        }
    }
    Ok(figures)
}
