//! Runs: the headless `--profile` job. Sets up the run directory (lock, frozen profile, events),
//! resolves scales and data, builds the model of the run kind, and hands over to the loop.

pub mod checkpoint;
pub mod clocks;
pub mod collective;
pub mod hooks;
pub mod replicas;
pub mod scales;
pub mod timing;
pub mod trainer;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, bail};
use burn::tensor::backend::AutodiffBackend;

use crate::device::{BackendTask, DeviceChoice, dispatch};
use crate::model::{ModelKind, TargetNet};
use crate::optim::{GradMults, OptimizerConfig, RepOptimizer, UpdateRule, reinitialize};
use crate::output::plural;
use crate::profile::{RunKind, RunProfile, ScaleSource, ScalesProfile};
use crate::rundir::events::{EventBody, Failed};
use crate::rundir::{
    CKPT_DIR, EVENTS_FILE, EventWriter, FROZEN_SCALES_FILE, PROFILE_FILE, RunLock, SCALES_FILE,
};
pub use trainer::{RunCtx, RunOutcome};
use weights::load_weights;

/// What the command line says about a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: PathBuf,
    pub resume: bool,
    pub checkpoint: Option<PathBuf>,
    pub run_id: Option<String>,
    pub runs_dir: PathBuf,
    pub stop_after: Option<u64>,
    /// `--profile` as the user typed it, for the commands the run prints (how to continue it,
    /// what to run next); `None` when another command started the run (`demo`): no such hints.
    pub profile_arg: Option<String>,
    /// `--nodes`: this process is one node of a multi-node job.
    pub dist: Option<crate::dist::DistOptions>,
}

/// Where run directories live unless `--runs-dir` says otherwise.
pub const DEFAULT_RUNS_DIR: &str = "checkpoints";

/// The run directory a profile path is frozen in, if it is one (`checkpoints/<id>/profile.ron`).
fn run_dir_of(profile: &Path) -> Option<PathBuf> {
    let dir = profile.parent()?;
    (profile.file_name()? == PROFILE_FILE && dir.join(EVENTS_FILE).exists())
        .then(|| dir.to_path_buf())
}

