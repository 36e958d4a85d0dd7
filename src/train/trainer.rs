//! The training loop shared by every run kind: data, schedule, steps on one or several devices,
//! evaluation, events, checkpoints, stop requests.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::{self, Checkpoint, TrainState};
use super::clocks::{
    CheckpointTimer, Every, GPU_SAMPLE_EVERY, MetricsWindow, PROGRESS_LINE_EVERY, ProcessClock,
};
use super::collective::{self as dp, LocalStep, StartInfo};
use super::hooks::{TrainModel, scales_event};
use super::replicas::{Replica, StepOutput, forward_backward, param_ids};
use crate::data::{Loader, LoaderConfig, OpenedDataset};
use crate::model::loss::correct_top_k;
use crate::model::params::named_tensors;
use crate::optim::RepOptimizer;
use crate::output::plural;
use crate::profile::{RunProfile, ScalesProfile};
use crate::rundir::events::{self, EventBody};
use crate::rundir::{CKPT_DIR, EventWriter, KERNEL_STATS_FILE, SCALES_FILE};

/// How a run process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Finished,
    Stopped,
    Failed(String),
}

/// Everything the loop needs besides the model.
pub struct RunCtx {
    pub profile: RunProfile,
    pub run_id: String,
    pub dir: PathBuf,
    /// `None` on the ranks other than 0 of a multi-node job: only rank 0 writes the run
    /// directory (events, checkpoints, scales, the final weights).
    pub events: Option<EventWriter>,
    pub data: OpenedDataset,
    pub resume: Option<(PathBuf, Checkpoint)>,
    pub scales: Option<ScalesProfile>,
    /// Target runs: checksum of the frozen scales, recorded in every checkpoint.
    pub scales_sha256: Option<String>,
    /// Set to the signal number by the SIGINT/SIGTERM handlers.
    pub stop: Arc<AtomicUsize>,
    /// Stop (checkpoint + `stopped`) after this many iterations of this process.
    pub stop_after: Option<u64>,
    pub profile_path: PathBuf,
    /// The command line that continues this run, printed when it stops.
    pub resume_command: String,
    /// Time spent writing events and checkpoints in this process (the run's bookkeeping).
    pub bookkeeping: std::time::Duration,
    /// The last event could not be written (warned once per streak).
    pub events_failing: bool,
    /// The multi-node job this process is a node of (`--nodes`).
    pub dist: Option<crate::dist::Collective>,
}

impl RunCtx {
    fn emit(&mut self, body: EventBody) {
        let Some(events) = self.events.as_mut() else {
            return;
        };
        let start = Instant::now();
        let written = events.emit(body);
        self.bookkeeping += start.elapsed();
        // Said once per streak of failures (a full disk fails every event), and when it ends.
        match written {
            Err(e) if !self.events_failing => {
                self.events_failing = true;
                crate::errln!(
                    "warning: cannot append to {}: {e} (events are lost until it can; training goes on)",
                    events.path().display()
                );
            }
            Ok(()) if self.events_failing => {
                self.events_failing = false;
                crate::errln!("note: {} is written again", events.path().display());
            }
            _ => {}
        }
    }

    fn say(&self, line: &str) {
        match &self.dist {
            Some(d) => crate::outln!("[{} node {}] {line}", self.run_id, d.rank()),
            None => crate::outln!("[{}] {line}", self.run_id),
        }
    }

    /// Whether this process writes the run directory (every process but the ranks other than 0
    /// of a multi-node job).
    pub fn writes_run_dir(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.rank() == 0)
    }
}

/// The `stopped` reason of a signal caught by the run's handlers.
pub fn signal_name(signal: usize) -> &'static str {
    match signal as i32 {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "SIGINT",
    }
}

