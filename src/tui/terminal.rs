//! The real terminal: raw mode + alternate screen, restored on every exit path (normal return,
//! error, panic on the UI thread, SIGTERM/SIGHUP/SIGINT/SIGQUIT); input as an async stream.

use std::io::{Stdout, stdout};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

use crossterm::cursor::{Hide, Show};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc::UnboundedSender;

use super::app::AppEvent;

/// The thread that owns the terminal (panics elsewhere must not restore it under the UI).
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();
/// Whether the terminal is in dashboard mode (so restoring twice is harmless and cheap).
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(stdout(), DisableMouseCapture, LeaveAlternateScreen, Show);
    }
}

fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if UI_THREAD.get() == Some(&std::thread::current().id()) {
                restore_terminal();
                previous(info);
            } else if !ACTIVE.load(Ordering::SeqCst) {
                previous(info);
            }
            // A panic on another thread while the dashboard is up: not printed over the screen
            // (the thread reports it to the UI, see `spawn_collector`).
        }));
    });
}

/// Owns the terminal while the dashboard runs; restores it when dropped.
pub(crate) struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub(crate) fn enter(mouse: bool) -> anyhow::Result<Self> {
        let _ = UI_THREAD.set(std::thread::current().id());
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = || -> std::io::Result<Terminal<CrosstermBackend<Stdout>>> {
            execute!(stdout(), EnterAlternateScreen, Hide)?;
            if mouse {
                execute!(stdout(), EnableMouseCapture)?;
            }
            let mut t = Terminal::new(CrosstermBackend::new(stdout()))?;
            t.clear()?;
            Ok(t)
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e.into())
            }
        }
    }

    pub(crate) fn terminal(&mut self) -> &mut Terminal<CrosstermBackend<Stdout>> {
        &mut self.terminal
    }

    pub(crate) fn restore(&mut self) {
        restore_terminal();
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Forwards terminal input to the app; quits when the input ends.
pub(crate) async fn input_task(tx: UnboundedSender<AppEvent>) {
    let mut stream = EventStream::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => {
                if tx.send(AppEvent::Input(ev)).is_err() {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    let _ = tx.send(AppEvent::Quit);
}

/// SIGTERM, SIGHUP (the SSH connection dropped), SIGINT and SIGQUIT quit the dashboard cleanly.
pub(crate) fn spawn_signal_thread(tx: UnboundedSender<AppEvent>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT, SIGQUIT])
    else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("repopt-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = tx.send(AppEvent::Quit);
            }
        });
}
