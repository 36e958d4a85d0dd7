//! Throughput of the input pipelines, per worker thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::image::decode_rgb;
use super::resize::resize;
use super::rng::sample_rng;
use super::spec::Augment;
use super::transform::{Normalization, Pipeline};

/// One measured pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct BenchFigure {
    pub name: String,
    pub threads: usize,
    pub images: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// CPU seconds the worker threads used (all threads together).
    pub cpu_seconds: f64,
    /// Images per wall-clock second over all threads.
    pub images_per_sec: f64,
    /// Images per CPU second of one worker thread: the throughput of one core that is not
    /// shared with other work (robust to other processes on a busy machine).
    pub per_thread: f64,
}

/// CPU time used by the calling thread, in seconds (wall time where unavailable).
pub fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

impl std::fmt::Display for BenchFigure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<50} {:>9.1} images/s per thread (per CPU-second; {} thread(s): {:.1} images/s \
             wall, {} images in {:.2} s, {:.2} CPU s)",
            self.name,
            self.per_thread,
            self.threads,
            self.images_per_sec,
            self.images,
            self.seconds,
            self.cpu_seconds
        )
    }
}

/// Runs `work(thread, i)` on `threads` threads for `seconds`, counting calls and the
/// threads' CPU time.
fn measure(
    name: &str,
    threads: usize,
    seconds: f64,
    work: Arc<dyn Fn(usize, u64) -> Result<()> + Send + Sync>,
) -> Result<BenchFigure> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, count, work) = (stop.clone(), count.clone(), work.clone());
            std::thread::spawn(move || -> Result<f64> {
                let c0 = thread_cpu_seconds();
                let mut i = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    work(t, i)?;
                    count.fetch_add(1, Ordering::Relaxed);
                    i += threads as u64;
                }
                Ok(thread_cpu_seconds() - c0)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut cpu = 0.0;
    for h in handles {
        cpu += h
            .join()
            .map_err(|_| anyhow::anyhow!("bench thread panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let images = count.load(Ordering::Relaxed);
    Ok(BenchFigure {
        name: name.to_string(),
        threads,
        images,
        seconds: secs,
        cpu_seconds: cpu,
        images_per_sec: images as f64 / secs,
        per_thread: images as f64 / cpu.max(1e-9),
    })
}

/// Measures, on the JPEG/PNG files of `samples_dir` (e.g. `shared/data/imagenet-samples`):
/// - CIFAR train: 32x32 records (the photos resized to 32x32 once, held in memory as CIFAR
///   holds them) through RandomCrop(32, pad 4) + flip + normalize;
/// - ImageNet train @224: read + decode + RandomResizedCrop + flip + RandAugment + normalize;
/// - ImageNet val @224: read + decode + Resize(224) + CenterCrop(224) + normalize.
///
/// Each for `seconds`, on `threads` threads; `per_thread` is images per CPU-second of a
/// worker thread, so a busy machine does not distort it.
pub fn bench_pipelines(
    samples_dir: &Path,
    threads: usize,
    seconds: f64,
) -> Result<Vec<BenchFigure>> {
    let threads = threads.max(1);
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples_dir)
        .with_context(|| format!("cannot read benchmark folder {}", samples_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .jpg/.png images in {}", samples_dir.display());
    }
    let files = Arc::new(files);
    let mut out = Vec::new();

    // CIFAR train on 32x32 images.
    let small: Vec<image::RgbImage> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let img =
                decode_rgb(&bytes).with_context(|| format!("cannot decode {}", f.display()))?;
            Ok(resize(&img, 32, 32))
        })
        .collect::<Result<_>>()?;
    let small = Arc::new(small);
    let cifar = Arc::new(Pipeline::new(
        Augment::CifarStandard,
        32,
        Normalization::CIFAR100,
        true,
    ));
    let work: Arc<dyn Fn(usize, u64) -> Result<()> + Send + Sync> = {
        let (small, cifar) = (small.clone(), cifar.clone());
        Arc::new(move |_t, i| {
            let mut buf = [0f32; 3 * 32 * 32];
            let img = &small[(i as usize) % small.len()];
            cifar.apply(img, &mut sample_rng(0, 0, i), &mut buf);
            std::hint::black_box(&buf);
            Ok(())
        })
    };
    out.push(measure(
        "cifar train (crop pad 4 + flip + normalize) 32",
        threads,
        seconds,
        work,
    )?);

    {
        let files = files.clone();
        let work: Arc<dyn Fn(usize, u64) -> Result<()> + Send + Sync> = Arc::new(move |_t, i| {
            let f = &files[(i as usize) % files.len()];
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let img =
                decode_rgb(&bytes).with_context(|| format!("cannot decode {}", f.display()))?;
            std::hint::black_box(&img);
            Ok(())
        });
        out.push(measure(
            "read + decode only (reference)",
            threads,
            seconds,
            work,
        )?);
    }

    for (name, augment, train) in [
        (
            "imagenet train (decode+RRC+flip+raug15+norm) 224",
            Augment::ImagenetRaug15,
            true,
        ),
        (
            "imagenet val (decode+resize+centercrop+norm) 224",
            Augment::None,
            false,
        ),
    ] {
        let p = Arc::new(Pipeline::new(augment, 224, Normalization::IMAGENET, train));
        let files = files.clone();
        let work: Arc<dyn Fn(usize, u64) -> Result<()> + Send + Sync> = Arc::new(move |_t, i| {
            let f = &files[(i as usize) % files.len()];
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let img =
                decode_rgb(&bytes).with_context(|| format!("cannot decode {}", f.display()))?;
            let mut buf = vec![0f32; p.out_len()];
            p.apply(&img, &mut sample_rng(0, 0, i), &mut buf);
            std::hint::black_box(&buf);
            Ok(())
        });
        out.push(measure(name, threads, seconds, work)?);
    }
    Ok(out)
}
