//! Starting, stopping and resuming runs: the dashboard never trains, it spawns `repopt-tui`.
//!
//! Spawned processes are detached: a new session (`setsid`), stdin from /dev/null, stdout and
//! stderr appended to `<run>/stdout.log`. They survive the dashboard quitting and the SSH
//! connection dropping. The dashboard reaps them on a thread while it lives (so no zombie
//! looks alive), and init adopts them when it exits.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::rundir::{LockTable, PROFILE_FILE, STDOUT_LOG};

use crate::rundir::ids::new_run_id;

/// The environment variable that overrides the program spawned for runs (tests use a fake
/// runner).
pub const EXE_ENV: &str = "REPOPT_TUI_EXE";

/// Error of a control action, worded for the status line.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("run directory {0} already exists")]
    Exists(PathBuf),
    #[error("run {0} is running (pid {1}); stop it first")]
    Live(String, u32),
    #[error("run {0} has no live process to stop")]
    NotLive(String),
    #[error("run {id} has no {file}")]
    Missing { id: String, file: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ControlError {
    let what = what.into();
    move |source| ControlError::Io { what, source }
}

/// A process the dashboard started.
#[derive(Debug)]
pub struct Spawned {
    pub run_id: String,
    pub dir: PathBuf,
    pub child: Child,
    /// The command as a shell would show it (for the status line and logs).
    pub command_line: String,
}

/// Spawns runs, resumes and probes into one runs directory.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub runs_dir: PathBuf,
}

impl Launcher {
    /// `$REPOPT_TUI_EXE` if set, else this executable.
    pub fn from_env(runs_dir: &Path) -> io::Result<Self> {
        let program = match std::env::var_os(EXE_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => std::env::current_exe()?,
        };
        Ok(Launcher {
            program,
            runs_dir: runs_dir.to_path_buf(),
        })
    }

    /// Starts a run of `profile` as `<stem>-<UTC time>`.
    pub fn start_run(&self, profile: &Path, now: f64) -> Result<Spawned, ControlError> {
        let id = new_run_id(profile, now);
        let dir = self.create_run_dir(&id)?;
        let args: Vec<OsString> = vec![
            "--profile".into(),
            profile.into(),
            "--run-id".into(),
            id.clone().into(),
            "--runs-dir".into(),
            self.runs_dir.clone().into(),
        ];
        self.spawn(id, dir, args)
    }

    /// Starts a max-batch-size probe of `profile` (its results arrive as `probe` events).
    pub fn start_probe(&self, profile: &Path, now: f64) -> Result<Spawned, ControlError> {
        let id = new_run_id(profile, now);
        let dir = self.create_run_dir(&id)?;
        let args: Vec<OsString> = vec![
            "probe".into(),
            "--profile".into(),
            profile.into(),
            "--run-id".into(),
            id.clone().into(),
            "--runs-dir".into(),
            self.runs_dir.clone().into(),
        ];
        self.spawn(id, dir, args)
    }

    /// Resumes run `id` from `checkpoint` (a path), or from its newest valid checkpoint.
    pub fn resume_run(&self, id: &str, checkpoint: Option<&Path>) -> Result<Spawned, ControlError> {
        let dir = self.runs_dir.join(id);
        if let Some(pid) = LockTable::snapshot().live_owner(&dir) {
            return Err(ControlError::Live(id.to_string(), pid));
        }
        let profile = dir.join(PROFILE_FILE);
        if !profile.is_file() {
            return Err(ControlError::Missing {
                id: id.into(),
                file: PROFILE_FILE.into(),
            });
        }
        let mut args: Vec<OsString> = vec![
            "--profile".into(),
            profile.into(),
            "--run-id".into(),
            id.into(),
            "--runs-dir".into(),
            self.runs_dir.clone().into(),
            "--resume".into(),
        ];
        if let Some(c) = checkpoint {
            args.push("--checkpoint".into());
            args.push(c.into());
        }
        self.spawn(id.to_string(), dir, args)
    }

