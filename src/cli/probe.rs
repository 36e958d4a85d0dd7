//! `repopt-tui probe` and its hidden child `repopt-tui probe-trial`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;
use clap::Args;

use crate::device::{BackendTask, DeviceChoice, DeviceSpec, dispatch};
use crate::model::{ModelKind, Variant, variant};
use crate::probe::{
    ModelProbe, ProbeConfig, Trial, alloc, parse_size, run_trial, search, trial_exe,
    trial_in_process,
};
use crate::profile::RunProfile;
use crate::rundir::events::{self, EventBody};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The run profile whose variant, input size, classes and first device are probed (a file,
    /// or a bare name for profiles/<name>.ron).
    #[arg(long, value_name = "FILE.ron")]
    profile: PathBuf,
    /// Comma-separated: target, repvgg, hs.
    #[arg(long, default_value = "target,repvgg,hs")]
    models: String,
    /// Device (default: the profile's first).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// CPU: the heap budget of a training step (e.g. 11GiB, 512MiB). GPUs use their memory.
    #[arg(long)]
    memory_limit: Option<String>,
    /// Override the profile's variant (e.g. probe A0 with an ImageNet profile).
    #[arg(long)]
    variant: Option<String>,
    /// Override the input resolution.
    #[arg(long)]
    resolution: Option<usize>,
    /// Upper end of the search.
    #[arg(long, default_value_t = 4096)]
    max_batch: usize,
    /// Timed steps per trial.
    #[arg(long, default_value_t = 2)]
    steps: usize,
    /// Seconds after which a trial counts as not fitting.
    #[arg(long, default_value_t = 900)]
    trial_timeout: u64,
    /// CPU threads of each trial (default: all cores). With 1 thread the CPU peak is exactly
    /// reproducible; with several, concurrent scratch buffers move it by a few percent.
    #[arg(long)]
    threads: Option<usize>,
    /// Run id of the directory the `probe` events go to (default: probe-<profile>-<time>).
    #[arg(long)]
    run_id: Option<String>,
    #[command(flatten)]
    pub(crate) runs: super::RunsDirArg,
}

#[derive(Args, Debug)]
pub struct TrialArgs {
    #[arg(long)]
    variant: String,
    #[arg(long)]
    model: String,
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    resolution: usize,
    #[arg(long)]
    classes: usize,
    #[arg(long, default_value_t = 2)]
    steps: usize,
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Heap budget in bytes (CPU).
    #[arg(long)]
    memory_limit: Option<u64>,
}

struct TrialTask {
    variant: Variant,
    model: ModelKind,
    batch: usize,
    resolution: usize,
    classes: usize,
    steps: usize,
}

impl BackendTask for TrialTask {
    type Output = crate::probe::TrialReport;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        trial_in_process::<B>(
            &self.variant,
            self.model,
            self.batch,
            self.resolution,
            self.classes,
            self.steps,
            &devices[0],
        )
    }
}

