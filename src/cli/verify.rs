//! `repopt-tui verify`: CSLA (plain optimizer) against RepOpt (RepOptimizer) side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};

use crate::device::{BackendTask, DeviceChoice, DeviceSpec, dispatch};
use crate::model::variant;
use crate::optim::equivalence::{VerifyConfig, VerifyReport, run_equivalence};
use crate::optim::{OptimizerConfig, UpdateRule};
use crate::profile::ScalesProfile;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Adamw,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Model variant (default: the scales profile's variant, else T0).
    #[arg(long)]
    variant: Option<String>,
    /// Scales of the CSLA blocks; default: random per-channel scales, some negative
    /// (positive only for AdamW, which is exactly equivalent only for positive scales).
    #[arg(long, value_name = "FILE.ron")]
    scales: Option<PathBuf>,
    /// The update rule both sides use (the RepOptimizer's SGD or AdamW form).
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerArg,
    /// Training steps compared side by side.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Device: cpu, cuda:N, libtorch:cpu, libtorch:cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Images per step (random inputs and labels).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Input resolution (square).
    #[arg(long, default_value_t = 32)]
    resolution: usize,
    /// Learning rate of every step (constant).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Weight decay (added after the Grad Mult mask, as the RepOptimizer does).
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    /// AdamW's eps. It enters once per branch in the CSLA model and once per kernel in the
    /// RepOptimizer, so the two agree only as eps → 0.
    #[arg(long, default_value_t = 1e-12)]
    eps: f64,
    /// Largest relative difference accepted (f32 arithmetic).
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Seed of the model, the inputs and the random scales.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

struct VerifyTask(VerifyConfig);

impl BackendTask for VerifyTask {
    type Output = VerifyReport;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> VerifyReport {
        run_equivalence::<B>(&self.0, &devices[0])
    }
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    super::exit_on_interrupt("verify");
    // Range checks before anything is allocated.
    if args.resolution == 0 || args.resolution > 1024 {
        anyhow::bail!(
            "--resolution must be between 1 and 1024, not {}",
            args.resolution
        );
    }
    if args.batch == 0 || args.batch > 4096 {
        anyhow::bail!("--batch must be between 1 and 4096, not {}", args.batch);
    }
    if args.steps == 0 || args.steps > 100_000 {
        anyhow::bail!("--steps must be between 1 and 100000, not {}", args.steps);
    }
    for (name, v) in [
        ("--lr", args.lr),
        ("--eps", args.eps),
        ("--tolerance", args.tolerance),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            anyhow::bail!("{name} must be a positive number, not {v}");
        }
    }
    if !(args.weight_decay >= 0.0 && args.weight_decay.is_finite()) {
        anyhow::bail!(
            "--weight-decay must be a non-negative number, not {}",
            args.weight_decay
        );
    }
    let scales = match &args.scales {
        Some(path) => Some(ScalesProfile::load(path)?),
        None => None,
    };
    let name = args
        .variant
        .clone()
        .or_else(|| scales.as_ref().map(|s| s.variant.clone()))
        .unwrap_or_else(|| "T0".to_string());
    let v = variant(&name)?;
    if let (Some(s), Some(path)) = (&scales, &args.scales) {
        s.check(&v).map_err(|e| e.in_file(path))?;
    }
    let rule = match args.optimizer {
        OptimizerArg::Sgd => UpdateRule::official_sgd(),
        OptimizerArg::Adamw => UpdateRule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: args.eps,
        },
    };
    let scales = scales.or_else(|| {
        let negative = matches!(args.optimizer, OptimizerArg::Sgd);
        Some(crate::optim::equivalence::random_scales(
            &v, args.seed, negative,
        ))
    });
    let source = scales
        .as_ref()
        .map(|s| s.source.clone())
        .unwrap_or_default();
    let negatives = scales.as_ref().map_or(0, |s| s.negative_count());
    let cfg = VerifyConfig {
        variant: v,
        scales,
        optimizer: OptimizerConfig::new(rule, args.weight_decay),
        steps: args.steps,
        batch: args.batch,
        resolution: args.resolution,
        classes: 10,
        lr: args.lr,
        seed: args.seed,
        tensor_ops: false,
        update_path: None,
    };
    crate::outln!(
        "verify: {} with scales {} ({} negative), {:?}, wd {}, lr {}, {} of batch {} at {}x{} on {}",
        v.name,
        source,
        negatives,
        rule,
        args.weight_decay,
        args.lr,
        crate::output::plural(args.steps as u64, "step"),
        args.batch,
        args.resolution,
        args.resolution,
        args.device
    );
    let report = dispatch(&[args.device], DeviceChoice::Flag, VerifyTask(cfg))?;
    crate::outln!("{:>5} {:>12} {:>12}", "step", "CSLA loss", "RepOpt loss");
    for (i, (a, b)) in report
        .csla_losses
        .iter()
        .zip(&report.repopt_losses)
        .enumerate()
    {
        crate::outln!("{:>5} {:>12.6} {:>12.6}", i, a, b);
    }
    crate::outln!(
        "kernels: largest relative difference {:.2e} (block {})",
        report.kernel_rel_diff,
        report.worst_block
    );
    crate::outln!(
        "outputs: relative difference {:.2e}",
        report.output_rel_diff
    );
    crate::outln!(
        "(kernels moved {:.2e} relative to their initial values)",
        report.kernel_motion
    );
    let finite = report.kernel_rel_diff.is_finite()
        && report.output_rel_diff.is_finite()
        && report.kernel_motion.is_finite()
        && report
            .csla_losses
            .iter()
            .chain(&report.repopt_losses)
            .all(|l| l.is_finite());
    if !finite {
        crate::outln!(
            "FAIL: non-finite values (a loss, a kernel or an output is NaN or infinite): the training diverged (lower --lr), nothing was compared"
        );
        return Ok(ExitCode::FAILURE);
    }
    if report.max_rel_diff() <= args.tolerance {
        crate::outln!(
            "PASS: the RepOptimizer reproduces the multi-branch model (tolerance {:.0e})",
            args.tolerance
        );
        Ok(ExitCode::SUCCESS)
    } else {
        crate::outln!(
            "FAIL: difference {:.2e} above tolerance {:.0e}",
            report.max_rel_diff(),
            args.tolerance
        );
        Ok(ExitCode::FAILURE)
    }
}