/// Trains `model` as the profile says. `replica` builds a fresh model on another device.
///
/// The parts, in order: the data plan of the run ([`RunPlan`]), a fresh or resumed position
/// ([`start_or_resume`]), the `started` event, then per epoch the training pass
/// ([`train_epoch`]) and its end ([`end_epoch`]: evaluation, scales, checkpoint), and the end
/// of the run ([`finish_run`]).
pub fn train<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    devices: &[B::Device],
    model: M,
    mut opt: RepOptimizer<B::InnerBackend>,
    replica: impl Fn(&B::Device) -> M,
) -> anyhow::Result<RunOutcome> {
    let plan = RunPlan::new(ctx, devices.len())?;
    let main_device = devices[0].clone();
    let (mut state, mut model, resumed_from) =
        start_or_resume(ctx, &plan, model, &mut opt, &main_device)?;
    if let Some(d) = &ctx.dist {
        let p = &ctx.profile;
        let recipe = format!(
            "{:?} {} {:?} {} {} {:?} {:?}",
            p.kind,
            p.variant,
            p.recipe,
            p.seed,
            ctx.data.classes,
            p.data.kind,
            ctx.data.train.len()
        );
        let info = StartInfo {
            devices: p
                .devices
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(","),
            global_iter: state.global_iter,
            recipe,
        };
        dp::agree(d, &info)?;
        model = dp::broadcast_model::<B, M>(d, model)?;
    }
    let mut devices = Devices {
        replicas: devices[1..]
            .iter()
            .map(|d| Replica::new(replica(d), d.clone()))
            .collect(),
        main_ids: if devices.len() > 1 {
            param_ids::<B, M>(&model)
        } else {
            Default::default()
        },
        main: main_device,
    };
    announce(ctx, &plan, &state, resumed_from);

    let mut clocks = LoopClocks {
        process: ProcessClock::start(state.elapsed_s),
        window: MetricsWindow::default(),
        progress_line: Every::from_now(PROGRESS_LINE_EVERY),
        gpu_sample: Every::due_at_once(GPU_SAMPLE_EVERY),
        checkpoint: CheckpointTimer::new(ctx.profile.checkpoint.every_minutes),
        gpu: crate::gpu::GpuSampler::new(),
    };
    let mut last_top1 = None;
    while state.epoch < ctx.profile.recipe.epochs {
        let epoch_start = Instant::now();
        model = match train_epoch(
            ctx,
            &plan,
            &mut state,
            &mut clocks,
            &mut devices,
            model,
            &mut opt,
        )? {
            ControlFlow::Continue(model) => model,
            ControlFlow::Break(outcome) => return Ok(outcome),
        };
        match end_epoch(
            ctx,
            &mut state,
            &mut clocks,
            &devices.main,
            &model,
            &opt,
            &plan,
            epoch_start,
        )? {
            ControlFlow::Continue(top1) => last_top1 = Some(top1),
            ControlFlow::Break(outcome) => return Ok(outcome),
        }
    }
    finish_run(ctx, &state, &clocks.process, &model, last_top1)
}

/// What the profile and the data make of the run: loaders, iterations per epoch, schedule.
struct RunPlan {
    /// One training loader per device (rank), each a shard of the same epoch order.
    loaders: Vec<Loader>,
    val_loader: Loader,
    iters_per_epoch: u64,
    schedule: crate::optim::LrSchedule,
    variant: crate::model::Variant,
}

impl RunPlan {
    fn new(ctx: &RunCtx, local: usize) -> anyhow::Result<RunPlan> {
        let profile = &ctx.profile;
        let recipe = &profile.recipe;
        let train_pipeline = ctx.data.pipeline(recipe.augment, true);
        // Devices are ranked over the whole job: node n's device r is rank n × local + r.
        let (node, nodes) = ctx
            .dist
            .as_ref()
            .map_or((0, 1), |d| (d.rank() as usize, d.nodes() as usize));
        let world = local * nodes;
        let loaders: Vec<Loader> = (0..local)
            .map(|r| {
                let cfg = LoaderConfig {
                    rank: node * local + r,
                    world_size: world,
                    ..LoaderConfig::train(recipe.batch_size, profile.seed, recipe.workers)
                };
                Loader::new(ctx.data.train.clone(), train_pipeline.clone(), cfg)
            })
            .collect();
        let mut ipe = loaders[0].iters_per_epoch();
        if let Some(cap) = recipe.max_iters_per_epoch {
            ipe = ipe.min(cap);
        }
        if ipe == 0 {
            anyhow::bail!(
                "the training split has {}, fewer than one batch of {} × {}: lower batch_size or use more data",
                plural(ctx.data.train.len() as u64, "image"),
                recipe.batch_size,
                plural(world as u64, "device")
            );
        }
        let eval_bs = recipe.eval_batch_size.unwrap_or(recipe.batch_size);
        let val_loader = Loader::new(
            ctx.data.val.clone(),
            ctx.data.pipeline(recipe.augment, false),
            LoaderConfig::eval(eval_bs, recipe.workers),
        );
        Ok(RunPlan {
            loaders,
            val_loader,
            iters_per_epoch: ipe,
            schedule: profile.schedule_on_nodes(ipe, nodes),
            variant: profile.variant(),
        })
    }