/// The newest run directory under `runs_dir` for a profile stem or run id, optionally one that
/// has `file` in it.
pub fn newest_run(runs_dir: &Path, name: &str, file: Option<&str>) -> Option<PathBuf> {
    let exact = runs_dir.join(name);
    if exact.join(EVENTS_FILE).exists() && file.is_none_or(|f| exact.join(f).exists()) {
        return Some(exact);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n != name && crate::rundir::ids::is_run_of(n, name))
                && file.is_none_or(|f| p.join(f).exists())
        })
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A run id is one folder name under the runs directory: not empty, no `/`, not `.` or `..`, no
/// leading `.` (hidden, and the dashboard's temporaries), no control characters, at most 200
/// bytes.
pub fn check_run_id(id: &str) -> anyhow::Result<()> {
    let why = if id.is_empty() {
        Some("it is empty")
    } else if id.contains('/') || id.contains('\\') {
        Some("it contains a path separator; a run id is one folder name under --runs-dir")
    } else if id.starts_with('.') {
        Some("it starts with '.'")
    } else if id.chars().any(|c| c.is_control()) {
        Some("it contains control characters")
    } else if id.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if [CKPT_DIR].contains(&id) {
        Some("it is the name of a run directory's own folder")
    } else {
        None
    };
    match why {
        Some(why) => bail!(
            "--run-id {id:?} is not a valid run id: {why}. Use letters, digits, '-', '_' and '.', e.g. b1-first"
        ),
        None => Ok(()),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A Target run's scales as read and checked before its directory exists.
struct FrozenScales {
    scales: ScalesProfile,
    /// Checksum recorded in the checkpoints (none for a run started before scales were frozen).
    sha256: Option<String>,
    /// A new run: the bytes to freeze as `scales.frozen.ron` once the run directory exists.
    new_copy: Option<Vec<u8>>,
}

impl FrozenScales {
    /// Writes a new run's copy as `scales.frozen.ron` in its (now existing) directory; returns
    /// the scales and the checksum its checkpoints record.
    fn freeze_in(self, dir: &Path) -> anyhow::Result<(ScalesProfile, Option<String>)> {
        if let Some(bytes) = &self.new_copy {
            let frozen = dir.join(FROZEN_SCALES_FILE);
            crate::profile::write_atomic(&frozen, bytes)
                .with_context(|| format!("cannot write {}", frozen.display()))?;
        }
        Ok((self.scales, self.sha256))
    }
}

/// The scales of a Target run, from its own directory: a run is reproducible from that directory
/// alone, whatever happens later to the file its profile named (`run:<hs>` resolves to an HS run's
/// `scales.ron`, which that run rewrites every epoch; a scales profile can be edited). A new run
/// copies the file byte for byte into `scales.frozen.ron` (written by the caller once the run
/// directory exists); a resumed run reads that copy and checks it against the SHA-256 its
/// checkpoint recorded.
fn frozen_scales(
    dir: &Path,
    spec: &str,
    average: bool,
    variant: &crate::model::Variant,
    resume: Option<&(PathBuf, checkpoint::Checkpoint)>,
) -> anyhow::Result<FrozenScales> {
    let frozen = dir.join(FROZEN_SCALES_FILE);
    let parse = |bytes: &[u8], path: &Path| scales::parse_scales(bytes, path, variant);
    let source = ScaleSource::parse(spec).map_err(|e| anyhow::anyhow!("scales: {e}"))?;
    let Some((ckpt_path, ckpt)) = resume else {
        // New run: read (or generate) the scales once, check them, freeze exactly those bytes.
        let (bytes, source) = scales::source_bytes(&source, average, variant)?;
        let scales = parse(&bytes, &source)?;
        return Ok(FrozenScales {
            scales,
            sha256: Some(checkpoint::sha256_hex(&bytes)),
            new_copy: Some(bytes),
        });
    };
    if !frozen.exists() {
        let (bytes, source) = scales::source_bytes(&source, average, variant)?;
        let sha = checkpoint::sha256_hex(&bytes);
        match &ckpt.state.scales_sha256 {
            // A run started before scales were frozen: the best left is the file its profile names.
            None => crate::errln!(
                "warning: {} has no {FROZEN_SCALES_FILE} (started by an older version); using {}, which may have changed since the run started",
                dir.display(),
                source.display()
            ),
            // The copy was lost but the original is still the same file: restore the copy.
            Some(recorded) if *recorded == sha => {
                crate::profile::write_atomic(&frozen, &bytes)
                    .with_context(|| format!("cannot write {}", frozen.display()))?;
            }
            Some(recorded) => bail!(
                "{} is missing and {} is not the file the run started with (SHA-256 {sha}, {} recorded {recorded}): \
                 restore {FROZEN_SCALES_FILE}, or start a new run",
                frozen.display(),
                source.display(),
                ckpt_path.display()
            ),
        }
        let sha = ckpt.state.scales_sha256.as_ref().map(|_| sha);
        return Ok(FrozenScales {
            scales: parse(&bytes, &source)?,
            sha256: sha,
            new_copy: None,
        });
    }
    let bytes =
        std::fs::read(&frozen).with_context(|| format!("cannot read {}", frozen.display()))?;
    let sha = checkpoint::sha256_hex(&bytes);
    if let Some(recorded) = &ckpt.state.scales_sha256
        && recorded != &sha
    {
        bail!(
            "{} changed since {} was written (SHA-256 {sha}, the checkpoint recorded {recorded}): \
             the run would continue with other scales than it trained with. Restore the file, or start a new run",
            frozen.display(),
            ckpt_path.display()
        );
    }
    Ok(FrozenScales {
        scales: parse(&bytes, &frozen)?,
        sha256: Some(sha),
        new_copy: None,
    })
}

/// `--resume` with a `--profile` that is not the run's frozen one: the frozen profile is what
/// the run continues with; say which sections of the given one differ (they are ignored).
fn warn_if_profile_differs(given: &Path, frozen_path: &Path, frozen: &RunProfile) {
    let Ok(mut p) = RunProfile::load(given) else {
        return;
    };
    if let Some(d) = &p.data.path {
        p.data.path = Some(absolute(d));
    }
    if let Some(w) = &p.weights {
        p.weights = Some(absolute(w));
    }
    let mut differs = Vec::new();
    let f = frozen;
    let pairs: [(&str, bool); 12] = [
        ("kind", p.kind != f.kind),
        ("variant", p.variant != f.variant),
        ("data", p.data != f.data),
        ("recipe", p.recipe != f.recipe),
        ("devices", p.devices != f.devices),
        ("seed", p.seed != f.seed),
        ("checkpoint", p.checkpoint != f.checkpoint),
        ("reinit_identity", p.reinit_identity != f.reinit_identity),
        ("weights", p.weights != f.weights),
        (
            "average_channels",
            p.average_channels() != f.average_channels(),
        ),
        ("reinit", p.reinit() != f.reinit()),
        (
            "modify_gradients",
            p.modify_gradients() != f.modify_gradients(),
        ),
    ];
    for (name, differ) in pairs {
        if differ {
            differs.push(name);
        }
    }
    if !differs.is_empty() {
        crate::errln!(
            "warning: --resume continues with the run's frozen profile {}; {} differs from it in {} (ignored: start a new run to use it)",
            frozen_path.display(),
            given.display(),
            differs.join(", ")
        );
    }
}

/// Whether `signal` is ignored in this process (inherited, e.g. SIGHUP under `nohup`).
fn signal_ignored(signal: i32) -> bool {
    // SAFETY: querying the disposition (no new action) with a zeroed out-parameter.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// `--resume` without `--run-id`: the newest unfinished run (stopped, interrupted or failed) of
/// this profile, found by the profile it was started from or by its default id. A finished or
/// live run is never picked; when none is left, the error names every run of the profile.
fn run_to_resume(runs_dir: &Path, profile: &Path) -> anyhow::Result<PathBuf> {
    use crate::rundir::{RunStatus, RunSummary, list_runs};
    let stem = crate::rundir::ids::profile_stem(profile);
    let given = absolute(profile);
    let mut runs = list_runs(runs_dir).unwrap_or_default();
    runs.retain(|r| {
        r.kind != Some(crate::rundir::events::RunKindTag::Probe)
            && r.path.join(PROFILE_FILE).is_file()
            && (crate::rundir::ids::is_run_of(&r.id, &stem)
                || r.profile_path.as_deref().map(Path::new) == Some(given.as_path()))
    });
    let describe = |r: &RunSummary| {
        let epochs = match (r.epoch, r.epochs) {
            (_, Some(n)) if r.status == RunStatus::Finished => format!(", {n}/{n} epochs"),
            (Some(e), Some(n)) => format!(", epoch {}/{n}", e + 1),
            _ => String::new(),
        };
        format!("{} ({}{epochs})", r.id, r.status)
    };
    let open: Vec<_> = runs
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                RunStatus::Stopped | RunStatus::Interrupted | RunStatus::Failed | RunStatus::New
            )
        })
        .collect();
    let Some(pick) = open.first() else {
        if runs.is_empty() {
            bail!(
                "--resume: no run of '{stem}' under {}: start one without --resume",
                runs_dir.display()
            );
        }
        bail!(
            "--resume: no unfinished run of '{stem}' under {} to continue; its runs: {}. Start a new run without --resume",
            runs_dir.display(),
            runs.iter().map(describe).collect::<Vec<_>>().join(", ")
        );
    };
    if open.len() > 1 {
        crate::errln!(
            "note: --resume continues {}, the newest unfinished run of '{stem}'; also unfinished: {} (choose one with --run-id)",
            pick.id,
            open[1..]
                .iter()
                .map(|r| describe(r))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(pick.path.clone())
}

/// One word of a shell command line, quoted when the shell would split or expand it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command line that continues run `run_id`: the profile as the user named it (the run's
/// frozen profile when the run was started by another command), the run id, the runs
/// directory when it is not the default, `--resume`.
fn resume_command(opts: &RunOptions, run_id: &str, dir: &Path) -> String {
    let profile = match &opts.profile_arg {
        Some(p) => p.clone(),
        None => dir.join(PROFILE_FILE).display().to_string(),
    };
    let mut words = vec![
        "repopt-tui".to_string(),
        "--profile".into(),
        shell_word(&profile),
        "--run-id".into(),
        shell_word(run_id),
    ];
    if opts.runs_dir != Path::new(DEFAULT_RUNS_DIR) {
        words.push("--runs-dir".into());
        words.push(shell_word(&opts.runs_dir.display().to_string()));
    }
    words.push("--resume".into());
    words.join(" ")
}

/// After a Hyper-Search: where its scales are and the command that trains the target model with
/// them (a Target profile beside the HS profile that reads this run's scales, else how to write
/// one).
fn hs_next_step(opts: &RunOptions, profile: &RunProfile, run_id: &str, dir: &Path) -> String {
    let scales = dir.join(SCALES_FILE);
    let mut line = format!("scales written to {}", scales.display());
    if let Some(export) = &profile.export_scales {
        line.push_str(&format!(" and {}", export.display()));
    }
    let stem = crate::rundir::ids::profile_stem(&opts.profile);
    let export = profile.export_scales.as_ref().map(|e| absolute(e));
    let reads_these = |spec: &str| {
        spec.strip_prefix("run:").is_some_and(|name| {
            name == run_id || (name == stem && crate::rundir::ids::is_run_of(run_id, &stem))
        }) || export
            .as_ref()
            .is_some_and(|e| absolute(Path::new(spec)) == *e)
    };
    let mut dirs: Vec<PathBuf> = opts
        .profile
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    dirs.extend(crate::profile::profile_dirs());
    let target = dirs.iter().find_map(|d| {
        crate::profile::profile_names(d)
            .into_iter()
            .find_map(|name| {
                let path = d.join(format!("{name}.ron"));
                let p = RunProfile::load(&path).ok()?;
                (p.kind == RunKind::Target
                    && p.variant == profile.variant
                    && p.scales.as_deref().is_some_and(reads_these))
                .then_some(path)
            })
    });
    let runs_dir = if opts.runs_dir != Path::new(DEFAULT_RUNS_DIR) {
        format!(
            " --runs-dir {}",
            shell_word(&opts.runs_dir.display().to_string())
        )
    } else {
        String::new()
    };
    match target {
        Some(t) => line.push_str(&format!(
            ". Next, train RepOpt-VGG {} with them: repopt-tui --profile {}{runs_dir}",
            profile.variant,
            shell_word(&t.display().to_string())
        )),
        None => line.push_str(&format!(
            ". Next, train RepOpt-VGG {} with them: in a run profile with kind: Target and variant: \"{}\" set scales: \"run:{run_id}\", then repopt-tui --profile <that profile>{runs_dir}",
            profile.variant, profile.variant
        )),
    }
    line
}

/// Records a start-up failure in `dir` when the directory already exists (a resumed run, or one
/// the dashboard created to hold its output), so whoever watches it sees why; a new run's
/// directory is not created for it.
fn fail_in_existing(dir: &Path, e: anyhow::Error) -> anyhow::Error {
    if dir.is_dir()
        && let Ok(mut events) = EventWriter::open(dir)
    {
        let _ = events.emit(EventBody::Failed(Failed {
            message: format!("{e:#}"),
        }));
    }
    e
}

/// Starts or resumes the run of `opts.profile` in the foreground.
///
/// The parts, in order: signal handlers ([`stop_on_signals`]), the run to start
/// ([`resumed_run`] or [`new_run`]), every check that can fail before the run directory is
/// created ([`check_before_start`]), the directory taken over and the scales frozen in it, then
/// the training task on the profile's devices.
pub fn run(opts: RunOptions) -> anyhow::Result<RunOutcome> {
    let stop = stop_on_signals()?;
    if let Some(id) = &opts.run_id {
        check_run_id(id)?;
    }
    let layout = opts.dist.as_ref().map(|d| d.check()).transpose()?;
    if let Some(l) = &layout {
        if opts.resume && opts.run_id.is_none() {
            bail!(
                "--resume with --nodes {} needs --run-id ID, the same on every node (node 0 holds the run's lock, so the others cannot look for \"the newest unfinished run\" themselves)",
                l.nodes
            );
        }
        if l.rank != 0 {
            return run_follower(opts, l.clone(), stop);
        }
    }
    let (
        RunStart {
            dir,
            run_id,
            profile,
            resume,
        },
        devices_file,
    ) = run_start(&opts, true)?;
    let choice = DeviceChoice::Profile(&devices_file);

    // A directory that exists already (resumed, or created by the dashboard for the run's
    // output) is locked first and gets a failure as an event; a new run's is only created once
    // everything checked out, so a run that cannot start leaves nothing behind.
    let early_lock = if dir.is_dir() {
        Some(RunLock::acquire(&dir)?)
    } else {
        None
    };
    let (data, scales) = check_before_start(&opts, &profile, &dir, choice, resume.as_ref())
        .map_err(|e| fail_in_existing(&dir, e))?;
    let owned = crate::rundir::own_run_dir(&dir, early_lock)?;
    let (_lock, mut events) = (owned.lock, owned.events);
    // Temporary files of an interrupted write (kill -9 during a checkpoint) would stay forever.
    for d in [dir.clone(), dir.join(CKPT_DIR)] {
        for removed in checkpoint::remove_stale_temporaries(&d) {
            crate::errln!(
                "note: removed {} (left by an interrupted write)",
                removed.display()
            );
        }
    }
    if !opts.resume {
        crate::profile::write_atomic(&dir.join(PROFILE_FILE), profile.to_ron().as_bytes())
            .with_context(|| format!("cannot write {}", dir.join(PROFILE_FILE).display()))?;
    }
    // From here on, failures are recorded in the run directory too.
    let (scales, scales_sha256) = match scales.map(|s| s.freeze_in(&dir)).transpose() {
        Ok(Some((scales, sha256))) => (Some(scales), sha256),
        Ok(None) => (None, None),
        Err(e) => return Err(record_failure(&mut events, e)),
    };
    let devices = profile.devices.clone();
    let kind = profile.kind;
    let frozen_profile = profile.clone();
    let dist = match layout.map(|l| crate::dist::Collective::join(l, stop.clone())) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return Err(record_failure(&mut events, e)),
    };
    let mut ctx = RunCtx {
        profile,
        run_id: run_id.clone(),
        resume_command: resume_command(&opts, &run_id, &dir),
        dir: dir.clone(),
        events: Some(events),
        dist,
        data,
        resume,
        scales,
        scales_sha256,
        stop,
        stop_after: opts.stop_after,
        profile_path: absolute(&opts.profile),
        bookkeeping: std::time::Duration::ZERO,
        events_failing: false,
    };
    let outcome = dispatch(&devices, choice, TrainTask(&mut ctx));
    if let (Ok(Ok(RunOutcome::Finished)), Some(d)) = (&outcome, ctx.dist.take()) {
        d.finish();
    }
    match outcome {
        Ok(Ok(RunOutcome::Finished)) if kind == RunKind::HyperSearch => {
            // The HS run's last line: where its result went and what to run next.
            if opts.profile_arg.is_some() {
                crate::outln!(
                    "[{run_id}] {}",
                    hs_next_step(&opts, &frozen_profile, &run_id, &dir)
                );
            }
            Ok(RunOutcome::Finished)
        }
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) | Err(e) => match ctx.events.as_mut() {
            Some(events) => Err(record_failure(events, e)),
            None => Err(e),
        },
    }
}

