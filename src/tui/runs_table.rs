//! The runs table's logic, apart from drawing: each run's configuration (read from its frozen
//! `profile.ron`), the columns a user can choose, sorting by any of them and the `/` filter.

use std::cmp::Ordering;
use std::path::Path;

use crate::rundir::events::RunKindTag;
use crate::rundir::{PROFILE_FILE, RunStatus};

use super::format;
use super::store::RunEntry;

/// What the runs table shows of a run's frozen profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunConfig {
    /// Modification time of the `profile.ron` read (None: no file).
    pub mtime: Option<f64>,
    /// Base learning rate (at total batch 256 when `lr_scaling`).
    pub lr: Option<f64>,
    /// Images per iteration over all devices.
    pub total_batch: Option<usize>,
    pub weight_decay: Option<f64>,
    pub epochs: Option<u32>,
    /// `Synthetic/10`, `Cifar100/100`, `ImageFolder/1000`.
    pub data: Option<String>,
    pub variant: Option<String>,
    /// Why the profile could not be read (a missing file is not an error: `mtime` is None).
    pub error: Option<String>,
}

impl RunConfig {
    /// Reads `<run>/profile.ron` with the strict profile loader.
    pub fn load(run_dir: &Path) -> RunConfig {
        let path = run_dir.join(PROFILE_FILE);
        let mtime = crate::rundir::file_mtime(&path);
        if mtime.is_none() {
            return RunConfig::default();
        }
        match crate::rundir::read_frozen_profile(run_dir) {
            Ok(Some(p)) => RunConfig {
                mtime,
                lr: Some(p.recipe.lr),
                total_batch: Some(p.total_batch()),
                weight_decay: Some(p.recipe.weight_decay),
                epochs: Some(p.recipe.epochs),
                data: Some(match p.data.classes {
                    Some(c) => format!("{:?}/{c}", p.data.kind),
                    None => format!("{:?}", p.data.kind),
                }),
                variant: Some(p.variant.clone()),
                error: None,
            },
            // Removed between the two looks: as if there were none.
            Ok(None) => RunConfig::default(),
            Err(error) => RunConfig {
                mtime,
                error: Some(error),
                ..Default::default()
            },
        }
    }
}

/// A column of the runs table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Status,
    Run,
    Kind,
    Variant,
    Epoch,
    Top1,
    ValLoss,
    TrainLoss,
    ImagesPerS,
    Lr,
    Batch,
    WeightDecay,
    Epochs,
    Data,
    Eta,
    Age,
}

impl Column {
    /// Every column, in display order.
    pub const ALL: [Column; 16] = [
        Column::Status,
        Column::Run,
        Column::Kind,
        Column::Variant,
        Column::Epoch,
        Column::Top1,
        Column::ValLoss,
        Column::TrainLoss,
        Column::ImagesPerS,
        Column::Lr,
        Column::Batch,
        Column::WeightDecay,
        Column::Epochs,
        Column::Data,
        Column::Eta,
        Column::Age,
    ];

    /// The columns shown until the user picks others (`C`).
    pub const DEFAULT: [Column; 12] = [
        Column::Status,
        Column::Run,
        Column::Kind,
        Column::Variant,
        Column::Epoch,
        Column::Top1,
        Column::ValLoss,
        Column::Lr,
        Column::Batch,
        Column::WeightDecay,
        Column::Eta,
        Column::Age,
    ];