    fn total_iters(&self, epochs: u32) -> u64 {
        epochs as u64 * self.iters_per_epoch
    }
}

/// The devices of a data-parallel run: the main one (the model, the optimizer) and replicas.
struct Devices<B: AutodiffBackend, M: TrainModel<B>> {
    main: B::Device,
    replicas: Vec<Replica<B, M>>,
    main_ids: std::collections::HashMap<String, burn::module::ParamId>,
}

/// Everything the loop times or sums, apart from the position it checkpoints.
struct LoopClocks {
    process: ProcessClock,
    window: MetricsWindow,
    progress_line: Every,
    gpu_sample: Every,
    checkpoint: CheckpointTimer,
    gpu: crate::gpu::GpuSampler,
}

/// The position to start from: a fresh one, or the checkpoint the run resumes (which must
/// come from the same kind, variant and data), with its model and optimizer state loaded.
fn start_or_resume<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    plan: &RunPlan,
    model: M,
    opt: &mut RepOptimizer<B::InnerBackend>,
    main_device: &B::Device,
) -> anyhow::Result<(TrainState, M, Option<String>)> {
    let ipe = plan.iters_per_epoch;
    let fresh = TrainState {
        epoch: 0,
        iter: 0,
        global_iter: 0,
        iters_per_epoch: ipe,
        seed: ctx.profile.seed,
        run_kind: ctx.profile.kind.tag(),
        variant: plan.variant.name.into(),
        classes: ctx.data.classes,
        best_top1: None,
        best_epoch: None,
        epoch_loss_sum: 0.0,
        epoch_correct: 0,
        epoch_seen: 0,
        elapsed_s: 0.0,
        scales_sha256: ctx.scales_sha256.clone(),
    };
    let Some((path, ckpt)) = ctx.resume.take() else {
        return Ok((fresh, model, None));
    };
    if ckpt.state.iters_per_epoch != ipe
        || ckpt.state.variant != fresh.variant
        || ckpt.state.run_kind != fresh.run_kind
    {
        anyhow::bail!(
            "{} was written by a different run ({} {} with {} iterations per epoch; this profile gives {} {} with {ipe})",
            path.display(),
            ckpt.state.run_kind,
            ckpt.state.variant,
            ckpt.state.iters_per_epoch,
            fresh.run_kind,
            fresh.variant
        );
    }
    let tensors = ckpt.model.into_iter().collect();
    let model =
        super::weights::load_tensors(model, tensors, &path, fresh.run_kind.label(), main_device)?;
    opt.load_state_tensors(ckpt.optim, main_device)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let state = TrainState {
        scales_sha256: ctx.scales_sha256.clone(),
        ..ckpt.state
    };
    let from = path
        .strip_prefix(&ctx.dir)
        .unwrap_or(&path)
        .display()
        .to_string();
    Ok((state, model, Some(from)))
}

/// The `started` event and the console line that says what runs where.
fn announce(ctx: &mut RunCtx, plan: &RunPlan, state: &TrainState, resumed_from: Option<String>) {
    let profile = ctx.profile.clone();
    let devices: Vec<String> = profile.devices.iter().map(|d| d.to_string()).collect();
    ctx.emit(EventBody::Started(events::Started {
        run_id: ctx.run_id.clone(),
        run_kind: profile.kind.tag(),
        variant: plan.variant.name.into(),
        dataset: ctx.data.description.clone(),
        epochs: profile.recipe.epochs,
        iters_per_epoch: plan.iters_per_epoch,
        batch_size: profile.recipe.batch_size,
        devices: devices.clone(),
        pid: std::process::id(),
        resumed_from: resumed_from.clone(),
        profile_path: Some(ctx.profile_path.display().to_string()),
        nodes: ctx.dist.as_ref().map(|d| d.nodes()),
    }));
    ctx.say(&format!(
        "{} {} on {} | {} | {} × {} of {} × {} | lr {:.4} | {}",
        profile.kind.label(),
        plan.variant.name,
        devices.join(","),
        ctx.data.description,
        plural(profile.recipe.epochs.into(), "epoch"),
        plural(plan.iters_per_epoch, "iteration"),
        plural(profile.recipe.batch_size as u64, "image"),
        match &ctx.dist {
            Some(d) => format!(
                "{} × {} nodes",
                plural(devices.len() as u64, "device"),
                d.nodes()
            ),
            None => plural(devices.len() as u64, "device"),
        },
        plan.schedule.base_lr,
        match &resumed_from {
            Some(p) => format!(
                "resumed from {p} at epoch {} iteration {}",
                state.epoch + 1,
                state.iter
            ),
            None => format!("run directory {}", ctx.dir.display()),
        }
    ));
}

