//! The events reader and writer: partial last lines, garbage, incremental offsets, truncation,
//! a million events.

use std::io::Write;
use std::time::Instant;

use crate::common::*;
use repopt_tui::rundir::events::{Event, EventBody, Failed};
use repopt_tui::rundir::{EventReader, EventWriter, read_all};

fn line(e: &Event) -> String {
    serde_json::to_string(e).unwrap() + "\n"
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn partial_last_line_is_held_until_its_newline_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let a = ev(1.0, step(0, 0, 10, 2.5, 0.1, 100.0));
    let b = ev(2.0, step(0, 1, 10, 2.4, 0.1, 100.0));
    let lb = line(&b);
    let (head, tail) = lb.split_at(17);
    append(&path, line(&a).as_bytes());
    append(&path, head.as_bytes());

    let mut r = EventReader::new(&path);
    let batch = r.read_new().unwrap();
    assert_eq!(batch.events, vec![a.clone()]);
    assert_eq!(r.pending_bytes(), head.len());
    assert_eq!(r.skipped(), 0, "a partial line is not garbage");

    // Nothing new: nothing read.
    let batch = r.read_new().unwrap();
    assert!(batch.events.is_empty() && batch.bytes == 0);

    append(&path, tail.as_bytes());
    let batch = r.read_new().unwrap();
    assert_eq!(batch.events, vec![b]);
    assert_eq!(r.pending_bytes(), 0);
    assert_eq!(r.offset(), std::fs::metadata(&path).unwrap().len());
}

#[test]
fn garbage_lines_are_skipped_and_reported_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let a = ev(1.0, step(0, 0, 10, 2.5, 0.1, 100.0));
    let text = format!(
        "{}not json at all\n\n{{\"t\": 3, \"kind\": \"from_the_future\"}}\n{{\"t\": 4, \"kind\": \"step\"\n{}",
        line(&a),
        line(&a)
    );
    append(&path, text.as_bytes());
    let (events, r) = read_all(&path).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(r.skipped(), 3);
    let lines: Vec<u64> = r.first_skips().iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![2, 4, 5]);
    assert!(r.first_skips()[1].error.contains("from_the_future"));
}

#[test]
fn truncated_or_replaced_file_restarts_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let a = ev(1.0, step(0, 0, 10, 2.5, 0.1, 100.0));
    append(&path, line(&a).repeat(3).as_bytes());
    let mut r = EventReader::new(&path);
    assert_eq!(r.read_new().unwrap().events.len(), 3);

    std::fs::write(&path, line(&a)).unwrap();
    let batch = r.read_new().unwrap();
    assert!(batch.reset);
    assert_eq!(batch.events.len(), 1);

    // Replaced by another file (another inode) of larger size.
    let other = dir.path().join("new.jsonl");
    std::fs::write(&other, line(&a).repeat(5)).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let batch = r.read_new().unwrap();
    assert!(batch.reset);
    assert_eq!(batch.events.len(), 5);

    // Removed: reset, nothing read, no error.
    std::fs::remove_file(&path).unwrap();
    let batch = r.read_new().unwrap();
    assert!(batch.reset && batch.events.is_empty());
}

#[test]
fn chunked_reads_resume_at_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut w = EventWriter::open_path(&path).unwrap();
    for i in 0..1000u64 {
        w.write(&ev(i as f64, step(0, i, 1000, 1.0, 0.1, 1.0)))
            .unwrap();
    }
    let mut r = EventReader::new(&path);
    let mut n = 0;
    let mut calls = 0;
    loop {
        let b = r.read_chunk(10_000).unwrap();
        assert!(b.bytes <= 10_000);
        n += b.events.len();
        calls += 1;
        if !b.more {
            break;
        }
    }
    assert_eq!(n, 1000);
    assert!(calls > 5);
}

#[test]
fn writer_appends_whole_lines_and_heals_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // A previous writer died mid-line.
    append(&path, b"{\"t\": 1.0, \"kind\": \"st");
    let mut w = EventWriter::open(dir.path()).unwrap();
    let failed = EventBody::Failed(Failed {
        message: "boom".into(),
    });
    w.emit(failed.clone()).unwrap();
    w.sync().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    // The torn line (an event never completely written) is cut off: every line is valid.
    assert_eq!(text.lines().count(), 1);
    let (events, r) = read_all(&path).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body, failed);
    assert_eq!(r.skipped(), 0);
}

/// A run killed after a short write (half a line on disk) and resumed: the new writer cuts the
/// half line off instead of gluing the next event onto it.
#[test]
fn a_resumed_writer_cuts_off_half_a_line_left_by_a_short_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut w = EventWriter::open_path(&path).unwrap();
    let ev = |m: &str| {
        EventBody::Failed(Failed {
            message: m.to_string(),
        })
    };
    w.emit(ev("first")).unwrap();
    drop(w);
    append(&path, b"{\"t\": 2.0, \"kind\": \"fai");
    let mut w = EventWriter::open_path(&path).unwrap();
    w.emit(ev("second")).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        serde_json::from_str::<repopt_tui::rundir::events::Event>(line)
            .unwrap_or_else(|e| panic!("invalid line {line:?}: {e}"));
    }
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn concurrent_writer_and_reader_never_see_torn_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let p = path.clone();
    let writer = std::thread::spawn(move || {
        let mut w = EventWriter::open_path(&p).unwrap();
        for i in 0..20_000u64 {
            w.write(&ev(i as f64, step(0, i, 20_000, 1.0, 0.1, 1.0)))
                .unwrap();
        }
    });
    let mut r = EventReader::new(&path);
    let mut n = 0;
    while !writer.is_finished() {
        n += r.read_new().unwrap().events.len();
    }
    writer.join().unwrap();
    n += r.read_new().unwrap().events.len();
    assert_eq!(n, 20_000);
    assert_eq!(r.skipped(), 0);
}

/// A million step events: read once (bounded time), then an append costs only its own bytes.
#[test]
fn million_events_are_read_once_then_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut text = String::with_capacity(200 << 20);
    for i in 0..1_000_000u64 {
        // Formatted by hand (the derived serializer is slow in a debug build).
        text.push_str(&format!(
            "{{\"t\":{},\"kind\":\"step\",\"epoch\":{},\"iter\":{},\"global_iter\":{i},\"loss\":2.0,\"lr\":0.1,\"images_per_s\":1234.5}}\n",
            1.0e9 + i as f64,
            i / 5000,
            i % 5000
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let size = text.len() as u64;
    drop(text);

    let mut r = EventReader::new(&path);
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        let b = r.read_chunk(8 << 20).unwrap();
        n += b.events.len();
        if !b.more {
            break;
        }
    }
    let first = t0.elapsed();
    assert_eq!(n, 1_000_000);
    assert_eq!(r.offset(), size);
    eprintln!("1M events ({} MB) read in {first:?}", size >> 20);

    append(
        &path,
        line(&ev(2.0e9, step(200, 0, 5000, 1.0, 0.1, 1.0))).as_bytes(),
    );
    let t1 = Instant::now();
    let b = r.read_new().unwrap();
    let second = t1.elapsed();
    assert_eq!(b.events.len(), 1);
    assert!(
        b.bytes < 300,
        "only the new line is read, not {} bytes",
        b.bytes
    );
    // How long it took is printed, not asserted (a shared machine's timing is no condition);
    // what makes it incremental is asserted above: only the new line's bytes were read.
    eprintln!("incremental read of one line: {second:?}");
}
