//! The parallel loader: worker threads decode and augment whole batches, a bounded prefetch
//! queue, in-order delivery, per-epoch seeded shuffle, `drop_last`, sharding by rank and exact
//! resume at (epoch, iteration).
//!
//! Determinism: the order of epoch e is `rng::epoch_order(n, seed, e)`, the same on every
//! rank; global batch k is `order[k*w*b .. (k+1)*w*b]` and rank r takes its r-th slice of `b`.
//! Sample i of epoch e is augmented with `rng::sample_rng(seed, e, i)`. So a batch depends
//! only on (seed, epoch, iteration, rank, world size) — not on the worker count, the prefetch
//! depth or where the epoch was (re)started.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow, bail};
use crossbeam_channel::{Receiver, bounded};
use serde::{Deserialize, Serialize};

use super::Source;
use super::rng::{epoch_order, sample_rng};
use super::transform::Pipeline;

/// How a loader batches, shuffles and shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Images per batch on this rank.
    pub batch_size: usize,
    pub shuffle: bool,
    /// Drop the last incomplete global batch (training).
    pub drop_last: bool,
    pub seed: u64,
    /// Worker threads (0 = decode on the calling thread when the iterator is polled).
    pub workers: usize,
    /// Batches decoded ahead of the consumer (at least 1 per worker).
    pub prefetch: usize,
    pub rank: usize,
    pub world_size: usize,
}

impl LoaderConfig {
    /// Training defaults: shuffle, drop_last, 2 batches of prefetch per worker, one rank.
    pub fn train(batch_size: usize, seed: u64, workers: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed,
            workers,
            prefetch: 2 * workers.max(1),
            rank: 0,
            world_size: 1,
        }
    }
    /// Evaluation defaults: in order, keep the last batch.
    pub fn eval(batch_size: usize, workers: usize) -> Self {
        LoaderConfig {
            shuffle: false,
            drop_last: false,
            ..LoaderConfig::train(batch_size, 0, workers)
        }
    }
}

/// A position a checkpoint can store: the next batch is iteration `iter` of `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LoaderPosition {
    pub epoch: u64,
    pub iter: u64,
}

/// One batch: normalized NCHW images and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    /// [N, 3, H, W]
    pub shape: [usize; 4],
    /// Iteration of the epoch this batch is.
    pub iter: u64,
    /// The data set indices of the images, in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.shape[0]
    }
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// The batch as burn tensors on `device`: images [N, 3, H, W] float, labels [N] int.
    pub fn to_tensors<B: burn::tensor::backend::Backend>(
        &self,
        device: &B::Device,
    ) -> (
        burn::tensor::Tensor<B, 4>,
        burn::tensor::Tensor<B, 1, burn::tensor::Int>,
    ) {
        use burn::tensor::{Int, Tensor, TensorData};
        let images =
            Tensor::<B, 4>::from_data(TensorData::new(self.images.clone(), self.shape), device);
        let labels = Tensor::<B, 1, Int>::from_data(
            TensorData::new(self.labels.clone(), [self.labels.len()]),
            device,
        );
        (images, labels)
    }

    /// Like [`Batch::to_tensors`], consuming the batch (no copy of the host buffers).
    pub fn into_tensors<B: burn::tensor::backend::Backend>(
        self,
        device: &B::Device,
    ) -> (
        burn::tensor::Tensor<B, 4>,
        burn::tensor::Tensor<B, 1, burn::tensor::Int>,
    ) {
        use burn::tensor::{Int, Tensor, TensorData};
        let n = self.labels.len();
        let images = Tensor::<B, 4>::from_data(TensorData::new(self.images, self.shape), device);
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(self.labels, [n]), device);
        (images, labels)
    }
}

/// Sample indices of each of this rank's batches in one epoch.
struct EpochPlan {
    order: Vec<u32>,
    /// (start, end) in `order` for each iteration of this rank.
    ranges: Vec<(usize, usize)>,
}

/// Batches of a source through a pipeline.
pub struct Loader {
    source: Arc<dyn Source>,
    pipeline: Arc<Pipeline>,
    cfg: LoaderConfig,
}

