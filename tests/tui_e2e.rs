//! End to end, in a pseudo-terminal: start the dashboard, start a run from it, watch its curve
//! move, stop it (with the confirmation), see it recorded as stopped, quit, terminal restored.
//!
//! The screen is read with the `vt100` crate; no tmux or other system package is needed.
//!
//! The dashboard runs in a child process: this test binary re-executed on the ignored test
//! `dashboard_child`, which calls `run_dashboard` (until `src/main.rs` opens the dashboard; then
//! [`dashboard_command`] can run `env!("CARGO_BIN_EXE_repopt-tui")` with its flags instead).
//! Runs are spawned through `REPOPT_TUI_EXE`: the fake runner `tests/fixtures/fake_runner.sh`
//! by default; [`runner_and_profile`] is the one place to switch to the real binary and the CPU
//! demo profile `profiles/demo-hs.ron` once training exists.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const COLS: u16 = 110;
const ROWS: u16 = 32;

/// A child process on the slave side of a pseudo-terminal, its screen parsed by vt100.
struct Pty {
    master: std::fs::File,
    child: Child,
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(mut cmd: Command) -> Pty {
        let mut master_fd: libc::c_int = -1;
        let mut slave_fd: libc::c_int = -1;
        let ws = libc::winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: out-pointers to valid ints; name and termios may be null.
        let r = unsafe {
            libc::openpty(
                &mut master_fd,
                &mut slave_fd,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors we now own.
        let master = unsafe { OwnedFd::from_raw_fd(master_fd) };
        let slave = unsafe { OwnedFd::from_raw_fd(slave_fd) };
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; stdin is the pty slave by now.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd); // close our copies of the slave
        let master = std::fs::File::from(master);
        let parser = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let mut answer = master.try_clone().unwrap();
        let (p, r) = (parser.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let chunk = &buf[..n];
                        let mut parser = p.lock().unwrap();
                        parser.process(chunk);
                        // Answer cursor position queries (DSR) as a terminal would.
                        if find(chunk, b"\x1b[6n").is_some() {
                            let (row, col) = parser.screen().cursor_position();
                            let _ = write!(answer, "\x1b[{};{}R", row + 1, col + 1);
                        }
                        r.lock().unwrap().extend_from_slice(chunk);
                    }
                }
            }
        });
        Pty {
            master,
            child,
            parser,
            raw,
        }
    }

    fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Rows `from..to` of the screen.
    fn rows(&self, from: u16, to: u16) -> String {
        let p = self.parser.lock().unwrap();
        p.screen()
            .rows(0, COLS)
            .skip(from as usize)
            .take((to - from) as usize)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_text(&self, text: &str, timeout: Duration) -> String {
        self.wait_for(&format!("{text:?}"), timeout, |s| s.contains(text))
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The program runs are spawned with, and the profile the test starts.
fn runner_and_profile(tmp: &Path) -> (PathBuf, PathBuf) {
    let runner = tmp.join("fake_runner.sh");
    std::fs::copy(fixtures_dir().join("fake_runner.sh"), &runner).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let profiles = tmp.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let profile = profiles.join("demo-hs.ron");
    std::fs::copy(fixture_profiles().join("demo-hs.ron"), &profile).unwrap();
    (runner, profiles)
}

/// The dashboard as a command.
fn dashboard_command(runs: &Path, profiles: &Path, runner: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "dashboard_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("REPOPT_E2E_CHILD", "1")
    .env("REPOPT_E2E_RUNS", runs)
    .env("REPOPT_E2E_PROFILES", profiles)
    .env("REPOPT_TUI_EXE", runner)
    .env("TERM", "xterm-256color");
    cmd
}

/// Not a test by itself: the dashboard process of `dashboard_starts_watches_and_stops_a_run`.
#[test]
#[ignore = "run by the end-to-end test inside a pseudo-terminal"]
fn dashboard_child() {
    if std::env::var_os("REPOPT_E2E_CHILD").is_none() {
        return;
    }
    let opts = repopt_tui::tui::DashboardOptions {
        runs_dir: std::env::var_os("REPOPT_E2E_RUNS").unwrap().into(),
        profiles_dir: std::env::var_os("REPOPT_E2E_PROFILES").unwrap().into(),
        refresh: Duration::from_millis(200),
        mouse: false,
    };
    if let Err(e) = repopt_tui::tui::run_dashboard(opts) {
        eprintln!("dashboard failed: {e:#}");
        std::process::exit(1);
    }
}

fn events_of(runs: &Path) -> Vec<String> {
    let Some(dir) = std::fs::read_dir(runs)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
    else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.path().join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn dashboard_starts_watches_and_stops_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("checkpoints");
    let (runner, profiles) = runner_and_profile(tmp.path());
    let t = Duration::from_secs(20);
    let mut pty = Pty::spawn(dashboard_command(&runs, &profiles, &runner));

    pty.wait_text("No runs in", t);
    pty.send("n");
    pty.wait_text("Start a run from a profile", t);
    pty.wait_text("demo-hs", t);
    pty.send("\r");
    let s = pty.wait_text("● running", t);
    assert!(s.contains("demo-hs-"), "{s}");

    // The charts: the loss curve grows as steps arrive.
    pty.send("2");
    pty.wait_text("train (EMA)", t);
    let before = pty.rows(3, 18);
    let n_before = events_of(&runs).len();
    std::thread::sleep(Duration::from_millis(1500));
    let moved = pty.wait_for("the loss chart to change", t, |_| pty.rows(3, 18) != before);
    assert!(events_of(&runs).len() > n_before, "no new events");
    assert!(moved.contains("Loss"));

    // Stop, with the confirmation.
    pty.send("1");
    pty.wait_text("Runs (1)", t);
    pty.send("s");
    pty.wait_text("Stop run?", t);
    pty.send("y");
    let s = pty.wait_text("■ stopped", t);
    assert!(s.contains("stopped by SIGINT"), "{s}");
    let events = events_of(&runs);
    assert!(
        events.last().unwrap().contains("\"kind\":\"stopped\""),
        "{:?}",
        events.last()
    );
    assert!(events.iter().any(|e| e.contains("\"kind\":\"checkpoint\"")));

    // Quit: the process ends and leaves the alternate screen.
    pty.send("q");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = pty.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < t, "the dashboard did not quit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let raw = pty.raw.lock().unwrap().clone();
    let enter = find(&raw, b"\x1b[?1049h").expect("entered the alternate screen");
    let leave = find(&raw, b"\x1b[?1049l").expect("left the alternate screen");
    assert!(leave > enter);
    assert!(
        find(&raw[leave..], b"\x1b[?25h").is_some(),
        "cursor shown again"
    );
    let _ = pty.master.as_raw_fd();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
