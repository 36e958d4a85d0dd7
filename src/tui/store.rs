//! The dashboard's data and its collector.
//!
//! [`Collector::poll`] runs on its own thread (bottom's model): it scans the runs directory, reads
//! the new bytes of each `events.jsonl` (outside the lock), checks run locks, samples the GPUs and
//! lists profiles, then applies what it found to the shared [`Store`] under a short lock. The UI
//! only reads the store. Tests call `poll` directly for a deterministic store.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::gpu::{GpuDevice, GpuSampler, GpuStatus, NoGpuReason};
use crate::rundir::events::Event;
use crate::rundir::{
    EventReader, LOCK_FILE, LockTable, RunSummary, SkippedLine, sort_newest_first, unix_now,
};

use super::series::RunSeries;
use crate::model::kernel_stats::KernelStatsReport;

/// Bytes read from one events file per poll: a huge file loads progressively, the UI stays live.
const CHUNK_BYTES: u64 = 16 << 20;
/// GPU history samples kept per device.
pub const GPU_HISTORY: usize = 300;

/// A run as the dashboard holds it.
#[derive(Debug, Clone)]
pub struct RunEntry {
    pub summary: RunSummary,
    pub series: RunSeries,
    /// The first unparsable line, if any (shown in the run details).
    pub first_skip: Option<SkippedLine>,
    /// Whether the events file has been read to its end.
    pub loaded: bool,
    /// Bytes read so far / file size (progress of a big first read).
    pub bytes_read: u64,
    pub bytes_total: u64,
    /// The run's configuration, read from its frozen `profile.ron`.
    pub config: super::runs_table::RunConfig,
    /// The final weights' kernel statistics (`kernel_stats.json`, written when a run finishes)
    /// and that file's modification time.
    pub kernel_stats: Option<KernelStatsReport>,
    pub kernel_stats_mtime: Option<f64>,
}

/// A run's `kernel_stats.json`, if it has a readable one.
fn read_kernel_stats(run_dir: &Path) -> Option<KernelStatsReport> {
    crate::rundir::read_kernel_stats(run_dir).ok().flatten()
}

/// One GPU sample for the history sparklines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuPoint {
    pub t: f64,
    pub utilization: Option<u32>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
}

/// A profile file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEntry {
    pub path: PathBuf,
    /// File stem: the run id prefix.
    pub name: String,
    /// `profiles/scales/*.ron`.
    pub is_scales: bool,
    /// The first lines of the file.
    pub preview: String,
}

/// Everything the views draw.
#[derive(Debug)]
pub struct Store {
    pub runs_dir: PathBuf,
    pub profiles_dir: PathBuf,
    /// Newest first.
    pub runs: Vec<RunEntry>,
    pub runs_dir_error: Option<String>,
    pub gpu_status: GpuStatus,
    pub gpus: Vec<GpuDevice>,
    pub gpu_history: Vec<VecDeque<GpuPoint>>,
    pub profiles: Vec<ProfileEntry>,
    /// Bumped on every change.
    pub version: u64,
}

impl Store {
    pub fn new(runs_dir: &Path, profiles_dir: &Path) -> Self {
        Store {
            runs_dir: runs_dir.to_path_buf(),
            profiles_dir: profiles_dir.to_path_buf(),
            runs: Vec::new(),
            runs_dir_error: None,
            gpu_status: GpuStatus::Unavailable(NoGpuReason::Other("not sampled yet".into())),
            gpus: Vec::new(),
            gpu_history: Vec::new(),
            profiles: Vec::new(),
            version: 0,
        }
    }

    pub fn run(&self, id: &str) -> Option<&RunEntry> {
        self.runs.iter().find(|r| r.summary.id == id)
    }

    pub fn run_profiles(&self) -> impl Iterator<Item = &ProfileEntry> {
        self.profiles.iter().filter(|p| !p.is_scales)
    }

    pub fn scales_profiles(&self) -> impl Iterator<Item = &ProfileEntry> {
        self.profiles.iter().filter(|p| p.is_scales)
    }

    /// The run owned by `pid`, if any (to name GPU processes).
    pub fn run_of_pid(&self, pid: u32) -> Option<&RunEntry> {
        self.runs.iter().find(|r| r.summary.owner_pid == Some(pid))
    }

