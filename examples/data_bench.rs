//! Input-pipeline throughput per worker thread:
//! `cargo run --release --example data_bench -- [SAMPLES_DIR] [THREADS] [SECONDS]`
//! (default: the shared `imagenet-samples`, 1 thread, 3 s).

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => repopt_tui::data::shared_data_dir()
            .ok_or_else(|| anyhow::anyhow!("no shared data folder; pass SAMPLES_DIR"))?
            .join("imagenet-samples"),
    };
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    println!("samples: {}", dir.display());
    for f in repopt_tui::data::bench_pipelines(&dir, threads, seconds)? {
        println!("{f}");
    }
    Ok(())
}