/// The child: one trial, one JSON line on stdout; dies (abort) when the step does not fit.
pub fn trial(args: TrialArgs) -> anyhow::Result<ExitCode> {
    let model =
        ModelKind::parse(&args.model).with_context(|| format!("unknown model '{}'", args.model))?;
    let v = variant(&args.variant)?;
    alloc::reset_peak();
    // LibTorch allocates outside Rust's allocator: its budget is the process's data limit, its
    // peak the resident memory above the start.
    let torch_cpu = args.device == DeviceSpec::LibTorchCpu;
    let resident_at_start = alloc::proc_status_bytes("VmRSS");
    if let Some(limit) = args.memory_limit {
        if torch_cpu {
            alloc::limit_process_data(limit)
                .context("cannot set the trial's memory limit (RLIMIT_DATA)")?;
        } else {
            alloc::set_limit(limit as usize);
        }
    }
    let task = TrialTask {
        variant: v,
        model,
        batch: args.batch,
        resolution: args.resolution,
        classes: args.classes,
        steps: args.steps,
    };
    let mut report = dispatch(&[args.device], DeviceChoice::Flag, task)?;
    alloc::set_limit(0);
    if torch_cpu {
        report.peak_bytes = alloc::proc_status_bytes("VmHWM")
            .zip(resident_at_start)
            .map(|(peak, start)| peak.saturating_sub(start));
    }
    crate::outln!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// The results table, and RepOpt-VGG against RepVGG when both were probed.
fn print_results(results: &[ModelProbe]) {
    crate::outln!(
        "\n{:<8} {:>8} {:>12} {:>14} {:>14}",
        "model",
        "MaxBS",
        "peak",
        "img/s @32",
        "img/s @MaxBS"
    );
    for r in results {
        crate::outln!(
            "{:<8} {:>8} {:>12} {:>14} {:>14}",
            r.model.name(),
            r.max_batch.map_or("none".into(), |m| format!(
                "{m}{}",
                if r.capped { "+" } else { "" }
            )),
            r.at_max
                .as_ref()
                .and_then(|t| t.peak_bytes)
                .map_or("-".into(), crate::output::bytes),
            r.at_32
                .as_ref()
                .map_or("-".into(), |t| format!("{:.1}", t.images_per_s)),
            r.at_max
                .as_ref()
                .map_or("-".into(), |t| format!("{:.1}", t.images_per_s)),
        );
    }
    let get = |k: ModelKind| results.iter().find(|r| r.model == k);
    if let (Some(t), Some(r)) = (get(ModelKind::Target), get(ModelKind::RepVgg))
        && let (Some(a), Some(b)) = (t.max_batch, r.max_batch)
    {
        let speed = match (&t.at_32, &r.at_32) {
            (Some(x), Some(y)) => format!(
                ", {:.2}x the images/s at batch 32",
                x.images_per_s / y.images_per_s
            ),
            _ => String::new(),
        };
        crate::outln!(
            "RepOpt-VGG / RepVGG: {:.2}x the max batch size{speed}",
            a as f64 / b as f64
        );
    }
}

/// What a probe measures, from its flags and profile, every value checked before any trial:
/// the search settings and the models to search.
fn probe_plan(
    args: &ProbeArgs,
    profile: &RunProfile,
) -> anyhow::Result<(ProbeConfig, Vec<ModelKind>)> {
    let v = match &args.variant {
        Some(name) => variant(name)?,
        None => profile.variant(),
    };
    // A heap budget means a CPU probe unless a device is named.
    let device = args.device.unwrap_or(if args.memory_limit.is_some() {
        DeviceSpec::Cpu
    } else {
        profile.devices[0]
    });
    let mut memory_limit = args
        .memory_limit
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if memory_limit == Some(0) {
        anyhow::bail!(
            "--memory-limit 0 leaves no memory for a training step: give a budget such as 512MiB or 11GiB (or leave it out: half of the available memory)"
        );
    }
    if args.steps == 0 {
        anyhow::bail!("--steps must be at least 1 (the timed training steps of each trial)");
    }
    if args.max_batch == 0 || args.max_batch > crate::profile::run::MAX_BATCH {
        anyhow::bail!(
            "--max-batch must be between 1 and {}",
            crate::profile::run::MAX_BATCH
        );
    }
    if let Some(r) = args.resolution
        && (r == 0 || r > crate::data::spec::MAX_IMAGE_SIZE)
    {
        anyhow::bail!(
            "--resolution must be between 1 and {}",
            crate::data::spec::MAX_IMAGE_SIZE
        );
    }
    if let Some(t) = args.threads
        && (t == 0 || t > 1024)
    {
        anyhow::bail!("--threads must be between 1 and 1024");
    }
    if let Some(id) = &args.run_id {
        crate::train::check_run_id(id)?;
    }
    if memory_limit.is_none() && device.is_host() {
        // A CPU probe always has a budget: half of the memory available now.
        memory_limit = Some(crate::probe::available_memory().unwrap_or(8 << 30) / 2);
    }
    if memory_limit.is_some() && !device.is_host() {
        crate::errln!(
            "note: --memory-limit applies to CPU probes; on {device} the limit is the device's memory"
        );
    }
    let models = args
        .models
        .split(',')
        .map(|m| {
            ModelKind::parse(m.trim())
                .filter(|k| *k != ModelKind::Deploy)
                .with_context(|| format!("unknown model '{m}': expected target, repvgg or hs"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = ProbeConfig {
        variant: v,
        resolution: args.resolution.unwrap_or(profile.data.image_size),
        classes: profile.data.classes.unwrap_or(1000),
        device,
        memory_limit: if device.is_host() { memory_limit } else { None },
        max_batch: args.max_batch,
        steps: args.steps,
        trial_timeout: Duration::from_secs(args.trial_timeout),
        threads: args.threads,
    };
    Ok((cfg, models))
}

pub fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let runs_dir = args.runs.runs_dir.clone();
    let profile = RunProfile::load(&crate::profile::resolve_run_profile(&args.profile)?)?;
    let (cfg, models) = probe_plan(&args, &profile)?;
    let (v, device, memory_limit) = (cfg.variant, cfg.device, cfg.memory_limit);

    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| crate::probe::default_run_id(&args.profile, crate::rundir::unix_now()));
    let dir = runs_dir.join(&run_id);
    let crate::rundir::OwnedRunDir {
        lock: _lock,
        mut events,
    } = crate::rundir::own_run_dir(&dir, None)?;
    let _ = crate::profile::write_atomic(
        &dir.join(crate::rundir::PROFILE_FILE),
        profile.to_ron().as_bytes(),
    );
    events.emit(EventBody::Started(events::Started {
        run_id: run_id.clone(),
        run_kind: crate::rundir::events::RunKindTag::Probe,
        variant: v.name.into(),
        dataset: format!(
            "{}x{} inputs, {} classes",
            cfg.resolution, cfg.resolution, cfg.classes
        ),
        epochs: 0,
        iters_per_epoch: 0,
        batch_size: 0,
        devices: vec![device.to_string()],
        pid: std::process::id(),
        resumed_from: None,
        profile_path: Some(args.profile.display().to_string()),
        nodes: None,
    }))?;
    crate::outln!(
        "probe: {} at {}x{}, {} classes, on {}{} (each trial: 1 warm-up + {} in a child process)",
        v.name,
        cfg.resolution,
        cfg.resolution,
        cfg.classes,
        device,
        memory_limit.map_or(String::new(), |l| format!(
            ", heap limit {}",
            crate::output::bytes(l)
        )),
        crate::output::plural(cfg.steps as u64, "timed training step")
    );
    let start = std::time::Instant::now();
    let exe = trial_exe();
    let mut results: Vec<ModelProbe> = Vec::new();
    for &model in &models {
        let result = search(&cfg, model, |b| {
            let t = run_trial(&exe, &cfg, model, b);
            match &t {
                Trial::Error(_) => {}
                Trial::Fits(r) => crate::outln!(
                    "  {:<7} batch {:>5}: fits ({:.1} img/s{})",
                    model.name(),
                    b,
                    r.images_per_s,
                    r.peak_bytes.map_or(String::new(), |p| format!(
                        ", peak {}",
                        crate::output::bytes(p)
                    ))
                ),
                Trial::DoesNotFit(why) => {
                    crate::outln!("  {:<7} batch {:>5}: does not fit ({why})", model.name(), b)
                }
            }
            t
        });
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let message = format!("the {} trial could not run: {e}", model.name());
                events.emit(EventBody::Failed(events::Failed {
                    message: message.clone(),
                }))?;
                anyhow::bail!(message);
            }
        };
        events.emit(EventBody::Probe(events::ProbeResult {
            model: model.name().into(),
            variant: v.name.into(),
            resolution: cfg.resolution,
            device: device.to_string(),
            memory_limit_bytes: cfg.memory_limit,
            max_batch: result.max_batch,
            peak_bytes: result.at_max.as_ref().and_then(|r| r.peak_bytes),
            images_per_s_at_32: result.at_32.as_ref().map(|r| r.images_per_s),
            images_per_s_at_max: result.at_max.as_ref().map(|r| r.images_per_s),
            max_batch_ceiling: Some(cfg.max_batch),
        }))?;
        results.push(result);
    }
    events.emit(EventBody::Finished(events::Finished {
        epochs: 0,
        best_top1: None,
        final_top1: None,
        wall_s: start.elapsed().as_secs_f64(),
    }))?;

    print_results(&results);
    crate::outln!(
        "events written to {}",
        dir.join(crate::rundir::EVENTS_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}
