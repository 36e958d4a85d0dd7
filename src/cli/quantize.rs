//! `repopt-tui quantize`: INT8 post-training quantization of a model's deploy form, simulated in
//! float (the paper's §4.4 / Table 8): FP32 top-1, INT8 top-1 and the drop per scheme, and per
//! layer the kernel's range against its standard deviation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};

use crate::data::{Batch, Loader, LoaderConfig};
use crate::device::{BackendTask, DeviceChoice, DeviceSpec, dispatch};
use crate::model::quantize::{
    ActStats, Calibration, Deployable, Granularity, KeepFloat, LayerQuantStats, QuantNet, Scheme,
    deploy_form, deploy_layer_stats, layer_inputs, layer_names,
};
use crate::model::{DeployNet, ModelKind, Net, Variant};
use crate::profile::RunProfile;
use crate::rundir::events::{EventBody, QuantizeEvent, QuantizeLayer, QuantizeScheme};
use crate::train::checkpoint;
use crate::train::trainer::evaluate_logits;
use crate::train::weights::{load_tensors, read_weights};

use super::interrupt_flag;

/// Values of each activation kept for its percentile, over all calibration batches.
const PERCENTILE_SAMPLE: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WeightsArg {
    /// One scale per output channel.
    PerChannel,
    /// One scale per kernel.
    PerTensor,
    /// Both, one scheme each.
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeepFloatArg {
    /// Quantize every layer (official `quantlayers='all'`).
    None,
    /// Keep stage0 and the linear classifier in float (`exclud_first_and_linear`).
    FirstAndLinear,
    /// Keep stage0, the last block and the linear classifier in float (`exclud_first_and_last`).
    FirstAndLast,
}

impl KeepFloatArg {
    fn keep(self) -> KeepFloat {
        match self {
            KeepFloatArg::None => KeepFloat::None,
            KeepFloatArg::FirstAndLinear => KeepFloat::FirstAndLinear,
            KeepFloatArg::FirstAndLast => KeepFloat::FirstAndLast,
        }
    }
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The run profile: model variant and kind, and the data set (training images calibrate,
    /// the validation split measures); a file, or a bare name for profiles/<name>.ron.
    #[arg(long, value_name = "FILE.ron")]
    profile: PathBuf,
    /// Weights: a run directory (its newest valid checkpoint; the result is recorded in its
    /// events), a checkpoint (.ckpt), safetensors, or an official PyTorch state dict (.pth).
    #[arg(long, value_name = "PATH")]
    weights: PathBuf,
    /// Weight scales: per output channel, per tensor, or both.
    #[arg(long = "weight-scales", value_enum, default_value = "both")]
    weight_scales: WeightsArg,
    /// Layers kept in float, one or more (comma-separated): none, first-and-linear,
    /// first-and-last.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    keep_float: Vec<KeepFloatArg>,
    /// Training images the activation ranges are calibrated on.
    #[arg(long, value_name = "N", default_value_t = 256)]
    calibration_images: usize,
    /// The percentile of |x| used by the percentile calibration (the other is min/max).
    #[arg(long, value_name = "P", default_value_t = 99.99)]
    percentile: f64,
    /// Device: cpu, cuda:N, libtorch:cpu, libtorch:cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Batch size of calibration and evaluation (default: the profile's evaluation batch).
    #[arg(long)]
    batch: Option<usize>,
}

/// What the quantization measured.
pub struct QuantizeOutcome {
    pub fp32_top1: f64,
    pub schemes: Vec<(Scheme, f64)>,
    pub layers: Vec<LayerQuantStats>,
}

struct QuantizeTask {
    variant: Variant,
    kind: ModelKind,
    classes: usize,
    weights: PathBuf,
    tensors: HashMap<String, TensorData>,
    calibration: Loader,
    calibration_images: usize,
    batch: usize,
    val: Loader,
    schemes: Vec<Scheme>,
}

/// Top-1 (%) of `logits` over the loader, as `eval` measures it; `None` when interrupted.
fn top1<B: Backend>(
    loader: &Loader,
    classes: usize,
    device: &B::Device,
    logits: impl Fn(Tensor<B, 4>) -> Tensor<B, 2>,
) -> anyhow::Result<Option<f64>> {
    let report = evaluate_logits(loader, classes, device, &interrupt_flag(), logits)?;
    Ok(report.map(|r| r.top1))
}

/// The first `n` images of a batch.
fn truncate(mut batch: Batch, n: usize) -> Batch {
    if batch.labels.len() > n {
        let per = batch.images.len() / batch.labels.len();
        batch.images.truncate(n * per);
        batch.labels.truncate(n);
        batch.shape[0] = n;
    }
    batch
}

impl QuantizeTask {
    fn measure<B: Backend>(
        self,
        net: DeployNet<B>,
        d: &B::Device,
    ) -> anyhow::Result<Option<QuantizeOutcome>> {
        let layers = deploy_layer_stats(&net, &self.variant);
        let stop = interrupt_flag();
        let mut stats = vec![ActStats::default(); layer_names(&self.variant).len()];
        let batches = self.calibration_images.div_ceil(self.batch.max(1)).max(1);
        let keep = PERCENTILE_SAMPLE / batches;
        let mut seen = 0usize;
        for batch in self.calibration.epoch(0, 0) {
            if stop.load(Ordering::SeqCst) != 0 {
                return Ok(None);
            }
            if seen >= self.calibration_images {
                break;
            }
            let batch = truncate(batch?, self.calibration_images - seen);
            seen += batch.labels.len();
            let (x, _) = batch.into_tensors::<B>(d);
            for (s, values) in stats.iter_mut().zip(layer_inputs(&net, x)) {
                s.add(&values, keep);
            }
        }
        if seen == 0 {
            bail!("the training split is empty: no images to calibrate the activation ranges on");
        }
        let Some(fp32_top1) = top1(&self.val, self.classes, d, |x| net.forward(x, false))? else {
            return Ok(None);
        };
        let mut schemes = Vec::new();
        for scheme in self.schemes {
            let q = QuantNet::new(&net, scheme, &stats);
            let Some(t) = top1(&self.val, self.classes, d, |x| q.forward(x))? else {
                return Ok(None);
            };
            schemes.push((scheme, t));
        }
        Ok(Some(QuantizeOutcome {
            fp32_top1,
            schemes,
            layers,
        }))
    }
}

fn deploy<B: Backend, K: Deployable<B>>(net: Net<B, K>) -> DeployNet<B> {
    deploy_form(&net)
}

impl BackendTask for QuantizeTask {
    type Output = anyhow::Result<Option<QuantizeOutcome>>;
    fn run<AB: AutodiffBackend>(mut self, devices: Vec<AB::Device>) -> Self::Output {
        type I<AB> = <AB as AutodiffBackend>::InnerBackend;
        let d = &devices[0];
        let (v, c, kind) = (self.variant, self.classes, self.kind);
        let tensors = std::mem::take(&mut self.tensors);
        let w = self.weights.clone();
        let net: DeployNet<I<AB>> = crate::with_network!(kind, I<AB>, |init| deploy(load_tensors(
            init(&v, c, 0, d),
            tensors,
            &w,
            kind.label(),
            d
        )?));
        self.measure(net, d)
    }
}

/// The weights of `path` and the checkpoint they come from (a run directory's newest).
fn weights_of(
    path: &Path,
) -> anyhow::Result<(PathBuf, HashMap<String, TensorData>, Option<String>)> {
    if path.is_dir() {
        let (found, rejected) = checkpoint::newest_valid(&path.join(crate::rundir::CKPT_DIR));
        for r in rejected {
            crate::errln!("warning: {r}");
        }
        let (ckpt_path, ckpt) = found.with_context(|| {
            format!(
                "{}: no valid checkpoint in its ckpt/ (give a checkpoint, safetensors or .pth file)",
                path.display()
            )
        })?;
        return Ok((
            ckpt_path,
            ckpt.model.into_iter().collect(),
            Some(ckpt.state.variant),
        ));
    }
    if path.extension().is_some_and(|e| e == "ckpt") {
        let ckpt = checkpoint::read(path)?;
        return Ok((
            path.to_path_buf(),
            ckpt.model.into_iter().collect(),
            Some(ckpt.state.variant),
        ));
    }
    Ok((path.to_path_buf(), read_weights(path)?, None))
}

/// The table of per-layer kernel statistics.
pub fn layer_table(layers: &[LayerQuantStats]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<10} {:>10} {:>11} {:>12}\n",
        "layer", "range/std", "err/tensor", "err/channel"
    );
    for l in layers {
        let _ = writeln!(
            out,
            "{:<10} {:>10.2} {:>11.4} {:>12.4}",
            l.name, l.range_over_std, l.error_per_tensor, l.error_per_channel
        );
    }
    out
}

