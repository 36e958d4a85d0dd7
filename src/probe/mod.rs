//! The max-batch-size probe (the paper's Table 2): the largest per-device batch for which a full
//! training step (forward, backward, optimizer) fits, for the target, RepVGG and HS models.
//! Every trial runs in a child process (`repopt-tui probe-trial …`), so an out-of-memory failure
//! kills only the child. On the CPU the limit is a real heap budget enforced by the counting
//! allocator (Flex) or by the process's data limit (LibTorch, whose C++ allocator the counting
//! allocator does not see); on a GPU it is the device's memory. Search: exponential bracketing, then binary
//! search between the last batch that fit and the first that did not.

pub mod alloc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;
use crate::model::{ModelKind, Variant};
use crate::train::timing::{measurement_optimizer, synthetic_batch, timed_steps};

/// What one probe measures.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub variant: Variant,
    pub resolution: usize,
    pub classes: usize,
    pub device: DeviceSpec,
    /// CPU heap budget of a trial in bytes (None: no limit; on GPUs the device memory).
    pub memory_limit: Option<u64>,
    /// Upper end of the search.
    pub max_batch: usize,
    /// Timed steps per trial (after one warm-up step).
    pub steps: usize,
    /// A trial that runs longer is stopped and counted as not fitting.
    pub trial_timeout: Duration,
    /// CPU threads of a trial (None: rayon's default, all cores).
    pub threads: Option<usize>,
}

/// What a trial child prints (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialReport {
    pub batch: usize,
    pub images_per_s: f64,
    /// Peak live heap bytes of the child (CPU), including the model and optimizer state.
    pub peak_bytes: Option<u64>,
}

/// The outcome of one trial as the parent saw it.
#[derive(Debug, Clone)]
pub enum Trial {
    Fits(TrialReport),
    /// Out of memory (the allocator's limit, a CUDA out-of-memory error) or too slow.
    DoesNotFit(String),
    /// The trial could not run at all (no such device, a broken build): the probe stops.
    Error(String),
}

/// The search result for one model.
#[derive(Debug, Clone)]
pub struct ModelProbe {
    pub model: ModelKind,
    pub max_batch: Option<usize>,
    /// `max_batch` reached the search's upper end: the real maximum may be larger.
    pub capped: bool,
    pub at_max: Option<TrialReport>,
    pub at_32: Option<TrialReport>,
    /// Every trial, in the order run.
    pub trials: Vec<(usize, bool)>,
}

/// Runs one training step's worth of trial in this process and returns its report. Used by the
/// `probe-trial` child; the caller sets the allocation limit first.
pub fn trial_in_process<B: AutodiffBackend>(
    variant: &Variant,
    model: ModelKind,
    batch: usize,
    resolution: usize,
    classes: usize,
    steps: usize,
    device: &B::Device,
) -> TrialReport {
    let data = synthetic_batch::<B>(batch, resolution, classes, device);
    let mut opt = measurement_optimizer(model, variant, device);
    // One warm-up step: the peak of a training step is reached in its first run.
    let secs = crate::with_network!(model, B, |init| {
        timed_steps(
            init(variant, classes, 0, device),
            &mut opt,
            &data,
            1,
            steps,
            device,
        )
        .step_s
    });
    TrialReport {
        batch,
        images_per_s: batch as f64 / secs.max(1e-12),
        peak_bytes: Some(alloc::peak_bytes() as u64),
    }
}