    pub fn header(self) -> &'static str {
        match self {
            Column::Status => "status",
            Column::Run => "run",
            Column::Kind => "kind",
            Column::Variant => "model",
            Column::Epoch => "epoch",
            Column::Top1 => "best top-1",
            Column::ValLoss => "val loss",
            Column::TrainLoss => "train loss",
            Column::ImagesPerS => "img/s",
            Column::Lr => "lr",
            Column::Batch => "batch",
            Column::WeightDecay => "wd",
            Column::Epochs => "epochs",
            Column::Data => "data",
            Column::Eta => "ETA",
            Column::Age => "age",
        }
    }

    /// What the column shows (the column picker).
    pub fn describe(self) -> &'static str {
        match self {
            Column::Status => "running, finished, stopped, failed, interrupted",
            Column::Run => "the run id (directory name)",
            Column::Kind => "HS, RepOpt, RepVGG, ablation, probe",
            Column::Variant => "model variant (A0 … L2, T0, T1)",
            Column::Epoch => "current epoch / epochs",
            Column::Top1 => "best validation top-1 (%)",
            Column::ValLoss => "last validation loss",
            Column::TrainLoss => "last training step's loss",
            Column::ImagesPerS => "training images per second (last step)",
            Column::Lr => "base learning rate (profile)",
            Column::Batch => "total batch: per device x devices (profile)",
            Column::WeightDecay => "weight decay (profile)",
            Column::Epochs => "epochs (profile)",
            Column::Data => "data set kind / classes (profile)",
            Column::Eta => "time left of a live run",
            Column::Age => "time since the last event",
        }
    }

    /// Width of the column (the run column takes what is left).
    pub fn width(self) -> u16 {
        match self {
            Column::Status => 13,
            Column::Run => 18,
            Column::Kind => 8,
            Column::Variant => 5,
            Column::Epoch => 7,
            Column::Top1 => 11,
            Column::ValLoss => 8,
            Column::TrainLoss => 10,
            Column::ImagesPerS => 6,
            Column::Lr => 7,
            Column::Batch => 5,
            Column::WeightDecay => 7,
            Column::Epochs => 6,
            Column::Data => 16,
            Column::Eta => 6,
            Column::Age => 4,
        }
    }

    /// Which columns go first when the terminal is too narrow: the lowest value first. Status
    /// and run never go.
    pub fn priority(self) -> u8 {
        match self {
            Column::Status | Column::Run => 255,
            Column::Kind => 90,
            Column::Top1 => 85,
            Column::Variant => 80,
            Column::Epoch => 75,
            Column::Lr => 70,
            Column::Batch => 65,
            Column::ValLoss => 60,
            Column::Eta => 55,
            Column::WeightDecay => 50,
            Column::Age => 45,
            Column::Data => 40,
            Column::Epochs => 35,
            Column::TrainLoss => 30,
            Column::ImagesPerS => 25,
        }
    }

    /// Numbers are right-aligned.
    pub fn numeric(self) -> bool {
        !matches!(
            self,
            Column::Status | Column::Run | Column::Kind | Column::Variant | Column::Data
        )
    }

    /// The cell text of a run.
    pub fn cell(self, r: &RunEntry, now: f64) -> String {
        let s = &r.summary;
        let c = &r.config;
        let dash = || "–".to_string();
        match self {
            Column::Status => super::ui::status_label(s.status),
            Column::Run => s.id.clone(),
            Column::Kind => kind_label(s.kind.as_ref()).to_string(),
            Column::Variant => {
                if s.variant.is_empty() {
                    c.variant.clone().unwrap_or_else(dash)
                } else {
                    s.variant.clone()
                }
            }
            Column::Epoch => match (s.epoch, s.epochs) {
                (_, Some(0)) => dash(),
                (Some(e), Some(n)) => {
                    let done = if s.status == RunStatus::Finished {
                        n
                    } else {
                        (e + 1).min(n)
                    };
                    format!("{done}/{n}")
                }
                (None, Some(n)) => format!("0/{n}"),
                _ => dash(),
            },
            Column::Top1 => s.best_top1.map_or_else(dash, |v| format!("{v:.2}")),
            Column::ValLoss => last_val_loss(r).map_or_else(dash, format::num),
            Column::TrainLoss => s.last_loss.map_or_else(dash, format::num),
            Column::ImagesPerS => s.images_per_s.map_or_else(dash, format::si),
            Column::Lr => c.lr.map_or_else(dash, format::num),
            Column::Batch => batch(r).map_or_else(dash, |b| count(b as u64, self.width())),
            Column::WeightDecay => c.weight_decay.map_or_else(dash, format::num),
            Column::Epochs => c
                .epochs
                .or(s.epochs)
                .map_or_else(dash, |e| count(e.into(), self.width())),
            Column::Data => c.data.clone().unwrap_or_else(dash),
            Column::Eta => eta(r).map_or_else(dash, format::duration),
            Column::Age => s.last_update().map_or_else(dash, |t| format::age(now, t)),
        }
    }

    /// The sort key of a run (missing values sort last in either direction).
    fn key(self, r: &RunEntry, now: f64) -> Key {
        let s = &r.summary;
        let c = &r.config;
        let num = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(Key::None, Key::Num);
        match self {
            Column::Status => Key::Text(s.status.as_str().to_string()),
            Column::Run => Key::Text(s.id.clone()),
            Column::Kind | Column::Variant | Column::Data => {
                let t = self.cell(r, now);
                if t == "–" { Key::None } else { Key::Text(t) }
            }
            Column::Epoch => num(s.progress()),
            Column::Top1 => num(s.best_top1),
            Column::ValLoss => num(last_val_loss(r)),
            Column::TrainLoss => num(s.last_loss),
            Column::ImagesPerS => num(s.images_per_s),
            Column::Lr => num(c.lr),
            Column::Batch => num(batch(r).map(|b| b as f64)),
            Column::WeightDecay => num(c.weight_decay),
            Column::Epochs => num(c.epochs.or(s.epochs).map(f64::from)),
            Column::Eta => num(eta(r)),
            Column::Age => num(s.last_update().map(|t| now - t)),
        }
    }
}

