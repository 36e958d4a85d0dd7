//! Taking a run directory over as its owner: the one way headless runs and probes open theirs.

use std::io;
use std::path::{Path, PathBuf};

use super::{EVENTS_FILE, EventWriter, LockError, RunLock};

/// A run directory held by the process that writes it: its lock (held until dropped) and its
/// events file, open for appending.
pub struct OwnedRunDir {
    pub lock: RunLock,
    pub events: EventWriter,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnRunDirError {
    // The OS error is in the message, not a `source` (anyhow's `{:#}` would repeat it).
    #[error("cannot create the run directory {path}: {error}")]
    Create { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot open {path}: {error}")]
    Events { path: PathBuf, error: io::Error },
}

/// Creates `dir` (and the runs directory above it) if needed, takes its lock unless the caller
/// already holds it (`lock`: a directory that existed is locked before its run is checked), and
/// opens its events file.
pub fn own_run_dir(dir: &Path, lock: Option<RunLock>) -> Result<OwnedRunDir, OwnRunDirError> {
    std::fs::create_dir_all(dir).map_err(|error| OwnRunDirError::Create {
        path: dir.to_path_buf(),
        error,
    })?;
    let lock = match lock {
        Some(lock) => lock,
        None => RunLock::acquire(dir)?,
    };
    let events = EventWriter::open(dir).map_err(|error| OwnRunDirError::Events {
        path: dir.join(EVENTS_FILE),
        error,
    })?;
    Ok(OwnedRunDir { lock, events })
}