/// The training pass of one epoch from `state.iter` on: a step per batch, `step` events,
/// progress lines, GPU samples and timed checkpoints. Breaks with the outcome when a stop
/// request or `--stop-after` ends the process, or the loss is not finite.
fn train_epoch<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    plan: &RunPlan,
    state: &mut TrainState,
    clocks: &mut LoopClocks,
    devices: &mut Devices<B, M>,
    mut model: M,
    opt: &mut RepOptimizer<B::InnerBackend>,
) -> anyhow::Result<ControlFlow<RunOutcome, M>> {
    let recipe = &ctx.profile.recipe;
    let (label_smoothing, log_every) = (recipe.label_smoothing, ctx.profile.log_every);
    let ipe = plan.iters_per_epoch;
    let epoch = state.epoch;
    let mut iters: Vec<_> = plan
        .loaders
        .iter()
        .map(|l| l.epoch(epoch as u64, state.iter))
        .collect();
    // Multi-node: a signal is acted on once every node knows it (it travels with the next
    // step's all-reduce), so that all stop after the same iteration.
    let mut agreed_stop = ctx.dist.is_none();
    while state.iter < ipe {
        // A signal stops at once; `--stop-after N` is checked before a step (not after one)
        // so that it runs exactly N iterations, also when N ends an epoch (the run then stops
        // after its evaluation).
        let reason = match ctx.stop.load(Ordering::SeqCst) {
            0 if ctx.stop_after.is_some_and(|n| clocks.process.steps >= n) => Some("stop-after"),
            0 => None,
            _ if !agreed_stop => None,
            signal => Some(signal_name(signal)),
        };
        if let Some(reason) = reason {
            state.elapsed_s = clocks.process.run_s();
            return Ok(ControlFlow::Break(stop(ctx, &model, opt, state, reason)));
        }
        let lr = plan.schedule.lr_for_iteration(state.global_iter);
        let step_start = Instant::now();
        let mut shards = Vec::with_capacity(iters.len());
        for it in iters.iter_mut() {
            let batch = it.next().context("the data loader ended early")??;
            shards.push(batch);
        }

        // Forward and backward per device; gradients averaged on the main device.
        let out = forward_backward(
            &model,
            &devices.main,
            &mut devices.replicas,
            &devices.main_ids,
            shards,
            label_smoothing,
            ctx.data.classes,
        );
        let compute_s = step_start.elapsed().as_secs_f64();
        let joined = join_nodes::<B, M>(ctx, state, clocks, model, out, compute_s);
        let (m, out, job_stops) = match joined {
            ControlFlow::Continue(step) => step,
            ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
        };
        model = m;
        agreed_stop |= job_stops;
        let StepOutput {
            grads,
            loss_sum,
            correct,
            images,
        } = out;
        let loss = loss_sum / images as f64;
        if !loss.is_finite() {
            let message = format!(
                "the loss became {loss} at epoch {} iteration {} (lr {lr:.5}); stopped without checkpointing. Last good checkpoint: {}. \
                 Lower the learning rate or enable grad_clip (HS runs), then resume.",
                epoch + 1,
                state.iter,
                last_checkpoint(ctx)
            );
            return Ok(ControlFlow::Break(fail(ctx, message)));
        }
        model = opt.step(model, grads, lr).0;

        state.iter += 1;
        state.global_iter += 1;
        state.epoch_loss_sum += loss_sum;
        state.epoch_correct += correct;
        state.epoch_seen += images as u64;
        clocks.process.steps += 1;
        clocks.window.add(loss_sum, correct, images as u64);

        if state.iter.is_multiple_of(log_every) || state.iter == ipe {
            record_step(ctx, plan, state, clocks, lr);
        }
        if clocks.gpu.status().is_available()
            && clocks.gpu_sample.tick()
            && let Some(sample) = clocks.gpu.sample_event(std::process::id())
        {
            ctx.emit(EventBody::Gpu(sample));
        }
        if state.iter < ipe && clocks.checkpoint.is_due() {
            state.elapsed_s = clocks.process.run_s();
            save(ctx, &model, opt, state, false);
            clocks.checkpoint.written();
        }
    }
    Ok(ControlFlow::Continue(model))
}