/// The one name of a run kind in every view; `?` while no event says.
pub fn kind_label(kind: Option<&RunKindTag>) -> &str {
    kind.map_or("?", RunKindTag::label)
}

fn last_val_loss(r: &RunEntry) -> Option<f64> {
    r.series.evals.last().map(|(_, e)| e.loss)
}

/// Total batch: from the profile, else from the `started` event (per device x devices).
/// A count in full when it fits `width` columns, else with an SI suffix (`524k`): a table cell
/// wider than its column would be cut (`1.33k` read as `1.33`).
fn count(n: u64, width: u16) -> String {
    let full = n.to_string();
    if full.len() <= width as usize {
        full
    } else {
        format::si(n as f64)
    }
}

fn batch(r: &RunEntry) -> Option<usize> {
    r.config.total_batch.or_else(|| {
        let s = &r.summary;
        s.batch_size
            .filter(|b| *b > 0)
            .map(|b| b * s.devices.len().max(1))
    })
}

/// Seconds left of a live run.
pub fn eta(r: &RunEntry) -> Option<f64> {
    let s = &r.summary;
    if !s.status.is_live() {
        return None;
    }
    s.eta_s
        .or_else(|| r.series.estimate_eta(s.epochs.unwrap_or(0)))
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Num(f64),
    Text(String),
    None,
}

/// How the table is ordered: by a column, or newest first (None).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    pub column: Option<Column>,
    pub descending: bool,
}