/// The run to start (`owner`: as in [`new_run`]) or continue, and the file whose
/// `devices` decide where it computes (what to edit to change them): the run's own copy of the
/// profile when resumed, else the profile given.
fn run_start(opts: &RunOptions, owner: bool) -> anyhow::Result<(RunStart, PathBuf)> {
    let start = if opts.resume {
        resumed_run(opts)?
    } else {
        new_run(opts, owner)?
    };
    let devices_file = if opts.resume {
        start.dir.join(PROFILE_FILE)
    } else {
        opts.profile.clone()
    };
    Ok((start, devices_file))
}

/// A node other than 0 of a multi-node job: the same profile, data, scales and (on `--resume`)
/// checkpoint as node 0, read but never written (node 0 owns the run directory and its lock).
fn run_follower(
    opts: RunOptions,
    layout: crate::dist::Layout,
    stop: Arc<AtomicUsize>,
) -> anyhow::Result<RunOutcome> {
    let (
        RunStart {
            dir,
            run_id,
            profile,
            resume,
        },
        devices_file,
    ) = run_start(&opts, false)?;
    let choice = DeviceChoice::Profile(&devices_file);
    let (data, scales) = check_before_start(&opts, &profile, &dir, choice, resume.as_ref())?;
    let (scales, scales_sha256) = match scales {
        Some(f) => (Some(f.scales), f.sha256),
        None => (None, None),
    };
    let dist = crate::dist::Collective::join(layout, stop.clone())?;
    let devices = profile.devices.clone();
    let mut ctx = RunCtx {
        profile,
        run_id: run_id.clone(),
        resume_command: resume_command(&opts, &run_id, &dir),
        dir,
        events: None,
        dist: Some(dist),
        data,
        resume,
        scales,
        scales_sha256,
        stop,
        stop_after: opts.stop_after,
        profile_path: absolute(&opts.profile),
        bookkeeping: std::time::Duration::ZERO,
        events_failing: false,
    };
    let outcome = dispatch(&devices, choice, TrainTask(&mut ctx))??;
    if let (RunOutcome::Finished, Some(d)) = (&outcome, ctx.dist.take()) {
        d.finish();
    }
    Ok(outcome)
}

