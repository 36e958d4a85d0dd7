//! `repopt-tui kernel-stats`: the paper's Table 11 / Fig. 5 for any weights — per layer the
//! standard deviation of the 3x3 kernel's centre and of its eight surrounding taps, as trained,
//! after BN fusion and after branch merging.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};

use crate::device::{BackendTask, DeviceSpec, dispatch};
use crate::model::kernel_stats::{
    CentreSurround, KernelStatsReport, LayerKernelStats, kernel_stats,
};
use crate::model::{ModelKind, Variant, variant};
use crate::profile::RunKind;
use crate::train::checkpoint;
use crate::train::weights::{load_tensors, read_weights};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// RepOpt-VGG (conv3x3 + BN).
    Target,
    /// The Hyper-Search model (CSLA blocks with scales).
    Hs,
    /// RepVGG at training time (three branches).
    Repvgg,
    /// RepVGG in deploy form (one conv3x3 with bias per block).
    Deploy,
}

impl KindArg {
    fn model(self) -> ModelKind {
        match self {
            KindArg::Target => ModelKind::Target,
            KindArg::Hs => ModelKind::Hs,
            KindArg::Repvgg => ModelKind::RepVgg,
            KindArg::Deploy => ModelKind::Deploy,
        }
    }
}

#[derive(Args, Debug)]
pub struct KernelStatsArgs {
    /// Weights: a run directory (its newest valid checkpoint), a checkpoint (.ckpt),
    /// safetensors, or an official PyTorch state dict (.pth).
    weights: PathBuf,
    /// The model the weights belong to (default: a checkpoint's run kind, else read from the
    /// tensor names).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// The variant (default: a checkpoint's; needed for .pth and safetensors).
    #[arg(long)]
    variant: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// The model kind of a set of state-dict names.
fn kind_from_names(tensors: &HashMap<String, TensorData>) -> Option<ModelKind> {
    let has = |k: &str| tensors.contains_key(k);
    if has("stage0.conv_3x3.weight") {
        Some(ModelKind::RepVgg)
    } else if has("stage0.scale_conv.weight") {
        Some(ModelKind::Hs)
    } else if has("stage0.conv.bias") {
        Some(ModelKind::Deploy)
    } else if has("stage0.conv.weight") {
        Some(ModelKind::Target)
    } else {
        None
    }
}

fn kind_of_run(run_kind: &crate::rundir::events::RunKindTag) -> Option<ModelKind> {
    RunKind::from_tag(run_kind).map(|k| k.model())
}

struct StatsTask {
    kind: ModelKind,
    variant: Variant,
    classes: usize,
    tensors: HashMap<String, TensorData>,
    source: PathBuf,
}

impl BackendTask for StatsTask {
    type Output = anyhow::Result<Vec<LayerKernelStats>>;
    fn run<AB: AutodiffBackend>(self, devices: Vec<AB::Device>) -> Self::Output {
        type I<AB> = <AB as AutodiffBackend>::InnerBackend;
        let d = &devices[0];
        let (v, c, t, s) = (&self.variant, self.classes, self.tensors, &self.source);
        let kind = self.kind;
        Ok(crate::with_network!(kind, I<AB>, |init| kernel_stats(
            &load_tensors(init(v, c, 0, d), t, s, kind.label(), d)?,
            v,
        )))
    }
}

/// Reads the weights and takes their kernel statistics.
pub fn kernel_stats_of(
    weights: &Path,
    kind: Option<ModelKind>,
    variant_name: Option<&str>,
) -> anyhow::Result<KernelStatsReport> {
    // A run directory or a checkpoint says what it holds.
    let (path, tensors, ckpt_kind, ckpt_variant) = if weights.is_dir() {
        let (found, rejected) = checkpoint::newest_valid(&weights.join(crate::rundir::CKPT_DIR));
        for r in rejected {
            crate::errln!("warning: {r}");
        }
        let (path, ckpt) = found.with_context(|| {
            format!(
                "{}: no valid checkpoint in its ckpt/ (give a checkpoint, safetensors or .pth file)",
                weights.display()
            )
        })?;
        let kind = kind_of_run(&ckpt.state.run_kind);
        (
            path,
            ckpt.model.into_iter().collect::<HashMap<_, _>>(),
            kind,
            Some(ckpt.state.variant),
        )
    } else if weights.extension().is_some_and(|e| e == "ckpt") {
        let ckpt = checkpoint::read(weights)?;
        let kind = kind_of_run(&ckpt.state.run_kind);
        (
            weights.to_path_buf(),
            ckpt.model.into_iter().collect(),
            kind,
            Some(ckpt.state.variant),
        )
    } else {
        (weights.to_path_buf(), read_weights(weights)?, None, None)
    };
    let kind = kind
        .or(ckpt_kind)
        .or_else(|| kind_from_names(&tensors))
        .with_context(|| {
            format!(
                "{}: no stage0 kernel among its tensors: not the weights of a RepOpt-VGG, HS or RepVGG model",
                path.display()
            )
        })?;
    let name = match (variant_name, ckpt_variant) {
        (Some(given), Some(own)) if !given.eq_ignore_ascii_case(&own) => {
            bail!("{} holds variant {own}, not {given}", path.display())
        }
        (Some(given), _) => given.to_string(),
        (None, Some(own)) => own,
        (None, None) => bail!(
            "{}: give --variant (one of {}): a weights file does not say which variant it is",
            path.display(),
            crate::model::variant::known_variants()
        ),
    };
    let v = variant(&name)?;
    let classes = tensors
        .get("linear.weight")
        .map(|t| t.shape[0])
        .with_context(|| format!("{}: no linear.weight", path.display()))?;
    let layers = dispatch(
        &[DeviceSpec::Cpu],
        crate::device::DeviceChoice::Flag,
        StatsTask {
            kind,
            variant: v,
            classes,
            tensors,
            source: path.clone(),
        },
    )??;
    Ok(KernelStatsReport {
        weights: path.display().to_string(),
        kind: kind.name().to_string(),
        variant: v.name.to_string(),
        layers,
    })
}

/// The table `kernel-stats` prints.
pub fn table(report: &KernelStatsReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} {}): standard deviation of the 3x3 kernels' centre taps (c) and eight surrounding taps (s)",
        report.weights, report.kind, report.variant
    );
    let _ = writeln!(
        out,
        "{:<10} {:>9}  {:>26}  {:>26}  {:>26}",
        "layer", "out x in", "trained: c s c/s", "BN fused: c s c/s", "merged: c s c/s"
    );
    let cell = |c: Option<&CentreSurround>| match c {
        None => format!("{:>26}", "-"),
        Some(c) => format!(
            "{:>9.5} {:>9.5} {:>6.2}",
            c.centre_std,
            c.surround_std,
            c.ratio()
        ),
    };
    for l in &report.layers {
        let _ = writeln!(
            out,
            "{:<10} {:>9}  {}  {}  {}",
            l.layer,
            format!("{}x{}", l.out_channels, l.in_channels),
            cell(l.train.as_ref()),
            cell(l.bn_fused.as_ref()),
            cell(Some(&l.merged))
        );
    }
    let show = |m: Option<f64>| m.map_or("-".to_string(), |m| format!("{m:.2}"));
    let [train, fused, merged] = report.mean_ratios();
    let _ = writeln!(
        out,
        "mean c/s over layers: trained {}, BN fused {}, merged {}",
        show(train),
        show(fused),
        show(merged)
    );
    out
}

pub fn run(args: KernelStatsArgs) -> anyhow::Result<ExitCode> {
    let report = kernel_stats_of(
        &args.weights,
        args.kind.map(KindArg::model),
        args.variant.as_deref(),
    )?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::out!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}