impl Loader {
    pub fn new(source: Arc<dyn Source>, pipeline: Pipeline, cfg: LoaderConfig) -> Self {
        Loader {
            source,
            pipeline: Arc::new(pipeline),
            cfg,
        }
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    fn check(&self) -> Result<()> {
        let c = &self.cfg;
        if c.batch_size == 0 {
            bail!("loader: batch_size must be at least 1");
        }
        if c.world_size == 0 || c.rank >= c.world_size {
            bail!(
                "loader: rank {} is not below world_size {}",
                c.rank,
                c.world_size
            );
        }
        Ok(())
    }

    /// Iterations per epoch for this rank (the same for every rank).
    pub fn iters_per_epoch(&self) -> u64 {
        let n = self.source.len();
        let global = self.cfg.batch_size.max(1) * self.cfg.world_size.max(1);
        if self.cfg.drop_last {
            (n / global) as u64
        } else {
            n.div_ceil(global) as u64
        }
    }

    fn plan(&self, epoch: u64) -> EpochPlan {
        let n = self.source.len();
        let order = epoch_order(n, self.cfg.seed, epoch, self.cfg.shuffle);
        let (b, w, r) = (self.cfg.batch_size, self.cfg.world_size, self.cfg.rank);
        let global = b * w;
        let iters = self.iters_per_epoch() as usize;
        let mut ranges = Vec::with_capacity(iters);
        for k in 0..iters {
            let g0 = k * global;
            let m = (n - g0).min(global);
            if m == global {
                ranges.push((g0 + r * b, g0 + (r + 1) * b));
            } else {
                // Last, incomplete global batch (drop_last false): split it evenly.
                ranges.push((g0 + r * m / w, g0 + (r + 1) * m / w));
            }
        }
        EpochPlan { order, ranges }
    }

    /// The data set indices of iteration `iter` of `epoch` on this rank.
    pub fn batch_indices(&self, epoch: u64, iter: u64) -> Vec<usize> {
        let plan = self.plan(epoch);
        plan.ranges
            .get(iter as usize)
            .map(|&(s, e)| plan.order[s..e].iter().map(|&i| i as usize).collect())
            .unwrap_or_default()
    }

    /// Batches of `epoch` from iteration `start_iter` on (exact resume). Workers start at once
    /// and stop when the iterator is dropped.
    pub fn epoch(&self, epoch: u64, start_iter: u64) -> EpochIter {
        if let Err(e) = self.check() {
            return EpochIter::failed(e);
        }
        let plan = Arc::new(self.plan(epoch));
        let iters = plan.ranges.len() as u64;
        let start = start_iter.min(iters);
        let ctx = Arc::new(BatchContext {
            source: self.source.clone(),
            pipeline: self.pipeline.clone(),
            plan,
            seed: self.cfg.seed,
            epoch,
            stop: AtomicBool::new(false),
        });
        let workers = self.cfg.workers;
        if workers == 0 {
            return EpochIter {
                ctx: Some(ctx),
                first: start,
                next: start,
                end: iters,
                receivers: Vec::new(),
                handles: Vec::new(),
                error: None,
            };
        }
        let per_worker = self.cfg.prefetch.div_ceil(workers).max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded::<Result<Batch>>(per_worker);
            receivers.push(rx);
            let wctx = ctx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("data-worker-{w}"))
                .spawn(move || {
                    let mut k = start + w as u64;
                    while k < iters {
                        if wctx.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let batch = wctx.make_batch(k);
                        if tx.send(batch).is_err() {
                            return;
                        }
                        k += workers as u64;
                    }
                });
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    ctx.stop.store(true, Ordering::Relaxed);
                    return EpochIter::failed(anyhow!("loader: cannot start worker thread: {e}"));
                }
            }
        }
        EpochIter {
            ctx: Some(ctx),
            first: start,
            next: start,
            end: iters,
            receivers,
            handles,
            error: None,
        }
    }
}

struct BatchContext {
    source: Arc<dyn Source>,
    pipeline: Arc<Pipeline>,
    plan: Arc<EpochPlan>,
    seed: u64,
    epoch: u64,
    stop: AtomicBool,
}

impl BatchContext {
    fn make_batch(&self, k: u64) -> Result<Batch> {
        let (s, e) = self.plan.ranges[k as usize];
        let indices: Vec<usize> = self.plan.order[s..e].iter().map(|&i| i as usize).collect();
        let p = &self.pipeline;
        let per = p.out_len();
        let mut images = vec![0f32; per * indices.len()];
        let mut labels = Vec::with_capacity(indices.len());
        for (slot, &i) in indices.iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                bail!("loader stopped");
            }
            let (img, label) = self.source.get(i).map_err(|err| {
                err.context(format!(
                    "loading {} (epoch {}, iteration {k})",
                    self.source.name(i),
                    self.epoch
                ))
            })?;
            let mut rng = sample_rng(self.seed, self.epoch, i as u64);
            p.apply(&img, &mut rng, &mut images[slot * per..(slot + 1) * per]);
            labels.push(label as i64);
        }
        Ok(Batch {
            images,
            labels,
            shape: [indices.len(), 3, p.size, p.size],
            iter: k,
            indices,
        })
    }
}

/// The batches of one epoch, in order. Dropping it stops the workers.
pub struct EpochIter {
    ctx: Option<Arc<BatchContext>>,
    first: u64,
    next: u64,
    end: u64,
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    error: Option<anyhow::Error>,
}

impl EpochIter {
    fn failed(e: anyhow::Error) -> Self {
        EpochIter {
            ctx: None,
            first: 0,
            next: 0,
            end: 0,
            receivers: Vec::new(),
            handles: Vec::new(),
            error: Some(e),
        }
    }

    /// The position of the next batch (what a checkpoint stores).
    pub fn position(&self) -> LoaderPosition {
        LoaderPosition {
            epoch: self.ctx.as_ref().map(|c| c.epoch).unwrap_or(0),
            iter: self.next,
        }
    }

    /// Batches left in this epoch.
    pub fn remaining(&self) -> u64 {
        self.end - self.next
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        if self.next >= self.end {
            return None;
        }
        let ctx = self.ctx.as_ref()?;
        let k = self.next;
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(ctx.make_batch(k));
        }
        // Batch k was made by worker (k - start) % workers; workers walk their batches in
        // order, so this receiver's next message is batch k.
        let idx = ((k - self.first) % self.receivers.len() as u64) as usize;
        match self.receivers[idx].recv() {
            Ok(b) => Some(b),
            Err(_) => Some(Err(anyhow!(
                "loader worker {idx} stopped before delivering iteration {k} (it panicked?)"
            ))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) as usize + usize::from(self.error.is_some());
        (n, Some(n))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        if let Some(ctx) = &self.ctx {
            ctx.stop.store(true, Ordering::Relaxed);
        }
        // Dropping the receivers makes blocked senders fail at once.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