/// Runs one trial in a child process of `exe`.
pub fn run_trial(exe: &Path, cfg: &ProbeConfig, model: ModelKind, batch: usize) -> Trial {
    let mut cmd = Command::new(exe);
    cmd.arg("probe-trial")
        .args(["--variant", cfg.variant.name, "--model", model.name()])
        .args([
            "--batch",
            &batch.to_string(),
            "--resolution",
            &cfg.resolution.to_string(),
        ])
        .args([
            "--classes",
            &cfg.classes.to_string(),
            "--steps",
            &cfg.steps.to_string(),
        ])
        .args(["--device", &cfg.device.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(limit) = cfg.memory_limit {
        cmd.args(["--memory-limit", &limit.to_string()]);
    }
    if let Some(threads) = cfg.threads {
        cmd.env("RAYON_NUM_THREADS", threads.to_string());
        // LibTorch's intra-op pool (OpenMP) reads this at start-up.
        cmd.env("OMP_NUM_THREADS", threads.to_string());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Trial::Error(format!(
                "cannot start the trial process {}: {e}",
                exe.display()
            ));
        }
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > cfg.trial_timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Trial::DoesNotFit(format!("timed out after {:?}", cfg.trial_timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Trial::DoesNotFit(e.to_string()),
        }
    }
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return Trial::DoesNotFit(e.to_string()),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The allocator's refusal ("memory allocation of N bytes failed"), a CUDA out-of-memory
        // panic, or else the last line the child printed.
        let why = stderr
            .lines()
            .find(|l| {
                l.contains("memory allocation of")
                    || l.to_ascii_lowercase().contains("out of memory")
            })
            .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .trim()
            .to_string();
        // Our own command-line errors (exit 1, "error: …") are not out-of-memory failures.
        if out.status.code() == Some(1) && why.starts_with("error:") {
            return Trial::Error(why.trim_start_matches("error: ").to_string());
        }
        return Trial::DoesNotFit(format!("{why} [{}]", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<TrialReport>(l).ok())
    {
        Some(r) => Trial::Fits(r),
        None => Trial::DoesNotFit(format!("no report from the trial: {stdout}")),
    }
}

/// Finds the largest batch of `model` that fits. `trial` runs one batch size (a child process
/// in production; tests may pass anything).
pub fn search(
    cfg: &ProbeConfig,
    model: ModelKind,
    mut trial: impl FnMut(usize) -> Trial,
) -> Result<ModelProbe, String> {
    let mut trials = Vec::new();
    let mut best: Option<TrialReport> = None;
    let mut error = None;
    let mut try_batch = |b: usize, trials: &mut Vec<(usize, bool)>| -> Option<TrialReport> {
        if error.is_some() {
            return None;
        }
        let report = match trial(b) {
            Trial::Fits(r) => Some(r),
            Trial::DoesNotFit(_) => None,
            Trial::Error(e) => {
                error = Some(e);
                None
            }
        };
        trials.push((b, report.is_some()));
        report
    };
    // Exponential bracketing.
    let (mut lo, mut hi) = (0usize, None);
    let mut b = 1usize;
    while b <= cfg.max_batch {
        match try_batch(b, &mut trials) {
            Some(r) => {
                lo = b;
                best = Some(r);
                b *= 2;
            }
            None => {
                hi = Some(b);
                break;
            }
        }
    }
    let capped = hi.is_none() && lo > 0;
    let mut hi = hi.unwrap_or(cfg.max_batch + 1).min(cfg.max_batch + 1);
    // Binary search in (lo, hi).
    while lo > 0 && hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match try_batch(mid, &mut trials) {
            Some(r) => {
                lo = mid;
                best = Some(r);
            }
            None => hi = mid,
        }
    }
    let max_batch = (lo > 0).then_some(lo);
    let at_32 = match max_batch {
        Some(m) if m >= 32 => try_batch(32, &mut trials),
        _ => None,
    };
    if let Some(e) = error {
        return Err(e);
    }
    Ok(ModelProbe {
        model,
        max_batch,
        capped,
        at_max: best,
        at_32,
        trials,
    })
}

/// "11GiB", "512MiB", "2G", "1.5GB", "1048576" → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad size '{s}': expected e.g. 11GiB, 512MiB or a byte count"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "bad size unit in '{s}': use B, KiB, MiB, GiB (or K, M, G)"
            ));
        }
    };
    Ok((value * factor) as u64)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn available_memory() -> Option<u64> {
    alloc::proc_kib_field("/proc/meminfo", "MemAvailable")
}

/// The default run id of a probe of `profile` started at `now`: `probe-<stem>-<stamp>`.
pub fn default_run_id(profile: &Path, now: f64) -> String {
    let name = format!("probe-{}", crate::rundir::ids::profile_stem(profile));
    crate::rundir::ids::run_id(&name, now)
}

/// The executable that trial children run (overridable for tests).
pub fn trial_exe() -> PathBuf {
    std::env::var_os("REPOPT_TUI_EXE")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("repopt-tui"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProbeConfig {
        ProbeConfig {
            variant: crate::model::variant("T0").unwrap(),
            resolution: 32,
            classes: 10,
            device: DeviceSpec::Cpu,
            memory_limit: None,
            max_batch: 4096,
            steps: 1,
            trial_timeout: Duration::from_secs(5),
            threads: None,
        }
    }

    fn fake(limit: usize) -> impl FnMut(usize) -> Trial {
        move |b| {
            if b <= limit {
                Trial::Fits(TrialReport {
                    batch: b,
                    images_per_s: 1.0,
                    peak_bytes: None,
                })
            } else {
                Trial::DoesNotFit("oom".into())
            }
        }
    }

    #[test]
    fn search_finds_the_exact_maximum() {
        for limit in [1, 2, 3, 37, 64, 100, 1000] {
            let p = search(&cfg(), ModelKind::Target, fake(limit)).unwrap();
            assert_eq!(p.max_batch, Some(limit), "{:?}", p.trials);
            assert!(!p.capped);
            // log2 bracketing + log2 bisection: few trials.
            assert!(
                p.trials.len() <= 2 * (64 - (limit as u64).leading_zeros() as usize) + 3,
                "{:?}",
                p.trials
            );
        }
        assert_eq!(
            search(&cfg(), ModelKind::Target, fake(0))
                .unwrap()
                .max_batch,
            None
        );
        let capped = search(&cfg(), ModelKind::Target, fake(1 << 20)).unwrap();
        assert_eq!((capped.max_batch, capped.capped), (Some(4096), true));
    }

    #[test]
    fn a_trial_that_cannot_run_ends_the_search() {
        let e = search(&cfg(), ModelKind::Target, |_| Trial::Error("no GPU".into())).unwrap_err();
        assert_eq!(e, "no GPU");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("11GiB"), Ok(11 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("bad size unit")
        );
    }
}