pub fn run(args: QuantizeArgs) -> anyhow::Result<ExitCode> {
    if args.calibration_images == 0 {
        bail!("--calibration-images must be at least 1");
    }
    if !(args.percentile > 0.0 && args.percentile <= 100.0) {
        bail!("--percentile must be in (0, 100], got {}", args.percentile);
    }
    super::weights::check_batch_arg(args.batch)?;
    let profile = RunProfile::load(&crate::profile::resolve_run_profile(&args.profile)?)?;
    let (source, tensors, ckpt_variant) = weights_of(&args.weights)?;
    interrupt_flag();
    if let Some(own) = &ckpt_variant
        && !own.eq_ignore_ascii_case(profile.variant().name)
    {
        bail!(
            "{} holds variant {own}, the profile's is {}",
            source.display(),
            profile.variant().name
        );
    }
    super::weights::refuse_diverged(&source, &tensors, "quantize")?;
    let kind = super::weights::network_of(&profile, &tensors);
    let data = crate::data::open(&profile.data)?;
    let batch = super::weights::eval_batch(&profile, args.batch);
    let workers = profile.recipe.workers;
    // Calibration sees training images as evaluation does (no augmentation).
    let calibration = Loader::new(
        data.train.clone(),
        data.pipeline(profile.recipe.augment, false),
        LoaderConfig::eval(batch, workers),
    );
    let val = Loader::new(
        data.val.clone(),
        data.pipeline(profile.recipe.augment, false),
        LoaderConfig::eval(batch, workers),
    );
    let granularities: &[Granularity] = match args.weight_scales {
        WeightsArg::PerChannel => &[Granularity::PerChannel],
        WeightsArg::PerTensor => &[Granularity::PerTensor],
        WeightsArg::Both => &[Granularity::PerChannel, Granularity::PerTensor],
    };
    let mut keeps: Vec<KeepFloat> = Vec::new();
    for k in &args.keep_float {
        if !keeps.contains(&k.keep()) {
            keeps.push(k.keep());
        }
    }
    let mut schemes = Vec::new();
    for &keep_float in &keeps {
        for &weights in granularities {
            for activations in [
                Calibration::MinMax,
                Calibration::Percentile(args.percentile),
            ] {
                schemes.push(Scheme {
                    weights,
                    activations,
                    keep_float,
                });
            }
        }
    }
    let calibration_images = args.calibration_images.min(data.train.len());
    crate::outln!(
        "quantize: {} {} {}weights {}: INT8 (simulated) calibrated on {} of {}, measured on its {}",
        profile.kind.label(),
        profile.variant,
        if kind == ModelKind::Deploy {
            "deploy-form "
        } else {
            ""
        },
        source.display(),
        crate::output::plural(calibration_images as u64, "training image"),
        data.description,
        crate::output::plural(data.val.len() as u64, "validation image"),
    );
    let task = QuantizeTask {
        variant: profile.variant(),
        kind,
        classes: data.classes,
        weights: source.clone(),
        tensors,
        calibration,
        calibration_images,
        batch,
        val,
        schemes,
    };
    let Some(r) = dispatch(&[args.device], DeviceChoice::Flag, task)?? else {
        let signal = interrupt_flag().load(Ordering::SeqCst);
        crate::errln!(
            "quantize: interrupted ({})",
            crate::train::trainer::signal_name(signal)
        );
        return Ok(ExitCode::from(130));
    };
    crate::outln!(
        "deploy-form kernels (range/std: how far the largest weights stretch the INT8 grid; err: ‖Q(W) − W‖ / ‖W‖):"
    );
    crate::out!("{}", layer_table(&r.layers));
    crate::outln!("FP32 top-1 {:.2}%", r.fp32_top1);
    crate::outln!(
        "{:<12} {:<12} {:<17} {:>11} {:>7}",
        "weights",
        "activations",
        "kept in float",
        "INT8 top-1",
        "drop"
    );
    for (s, t) in &r.schemes {
        crate::outln!(
            "{:<12} {:<12} {:<17} {:>10.2}% {:>7.2}",
            s.weights.label(),
            s.activations.label(),
            s.keep_float.label(),
            t,
            r.fp32_top1 - t
        );
    }
    if args.weights.is_dir() {
        record(
            &args.weights,
            &source,
            &profile,
            kind,
            calibration_images,
            args.percentile,
            &r,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends the `quantize` event to the run directory, holding its lock while writing (a live
/// run owns its events file: then nothing is written, and the user is told).
fn record(
    dir: &Path,
    source: &Path,
    profile: &RunProfile,
    kind: ModelKind,
    calibration_images: usize,
    percentile: f64,
    r: &QuantizeOutcome,
) -> anyhow::Result<()> {
    let _lock = match crate::rundir::RunLock::acquire(dir) {
        Ok(lock) => lock,
        Err(e) => {
            crate::errln!(
                "quantize: the result is not recorded in {}: {e}",
                dir.display()
            );
            return Ok(());
        }
    };
    let weights = source
        .strip_prefix(dir)
        .unwrap_or(source)
        .display()
        .to_string();
    let event = QuantizeEvent {
        weights,
        model: kind.name().to_string(),
        variant: profile.variant().name.to_string(),
        calibration_images,
        percentile,
        fp32_top1: r.fp32_top1,
        schemes: r
            .schemes
            .iter()
            .map(|(s, t)| QuantizeScheme {
                weights: s.weights.label().to_string(),
                activations: s.activations.label(),
                keep_float: s.keep_float.label().to_string(),
                top1: *t,
                drop: r.fp32_top1 - t,
            })
            .collect(),
        layers: r
            .layers
            .iter()
            .map(|l| QuantizeLayer {
                name: l.name.clone(),
                range_over_std: l.range_over_std,
                error_per_tensor: l.error_per_tensor,
                error_per_channel: l.error_per_channel,
            })
            .collect(),
    };
    let mut events = crate::rundir::EventWriter::open(dir)
        .with_context(|| format!("cannot open the events of {}", dir.display()))?;
    events.emit(EventBody::Quantize(event))?;
    events.sync()?;
    crate::outln!(
        "recorded in {}",
        dir.join(crate::rundir::EVENTS_FILE).display()
    );
    Ok(())
}