/// Multi-node: this node's step joined with the other nodes' — gradients, loss and accuracy
/// over every device of the job, and whether any node caught a stop signal (then set here too,
/// and true: every node knows it and acts on it after this same iteration). Single node: the
/// step as it is. A node that fails or leaves ends the run (no checkpoint: the nodes no longer
/// hold the same step).
fn join_nodes<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    state: &TrainState,
    clocks: &mut LoopClocks,
    model: M,
    out: StepOutput,
    compute_s: f64,
) -> ControlFlow<RunOutcome, (M, StepOutput, bool)> {
    let Some(d) = &ctx.dist else {
        return ControlFlow::Continue((model, out, false));
    };
    let local = LocalStep {
        loss_sum: out.loss_sum,
        correct: out.correct,
        images: out.images,
        compute_s,
        stop: ctx.stop.load(Ordering::SeqCst),
    };
    let (model, job) = match dp::sync_step::<B, M>(d, model, out.grads, local) {
        Ok(synced) => synced,
        Err(e) => {
            let message = format!(
                "{e}. The job ends on every node; stopped at epoch {} iteration {} without checkpointing. Last checkpoint: {}. \
                 Restart every node with --resume --run-id {}.",
                state.epoch + 1,
                state.iter,
                last_checkpoint(ctx),
                ctx.run_id
            );
            return ControlFlow::Break(fail(ctx, message));
        }
    };
    let job_stops = job.stop != 0;
    if job_stops {
        ctx.stop.store(job.stop, Ordering::SeqCst);
    }
    clocks.window.add_ranks(
        job.per_rank.iter().map(|r| (r.images as u64, r.compute_s)),
        job.all_reduce_s,
    );
    let step = StepOutput {
        grads: job.grads,
        loss_sum: job.loss_sum,
        correct: job.correct,
        images: job.images,
    };
    ControlFlow::Continue((model, step, job_stops))
}

/// A `step` event with the window's means since the last one, and now and then the progress
/// line; the window starts again.
fn record_step(
    ctx: &mut RunCtx,
    plan: &RunPlan,
    state: &TrainState,
    clocks: &mut LoopClocks,
    lr: f64,
) {
    let epochs = ctx.profile.recipe.epochs;
    let remaining = plan.total_iters(epochs) as f64 - state.global_iter as f64;
    let eta = clocks.process.eta_s(remaining);
    let window = &clocks.window;
    ctx.emit(EventBody::Step(events::Step {
        epoch: state.epoch,
        iter: state.iter - 1,
        global_iter: state.global_iter - 1,
        loss: window.mean_loss(),
        lr,
        images_per_s: window.images_per_s(),
        top1: Some(window.top1()),
        eta_s: Some(eta),
        rank_images_per_s: window.rank_images_per_s(),
        all_reduce_ms: window.all_reduce_ms(),
    }));
    if clocks.progress_line.tick() {
        ctx.say(&format!(
            "epoch {}/{} iter {}/{} loss {:.4} lr {:.5} {:.1} img/s eta {}",
            state.epoch + 1,
            epochs,
            state.iter,
            plan.iters_per_epoch,
            window.mean_loss(),
            lr,
            window.images_per_s(),
            crate::output::duration(eta)
        ));
    }
    clocks.window.restart();
}