    /// Replaces the GPU state (tests inject a fixed one).
    pub fn set_gpu(&mut self, status: GpuStatus, devices: Vec<GpuDevice>, t: f64) {
        self.gpu_status = status;
        self.gpu_history.resize_with(devices.len(), VecDeque::new);
        for (h, d) in self.gpu_history.iter_mut().zip(&devices) {
            if h.len() == GPU_HISTORY {
                h.pop_front();
            }
            h.push_back(GpuPoint {
                t,
                utilization: d.utilization,
                memory_used_bytes: d.memory_used_bytes,
                memory_total_bytes: d.memory_total_bytes,
                temperature_c: d.temperature_c,
                power_w: d.power_w,
            });
        }
        self.gpus = devices;
        self.version += 1;
    }
}

/// Where the collector gets GPU samples.
pub enum GpuSource {
    Nvml(Box<GpuSampler>),
    /// No sampling: the store keeps whatever status it was given (tests).
    Off,
}

/// Polls the run directories, profiles and GPUs into a [`Store`].
pub struct Collector {
    runs_dir: PathBuf,
    profiles_dir: PathBuf,
    readers: HashMap<String, EventReader>,
    gpu: GpuSource,
    gpu_every: Duration,
    last_gpu: Option<Instant>,
    profiles_every: Duration,
    last_profiles: Option<Instant>,
    /// A file had more bytes than one chunk: poll again right away.
    pub more_pending: bool,
}

impl Collector {
    pub fn new(runs_dir: &Path, profiles_dir: &Path, gpu: GpuSource) -> Self {
        Collector {
            runs_dir: runs_dir.to_path_buf(),
            profiles_dir: profiles_dir.to_path_buf(),
            readers: HashMap::new(),
            gpu,
            gpu_every: Duration::from_secs(1),
            last_gpu: None,
            profiles_every: Duration::from_secs(5),
            last_profiles: None,
            more_pending: false,
        }
    }

    /// Forces the next poll to rescan profiles (after the user asked for the list).
    pub fn refresh_profiles_soon(&mut self) {
        self.last_profiles = None;
    }

    /// One collection pass. Returns whether anything the views show changed.
    pub fn poll(&mut self, store: &Mutex<Store>) -> bool {
        let mut changed = false;
        changed |= self.poll_runs(store);
        changed |= self.poll_gpu(store);
        changed |= self.poll_profiles(store);
        if changed {
            lock(store).version += 1;
        }
        changed
    }

    /// Polls until every events file is read to its end (tests, first load).
    pub fn poll_until_loaded(&mut self, store: &Mutex<Store>) {
        self.poll(store);
        while self.more_pending {
            self.poll(store);
        }
    }