/// A `failed` event in the run's own directory; the error goes on to the caller.
fn record_failure(events: &mut EventWriter, e: anyhow::Error) -> anyhow::Error {
    let _ = events.emit(EventBody::Failed(Failed {
        message: format!("{e:#}"),
    }));
    e
}

/// The flag the training loop polls: set to the signal's number by SIGINT, SIGTERM and SIGHUP.
/// Installed first, so a signal during start-up (data scan, scales) is not lost and SIGHUP does
/// not kill a run whose terminal went away before training began.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicUsize>> {
    let stop = Arc::new(AtomicUsize::new(0));
    // SIGHUP (the SSH connection or terminal went away) stops the run as SIGINT does: checkpoint,
    // `stopped` event, exit 0; output to the dead terminal is best-effort (src/output.rs).
    // Under `nohup` SIGHUP is ignored on purpose: then it stays ignored and the run goes on.
    let hup = (!signal_ignored(libc::SIGHUP)).then_some(signal_hook::consts::SIGHUP);
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .chain(hup)
    {
        signal_hook::flag::register_usize(signal, stop.clone(), signal as usize)
            .context("cannot install the signal handlers")?;
    }
    Ok(stop)
}

/// The run a process is about to start: its directory and id, its (frozen) profile, and the
/// checkpoint it continues from.
struct RunStart {
    dir: PathBuf,
    run_id: String,
    profile: RunProfile,
    resume: Option<(PathBuf, checkpoint::Checkpoint)>,
}

