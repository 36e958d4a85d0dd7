//! Runs of the real binary in tests: start it, read what the run wrote.

use std::path::Path;
use std::process::{Command, Output};

use repopt_tui::rundir::events::{Event, EventBody};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_repopt-tui"))
}

/// Runs the binary to its end; on failure prints the arguments and both outputs.
pub fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("binary runs");
    if !out.status.success() {
        eprintln!(
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Every line of a run's events.jsonl (none when there is no file), each of which must be a
/// valid event.
pub fn events(dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid line {l:?}: {e}")))
        .collect()
}

/// (global iteration, loss) of every step event of a run.
pub fn step_losses(dir: &Path) -> Vec<(u64, f64)> {
    events(dir)
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Step(s) => Some((s.global_iter, s.loss)),
            _ => None,
        })
        .collect()
}

/// The final weights of a run (`model.safetensors`), by name.
pub fn final_weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, tensors) = repopt_tui::interop::safetensors::from_bytes(&bytes).unwrap();
    tensors
        .into_iter()
        .map(|(n, d)| (n, d.to_vec::<f32>().unwrap()))
        .collect()
}