    fn poll_runs(&mut self, store: &Mutex<Store>) -> bool {
        let mut changed = false;
        let dirs = match list_dirs(&self.runs_dir) {
            Ok(d) => {
                let mut s = lock(store);
                if s.runs_dir_error.take().is_some() {
                    changed = true;
                }
                drop(s);
                d
            }
            Err(e) => {
                let msg = format!("{}: {e}", self.runs_dir.display());
                let mut s = lock(store);
                if s.runs_dir_error.as_deref() != Some(&msg) {
                    s.runs_dir_error = Some(msg);
                    changed = true;
                }
                Vec::new()
            }
        };
        let locks = LockTable::snapshot();
        // Forget removed runs.
        {
            let mut s = lock(store);
            let before = s.runs.len();
            s.runs
                .retain(|r| dirs.iter().any(|(id, _)| *id == r.summary.id));
            if s.runs.len() != before {
                changed = true;
            }
        }
        self.readers
            .retain(|id, _| dirs.iter().any(|(d, _)| d == id));
        self.more_pending = false;
        let mut added = false;
        for (id, path) in &dirs {
            let reader = self
                .readers
                .entry(id.clone())
                .or_insert_with(|| EventReader::for_run(path));
            let batch = reader.read_chunk(CHUNK_BYTES).unwrap_or_default();
            self.more_pending |= batch.more;
            let owner = locks.live_owner(path);
            let lock_since = crate::rundir::file_mtime(&path.join(LOCK_FILE));
            let total = std::fs::metadata(reader.path())
                .map(|m| m.len())
                .unwrap_or(0);
            let first_skip = reader.first_skips().first().cloned();
            let skipped = reader.skipped();
            let profile_mtime = crate::rundir::file_mtime(&path.join(crate::rundir::PROFILE_FILE));
            let config_stale = {
                let s = lock(store);
                s.run(id).is_none_or(|r| r.config.mtime != profile_mtime)
            };
            let config = config_stale.then(|| super::runs_table::RunConfig::load(path));
            let stats_mtime =
                crate::rundir::file_mtime(&path.join(crate::rundir::KERNEL_STATS_FILE));
            let stats_stale = {
                let s = lock(store);
                s.run(id)
                    .is_none_or(|r| r.kernel_stats_mtime != stats_mtime)
            };
            let kernel_stats = stats_stale.then(|| read_kernel_stats(path));

            let mut s = lock(store);
            let idx = match s.runs.iter().position(|r| &r.summary.id == id) {
                Some(i) => i,
                None => {
                    s.runs.push(RunEntry {
                        summary: RunSummary::new(path),
                        series: RunSeries::default(),
                        first_skip: None,
                        loaded: false,
                        bytes_read: 0,
                        bytes_total: 0,
                        config: Default::default(),
                        kernel_stats: None,
                        kernel_stats_mtime: None,
                    });
                    added = true;
                    s.runs.len() - 1
                }
            };
            let entry = &mut s.runs[idx];
            let before = (
                entry.summary.status,
                entry.summary.owner_pid,
                entry.loaded,
                entry.summary.skipped_lines,
            );
            if batch.reset {
                entry.summary.reset();
                entry.series.clear();
                changed = true;
            }
            if !batch.events.is_empty() {
                changed = true;
                apply_events(entry, &batch.events);
            }
            if let Some(config) = config {
                entry.config = config;
                changed = true;
            }
            if let Some(stats) = kernel_stats {
                entry.kernel_stats = stats;
                entry.kernel_stats_mtime = stats_mtime;
                changed = true;
            }
            entry.summary.skipped_lines = skipped;
            entry.first_skip = first_skip;
            entry.summary.set_owner(owner, lock_since);
            entry.loaded = !batch.more;
            entry.bytes_read = reader.offset();
            entry.bytes_total = total;
            let after = (
                entry.summary.status,
                entry.summary.owner_pid,
                entry.loaded,
                entry.summary.skipped_lines,
            );
            changed |= before != after;
        }
        if added {
            let mut s = lock(store);
            let mut summaries: Vec<RunSummary> = s.runs.iter().map(|r| r.summary.clone()).collect();
            sort_newest_first(&mut summaries);
            let order: HashMap<String, usize> = summaries
                .iter()
                .enumerate()
                .map(|(i, r)| (r.id.clone(), i))
                .collect();
            s.runs.sort_by_key(|r| order[&r.summary.id]);
            changed = true;
        }
        changed
    }

    fn poll_gpu(&mut self, store: &Mutex<Store>) -> bool {
        let GpuSource::Nvml(sampler) = &mut self.gpu else {
            return false;
        };
        if self.last_gpu.is_some_and(|t| t.elapsed() < self.gpu_every) {
            return false;
        }
        let first = self.last_gpu.is_none();
        self.last_gpu = Some(Instant::now());
        if !sampler.status().is_available() && !first {
            return false;
        }
        let devices = sampler.sample();
        let status = sampler.status().clone();
        lock(store).set_gpu(status, devices, unix_now());
        true
    }

    fn poll_profiles(&mut self, store: &Mutex<Store>) -> bool {
        if self
            .last_profiles
            .is_some_and(|t| t.elapsed() < self.profiles_every)
        {
            return false;
        }
        self.last_profiles = Some(Instant::now());
        let mut profiles = list_profiles(&self.profiles_dir, false);
        profiles.extend(list_profiles(&self.profiles_dir.join("scales"), true));
        let mut s = lock(store);
        if s.profiles != profiles {
            s.profiles = profiles;
            return true;
        }
        false
    }
}

fn apply_events(entry: &mut RunEntry, events: &[Event]) {
    for e in events {
        entry.summary.apply(e);
        entry.series.apply(e);
    }
}

/// Locks the store, surviving a panic of another holder (the data is plain values).
pub fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

fn list_dirs(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        // `.archive/` (runs archived from the dashboard) and other hidden folders are not runs.
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

fn list_profiles(dir: &Path, is_scales: bool) -> Vec<ProfileEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<ProfileEntry> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.path().extension().is_some_and(|x| x == "ron"))
        .map(|e| {
            let path = e.path();
            let preview = std::fs::read(&path)
                .map(|b| {
                    let text = String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned();
                    text.lines().take(60).collect::<Vec<_>>().join("\n")
                })
                .unwrap_or_else(|e| format!("unreadable: {e}"));
            ProfileEntry {
                name: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path,
                is_scales,
                preview,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