/// `--resume`: the run to continue (named, given by its frozen profile, or the newest
/// unfinished run of the profile), its frozen profile, and its newest valid checkpoint (none:
/// the run starts over in its own directory).
fn resumed_run(opts: &RunOptions) -> anyhow::Result<RunStart> {
    let dir = match (&opts.run_id, run_dir_of(&opts.profile)) {
        (Some(id), _) => opts.runs_dir.join(id),
        (None, Some(dir)) => dir,
        (None, None) => run_to_resume(&opts.runs_dir, &opts.profile)?,
    };
    let frozen = dir.join(PROFILE_FILE);
    let profile = RunProfile::load(&frozen)
        .with_context(|| format!("--resume: {} has no usable frozen profile", dir.display()))?;
    let resume = match &opts.checkpoint {
        Some(path) => Some((path.clone(), checkpoint::read(path)?)),
        None => {
            let (found, rejected) = checkpoint::newest_valid(&dir.join(CKPT_DIR));
            for r in &rejected {
                crate::errln!("warning: {r}; trying an older checkpoint");
            }
            if found.is_none() {
                // Killed before its first checkpoint, failed at start-up, or every checkpoint
                // corrupt: nothing to continue, so the run starts over in its own directory with
                // its frozen profile (its events so far are kept).
                crate::errln!(
                    "--resume: no valid checkpoint in {}: starting {} again from the beginning with its frozen profile",
                    dir.join(CKPT_DIR).display(),
                    dir.display()
                );
            }
            found
        }
    };
    // A finished run has nothing left to train: resuming it would only repeat its end.
    if let Some((path, c)) = &resume
        && c.state.epoch >= profile.recipe.epochs
    {
        bail!(
            "--resume: {} is finished ({}/{} done, {}): nothing to continue. Start a new run without --resume{}",
            dir.display(),
            c.state.epoch,
            plural(profile.recipe.epochs.into(), "epoch"),
            path.display(),
            if opts.run_id.is_some() {
                ""
            } else {
                ", or name the run to continue with --run-id"
            }
        );
    }
    if run_dir_of(&opts.profile).is_none_or(|d| d != dir) {
        warn_if_profile_differs(&opts.profile, &frozen, &profile);
    }
    let run_id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("run")
        .to_string();
    Ok(RunStart {
        dir,
        run_id,
        profile,
        resume,
    })
}