/// The end of an epoch: evaluate, record, checkpoint. A stop request during the pass stops
/// after the current batch; the checkpoint then holds the finished epoch's training, and a
/// resumed run evaluates it first. Continues with the validation top-1.
#[allow(clippy::too_many_arguments)]
fn end_epoch<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    state: &mut TrainState,
    clocks: &mut LoopClocks,
    main_device: &B::Device,
    model: &M,
    opt: &RepOptimizer<B::InnerBackend>,
    plan: &RunPlan,
    epoch_start: Instant,
) -> anyhow::Result<ControlFlow<RunOutcome, f64>> {
    let epoch = state.epoch;
    let epochs = ctx.profile.recipe.epochs;
    let Some(report) = evaluate::<B, M>(
        model,
        &plan.val_loader,
        ctx.data.classes,
        main_device,
        &ctx.stop,
    )?
    else {
        state.elapsed_s = clocks.process.run_s();
        let reason = signal_name(ctx.stop.load(Ordering::SeqCst));
        return Ok(ControlFlow::Break(stop(ctx, model, opt, state, reason)));
    };
    if !report.is_finite() {
        // A diverged model (weights or BN statistics no longer finite) is never scored, never
        // "best" and never checkpointed: recorded as failed, the last good checkpoint kept.
        let (bad, first) = non_finite_weights::<B, M>(model);
        let message = format!(
            "after epoch {} the model is not finite: {} of {} validation images gave non-finite logits, {bad} weights are NaN or infinite{}; stopped without checkpointing. Last good checkpoint: {}. \
             Lower the learning rate (or enable grad_clip for HS runs), then resume.",
            epoch + 1,
            report.non_finite,
            report.images,
            first
                .map(|f| format!(" (first in {f})"))
                .unwrap_or_default(),
            last_checkpoint(ctx)
        );
        return Ok(ControlFlow::Break(fail(ctx, message)));
    }
    let (val_loss, top1, top5) = (report.loss, report.top1, report.top5);
    let train_loss = state.epoch_loss_sum / state.epoch_seen.max(1) as f64;
    let train_top1 = 100.0 * state.epoch_correct as f64 / state.epoch_seen.max(1) as f64;
    ctx.emit(EventBody::Eval(events::Eval {
        epoch,
        loss: val_loss,
        top1,
        top5,
        train_loss: Some(train_loss),
        train_top1: Some(train_top1),
    }));
    let best = state.best_top1.is_none_or(|b| top1 > b);
    if best {
        state.best_top1 = Some(top1);
        state.best_epoch = Some(epoch);
    }
    if let Some(scales) = model.scales(
        plan.variant.name,
        &format!("hyper-search run {} epoch {}", ctx.run_id, epoch + 1),
    ) {
        ctx.emit(EventBody::Scales(scales_event(&scales, epoch)));
        if ctx.writes_run_dir()
            && let Err(e) = scales.save(&ctx.dir.join(SCALES_FILE))
        {
            crate::errln!(
                "warning: cannot write {}: {e}",
                ctx.dir.join(SCALES_FILE).display()
            );
        }
        ctx.scales = Some(scales);
    }
    state.epoch += 1;
    state.iter = 0;
    state.epoch_loss_sum = 0.0;
    state.epoch_correct = 0;
    state.epoch_seen = 0;
    state.elapsed_s = clocks.process.run_s();
    let keep_best = best && ctx.profile.checkpoint.keep_best;
    save(ctx, model, opt, state, keep_best);
    clocks.checkpoint.written();
    ctx.say(&format!(
        "epoch {}/{} done in {}: train loss {:.4} top-1 {:.2}% | val loss {:.4} top-1 {:.2}% top-5 {:.2}% | best {:.2}% (epoch {})",
        epoch + 1,
        epochs,
        crate::output::duration(epoch_start.elapsed().as_secs_f64()),
        train_loss,
        train_top1,
        val_loss,
        top1,
        top5,
        state.best_top1.unwrap_or(top1),
        state.best_epoch.map_or(epoch + 1, |e| e + 1)
    ));
    Ok(ControlFlow::Continue(top1))
}

/// The end of a run: the kind's own outputs, the deployable weights, exported scales, the
/// `finished` event and the last console line.
fn finish_run<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    state: &TrainState,
    process: &ProcessClock,
    model: &M,
    last_top1: Option<f64>,
) -> anyhow::Result<RunOutcome> {
    let profile = ctx.profile.clone();
    if !ctx.writes_run_dir() {
        ctx.say(&format!(
            "finished in {}: node 0 writes the run directory",
            crate::output::duration(process.run_s())
        ));
        return Ok(RunOutcome::Finished);
    }
    let mut extra = model.finish(&ctx.dir)?;
    super::hooks::save_safetensors::<B::InnerBackend, _>(
        &model.valid(),
        &ctx.dir.join("model.safetensors"),
        profile.kind.tag().as_str(),
    )?;
    extra.push("model.safetensors".into());
    let stats = super::hooks::kernel_stats_report(model, &profile.variant());
    let path = ctx.dir.join(KERNEL_STATS_FILE);
    let json = serde_json::to_string_pretty(&stats).expect("kernel statistics serialize");
    crate::profile::write_atomic(&path, json.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    extra.push(KERNEL_STATS_FILE.into());
    if let (Some(scales), Some(export)) = (&ctx.scales, &profile.export_scales) {
        scales
            .save(export)
            .with_context(|| format!("cannot export the scales to {}", export.display()))?;
        extra.push(format!("scales exported to {}", export.display()));
    }
    let wall = process.run_s();
    let bookkeeping = ctx.bookkeeping.as_secs_f64();
    ctx.emit(EventBody::Finished(events::Finished {
        epochs: profile.recipe.epochs,
        best_top1: state.best_top1,
        final_top1: last_top1,
        wall_s: wall,
    }));
    ctx.say(&format!(
        "finished in {}: best top-1 {:.2}% | events and checkpoints took {:.2} s ({:.2}% of this process's {:.1} s) | wrote {}",
        crate::output::duration(wall),
        state.best_top1.unwrap_or(0.0),
        bookkeeping,
        100.0 * bookkeeping / process.process_s().max(1e-9),
        process.process_s(),
        extra.join(", ")
    ));
    Ok(RunOutcome::Finished)
}

/// The newest checkpoint on disk, for failure messages.
fn last_checkpoint(ctx: &RunCtx) -> String {
    checkpoint::list(&ctx.dir.join(CKPT_DIR))
        .pop()
        .map_or_else(|| "none".into(), |p| p.display().to_string())
}

/// Records a failed run (event and console) without checkpointing.
fn fail(ctx: &mut RunCtx, message: String) -> RunOutcome {
    ctx.emit(EventBody::Failed(events::Failed {
        message: message.clone(),
    }));
    ctx.say(&format!("FAILED: {message}"));
    RunOutcome::Failed(message)
}

/// What an evaluation pass measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalReport {
    /// Validation loss (no label smoothing); NaN when a logit was not finite.
    pub loss: f64,
    /// Top-1 and top-5 in percent; a sample with a non-finite logit is never correct.
    pub top1: f64,
    pub top5: f64,
    pub images: usize,
    /// Samples whose logits were not all finite (a diverged model).
    pub non_finite: usize,
}

