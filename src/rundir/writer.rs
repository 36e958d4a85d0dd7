//! The append-only writer of `events.jsonl`, used by the process that owns the run.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::events::{Event, EventBody};

/// Appends events to `events.jsonl`, one JSON object per line.
///
/// Each event is serialized in memory and handed to the kernel in a single `write` of the whole
/// line (the file is opened `O_APPEND` and not buffered in user space), so a reader never sees two
/// events interleaved, and at worst the last line is partial if the process dies mid-write.
/// Hold the run's [`super::RunLock`] while writing: one run, one writer.
#[derive(Debug)]
pub struct EventWriter {
    file: File,
    path: PathBuf,
    line: Vec<u8>,
}

impl EventWriter {
    /// Opens (creating if needed) `<run_dir>/events.jsonl` for appending.
    pub fn open(run_dir: &Path) -> io::Result<Self> {
        Self::open_path(run_dir.join(super::EVENTS_FILE))
    }

    /// Opens (creating if needed) the given events file for appending. If a previous writer died
    /// mid-line (the file does not end in a newline), a newline is written first so that the torn
    /// line stays one unparsable line instead of corrupting the next event.
    pub fn open_path(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(EventWriter {
            file,
            path,
            line: Vec::with_capacity(512),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one line, in one `write`.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, event).map_err(io::Error::other)?;
        self.line.push(b'\n');
        // A regular file accepts the whole buffer in one write; write_all only loops on the
        // (theoretical) short write.
        self.file.write_all(&self.line)?;
        self.file.flush()
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