/// A new run of `opts.profile`: its id and directory (which must not hold a run yet when
/// `owner`: a multi-node job's other nodes find node 0's there on a shared file system), and the
/// profile resolved to freeze (absolute paths, scales resolved to a file).
fn new_run(opts: &RunOptions, owner: bool) -> anyhow::Result<RunStart> {
    let mut profile = RunProfile::load(&opts.profile)?;
    let run_id = opts.run_id.clone().unwrap_or_else(|| {
        crate::rundir::ids::new_run_id(&opts.profile, crate::rundir::unix_now())
    });
    let dir = opts.runs_dir.join(&run_id);
    if owner && dir.join(EVENTS_FILE).exists() {
        bail!(
            "run directory {} already holds a run: continue it with --resume (a run without a checkpoint starts over), or choose another --run-id",
            dir.display()
        );
    }
    if let Some(spec) = profile.scales.clone() {
        profile.scales = Some(scales::source_spec(&scales::resolve_scale_source(
            &spec,
            &opts.runs_dir,
        )?));
    }
    if let Some(p) = &profile.data.path {
        profile.data.path = Some(absolute(p));
    }
    if let Some(w) = &profile.weights {
        profile.weights = Some(absolute(w));
    }
    Ok(RunStart {
        dir,
        run_id,
        profile,
        resume: None,
    })
}

