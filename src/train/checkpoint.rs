//! Checkpoints: model tensors, optimizer state and the training position in one file,
//! `ckpt/e<epoch>-i<global iteration>.ckpt`. Layout: 8-byte magic, SHA-256 of the rest, then a
//! safetensors payload (tensors `model.<name>` and `optim.<name>.<state>`, the position as JSON
//! metadata). Written to a temporary name, synced, renamed: a crash or a full disk never leaves
//! a half-written checkpoint under a checkpoint's name, and a truncated or bit-flipped file is
//! detected by its checksum.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::interop::safetensors::{from_bytes, to_bytes};
use crate::profile::write_atomic;

const MAGIC: &[u8; 8] = b"RPCKPT01";
pub const BEST: &str = "best.ckpt";

/// Where training stands: everything besides tensors that an exact resume needs. The data
/// order and augmentation are pure functions of (seed, epoch, index), so the position and the
/// seed are the whole RNG state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The next iteration to run is `iter` of epoch `epoch` (0-based).
    pub epoch: u32,
    pub iter: u64,
    /// Global iteration of that next step (the schedule position).
    pub global_iter: u64,
    pub iters_per_epoch: u64,
    pub seed: u64,
    pub run_kind: crate::rundir::events::RunKindTag,
    pub variant: String,
    pub classes: usize,
    /// Best validation top-1 so far and the epoch it was reached.
    pub best_top1: Option<f64>,
    pub best_epoch: Option<u32>,
    /// Training-loss and accuracy sums of the current epoch so far.
    pub epoch_loss_sum: f64,
    pub epoch_correct: u64,
    pub epoch_seen: u64,
    /// Seconds of training before this checkpoint (over all processes of the run).
    pub elapsed_s: f64,
    /// Target runs: SHA-256 (hex) of the run's `scales.frozen.ron`, checked on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scales_sha256: Option<String>,
}

pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<(String, TensorData)>,
    pub optim: Vec<(String, TensorData)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // Not `source`: the OS error is part of this message, and anyhow's `{:#}` would print a
    // source a second time.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is corrupt ({why}); it was not used")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot write checkpoint {path}: {why}")]
    Write { path: PathBuf, why: String },
}

/// SHA-256 of `bytes` as lowercase hex (the frozen scales' checksum).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn file_name(epoch: u32, global_iter: u64) -> String {
    format!("e{epoch:04}-i{global_iter:09}.ckpt")
}

/// Serializes and writes atomically.
pub fn write(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let failed = |why: String| CheckpointError::Write {
        path: path.to_path_buf(),
        why,
    };
    let mut tensors: Vec<(String, TensorData)> = ckpt
        .model
        .iter()
        .map(|(n, d)| (format!("model.{n}"), d.clone()))
        .collect();
    tensors.extend(
        ckpt.optim
            .iter()
            .map(|(n, d)| (format!("optim.{n}"), d.clone())),
    );
    let mut meta = HashMap::new();
    meta.insert(
        "state".to_string(),
        serde_json::to_string(&ckpt.state).map_err(|e| failed(e.to_string()))?,
    );
    let payload = to_bytes(&tensors, meta).map_err(|e| failed(e.to_string()))?;
    let mut bytes = Vec::with_capacity(payload.len() + 40);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&Sha256::digest(&payload));
    bytes.extend_from_slice(&payload);
    write_atomic(path, &bytes).map_err(|e| failed(e.to_string()))
}

/// Copies `from` to `to` through a temporary file (synced, renamed): `to` is always whole.
pub fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(from)?;
    write_atomic(to, &bytes)
}

/// Removes the temporary files that an interrupted write leaves in `dir`
/// (`.<name>.tmp-<pid>`, written by [`write_atomic`], and the older `.best.ckpt.tmp`). Called by
/// the run's owner when it starts: it holds the run's lock, so no other process writes there.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        let stale = match name.rsplit_once(".tmp-") {
            Some((_, pid)) => pid
                .parse::<u32>()
                .is_ok_and(|pid| pid != std::process::id()),
            None => name.ends_with(".tmp"),
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Reads and verifies a checkpoint.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return Err(corrupt(format!(
            "not a repopt-tui checkpoint or truncated ({} bytes)",
            bytes.len()
        )));
    }
    let (hash, payload) = (&bytes[8..40], &bytes[40..]);
    if Sha256::digest(payload).as_slice() != hash {
        return Err(corrupt("checksum mismatch: truncated or modified".into()));
    }
    let (meta, tensors) = from_bytes(payload).map_err(|e| corrupt(e.to_string()))?;
    let state = meta
        .get("state")
        .ok_or_else(|| corrupt("no training state".into()))?;
    let state: TrainState =
        serde_json::from_str(state).map_err(|e| corrupt(format!("training state: {e}")))?;
    let (mut model, mut optim) = (Vec::new(), Vec::new());
    for (name, data) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model.push((n.to_string(), data));
        } else if let Some(n) = name.strip_prefix("optim.") {
            optim.push((n.to_string(), data));
        }
    }
    Ok(Checkpoint {
        state,
        model,
        optim,
    })
}

/// The numbered checkpoints of a run directory's `ckpt/`, oldest first (`best.ckpt` excluded).
pub fn list(ckpt_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ckpt_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with('e') && name.ends_with(".ckpt")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The newest checkpoint that reads back and verifies, with what was rejected on the way.
pub fn newest_valid(ckpt_dir: &Path) -> (Option<(PathBuf, Checkpoint)>, Vec<CheckpointError>) {
    let mut rejected = Vec::new();
    for path in list(ckpt_dir).into_iter().rev() {
        match read(&path) {
            Ok(c) => return (Some((path, c)), rejected),
            Err(e) => rejected.push(e),
        }
    }
    (None, rejected)
}

/// Deletes all but the newest `keep` numbered checkpoints.
pub fn prune(ckpt_dir: &Path, keep: usize) {
    let files = list(ckpt_dir);
    let excess = files.len().saturating_sub(keep.max(1));
    for old in &files[..excess] {
        let _ = std::fs::remove_file(old);
    }
}
