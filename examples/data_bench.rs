//! Input-pipeline throughput per worker thread (what `repopt-tui bench data` prints):
//! `cargo run --release --example data_bench -- [SAMPLES_DIR] [THREADS] [SECONDS]`
//! (default: the shared `imagenet-samples`, 1 thread, 3 s).

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .filter(|d| !d.is_empty() && d != "-")
        .map(std::path::PathBuf::from);
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    print!(
        "{}",
        repopt_tui::data::data_bench_command(dir.as_deref(), threads, seconds)?
    );
    Ok(())
}