/// Everything that can be wrong with a run before it starts: output paths, devices, data (an
/// empty validation split too) and a Target run's scales. Returns the opened data and the
/// scales to freeze.
fn check_before_start(
    opts: &RunOptions,
    profile: &RunProfile,
    dir: &Path,
    choice: DeviceChoice,
    resume: Option<&(PathBuf, checkpoint::Checkpoint)>,
) -> anyhow::Result<(crate::data::OpenedDataset, Option<FrozenScales>)> {
    profile
        .check_output_paths()
        .map_err(|e| e.in_file(&opts.profile))?;
    crate::device::check(&profile.devices, choice)?;
    let data = crate::data::open(&profile.data)?;
    if data.val.is_empty() {
        bail!(
            "the validation split of {} is empty: a run is scored on it (add validation images, or check val_limit)",
            data.description
        );
    }
    let scales = match (&profile.scales, profile.kind) {
        (Some(spec), RunKind::Target) => Some(frozen_scales(
            dir,
            spec,
            profile.average_channels(),
            &profile.variant(),
            resume,
        )?),
        _ => None,
    };
    Ok((data, scales))
}

/// The model to train: `model` itself, or with the tensors of `weights` (fine-tuning).
fn start<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(
    weights: &Option<PathBuf>,
    model: M,
    kind: &str,
    device: &B::Device,
) -> anyhow::Result<M> {
    match weights {
        Some(path) => load_weights(model, path, kind, device),
        None => Ok(model),
    }
}

