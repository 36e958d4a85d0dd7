//! `repopt-tui report`: one page about a set of run directories, to paste into a paper draft or an
//! issue — `report.md` (a row per run, the profile switches, INT8 quantization per scheme, MaxBS
//! probes, the Table-11 kernel statistics) and SVG charts beside it (curves, the paper's Fig. 6
//! and Fig. 7, per-layer kernel spread).
//!
//! Everything is read through `rundir`'s readers; nothing is ever written into a run directory.
//! A run with missing pieces (no evals yet, no quantization, no kernel statistics) still gets its
//! row, with "–" where a number is missing and a note that says why.

pub mod charts;
pub mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::model::kernel_stats::KernelStatsReport;
use crate::profile::scales::VectorStats;
use crate::profile::{RunKind, RunProfile, ScalesProfile};
use crate::rundir::events::{EventBody, ProbeResult, QuantizeEvent, RunKindTag};
use crate::rundir::series::RunSeries;
use crate::rundir::{
    EVENTS_FILE, EpochMeans, EventReader, FROZEN_SCALES_FILE, RunStatus, RunSummary,
    read_frozen_profile, read_kernel_stats, scales_history,
};

/// The Markdown file a report writes.
pub const REPORT_FILE: &str = "report.md";
/// Bytes of `events.jsonl` parsed at a time.
const CHUNK_BYTES: u64 = 16 << 20;

/// Per block of a network, in forward order: the channel means of s, t and u (u only for blocks
/// with an identity branch) — one curve of the paper's Fig. 7.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockMeans {
    /// Where the values come from: `epoch 12` (an HS run's last `scales` event) or the frozen
    /// scales file of a Target run.
    pub source: String,
    pub blocks: Vec<(String, f64, f64, Option<f64>)>,
}

/// Everything the report shows about one run directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub summary: RunSummary,
    pub series: RunSeries,
    /// The frozen `profile.ron` (probe directories have none).
    pub profile: Option<RunProfile>,
    pub kernel_stats: Option<KernelStatsReport>,
    /// The newest `quantize` event (a later `quantize` supersedes an earlier one).
    pub quantize: Option<QuantizeEvent>,
    /// `probe` events recorded in this directory.
    pub probes: Vec<ProbeResult>,
    /// The paper's Fig. 6 for this run (HS runs only).
    pub scales_history: Vec<EpochMeans>,
    pub block_means: Option<BlockMeans>,
    /// What is missing or odd about the run, in words (shown under the tables and on stderr).
    pub notes: Vec<String>,
}

impl RunData {
    /// Whether this directory holds only probe results (it gets no row of its own).
    pub fn is_probe(&self) -> bool {
        self.summary.kind == Some(RunKindTag::Probe)
    }

    /// The run kind a profile can train, if it is one.
    pub fn run_kind(&self) -> Option<RunKind> {
        self.summary.kind.as_ref().and_then(RunKind::from_tag)
    }

    /// The best and the last validation top-1 (evaluations of a resumed run counted once),
    /// falling back on the `finished` event's when no eval was kept.
    pub fn top1(&self) -> (Option<f64>, Option<f64>) {
        let finite: Vec<f64> = self
            .series
            .evals
            .iter()
            .map(|(_, e)| e.top1)
            .filter(|v| v.is_finite())
            .collect();
        let best = finite.iter().copied().reduce(f64::max);
        let last = self.series.evals.last().map(|(_, e)| e.top1);
        (best.or(self.summary.best_top1), last)
    }

    /// Epochs completed (the last evaluated epoch, 1-based) and planned.
    pub fn epochs(&self) -> (u32, Option<u32>) {
        let done = self.series.evals.last().map_or(0, |(_, e)| e.epoch + 1);
        (done, self.summary.epochs)
    }

    /// Training throughput: the median of the `step` events' images/s (the median, so the slow
    /// first steps of each process and a stalled data loader do not move it).
    pub fn images_per_s(&self) -> Option<f64> {
        crate::output::median(
            self.series
                .steps
                .iter()
                .map(|p| p.images_per_s as f64)
                .filter(|v| v.is_finite() && *v > 0.0),
        )
    }

    /// The run's name in tables and legends: its directory name.
    pub fn id(&self) -> &str {
        &self.summary.id
    }
}