    fn create_run_dir(&self, id: &str) -> Result<PathBuf, ControlError> {
        let dir = self.runs_dir.join(id);
        std::fs::create_dir_all(&self.runs_dir)
            .map_err(io_err(format!("cannot create {}", self.runs_dir.display())))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ControlError::Exists(dir)),
            Err(e) => Err(io_err(format!("cannot create {}", dir.display()))(e)),
        }
    }

    fn spawn(
        &self,
        run_id: String,
        dir: PathBuf,
        args: Vec<OsString>,
    ) -> Result<Spawned, ControlError> {
        let log_path = dir.join(STDOUT_LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(format!("cannot open {}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io_err(format!("cannot open {}", log_path.display())))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let command_line = std::iter::once(self.program.as_os_str())
            .chain(args.iter().map(|a| a.as_os_str()))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let child = cmd
            .spawn()
            .map_err(io_err(format!("cannot start {}", self.program.display())))?;
        Ok(Spawned {
            run_id,
            dir,
            child,
            command_line,
        })
    }
}

/// Asks the live owner of the run in `dir` to stop (SIGINT: it finishes its step, checkpoints and
/// writes `stopped`). Returns the pid signalled.
pub fn stop_run(dir: &Path) -> Result<u32, ControlError> {
    let id = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = LockTable::snapshot()
        .live_owner(dir)
        .filter(|&p| p > 1)
        .ok_or_else(|| ControlError::NotLive(id.clone()))?;
    // SAFETY: kill with a positive pid and a valid signal number.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    if r != 0 {
        return Err(io_err(format!("cannot signal pid {pid} of {id}"))(
            io::Error::last_os_error(),
        ));
    }
    Ok(pid)
}

/// Waits for a spawned child on a thread (so it never lingers as a zombie) and reports its exit.
pub fn reap(mut child: Child, on_exit: impl FnOnce(io::Result<ExitStatus>) + Send + 'static) {
    std::thread::Builder::new()
        .name("repopt-reaper".into())
        .spawn(move || on_exit(child.wait()))
        .ok();
}

/// One checkpoint of a run, from its events and its `ckpt/` directory.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// Relative to the run directory.
    pub path: String,
    pub epoch: Option<u32>,
    pub global_iter: Option<u64>,
    pub best: bool,
    /// Written at (event time, else file mtime).
    pub t: Option<f64>,
    pub size: Option<u64>,
    pub exists: bool,
}

/// The checkpoints named by events, plus files in `ckpt/` no event named; newest first.
pub fn list_checkpoints(
    dir: &Path,
    events: &[(f64, crate::rundir::events::CheckpointEvent)],
) -> Vec<CheckpointInfo> {
    let mut out: Vec<CheckpointInfo> = Vec::new();
    for (t, c) in events {
        let meta = std::fs::metadata(dir.join(&c.path)).ok();
        out.retain(|o| o.path != c.path);
        out.push(CheckpointInfo {
            path: c.path.clone(),
            epoch: Some(c.epoch),
            global_iter: Some(c.global_iter),
            best: c.best,
            t: Some(*t),
            size: meta.as_ref().map(|m| m.len()),
            exists: meta.is_some(),
        });
    }
    if let Ok(entries) = std::fs::read_dir(dir.join(crate::rundir::CKPT_DIR)) {
        for e in entries.flatten() {
            let rel = format!(
                "{}/{}",
                crate::rundir::CKPT_DIR,
                e.file_name().to_string_lossy()
            );
            let is_tmp = rel.ends_with(".tmp") || rel.contains("/.");
            if is_tmp || out.iter().any(|o| o.path == rel) {
                continue;
            }
            let meta = e.metadata().ok();
            out.push(CheckpointInfo {
                path: rel,
                epoch: None,
                global_iter: None,
                best: false,
                t: meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64()),
                size: meta.as_ref().map(|m| m.len()),
                exists: true,
            });
        }
    }
    out.sort_by(|a, b| {
        (b.global_iter, b.t)
            .partial_cmp(&(a.global_iter, a.t))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}
