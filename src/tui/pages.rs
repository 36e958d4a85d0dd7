//! The full-screen pages opened from the runs table: a run's frozen profile, the diff of the
//! marked runs' profiles, and a run's log (its `stdout.log` and its events, readable). This is
//! their text; [`super::ui`] draws it.

use std::path::Path;

use crate::rundir::events::{Event, EventBody};
use crate::rundir::{EVENTS_FILE, PROFILE_FILE, STDOUT_LOG, tail_lines};

use super::format;

/// Bytes read from the end of `stdout.log` and `events.jsonl` for the log page.
pub const LOG_TAIL_BYTES: u64 = 256 * 1024;

/// A page over the body; Esc or Backspace goes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    /// `profile.ron` of a run.
    Profile { run_id: String, scroll: usize },
    /// The frozen profiles of the marked runs, field by field.
    Diff { run_ids: Vec<String>, scroll: usize },
    /// `stdout.log` and events of a run; `back` lines up from the newest (0: follow).
    Log { run_id: String, back: usize },
}

impl Page {
    pub fn title(&self) -> String {
        match self {
            Page::Profile { run_id, .. } => {
                format!(" {run_id} · {PROFILE_FILE} (frozen at start) ")
            }
            Page::Diff { run_ids, .. } => format!(
                " {PROFILE_FILE} of {} marked runs · differing fields first ",
                run_ids.len()
            ),
            Page::Log { run_id, back } => format!(
                " {run_id} · {STDOUT_LOG} and events · {} ",
                if *back == 0 {
                    "following".to_string()
                } else {
                    format!("{back} lines up")
                }
            ),
        }
    }
}

/// Reads a run's `profile.ron` as lines, or says why not.
pub fn profile_text(run_dir: &Path) -> Result<String, String> {
    let path = run_dir.join(PROFILE_FILE);
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{} has no {PROFILE_FILE} (runs write it when they start)",
            run_dir.display()
        ),
        _ => format!("cannot read {}: {e}", path.display()),
    })
}

/// The fields of a pretty-printed RON profile as (dotted path, value), in file order.
/// `optimizer: Sgd(momentum: 0.9, …)` written over several lines gives `optimizer = Sgd`,
/// `optimizer.momentum = 0.9`; values written on one line stay one field.
pub fn flatten_ron(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut depth0 = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("//") {
            continue;
        }
        let t = t.strip_suffix(',').unwrap_or(t);
        if !depth0 {
            if t == "(" || t.ends_with('(') && !t.contains(':') {
                depth0 = true;
                continue;
            }
            // A profile on a single line: one field.
            out.push(("(profile)".into(), t.to_string()));
            continue;
        }
        if t.starts_with(')') || t.starts_with(']') {
            stack.pop();
            continue;
        }
        let path = |k: &str| {
            if stack.is_empty() {
                k.to_string()
            } else {
                format!("{}.{k}", stack.join("."))
            }
        };
        match t.split_once(':') {
            Some((k, v)) if is_ident(k.trim()) => {
                let (k, v) = (k.trim(), v.trim());
                if let Some(head) = v.strip_suffix('(').or_else(|| v.strip_suffix('[')) {
                    if !head.trim().is_empty() {
                        out.push((path(k), head.trim().to_string()));
                    }
                    stack.push(k.to_string());
                } else {
                    out.push((path(k), v.to_string()));
                }
            }
            _ => out.push((path("[]"), t.to_string())),
        }
    }
    out
}

fn is_ident(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One row of a profile diff: the field and its value in each run (None: absent there).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    pub field: String,
    pub values: Vec<Option<String>>,
    pub differs: bool,
}

/// The fields of several profiles side by side: the differing ones first (in file order), then
/// the identical ones.
pub fn diff_profiles(texts: &[Result<String, String>]) -> Vec<DiffRow> {
    let flat: Vec<Vec<(String, String)>> = texts
        .iter()
        .map(|t| t.as_ref().map(|t| flatten_ron(t)).unwrap_or_default())
        .collect();
    let mut fields: Vec<String> = Vec::new();
    for f in &flat {
        for (k, _) in f {
            if !fields.contains(k) {
                fields.push(k.clone());
            }
        }
    }
    let mut rows: Vec<DiffRow> = fields
        .into_iter()
        .map(|field| {
            let values: Vec<Option<String>> = flat
                .iter()
                .map(|f| f.iter().find(|(k, _)| *k == field).map(|(_, v)| v.clone()))
                .collect();
            let differs = values.iter().any(|v| *v != values[0]);
            DiffRow {
                field,
                values,
                differs,
            }
        })
        .collect();
    rows.sort_by_key(|r| !r.differs);
    rows
}

