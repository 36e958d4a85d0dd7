//! A tolerant, incremental reader of `events.jsonl`.
//!
//! - Incremental: it remembers the byte offset it has consumed, so a file of a million events is
//!   read once and afterwards only the bytes appended since the last call.
//! - Partial last line: bytes after the last `\n` are kept aside (the writer may be mid-write) and
//!   parsed once their newline arrives.
//! - Garbage: a line that is not a valid event (truncated by a crash, an unknown `kind` from a newer
//!   writer, stray text) is skipped and counted; the first few are remembered with their line number.
//! - Truncation or replacement of the file (smaller than the offset, or another inode) restarts
//!   the read from the beginning and says so ([`ReadBatch::reset`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::events::Event;

/// How many skipped lines are remembered in detail.
const MAX_REMEMBERED_SKIPS: usize = 8;
/// Read size per system call.
const BUF_SIZE: usize = 1 << 20;

/// A line that could not be parsed as an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedLine {
    /// 1-based line number in the file.
    pub line: u64,
    pub error: String,
}

/// What one call to [`EventReader::read_chunk`] produced.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub events: Vec<Event>,
    /// The file was truncated or replaced: everything read before is void, the events start over.
    pub reset: bool,
    /// More bytes were available than the chunk allowed; call again.
    pub more: bool,
    /// Bytes consumed by this call.
    pub bytes: u64,
}

/// Tails one `events.jsonl`.
#[derive(Debug)]
pub struct EventReader {
    path: PathBuf,
    /// Bytes of the file consumed so far (complete lines plus `partial`).
    offset: u64,
    /// Bytes after the last newline, waiting for the rest of their line.
    partial: Vec<u8>,
    /// Lines seen so far (complete ones).
    lines: u64,
    skipped: u64,
    first_skips: Vec<SkippedLine>,
    /// (device, inode) of the file when it was first opened, to notice a replacement.
    identity: Option<(u64, u64)>,
    buf: Vec<u8>,
}

impl EventReader {
    /// A reader for the given `events.jsonl` path (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EventReader {
            path: path.into(),
            offset: 0,
            partial: Vec::new(),
            lines: 0,
            skipped: 0,
            first_skips: Vec::new(),
            identity: None,
            buf: Vec::new(),
        }
    }

    /// A reader for `<run_dir>/events.jsonl`.
    pub fn for_run(run_dir: &Path) -> Self {
        Self::new(run_dir.join(super::EVENTS_FILE))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes consumed so far, including a pending partial line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Complete lines seen so far (parsed or skipped; blank lines included).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Lines skipped because they were not valid events.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The first few skipped lines with the parse error.
    pub fn first_skips(&self) -> &[SkippedLine] {
        &self.first_skips
    }

    /// Bytes of an unterminated last line held back until its newline arrives.
    pub fn pending_bytes(&self) -> usize {
        self.partial.len()
    }

    /// Reads everything appended since the last call.
    pub fn read_new(&mut self) -> io::Result<ReadBatch> {
        self.read_chunk(u64::MAX)
    }

    /// Reads at most about `max_bytes` of new data (whole lines are completed past the limit only
    /// through the pending partial line). A missing file is no error: it yields nothing.
    pub fn read_chunk(&mut self, max_bytes: u64) -> io::Result<ReadBatch> {
        let mut batch = ReadBatch::default();
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.offset > 0 {
                    self.restart();
                    batch.reset = true;
                }
                return Ok(batch);
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let identity = file_identity(&meta);
        let len = meta.len();
        if self.identity.is_some_and(|id| id != identity) || len < self.offset {
            self.restart();
            batch.reset = true;
        }
        self.identity = Some(identity);
        if len == self.offset {
            return Ok(batch);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let want = (len - self.offset).min(max_bytes);
        let mut remaining = want;
        if self.buf.len() < BUF_SIZE {
            self.buf.resize(BUF_SIZE, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        while remaining > 0 {
            let n = (remaining as usize).min(buf.len());
            let got = file.read(&mut buf[..n])?;
            if got == 0 {
                break;
            }
            remaining -= got as u64;
            self.offset += got as u64;
            batch.bytes += got as u64;
            self.consume(&buf[..got], &mut batch.events);
        }
        self.buf = buf;
        batch.more = self.offset < len;
        Ok(batch)
    }

    fn restart(&mut self) {
        self.offset = 0;
        self.partial.clear();
        self.lines = 0;
        self.skipped = 0;
        self.first_skips.clear();
        self.identity = None;
    }

    fn consume(&mut self, mut data: &[u8], out: &mut Vec<Event>) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = data.split_at(nl);
            data = &rest[1..];
            if self.partial.is_empty() {
                self.parse_line(head, out);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.parse_line(&line, out);
            }
        }
        self.partial.extend_from_slice(data);
    }

    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Event>) {
        self.lines += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => out.push(e),
            Err(err) => {
                self.skipped += 1;
                if self.first_skips.len() < MAX_REMEMBERED_SKIPS {
                    self.first_skips.push(SkippedLine {
                        line: self.lines,
                        error: err.to_string(),
                    });
                }
            }
        }
    }
}

#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Reads a whole `events.jsonl` once: the valid events and the reader (for its skip counts).
pub fn read_all(path: &Path) -> io::Result<(Vec<Event>, EventReader)> {
    let mut reader = EventReader::new(path);
    let batch = reader.read_new()?;
    Ok((batch.events, reader))
}

/// The lines in the last `max_bytes` of a text file (a live tail: the line cut by the start of
/// the window is left out; the last line may still be being written). Invalid UTF-8 is replaced.
pub fn tail_lines(path: &Path, max_bytes: u64) -> io::Result<Vec<String>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.take(len - start).read_to_end(&mut buf)?;
    let mut text = &buf[..];
    if start > 0 {
        // The first line is cut: start after its end.
        match text.iter().position(|&b| b == b'\n') {
            Some(i) => text = &text[i + 1..],
            None => return Ok(Vec::new()),
        }
    }
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let n = lines.len();
    Ok(lines
        .into_iter()
        .enumerate()
        .filter(|(i, l)| !(l.is_empty() && *i + 1 == n))
        .map(|(_, l)| {
            String::from_utf8_lossy(l)
                .trim_end_matches('\r')
                .to_string()
        })
        .collect())
}

#[cfg(test)]
mod tail_tests {
    use super::tail_lines;

    #[test]
    fn tail_drops_the_cut_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "first line\nsecond\nthird\n").unwrap();
        assert_eq!(
            tail_lines(&p, 100).unwrap(),
            vec!["first line", "second", "third"]
        );
        // The last 13 bytes are "econd\nthird\n": the cut "econd" goes.
        assert_eq!(tail_lines(&p, 13).unwrap(), vec!["third"]);
        std::fs::write(&p, "a\nb").unwrap();
        assert_eq!(tail_lines(&p, 100).unwrap(), vec!["a", "b"]);
    }
}
