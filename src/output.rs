//! Best-effort terminal output. `println!` panics when stdout is a closed pipe (`| head -2`,
//! EPIPE) or a terminal that went away (SSH dropped, EIO); a run, an evaluation or a probe must
//! never die of that. [`outln!`](crate::outln) and [`errln!`](crate::errln) write a line and
//! ignore errors; after the first failed write to a stream, that stream is left alone (its
//! reader is gone), and the work goes on.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// A compact duration for people (console lines and the dashboard): `45s`, `3m05s`, `1h02m`, `2d03h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".into();
    }
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

fn write_to(gone: &AtomicBool, w: &mut dyn Write, args: fmt::Arguments) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if w.write_fmt(args).and_then(|_| w.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

/// Writes to stdout, ignoring errors (see the module docs).
pub fn out(args: fmt::Arguments) {
    write_to(&STDOUT_GONE, &mut std::io::stdout().lock(), args);
}

/// Writes to stderr, ignoring errors (see the module docs).
pub fn err(args: fmt::Arguments) {
    write_to(&STDERR_GONE, &mut std::io::stderr().lock(), args);
}

/// A memory size for people: GiB from 1 GiB up, MiB below (probe results, memory budgets,
/// reports).
pub fn bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// `1 run`, `2 runs`, `0 runs`: a count with its noun, for the console and the dashboard alike.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The median of some figures (the mean of the middle two for an even count); None when there
/// are none. A run's typical images/s in reports, a benchmark's ratio over rounds.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Whether a write to stdout has failed (its reader is gone).
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// `println!` that never panics: output errors end output, not work.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::out(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::err(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([]), None);
    }

    struct Broken(usize);
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.0 += 1;
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_marks_the_stream_gone_and_later_writes_are_skipped() {
        let gone = AtomicBool::new(false);
        let mut w = Broken(0);
        write_to(&gone, &mut w, format_args!("a line\n"));
        assert!(gone.load(Ordering::Relaxed));
        let tries = w.0;
        write_to(&gone, &mut w, format_args!("another\n"));
        assert_eq!(w.0, tries, "no write after the stream is gone");
    }
}