/// The last lines of a run's `stdout.log` (control characters removed).
pub fn stdout_tail(run_dir: &Path) -> Result<Vec<String>, String> {
    let path = run_dir.join(STDOUT_LOG);
    match tail_lines(&path, LOG_TAIL_BYTES) {
        Ok(lines) => Ok(lines
            .into_iter()
            .map(|l| {
                l.chars()
                    .filter(|c| !c.is_control() || *c == '\t')
                    .collect()
            })
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "no {STDOUT_LOG}: the run was started headless (its output went to that terminal)"
        )),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The last events of a run, one readable line each.
pub fn events_tail(run_dir: &Path) -> Result<Vec<String>, String> {
    let path = run_dir.join(EVENTS_FILE);
    let lines = tail_lines(&path, LOG_TAIL_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let n = lines.len();
    Ok(lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match serde_json::from_str::<Event>(l) {
            Ok(e) => Some(describe_event(&e)),
            // The last line may be mid-write.
            Err(_) if i + 1 == n => None,
            Err(_) => Some(format!("(unparsable) {l}")),
        })
        .collect())
}

/// An event in one line: `10:15:02 step   e1 i20/50 loss 2.31 lr 0.05 410 img/s`.
pub fn describe_event(e: &Event) -> String {
    let time = format::utc_datetime(e.t);
    let time = time.rsplit(' ').next().unwrap_or(&time).to_string();
    let (kind, what) = match &e.body {
        EventBody::Started(s) => (
            "started",
            format!(
                "{} {} on {} · {} x {} · batch {}/device · pid {}{}",
                s.run_kind.label(),
                s.variant,
                s.devices.join(","),
                format::plural(s.epochs.into(), "epoch"),
                format::plural(s.iters_per_epoch, "iter"),
                s.batch_size,
                s.pid,
                s.resumed_from
                    .as_ref()
                    .map(|r| format!(" · resumed from {r}"))
                    .unwrap_or_default()
            ),
        ),
        EventBody::Step(s) => (
            "step",
            format!(
                "epoch {} iter {} loss {} lr {} {} img/s{}",
                s.epoch + 1,
                s.iter,
                format::num(s.loss),
                format::num(s.lr),
                format::si(s.images_per_s),
                s.eta_s
                    .map(|e| format!(" ETA {}", format::duration(e)))
                    .unwrap_or_default()
            ),
        ),
        EventBody::Eval(v) => (
            "eval",
            format!(
                "epoch {} val loss {} top-1 {:.2} top-5 {:.2}",
                v.epoch + 1,
                format::num(v.loss),
                v.top1,
                v.top5
            ),
        ),
        EventBody::Scales(s) => (
            "scales",
            format!("after epoch {}: {} layers", s.epoch + 1, s.layers.len()),
        ),
        EventBody::Gpu(g) => (
            "gpu",
            g.devices
                .iter()
                .map(|d| {
                    format!(
                        "{}: {} / {}{}",
                        d.index,
                        format::bytes(d.memory_used_bytes),
                        format::bytes(d.memory_total_bytes),
                        d.utilization.map(|u| format!(" {u}%")).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(" · "),
        ),
        EventBody::Checkpoint(c) => (
            "checkpoint",
            format!(
                "{}{} ({} done)",
                c.path,
                if c.best { " best" } else { "" },
                format::plural(u64::from(c.epoch), "epoch")
            ),
        ),
        EventBody::CheckpointFailed(c) => (
            "ckpt failed",
            format!("{} not written: {}", c.path, c.error),
        ),
        EventBody::Probe(p) => (
            "probe",
            format!(
                "{} {}@{} on {}: max batch {}",
                p.model,
                p.variant,
                p.resolution,
                p.device,
                p.max_batch.map_or("none".into(), |b| b.to_string())
            ),
        ),
        EventBody::Quantize(q) => (
            "quantize",
            format!(
                "fp32 top-1 {:.2}; int8 {}",
                q.fp32_top1,
                q.schemes
                    .iter()
                    .map(|s| format!(
                        "{} {} {}: {:.2} ({:+.2})",
                        s.weights, s.activations, s.keep_float, s.top1, -s.drop
                    ))
                    .collect::<Vec<_>>()
                    .join(" · ")
            ),
        ),
        EventBody::Finished(f) => (
            "finished",
            format!(
                "after {}{}",
                format::duration(f.wall_s),
                f.best_top1
                    .map(|b| format!(" · best top-1 {b:.2}"))
                    .unwrap_or_default()
            ),
        ),
        EventBody::Stopped(s) => (
            "stopped",
            format!(
                "by {} at epoch {} iter {}{}",
                s.reason,
                s.epoch + 1,
                s.global_iter,
                s.checkpoint
                    .as_ref()
                    .map(|c| format!(" · {c}"))
                    .unwrap_or_default()
            ),
        ),
        EventBody::Failed(f) => ("failed", f.message.clone()),
    };
    format!("{time} {kind:<10} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "// frozen\n(\n    kind: Target,\n    recipe: (\n        lr: 0.1,\n        optimizer: Sgd(\n            momentum: 0.9,\n        ),\n    ),\n    devices: [Cuda(0)],\n)\n";

    #[test]
    fn flatten_follows_nesting() {
        let f = flatten_ron(A);
        let want: Vec<(String, String)> = [
            ("kind", "Target"),
            ("recipe.lr", "0.1"),
            ("recipe.optimizer", "Sgd"),
            ("recipe.optimizer.momentum", "0.9"),
            ("devices", "[Cuda(0)]"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(f, want);
    }

    #[test]
    fn diff_lists_differing_fields_first() {
        let b = A
            .replace("lr: 0.1", "lr: 0.2")
            .replace("    devices: [Cuda(0)],\n", "");
        let rows = diff_profiles(&[Ok(A.to_string()), Ok(b), Err("missing".into())]);
        let differs: Vec<&str> = rows
            .iter()
            .filter(|r| r.differs)
            .map(|r| r.field.as_str())
            .collect();
        // The third profile could not be read: every field differs from it.
        assert_eq!(rows.len(), 5);
        assert_eq!(differs.len(), 5);
        let two = diff_profiles(&[Ok(A.to_string()), Ok(A.replace("0.1", "0.2"))]);
        assert_eq!(two[0].field, "recipe.lr");
        assert_eq!(
            two[0].values,
            vec![Some("0.1".to_string()), Some("0.2".to_string())]
        );
        assert!(two[1..].iter().all(|r| !r.differs));
    }
}
