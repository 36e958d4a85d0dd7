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
    pub seconds: f64,
    /// Images per second over all threads.
    pub images_per_sec: f64,
    /// Images per second per worker thread.
    pub per_thread: f64,
}

impl std::fmt::Display for BenchFigure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<46} {:>8.1} images/s per thread ({} threads: {:.1} images/s, {} images in {:.2} s)",
            self.name,
            self.per_thread,
            self.threads,
            self.images_per_sec,
            self.images,
            self.seconds
        )
    }
}

/// Runs `work(thread, i)` on `threads` threads for `seconds`, counting calls.
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
            std::thread::spawn(move || -> Result<()> {
                let mut i = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    work(t, i)?;
                    count.fetch_add(1, Ordering::Relaxed);
                    i += threads as u64;
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("bench thread panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let images = count.load(Ordering::Relaxed);
    let ips = images as f64 / secs;
    Ok(BenchFigure {
        name: name.to_string(),
        threads,
        images,
        seconds: secs,
        images_per_sec: ips,
        per_thread: ips / threads as f64,
    })
}

/// Measures, on the JPEG/PNG files of `samples_dir` (e.g. `shared/data/imagenet-samples`):
/// - CIFAR train: 32x32 records (the photos resized to 32x32 once, held in memory as CIFAR
///   holds them) through RandomCrop(32, pad 4) + flip + normalize;
/// - ImageNet train @224: read + decode + RandomResizedCrop + flip + RandAugment + normalize;
/// - ImageNet val @224: read + decode + Resize(224) + CenterCrop(224) + normalize.
///
/// Each for `seconds`, on `threads` threads; figures are images/s per thread.
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