/// The optimizer settings of a run's recipe (rule, weight decay, HS gradient clipping).
pub fn optimizer_config(profile: &RunProfile) -> OptimizerConfig {
    let mut cfg = OptimizerConfig::new(profile.recipe.optimizer, profile.recipe.weight_decay);
    cfg.grad_clip_norm = profile.recipe.grad_clip;
    cfg
}

/// A new Target run's model: the seed's fresh initialization, re-initialized from `scales`
/// (the paper's Eq. 4) unless the profile says `reinit: false`.
pub fn target_model<B: burn::tensor::backend::Backend>(
    profile: &RunProfile,
    scales: &ScalesProfile,
    classes: usize,
    device: &B::Device,
) -> TargetNet<B> {
    let v = profile.variant();
    let model = TargetNet::<B>::init(&v, classes, profile.seed, device);
    if profile.reinit() {
        reinitialize(model, &v, scales, profile.reinit_identity, profile.seed)
    } else {
        model
    }
}

/// A Target run's optimizer: the RepOptimizer with the Grad Mult masks of `scales`, or, with
/// `modify_gradients: false`, the plain optimizer of the recipe (same rule, weight decay and
/// decay groups, no masks).
pub fn target_optimizer<B: burn::tensor::backend::Backend>(
    profile: &RunProfile,
    scales: &ScalesProfile,
    device: &B::Device,
) -> RepOptimizer<B> {
    let cfg = optimizer_config(profile);
    if profile.modify_gradients() {
        let masks =
            GradMults::from_scales(scales, &profile.variant(), cfg.rule.mask_power(), device);
        RepOptimizer::new(cfg, masks)
    } else {
        RepOptimizer::plain(cfg)
    }
}

struct TrainTask<'a>(&'a mut RunCtx);

impl BackendTask for TrainTask<'_> {
    type Output = anyhow::Result<RunOutcome>;
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let ctx = self.0;
        let p = ctx.profile.clone();
        let v = p.variant();
        let classes = ctx.data.classes;
        let cfg = optimizer_config(&p);
        let rule = cfg.rule;
        let main = &devices[0];
        // Fine-tuning: the profile's weights replace the fresh ones (not on resume: the
        // checkpoint has newer ones).
        let start_from = p.weights.clone().filter(|_| ctx.resume.is_none());
        match p.kind {
            RunKind::Target => {
                let scales = ctx.scales.clone().context("a Target run needs scales")?;
                if let UpdateRule::AdamW { .. } = rule
                    && scales.negative_count() > 0
                    && p.modify_gradients()
                {
                    crate::errln!(
                        "warning: the scales have {} negative values: the AdamW RepOptimizer is exactly equivalent only for positive scales",
                        scales.negative_count()
                    );
                }
                // A resumed run's weights come from its checkpoint, a fine-tuning run's from
                // `weights`: neither is re-initialized.
                let model = if ctx.resume.is_none() && start_from.is_none() {
                    target_model::<B>(&p, &scales, classes, main)
                } else {
                    TargetNet::<B>::init(&v, classes, p.seed, main)
                };
                let model = start(&start_from, model, ModelKind::Target.label(), main)?;
                let opt = target_optimizer(&p, &scales, main);
                trainer::train(ctx, &devices, model, opt, |d| {
                    TargetNet::init(&v, classes, p.seed, d)
                })
            }
            // The others train their network from its seeded initialization with the plain
            // optimizer (Ablation: RepOpt-VGG's network without the RepOptimizer).
            RunKind::HyperSearch | RunKind::Baseline | RunKind::Ablation => {
                let kind = p.kind.model();
                crate::with_network!(trainable kind, B, |init| {
                    let model = start(&start_from, init(&v, classes, p.seed, main), kind.label(), main)?;
                    trainer::train(ctx, &devices, model, RepOptimizer::plain(cfg), |d| {
                        init(&v, classes, p.seed, d)
                    })
                })
            }
        }
    }
}