impl EvalReport {
    /// Whether every logit was finite (the numbers mean something).
    pub fn is_finite(&self) -> bool {
        self.non_finite == 0 && self.loss.is_finite()
    }
}

/// [`evaluate_inner`] for the model being trained (its inner, non-autodiff form).
pub fn evaluate<B: AutodiffBackend, M: TrainModel<B>>(
    model: &M,
    loader: &Loader,
    classes: usize,
    device: &B::Device,
    stop: &AtomicUsize,
) -> anyhow::Result<Option<EvalReport>> {
    evaluate_inner::<B::InnerBackend, _>(&model.valid(), loader, classes, device, stop)
}

/// Validation loss, top-1 and top-5 of a model on any backend, in evaluation mode. Returns
/// `None` when `stop` became non-zero (a signal) before the pass ended: it is checked before
/// every batch, so a stop request waits for one batch, not the whole pass.
pub fn evaluate_inner<B: burn::tensor::backend::Backend, M: crate::model::Classifier<B>>(
    model: &M,
    loader: &Loader,
    classes: usize,
    device: &B::Device,
    stop: &AtomicUsize,
) -> anyhow::Result<Option<EvalReport>> {
    evaluate_logits(loader, classes, device, stop, |x| model.logits(x, false))
}

/// [`evaluate_inner`] for any function from images to logits (a quantized network, say).
pub fn evaluate_logits<B: burn::tensor::backend::Backend>(
    loader: &Loader,
    classes: usize,
    device: &B::Device,
    stop: &AtomicUsize,
    logits: impl Fn(burn::tensor::Tensor<B, 4>) -> burn::tensor::Tensor<B, 2>,
) -> anyhow::Result<Option<EvalReport>> {
    let (mut loss, mut top1, mut top5, mut n, mut non_finite) =
        (0.0f64, 0usize, 0usize, 0usize, 0usize);
    for batch in loader.epoch(0, 0) {
        if stop.load(Ordering::SeqCst) != 0 {
            return Ok(None);
        }
        let batch = batch?;
        let labels = batch.labels.clone();
        let (x, _) = batch.into_tensors::<B>(device);
        let logits: Vec<f32> = logits(x)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32");
        for (row, &label) in logits.chunks(classes).zip(&labels) {
            if row.iter().any(|v| !v.is_finite()) {
                non_finite += 1;
                loss = f64::NAN;
                continue;
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            loss += lse - row[label as usize] as f64;
        }
        top1 += correct_top_k(&logits, classes, &labels, 1);
        top5 += correct_top_k(&logits, classes, &labels, 5.min(classes));
        n += labels.len();
    }
    if n == 0 {
        anyhow::bail!("the validation split is empty: nothing to evaluate");
    }
    let nf = n as f64;
    Ok(Some(EvalReport {
        loss: loss / nf,
        top1: 100.0 * top1 as f64 / nf,
        top5: 100.0 * top5 as f64 / nf,
        images: n,
        non_finite,
    }))
}

/// How many values of the model's tensors are not finite, and the first tensor that has one.
fn non_finite_weights<B: AutodiffBackend, M: TrainModel<B>>(model: &M) -> (usize, Option<String>) {
    count_non_finite(named_tensors::<B, M>(model).iter().map(|(n, d)| (n, d)))
}

/// How many values are not finite, and the first tensor (by name) that has one.
pub fn count_non_finite<'a>(
    tensors: impl IntoIterator<Item = (&'a String, &'a burn::tensor::TensorData)>,
) -> (usize, Option<String>) {
    let (mut count, mut first) = (0usize, None);
    for (name, data) in tensors {
        let n = match data.clone().convert::<f32>().to_vec::<f32>() {
            Ok(v) => v.iter().filter(|x| !x.is_finite()).count(),
            Err(_) => 0,
        };
        if n > 0 && first.is_none() {
            first = Some(name.clone());
        }
        count += n;
    }
    (count, first)
}