/// The indices of `runs` that pass `filter`, in the order of `sort`.
pub fn visible(runs: &[RunEntry], filter: &str, sort: Sort, now: f64) -> Vec<usize> {
    let terms: Vec<String> = filter.split_whitespace().map(str::to_lowercase).collect();
    let mut out: Vec<usize> = (0..runs.len())
        .filter(|&i| terms.is_empty() || matches(&runs[i], &terms, now))
        .collect();
    if let Some(col) = sort.column {
        let keys: Vec<Key> = runs.iter().map(|r| col.key(r, now)).collect();
        out.sort_by(|&a, &b| {
            let (ka, kb) = (&keys[a], &keys[b]);
            let ord = match (ka, kb) {
                (Key::None, Key::None) => Ordering::Equal,
                (Key::None, _) => return Ordering::Greater,
                (_, Key::None) => return Ordering::Less,
                (Key::Num(x), Key::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
                (Key::Text(x), Key::Text(y)) => x.cmp(y),
                _ => Ordering::Equal,
            };
            let ord = if sort.descending { ord.reverse() } else { ord };
            // Ties keep the store's order (newest first).
            ord.then(a.cmp(&b))
        });
    }
    out
}

/// Whether every term occurs in one of the run's cells (any column, shown or not), its status
/// or its kind's long name. `key=value` terms compare a column's cell exactly (`lr=0.1`).
fn matches(r: &RunEntry, terms: &[String], now: f64) -> bool {
    let cells: Vec<(String, String)> = Column::ALL
        .iter()
        .map(|c| (c.header().to_lowercase(), c.cell(r, now).to_lowercase()))
        .collect();
    terms.iter().all(|t| {
        if let Some((k, v)) = t.split_once('=') {
            return cells
                .iter()
                .any(|(h, cell)| (h == k || h.replace(' ', "") == k) && cell == v);
        }
        cells.iter().any(|(_, cell)| cell.contains(t.as_str()))
            || r.summary.kind.as_ref().is_some_and(|k| {
                k.label().to_lowercase().contains(t.as_str()) || k.as_str().contains(t.as_str())
            })
    })
}

/// `id` in at most `width` characters, the middle elided so both its name and its timestamp
/// (which tells runs of one profile apart) stay visible: `demo-hs…1202-101500`.
pub fn elide_middle(id: &str, width: usize) -> String {
    let n = id.chars().count();
    if n <= width {
        return id.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let keep = width - 1;
    // The timestamp (`20261128-101500`) first, then as much of the name as fits.
    let tail = keep
        .saturating_sub(4)
        .min(15)
        .max(keep * 3 / 5)
        .clamp(1, keep);
    let head = keep - tail;
    let h: String = id.chars().take(head).collect();
    let t: String = id.chars().skip(n - tail).collect();
    format!("{h}…{t}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_their_columns_with_their_unit_suffix() {
        let mut r = RunEntry {
            summary: crate::rundir::RunSummary::new(Path::new("x")),
            series: Default::default(),
            first_skip: None,
            loaded: true,
            bytes_read: 0,
            bytes_total: 0,
            config: RunConfig::default(),
            kernel_stats: None,
            kernel_stats_mtime: None,
        };
        r.summary.images_per_s = Some(1330.0);
        assert_eq!(Column::ImagesPerS.cell(&r, 0.0), "1.33k");
        // (images/s, loss, lr and weight decay, total batch, epochs)
        let wide = [
            (1330.0, 1330.0, 0.1, 1330, 12_345),
            (99_950.0, 12_345.0, 0.000_197, 524_288, 1_000_000),
            (1.234e7, 6.9078, 4e-5, 65_536, 999_999),
            (0.5, 0.000_123, 1.25, 4096, 120),
        ];
        for (ips, loss, lr, batch, epochs) in wide {
            r.summary.images_per_s = Some(ips);
            r.summary.last_loss = Some(loss);
            r.summary.best_top1 = Some(99.99);
            r.config.lr = Some(lr);
            r.config.weight_decay = Some(lr);
            r.config.total_batch = Some(batch);
            r.config.epochs = Some(epochs);
            for c in [
                Column::ImagesPerS,
                Column::TrainLoss,
                Column::Top1,
                Column::Lr,
                Column::WeightDecay,
                Column::Batch,
                Column::Epochs,
            ] {
                let cell = c.cell(&r, 0.0);
                assert!(
                    cell.chars().count() <= c.width() as usize,
                    "{c:?}: {cell:?} is wider than {}",
                    c.width()
                );
            }
        }
        r.config.total_batch = Some(524_288);
        assert_eq!(Column::Batch.cell(&r, 0.0), "524k");
    }

    #[test]
    fn elided_ids_keep_their_timestamp() {
        assert_eq!(elide_middle("short", 10), "short");
        assert_eq!(
            elide_middle("demo-hs-20261202-101500", 20),
            "demo…20261202-101500"
        );
        // Two runs of one profile a second apart stay different at any width that fits 3.
        for w in 3..24 {
            let a = elide_middle("demo-hs-20261202-101500", w);
            let b = elide_middle("demo-hs-20261202-101501", w);
            assert_eq!(a.chars().count(), w);
            assert_ne!(a, b, "width {w}");
        }
    }
}
