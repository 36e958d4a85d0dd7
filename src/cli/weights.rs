//! `repopt-tui eval` and `repopt-tui export`: trained weights in and out, with the official
//! PyTorch names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::TensorData;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;

use crate::data::{Loader, LoaderConfig};
use crate::device::{BackendTask, DeviceChoice, DeviceSpec, dispatch};
use crate::model::fuse::to_deploy;
use crate::model::{Classifier, ModelKind, RepVggNet, Variant, variant};
use crate::profile::{RunKind, RunProfile};
use crate::train::checkpoint;
use crate::train::hooks::save_safetensors;
use crate::train::trainer::{EvalReport, count_non_finite, evaluate_inner};
use crate::train::weights::{load_tensors, read_weights};

use super::interrupt_flag;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The run profile: model variant and kind, and the data set whose validation split is used
    /// (a file, or a bare name for profiles/<name>.ron).
    #[arg(long, value_name = "FILE.ron")]
    profile: PathBuf,
    /// Weights: an official PyTorch state dict (.pth), safetensors, or a checkpoint (.ckpt).
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Device: cpu, cuda:N, libtorch:cpu, libtorch:cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Evaluation batch size (default: the profile's).
    #[arg(long)]
    batch: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint file, or a run directory (its newest valid checkpoint).
    source: PathBuf,
    /// The safetensors file to write.
    #[arg(short, long, value_name = "FILE.safetensors")]
    output: PathBuf,
    /// RepVGG runs: convert to the deploy form (one 3x3 conv with bias per block) first.
    #[arg(long)]
    deploy: bool,
}

fn load<B: Backend, M: Module<B>>(
    model: M,
    path: &Path,
    tensors: HashMap<String, TensorData>,
    kind: &str,
    device: &B::Device,
) -> anyhow::Result<M> {
    load_tensors(model, tensors, path, kind, device)
}

struct EvalTask {
    variant: Variant,
    kind: ModelKind,
    classes: usize,
    weights: PathBuf,
    tensors: HashMap<String, TensorData>,
    loader: Loader,
}

impl BackendTask for EvalTask {
    type Output = anyhow::Result<Option<EvalReport>>;
    fn run<AB: AutodiffBackend>(self, devices: Vec<AB::Device>) -> Self::Output {
        type I<AB> = <AB as AutodiffBackend>::InnerBackend;
        let d = &devices[0];
        let (v, c, w, t) = (&self.variant, self.classes, &self.weights, self.tensors);
        fn eval<B: Backend, M: Classifier<B>>(
            m: &M,
            loader: &Loader,
            classes: usize,
            d: &B::Device,
        ) -> anyhow::Result<Option<EvalReport>> {
            evaluate_inner(m, loader, classes, d, &super::interrupt_flag())
        }
        let kind = self.kind;
        crate::with_network!(kind, I<AB>, |init| eval(
            &load(init(v, c, 0, d), w, t, kind.label(), d)?,
            &self.loader,
            c,
            d,
        ))
    }
}

/// `--batch` of the commands that evaluate weights: between 1 and the profiles' own limit.
pub(super) fn check_batch_arg(batch: Option<usize>) -> anyhow::Result<()> {
    if batch.is_some_and(|b| b == 0 || b > crate::profile::run::MAX_BATCH) {
        bail!(
            "--batch must be between 1 and {}",
            crate::profile::run::MAX_BATCH
        );
    }
    Ok(())
}

/// Diverged weights mean nothing to evaluate or quantize: the error names the file and the
/// first tensor that is not finite.
pub(super) fn refuse_diverged(
    path: &Path,
    tensors: &HashMap<String, TensorData>,
    nothing_to: &str,
) -> anyhow::Result<()> {
    if let (bad @ 1.., Some(first)) = count_non_finite(tensors) {
        bail!(
            "{}: {bad} values are NaN or infinite (first in '{first}'): these weights have diverged; nothing to {nothing_to}",
            path.display()
        );
    }
    Ok(())
}

/// The network `tensors` are for: the profile's kind, or for a RepVGG profile the deploy form
/// when the weights have it (one biased conv per block).
pub(super) fn network_of(profile: &RunProfile, tensors: &HashMap<String, TensorData>) -> ModelKind {
    match profile.kind.model() {
        ModelKind::RepVgg if tensors.contains_key("stage0.conv.bias") => ModelKind::Deploy,
        kind => kind,
    }
}

/// The evaluation batch: `--batch`, else the profile's `eval_batch_size`, else its batch size.
pub(super) fn eval_batch(profile: &RunProfile, batch: Option<usize>) -> usize {
    batch.unwrap_or(
        profile
            .recipe
            .eval_batch_size
            .unwrap_or(profile.recipe.batch_size),
    )
}

pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let profile = RunProfile::load(&crate::profile::resolve_run_profile(&args.profile)?)?;
    let tensors = read_weights(&args.weights)?;
    interrupt_flag();
    refuse_diverged(&args.weights, &tensors, "evaluate")?;
    let kind = network_of(&profile, &tensors);
    check_batch_arg(args.batch)?;
    let data = crate::data::open(&profile.data)?;
    let batch = eval_batch(&profile, args.batch);
    let loader = Loader::new(
        data.val.clone(),
        data.pipeline(profile.recipe.augment, false),
        LoaderConfig::eval(batch, profile.recipe.workers),
    );
    crate::outln!(
        "eval: {} {} {}weights {} on {} ({})",
        profile.kind.label(),
        profile.variant,
        if kind == ModelKind::Deploy {
            "deploy-form "
        } else {
            ""
        },
        args.weights.display(),
        data.description,
        crate::output::plural(data.val.len() as u64, "image")
    );
    let task = EvalTask {
        variant: profile.variant(),
        kind,
        classes: data.classes,
        weights: args.weights.clone(),
        tensors,
        loader,
    };
    let Some(r) = dispatch(&[args.device], DeviceChoice::Flag, task)?? else {
        let signal = interrupt_flag().load(std::sync::atomic::Ordering::SeqCst);
        crate::errln!(
            "eval: interrupted ({})",
            crate::train::trainer::signal_name(signal)
        );
        return Ok(ExitCode::from(130));
    };
    if !r.is_finite() {
        crate::outln!(
            "loss NaN  top-1 {:.2}%  top-5 {:.2}%  ({} of {} gave non-finite logits, counted wrong)",
            r.top1,
            r.top5,
            r.non_finite,
            crate::output::plural(r.images as u64, "image")
        );
        bail!(
            "{}: the model's outputs are not finite on {} of {}: these weights have diverged or overflow; the accuracy above is not meaningful",
            args.weights.display(),
            r.non_finite,
            crate::output::plural(r.images as u64, "image")
        );
    }
    crate::outln!(
        "loss {:.4}  top-1 {:.2}%  top-5 {:.2}%",
        r.loss,
        r.top1,
        r.top5
    );
    Ok(ExitCode::SUCCESS)
}

struct ExportTask {
    kind: RunKind,
    variant: Variant,
    classes: usize,
    tensors: HashMap<String, TensorData>,
    source: PathBuf,
    output: PathBuf,
    deploy: bool,
}

impl BackendTask for ExportTask {
    type Output = anyhow::Result<()>;
    fn run<AB: AutodiffBackend>(self, devices: Vec<AB::Device>) -> Self::Output {
        type I<AB> = <AB as AutodiffBackend>::InnerBackend;
        let d = &devices[0];
        let v = self.variant;
        let kind = self.kind.model();
        let (c, s, t) = (self.classes, &self.source, self.tensors);
        if self.deploy {
            if kind != ModelKind::RepVgg {
                bail!(
                    "--deploy converts RepVGG baseline runs; this is a {} run",
                    self.kind.label()
                );
            }
            let model = load(RepVggNet::<I<AB>>::init(&v, c, 0, d), s, t, kind.label(), d)?;
            return save_safetensors::<I<AB>, _>(&to_deploy(model), &self.output, "repvgg-deploy");
        }
        crate::with_network!(trainable kind, I<AB>, |init| save_safetensors::<I<AB>, _>(
            &load(init(&v, c, 0, d), s, t, kind.label(), d)?,
            &self.output,
            kind.name(),
        ))
    }
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ckpt_path = if args.source.is_dir() {
        let (found, rejected) =
            checkpoint::newest_valid(&args.source.join(crate::rundir::CKPT_DIR));
        for r in rejected {
            crate::errln!("warning: {r}");
        }
        let (path, _) = found.with_context(|| {
            format!(
                "{}: no valid checkpoint in its ckpt/",
                args.source.display()
            )
        })?;
        path
    } else {
        args.source.clone()
    };
    // A checkpoint says what it holds (run kind, variant, classes): it exports anywhere, also
    // copied out of its run directory.
    let ckpt = checkpoint::read(&ckpt_path)?;
    let kind = RunKind::from_tag(&ckpt.state.run_kind).with_context(|| {
        format!(
            "{}: unknown run kind '{}' in the checkpoint",
            ckpt_path.display(),
            ckpt.state.run_kind
        )
    })?;
    let v = variant(&ckpt.state.variant)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?;
    let task = ExportTask {
        kind,
        variant: v,
        classes: ckpt.state.classes,
        tensors: ckpt.model.into_iter().collect(),
        source: ckpt_path.clone(),
        output: args.output.clone(),
        deploy: args.deploy,
    };
    dispatch(&[DeviceSpec::Cpu], DeviceChoice::Flag, task)??;
    crate::outln!(
        "wrote {} from {} (official PyTorch names)",
        args.output.display(),
        ckpt_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