/// Writes a checkpoint of the current position; a failure is reported and training goes on
/// (the previous checkpoints stay intact).
fn save<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    model: &M,
    opt: &RepOptimizer<B::InnerBackend>,
    state: &TrainState,
    best: bool,
) -> Option<String> {
    if !ctx.writes_run_dir() {
        return None;
    }
    let (start, before) = (Instant::now(), ctx.bookkeeping);
    let written = save_inner(ctx, model, opt, state, best);
    // The checkpoint event written inside is part of this, not counted twice.
    ctx.bookkeeping = before + start.elapsed();
    written
}

fn save_inner<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    model: &M,
    opt: &RepOptimizer<B::InnerBackend>,
    state: &TrainState,
    best: bool,
) -> Option<String> {
    let dir = ctx.dir.join(CKPT_DIR);
    let name = checkpoint::file_name(state.epoch, state.global_iter);
    let rel = format!("{CKPT_DIR}/{name}");
    let tensors = named_tensors::<B, M>(model);
    let (bad, first) = count_non_finite(tensors.iter().map(|(n, d)| (n, d)));
    let written = if bad > 0 {
        // A diverged model is never a checkpoint (it would become the newest, or the best).
        Err(format!(
            "the model has {bad} non-finite weights (first in {}): not written",
            first.unwrap_or_default()
        ))
    } else {
        let ckpt = Checkpoint {
            state: state.clone(),
            model: tensors,
            optim: opt.state_tensors(),
        };
        checkpoint::write(&dir.join(&name), &ckpt).map_err(|e| e.to_string())
    };
    if let Err(e) = written {
        crate::errln!(
            "[{}] checkpoint failed (training goes on, earlier checkpoints are intact): {e}",
            ctx.run_id
        );
        ctx.emit(EventBody::CheckpointFailed(events::CheckpointFailed {
            epoch: state.epoch,
            global_iter: state.global_iter,
            path: rel,
            error: e,
        }));
        return None;
    }
    if best {
        // A copy (not a hard link: damaging one file must not damage the other), written under
        // a temporary name, synced and renamed: `best.ckpt` is always a whole file.
        if let Err(e) = checkpoint::copy_atomic(&dir.join(&name), &dir.join(checkpoint::BEST)) {
            crate::errln!("[{}] cannot update {}: {e}", ctx.run_id, checkpoint::BEST);
        }
    }
    checkpoint::prune(&dir, ctx.profile.checkpoint.keep_last);
    ctx.emit(EventBody::Checkpoint(events::CheckpointEvent {
        epoch: state.epoch,
        global_iter: state.global_iter,
        path: rel.clone(),
        best,
    }));
    Some(rel)
}

fn stop<B: AutodiffBackend, M: TrainModel<B>>(
    ctx: &mut RunCtx,
    model: &M,
    opt: &RepOptimizer<B::InnerBackend>,
    state: &TrainState,
    reason: &str,
) -> RunOutcome {
    let written = save(ctx, model, opt, state, false);
    ctx.emit(EventBody::Stopped(events::Stopped {
        epoch: state.epoch,
        global_iter: state.global_iter,
        reason: reason.to_string(),
        checkpoint: written.clone(),
    }));
    ctx.say(&format!(
        "stopped ({reason}) at epoch {} iteration {}; {}",
        state.epoch + 1,
        state.iter,
        match written {
            Some(p) => format!("checkpoint {p}; continue with: {}", ctx.resume_command),
            None if !ctx.writes_run_dir() => "node 0 writes the checkpoint".into(),
            None => "the checkpoint could not be written: the previous one stays the newest".into(),
        }
    ));
    RunOutcome::Stopped
}
