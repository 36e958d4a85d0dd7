//! The dashboard: watch, compare, start, stop and resume runs, from run directories only.
//!
//! Structure (after gitui and bottom):
//! - [`store`]: the data ([`store::Store`]) and its [`store::Collector`], which polls the run
//!   directories (incremental tails of `events.jsonl`, run locks), NVML and the profiles on its
//!   own thread;
//! - [`app`]: the state and what input and data do to it, one [`app::AppEvent`] enum in;
//! - [`ui`]: drawing, on any ratatui backend (tests use `TestBackend`);
//! - [`keymap`]: the one table behind key handling, the hint bar and the help overlay;
//! - [`control`]: spawning detached runs / probes, stopping with SIGINT;
//! - [`run_app`]: the event loop, generic over the backend; [`run_dashboard`] wires it to the
//!   real terminal, restores the terminal on every exit (panic and signals included).
//!
//! The dashboard never trains and never imports training code.

pub mod app;
pub mod control;
pub mod format;
pub mod keymap;
pub mod pages;
pub mod runs_table;
pub mod scales;
pub mod series;
pub mod store;
mod terminal;
pub mod ui;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, MissedTickBehavior};

pub use app::{App, AppConfig, AppEvent, View};
pub use store::{Collector, GpuSource, Store};

/// The minimum time between two redraws (at most 10 per second).
pub const MIN_FRAME: Duration = Duration::from_millis(100);

/// How the lead's `main` opens the dashboard.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// Where run directories live (`checkpoints/`).
    pub runs_dir: PathBuf,
    /// Where run profiles (`*.ron`) and scales profiles (`scales/*.ron`) live.
    pub profiles_dir: PathBuf,
    /// How often run directories are polled for new events.
    pub refresh: Duration,
    /// Capture the mouse (click tabs and runs, scroll). Off by default: capturing the mouse
    /// disables the terminal's own text selection.
    pub mouse: bool,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            runs_dir: PathBuf::from("checkpoints"),
            profiles_dir: PathBuf::from("profiles"),
            refresh: Duration::from_millis(500),
            mouse: false,
        }
    }
}

/// Opens the dashboard on the terminal and runs it until the user quits. Runs started from it
/// keep running afterwards.
pub fn run_dashboard(opts: DashboardOptions) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the dashboard needs a terminal; for a headless run use `repopt-tui --profile FILE.ron`"
        );
    }
    let store = Arc::new(Mutex::new(Store::new(&opts.runs_dir, &opts.profiles_dir)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let wake = spawn_collector(&opts, store.clone(), tx.clone());
    let launcher = control::Launcher::from_env(&opts.runs_dir)
        .context("cannot find the repopt-tui executable to spawn runs")?;
    let mut app = App::new(
        store,
        AppConfig {
            mouse: opts.mouse,
            launcher: Some(launcher),
        },
    );
    app.wake = Some(wake);
    app.events_tx = Some(tx.clone());
    app.clipboard = Some(Box::new(osc52_copy));
    terminal::spawn_signal_thread(tx.clone());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .context("cannot start the event loop")?;
    let mut guard = terminal::TerminalGuard::enter(opts.mouse)?;
    let result = rt.block_on(async {
        tokio::spawn(terminal::input_task(tx));
        run_app(guard.terminal(), &mut app, &mut rx).await
    });
    guard.restore();
    // The collector thread and reapers are detached; runs keep going.
    rt.shutdown_background();
    result
}

/// Puts `text` on the terminal's clipboard with OSC 52 (works over SSH and in tmux with
/// `set-clipboard on`; terminals that do not support it ignore the sequence).
fn osc52_copy(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    write!(out, "\x1b]52;c;{}\x07", base64(text.as_bytes()))?;
    out.flush()
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Starts the collector thread; the returned sender wakes it for an immediate poll.
pub fn spawn_collector(
    opts: &DashboardOptions,
    store: Arc<Mutex<Store>>,
    tx: tokio::sync::mpsc::UnboundedSender<AppEvent>,
) -> std::sync::mpsc::Sender<()> {
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let runs_dir = opts.runs_dir.clone();
    let profiles_dir = opts.profiles_dir.clone();
    let refresh = opts.refresh;
    std::thread::Builder::new()
        .name("repopt-collector".into())
        .spawn(move || {
            let mut c = Collector::new(&runs_dir, &profiles_dir, GpuSource::Nvml(Box::default()));
            loop {
                let polled =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.poll(&store)));
                match polled {
                    Ok(true) if tx.send(AppEvent::Data).is_err() => return,
                    Ok(_) => {}
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into());
                        let _ = tx.send(AppEvent::CollectorFailed(msg));
                        return;
                    }
                }
                let wait = if c.more_pending {
                    Duration::ZERO
                } else {
                    refresh
                };
                match wake_rx.recv_timeout(wait) {
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .expect("cannot start the collector thread");
    wake_tx
}

/// The event loop: draws, then sleeps until an event (input, new data, the one-second clock)
/// arrives; redraws only when something changed, at most every [`MIN_FRAME`]. Returns when the
/// app quits or the event channel closes. Generic over the backend, so tests drive it on
/// `TestBackend`.
pub async fn run_app<B>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    rx: &mut UnboundedReceiver<AppEvent>,
) -> anyhow::Result<()>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
{
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_frame = Instant::now();
    loop {
        if app.quit {
            return Ok(());
        }
        let now = Instant::now();
        if app.dirty && now >= next_frame {
            terminal.draw(|f| ui::render(app, f))?;
            app.dirty = false;
            app.drawn_at = Some(std::time::Instant::now());
            next_frame = now + MIN_FRAME;
        }
        let frame_due = app.dirty;
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => app.handle(ev),
                None => return Ok(()),
            },
            _ = clock.tick() => app.handle(AppEvent::Clock),
            _ = tokio::time::sleep_until(next_frame), if frame_due => {}
        }
    }
}

#[cfg(test)]
mod tests {
    /// RFC 4648 section 10 test vectors.
    #[test]
    fn base64_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), enc);
        }
    }
}
