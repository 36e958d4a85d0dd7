//! `run.lock`: which live process owns a run.
//!
//! The owner holds an exclusive `flock` on `<run>/run.lock` for as long as it lives and writes its
//! pid into the file. The kernel drops the lock when the process dies, however it dies, so a
//! stale pid in the file never makes a dead run look alive.
//!
//! Watchers ([`live_owner`]) must not take the lock themselves, even for an instant: a run starting
//! at that moment would find it held. On Linux they read `/proc/locks` (which lists every `flock`
//! by inode); elsewhere they fall back to a non-blocking shared-lock probe, and
//! [`RunLock::acquire`] retries briefly to ride over such a probe.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::LOCK_FILE;

/// Why [`RunLock::acquire`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "run directory {dir} is in use by another live process{}: its lock {lock} is held",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        /// The pid written in the lock file by its holder, if readable.
        pid: Option<u32>,
    },
    // The OS error is in the message, not a `source` (anyhow's `{:#}` would repeat it).
    #[error("cannot lock {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

/// The exclusive ownership of a run directory; released on drop (and by the kernel on death).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    pid: u32,
}

impl RunLock {
    /// Takes `<dir>/run.lock` (creating it) without blocking and writes this process's pid into it.
    /// Fails with [`LockError::Held`], naming the holder's pid, if a live process owns the run.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // A watcher on a system without /proc/locks may hold a shared lock for a few microseconds.
        let mut tries = 0;
        loop {
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < 5 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        lock: path.clone(),
                        pid: read_pid(&mut file),
                    });
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        let pid = std::process::id();
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.write_all(format!("{pid}\n").as_bytes())
            .map_err(io_err)?;
        Ok(RunLock { file, path, pid })
    }

    /// The pid written into the lock (this process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Still holding the lock: clear the pid so `cat run.lock` does not name a dead process.
        // The file itself stays: unlinking a lock file races with a process that opened it.
        let _ = self.file.set_len(0);
        let _ = flock(&self.file, libc::LOCK_UN);
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a valid, open file descriptor owned by `file`.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn read_pid_at(path: &Path) -> Option<u32> {
    let mut f = File::open(path).ok()?;
    read_pid(&mut f)
}

/// A snapshot of the system's `flock` locks (`/proc/locks`), to answer "is this run.lock held?"
/// for many runs with one read.
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    /// Inodes with an exclusive flock held, with the pid that took it.
    held: Option<Vec<(u64, u32)>>,
}

impl LockTable {
    /// Reads `/proc/locks`; where it is unreadable, lookups fall back to a lock probe.
    pub fn snapshot() -> Self {
        match std::fs::read_to_string("/proc/locks") {
            Ok(text) => LockTable {
                held: Some(parse_proc_locks(&text)),
            },
            Err(_) => LockTable { held: None },
        }
    }

    /// The pid owning `<dir>/run.lock` if a live process holds it: the pid written in the file,
    /// else the pid the kernel recorded when the lock was taken.
    pub fn live_owner(&self, dir: &Path) -> Option<u32> {
        let path = dir.join(LOCK_FILE);
        let meta = std::fs::metadata(&path).ok()?;
        match &self.held {
            Some(held) => {
                use std::os::unix::fs::MetadataExt;
                let ino = meta.ino();
                let (_, kernel_pid) = held.iter().find(|(i, _)| *i == ino)?;
                Some(read_pid_at(&path).unwrap_or(*kernel_pid))
            }
            None => {
                let file = File::open(&path).ok()?;
                match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
                    Ok(()) => {
                        let _ = flock(&file, libc::LOCK_UN);
                        None
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Some(read_pid_at(&path).unwrap_or(0))
                    }
                    Err(_) => None,
                }
            }
        }
    }
}

/// Parses `/proc/locks` lines such as `1: FLOCK  ADVISORY  WRITE 12615 fe:00:10010798 0 EOF`
/// (blocked waiters, `1: -> FLOCK …`, are skipped).
fn parse_proc_locks(text: &str) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let _ordinal = fields.next();
        let Some(class) = fields.next() else { continue };
        if class != "FLOCK" {
            continue;
        }
        let _advisory = fields.next();
        if fields.next() != Some("WRITE") {
            continue;
        }
        let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Some(ino) = fields
            .next()
            .and_then(|id| id.rsplit(':').next())
            .and_then(|i| i.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((ino, pid));
    }
    out
}

/// The pid of the live process owning the run in `dir`, or `None` if no live process holds its
/// `run.lock` (never run, finished, crashed: the kernel releases the lock of a dead process).
pub fn live_owner(dir: &Path) -> Option<u32> {
    LockTable::snapshot().live_owner(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 12615 fe:00:10010798 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 11832 fe:00:10133510 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 11700 fe:00:5308544 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 11832 fe:00:5308544 0 EOF\n\
                    4: POSIX  ADVISORY  WRITE 99 fe:00:42 0 EOF\n";
        assert_eq!(
            parse_proc_locks(text),
            vec![(10010798, 12615), (5308544, 11700)]
        );
    }
}