/// Reads one run directory for the report. Errors name the path and say what to give instead;
/// missing pieces of a real run become notes, never errors.
pub fn load_run(dir: &Path) -> anyhow::Result<RunData> {
    if !dir.exists() {
        bail!(
            "{}: no such directory: give run directories, e.g. checkpoints/<run-id>",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "{}: not a directory: give run directories, e.g. checkpoints/<run-id>",
            dir.display()
        );
    }
    let events_path = dir.join(EVENTS_FILE);
    if !events_path.is_file() {
        // A runs directory given for its runs: say how to name them all.
        let holds_runs = std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().join(EVENTS_FILE).is_file())
        });
        if holds_runs {
            bail!(
                "{}: not a run directory but a folder of runs: give the runs themselves, e.g. {}/*",
                dir.display(),
                dir.display()
            );
        }
        bail!(
            "{}: not a run directory (no {EVENTS_FILE}): give a directory a run or a probe wrote, e.g. checkpoints/<run-id>",
            dir.display()
        );
    }
    // Folded chunk by chunk: a long run's millions of steps are never all held as events.
    let mut reader = EventReader::new(&events_path);
    let mut summary = RunSummary::new(dir);
    let mut series = RunSeries::default();
    let mut quantize = None;
    let mut probes = Vec::new();
    let mut history = Vec::new();
    loop {
        let batch = reader
            .read_chunk(CHUNK_BYTES)
            .with_context(|| format!("{}: cannot read {EVENTS_FILE}", dir.display()))?;
        if batch.reset {
            bail!(
                "{}: {EVENTS_FILE} was replaced while it was read: try again",
                dir.display()
            );
        }
        for e in &batch.events {
            summary.apply(e);
            series.apply(e);
            match &e.body {
                EventBody::Quantize(q) => quantize = Some(q.clone()),
                EventBody::Probe(p) => probes.push(p.clone()),
                _ => {}
            }
        }
        history.extend(scales_history(&batch.events));
        if !batch.more {
            break;
        }
    }
    if summary.events == 0 && reader.skipped() > 0 {
        bail!(
            "{}: no valid event in {EVENTS_FILE} ({} unreadable lines): not a run directory this version can read; leave it out",
            dir.display(),
            reader.skipped()
        );
    }
    if summary.events == 0 {
        bail!(
            "{}: the run has no events yet (empty {EVENTS_FILE}): report it once it has started, or leave it out",
            dir.display()
        );
    }
    summary.skipped_lines = reader.skipped();
    summary.set_owner(
        crate::rundir::live_owner(dir),
        crate::rundir::file_mtime(&dir.join(crate::rundir::LOCK_FILE)),
    );

    let mut notes = Vec::new();
    if reader.skipped() > 0 {
        notes.push(format!(
            "{} unreadable line(s) in {EVENTS_FILE} were skipped",
            reader.skipped()
        ));
    }
    let profile = read_frozen_profile(dir).unwrap_or_else(|e| {
        notes.push(format!("profile not shown: {e}"));
        None
    });
    let kernel_stats = read_kernel_stats(dir).unwrap_or_else(|e| {
        notes.push(format!("kernel statistics not shown: {e}"));
        None
    });
    let block_means = match series.scales.last() {
        Some(last) => Some(BlockMeans {
            source: format!("epoch {}", last.epoch + 1),
            blocks: last
                .layers
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        l.s.mean,
                        l.t.mean,
                        l.u.as_ref().map(|u| u.mean),
                    )
                })
                .collect(),
        }),
        None => frozen_block_means(dir, &mut notes),
    };

    let mut data = RunData {
        dir: dir.to_path_buf(),
        summary,
        series,
        profile,
        kernel_stats,
        quantize,
        probes,
        scales_history: history,
        block_means,
        notes,
    };
    status_notes(&mut data);
    Ok(data)
}

