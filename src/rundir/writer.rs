//! The append-only writer of `events.jsonl`, used by the process that owns the run.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::events::{Event, EventBody};

/// Appends events to `events.jsonl`, one JSON object per line.
///
/// Each event is serialized in memory and handed to the kernel in a single `write` of the whole
/// line (the file is opened `O_APPEND` and not buffered in user space), so a reader never sees two
/// events interleaved. The file stays valid JSON lines through crashes and a full disk: a write
/// that fails part-way (ENOSPC after a short write) is cut back to the last complete line, and
/// opening the file cuts off a partial last line that a killed writer left, so the next event
/// never gets glued onto half a line.
/// Hold the run's [`super::RunLock`] while writing: one run, one writer.
#[derive(Debug)]
pub struct EventWriter {
    file: File,
    path: PathBuf,
    line: Vec<u8>,
    /// Length of the file up to its last complete line, as this writer knows it.
    len: u64,
    /// A failed write may have left a partial line that could not be cut off yet.
    dirty: bool,
}

/// The length of `file` up to and including its last newline (0 if it has none).
fn complete_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl EventWriter {
    /// Opens (creating if needed) `<run_dir>/events.jsonl` for appending.
    pub fn open(run_dir: &Path) -> io::Result<Self> {
        Self::open_path(run_dir.join(super::EVENTS_FILE))
    }

    /// Opens (creating if needed) the given events file for appending. If a previous writer died
    /// mid-line (the file does not end in a newline), that partial line is cut off: it is an event
    /// that was never completely written.
    pub fn open_path(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let mut w = EventWriter {
            file,
            path,
            line: Vec::with_capacity(512),
            len: 0,
            dirty: true,
        };
        w.repair()?;
        Ok(w)
    }

    /// Cuts the file back to its last complete line.
    fn repair(&mut self) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        let complete = complete_len(&mut self.file, len)?;
        if complete != len {
            self.file.set_len(complete)?;
        }
        self.len = complete;
        self.dirty = false;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one line, in one `write`. On failure (e.g. a full disk) nothing of
    /// the line stays in the file.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, event).map_err(io::Error::other)?;
        self.line.push(b'\n');
        if self.dirty {
            self.repair()?;
        }
        // A regular file accepts the whole buffer in one write; write_all only loops on a short
        // write (a nearly full disk).
        match self
            .file
            .write_all(&self.line)
            .and_then(|_| self.file.flush())
        {
            Ok(()) => {
                self.len += self.line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut off whatever part of the line made it; if even that fails, try again
                // before the next write.
                self.dirty = self.file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }

    /// Appends an event stamped with the current time.
    pub fn emit(&mut self, body: EventBody) -> io::Result<()> {
        self.write(&Event::now(body))
    }

    /// Forces the written events to disk (e.g. before exiting after a terminal event).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
