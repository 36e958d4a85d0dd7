//! A pseudo-terminal for the dashboard's end-to-end tests and measurements: the child runs on
//! the slave side, its screen is parsed by the `vt100` crate, cursor-position queries are
//! answered as a terminal would.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COLS: u16 = 110;
pub const ROWS: u16 = 32;

/// A child process on the slave side of a pseudo-terminal, its screen parsed by vt100.
pub struct Pty {
    pub master: std::fs::File,
    pub child: Child,
    pub parser: Arc<Mutex<vt100::Parser>>,
    pub raw: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    pub fn spawn(mut cmd: Command) -> Pty {
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
        // SAFETY: as above, the slave descriptor is fresh and ours.
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

    pub fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Rows `from..to` of the screen.
    pub fn rows(&self, from: u16, to: u16) -> String {
        let p = self.parser.lock().unwrap();
        p.screen()
            .rows(0, COLS)
            .skip(from as usize)
            .take((to - from) as usize)
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
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

    pub fn wait_text(&self, text: &str, timeout: Duration) -> String {
        self.wait_for(&format!("{text:?}"), timeout, |s| s.contains(text))
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dashboard as a command (default refresh): the real binary, watching `runs`, listing
/// `profiles`, spawning runs with `runner`.
pub fn dashboard_command(runs: &Path, profiles: &Path, runner: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repopt-tui"));
    cmd.arg("dashboard")
        .arg("--runs-dir")
        .arg(runs)
        .arg("--profiles-dir")
        .arg(profiles)
        .env("REPOPT_TUI_EXE", runner)
        .env("TERM", "xterm-256color");
    cmd
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