/// A Target run's constant scales (its `scales.frozen.ron`) as block means, if it has the file.
fn frozen_block_means(dir: &Path, notes: &mut Vec<String>) -> Option<BlockMeans> {
    let path = dir.join(FROZEN_SCALES_FILE);
    if !path.is_file() {
        return None;
    }
    match ScalesProfile::load(&path) {
        Ok(p) => Some(BlockMeans {
            source: FROZEN_SCALES_FILE.to_string(),
            blocks: p
                .blocks
                .iter()
                .map(|b| {
                    (
                        b.name.clone(),
                        VectorStats::of(&b.s).mean,
                        VectorStats::of(&b.t).mean,
                        b.u.as_deref().map(|u| VectorStats::of(u).mean),
                    )
                })
                .collect(),
        }),
        Err(e) => {
            notes.push(format!("frozen scales not shown: {e}"));
            None
        }
    }
}

/// Notes on a run that is not a complete training run: still running, cut short, no evals.
fn status_notes(data: &mut RunData) {
    if data.is_probe() {
        return;
    }
    let s = &data.summary;
    let (done, planned) = data.epochs();
    let of = planned.map_or(String::new(), |p| format!(" of {p}"));
    let note = match s.status {
        RunStatus::Finished => None,
        RunStatus::Running => Some(format!(
            "still running (pid {}): its numbers are those of epoch {done}{of}; report it again when it has finished",
            s.owner_pid.unwrap_or_default()
        )),
        RunStatus::Interrupted => Some(format!(
            "unfinished: interrupted after {done}{of} epochs (no process owns it); continue it with `repopt-tui --profile {} --resume --run-id {}`",
            s.profile_path.as_deref().unwrap_or("<its profile>"),
            s.id
        )),
        RunStatus::Stopped => Some(format!(
            "unfinished: stopped ({}) after {done}{of} epochs; `--resume` continues it",
            s.stop_reason.as_deref().unwrap_or("on request")
        )),
        RunStatus::Failed => Some(format!(
            "failed after {done}{of} epochs: {}",
            s.failure.as_deref().unwrap_or("no message")
        )),
        RunStatus::New => None,
    };
    data.notes.extend(note);
    if data.series.evals.is_empty() {
        data.notes.push(
            "no eval events (no epoch completed its validation): its top-1 shows as –".into(),
        );
    }
}

/// The report's files, once written.
#[derive(Debug)]
pub struct Written {
    pub markdown: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Checks the output directory before anything is computed: not inside any of the run
/// directories (a report never writes into a run, not even a folder), then creatable and a
/// directory. Returns its absolute path.
pub fn prepare_out_dir(out: &Path, runs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    if out.exists() && !out.is_dir() {
        bail!(
            "-o {}: exists and is not a directory: give a new or an existing directory",
            out.display()
        );
    }
    let out_abs = resolve_missing(out);
    for run in runs {
        if let Ok(run_abs) = run.canonicalize()
            && out_abs.starts_with(&run_abs)
        {
            bail!(
                "-o {} is inside the run directory {}: a report never writes into a run; give a directory outside it",
                out.display(),
                run.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| {
        format!(
            "-o {}: cannot create the directory: give a directory you can write",
            out.display()
        )
    })?;
    out.canonicalize()
        .with_context(|| format!("-o {}: cannot resolve the path", out.display()))
}

/// The absolute, symlink-free form of a path that may not exist yet: its nearest existing
/// ancestor resolved, the rest appended.
fn resolve_missing(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut tail = Vec::new();
    let mut head = abs.as_path();
    loop {
        if let Ok(real) = head.canonicalize() {
            return tail.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return abs,
        }
    }
}

/// Renders the charts and the Markdown and writes them into `out` (checked by
/// [`prepare_out_dir`]). Charts without data are left out, and the Markdown says so.
pub fn write_report(runs: &[RunData], out: &Path) -> anyhow::Result<Written> {
    let charts = charts::render_all(runs)?;
    let markdown = table::markdown(runs, &charts);
    let mut written = Written {
        markdown: out.join(REPORT_FILE),
        charts: Vec::new(),
    };
    for chart in &charts {
        let path = out.join(chart.file);
        std::fs::write(&path, &chart.svg).with_context(|| {
            format!(
                "cannot write {}: give -o a directory you can write",
                path.display()
            )
        })?;
        written.charts.push(path);
    }
    std::fs::write(&written.markdown, markdown).with_context(|| {
        format!(
            "cannot write {}: give -o a directory you can write",
            written.markdown.display()
        )
    })?;
    Ok(written)
}
