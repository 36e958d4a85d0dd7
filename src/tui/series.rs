//! Per-run time series for the charts, folded from events, plus the two operations every chart
//! needs on them: EMA smoothing and min/max decimation to the screen's resolution.

use std::collections::VecDeque;

use crate::rundir::events::{CheckpointEvent, Eval, Event, EventBody, GpuSample, ScalesEvent};
use crate::rundir::events::{ProbeResult, Started};

/// GPU samples kept per run (the newest).
const GPU_KEEP: usize = 600;

/// One `step` event, compactly (a million of them is ~40 MB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPoint {
    pub t: f64,
    /// Fractional epoch (epoch + iter / iters_per_epoch): the x axis of every chart.
    pub x: f64,
    pub global_iter: u64,
    pub loss: f32,
    pub lr: f32,
    pub images_per_s: f32,
    /// Training top-1 if the run measured it, else NaN.
    pub top1: f32,
}

/// The metrics of a step point a chart can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Loss,
    Lr,
    ImagesPerS,
    TrainTop1,
}

impl StepPoint {
    pub fn get(&self, m: Metric) -> f64 {
        match m {
            Metric::Loss => self.loss as f64,
            Metric::Lr => self.lr as f64,
            Metric::ImagesPerS => self.images_per_s as f64,
            Metric::TrainTop1 => self.top1 as f64,
        }
    }
}

/// Everything a run's views draw, besides its summary.
#[derive(Debug, Clone, Default)]
pub struct RunSeries {
    pub steps: Vec<StepPoint>,
    pub evals: Vec<(f64, Eval)>,
    pub scales: Vec<ScalesEvent>,
    pub checkpoints: Vec<(f64, CheckpointEvent)>,
    pub probes: Vec<(f64, ProbeResult)>,
    pub gpu: VecDeque<(f64, GpuSample)>,
    pub starts: Vec<(f64, Started)>,
    pub iters_per_epoch: u64,
    /// Bumped whenever earlier points are removed (file reset, resume rewinding the timeline), so
    /// caches built on the series know to start over.
    pub generation: u64,
}

impl RunSeries {
    pub fn clear(&mut self) {
        let generation = self.generation + 1;
        *self = RunSeries {
            generation,
            ..Default::default()
        };
    }

    pub fn apply(&mut self, e: &Event) {
        match &e.body {
            EventBody::Started(s) => {
                self.iters_per_epoch = s.iters_per_epoch;
                self.starts.push((e.t, s.clone()));
            }
            EventBody::Step(s) => {
                // A resumed run repeats iterations after its checkpoint: the timeline continues
                // from there, the abandoned points go.
                if self
                    .steps
                    .last()
                    .is_some_and(|last| last.global_iter >= s.global_iter)
                {
                    let keep = self
                        .steps
                        .partition_point(|p| p.global_iter < s.global_iter);
                    self.steps.truncate(keep);
                    self.generation += 1;
                }
                let ipe = self.iters_per_epoch;
                let x = if ipe > 0 {
                    s.global_iter as f64 / ipe as f64
                } else {
                    s.epoch as f64
                };
                self.steps.push(StepPoint {
                    t: e.t,
                    x,
                    global_iter: s.global_iter,
                    loss: s.loss as f32,
                    lr: s.lr as f32,
                    images_per_s: s.images_per_s as f32,
                    top1: s.top1.map_or(f32::NAN, |v| v as f32),
                });
            }
            EventBody::Eval(v) => {
                let keep = self.evals.partition_point(|(_, p)| p.epoch < v.epoch);
                self.evals.truncate(keep);
                self.evals.push((e.t, v.clone()));
            }
            EventBody::Scales(s) => {
                let keep = self.scales.partition_point(|p| p.epoch < s.epoch);
                self.scales.truncate(keep);
                self.scales.push(s.clone());
            }
            EventBody::Checkpoint(c) => self.checkpoints.push((e.t, c.clone())),
            EventBody::Probe(p) => self.probes.push((e.t, p.clone())),
            EventBody::Gpu(g) => {
                if self.gpu.len() == GPU_KEEP {
                    self.gpu.pop_front();
                }
                self.gpu.push_back((e.t, g.clone()));
            }
            EventBody::Finished(_)
            | EventBody::Quantize(_)
            | EventBody::Stopped(_)
            | EventBody::Failed(_)
            | EventBody::CheckpointFailed(_) => {}
        }
    }

    /// The x range covered by steps and evals.
    pub fn x_range(&self) -> Option<(f64, f64)> {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        if let (Some(a), Some(b)) = (self.steps.first(), self.steps.last()) {
            lo = lo.min(a.x);
            hi = hi.max(b.x);
        }
        for (_, e) in &self.evals {
            lo = lo.min(eval_x(e));
            hi = hi.max(eval_x(e));
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Estimated seconds left, from the pace of the last steps (when the run gives no `eta_s`).
    pub fn estimate_eta(&self, epochs: u32) -> Option<f64> {
        let n = self.steps.len();
        if n < 2 || self.iters_per_epoch == 0 {
            return None;
        }
        // The pace of the current process only (a resume leaves a gap in time).
        let since = self.starts.last().map_or(f64::NEG_INFINITY, |(t, _)| *t);
        let first = self.steps.partition_point(|p| p.t < since);
        let a = &self.steps[n.saturating_sub(20).max(first.min(n - 1))];
        let b = &self.steps[n - 1];
        let dt = b.t - a.t;
        let di = b.global_iter.saturating_sub(a.global_iter) as f64;
        if dt <= 0.0 || di <= 0.0 {
            return None;
        }
        let total = epochs as u64 * self.iters_per_epoch;
        let left = total.saturating_sub(b.global_iter + 1) as f64;
        Some(left * dt / di)
    }
}

/// An eval of epoch `e` happens at the end of that epoch: x = e + 1.
pub fn eval_x(e: &Eval) -> f64 {
    e.epoch as f64 + 1.0
}

/// Debiased exponential moving average (as TensorBoard's smoothing slider), kept incrementally:
/// appending points costs only the new points.
#[derive(Debug, Clone, Default)]
pub struct Ema {
    weight: f64,
    generation: u64,
    last: f64,
    count: i32,
    pub values: Vec<f32>,
}

impl Ema {
    /// Brings the smoothed values up to date with `source` (NaN inputs repeat the previous value).
    pub fn update(
        &mut self,
        weight: f64,
        generation: u64,
        source: impl ExactSizeIterator<Item = f64>,
    ) {
        let len = source.len();
        if weight != self.weight || generation != self.generation || len < self.values.len() {
            *self = Ema {
                weight,
                generation,
                ..Default::default()
            };
        }
        let skip = self.values.len();
        self.values.reserve(len - skip);
        for v in source.skip(skip) {
            if v.is_finite() {
                self.last = self.last * weight + (1.0 - weight) * v;
                self.count += 1;
            }
            let out = if self.count == 0 {
                f64::NAN
            } else {
                let debias = 1.0 - weight.powi(self.count);
                if debias > 0.0 { self.last / debias } else { v }
            };
            self.values.push(out as f32);
        }
    }
}

/// Points per block of a [`MinMaxIndex`].
const BLOCK: usize = 64;

/// Minimum and maximum (with their indices) of each block of [`BLOCK`] consecutive points of a
/// series, kept up to date as points are appended, so decimating a window of a million points
/// reads a few thousand values instead of all of them.
#[derive(Debug, Clone, Default)]
pub struct MinMaxIndex {
    generation: u64,
    /// Points covered by complete blocks.
    covered: usize,
    /// (min index, max index) per complete block; None for an all-NaN block.
    blocks: Vec<Option<(usize, usize)>>,
}

impl MinMaxIndex {
    /// Extends the index to the first `n` points (rebuilds after a new generation or a shrink).
    pub fn update(&mut self, generation: u64, n: usize, y_of: impl Fn(usize) -> f64) {
        if generation != self.generation || n < self.covered {
            *self = MinMaxIndex {
                generation,
                ..Default::default()
            };
        }
        while self.covered + BLOCK <= n {
            let lo = self.covered;
            self.blocks.push(scan(lo, lo + BLOCK, &y_of));
            self.covered += BLOCK;
        }
    }

    /// (min index, max index) over points `lo..hi`, using whole blocks where it can.
    fn range(&self, lo: usize, hi: usize, y_of: &impl Fn(usize) -> f64) -> Option<(usize, usize)> {
        let b_lo = lo.div_ceil(BLOCK);
        let b_hi = (hi / BLOCK).min(self.blocks.len());
        if b_lo >= b_hi {
            return scan(lo, hi, y_of);
        }
        let mut acc = scan(lo, b_lo * BLOCK, y_of);
        for b in &self.blocks[b_lo..b_hi] {
            acc = merge(acc, *b, y_of);
        }
        merge(acc, scan(b_hi * BLOCK, hi, y_of), y_of)
    }
}

fn scan(lo: usize, hi: usize, y_of: &impl Fn(usize) -> f64) -> Option<(usize, usize)> {
    let mut acc: Option<(usize, usize, f64, f64)> = None;
    for i in lo..hi {
        let y = y_of(i);
        if !y.is_finite() {
            continue;
        }
        acc = Some(match acc {
            None => (i, i, y, y),
            Some((a, b, mn, mx)) => {
                let (a, mn) = if y < mn { (i, y) } else { (a, mn) };
                let (b, mx) = if y > mx { (i, y) } else { (b, mx) };
                (a, b, mn, mx)
            }
        });
    }
    acc.map(|(a, b, _, _)| (a, b))
}

fn merge(
    a: Option<(usize, usize)>,
    b: Option<(usize, usize)>,
    y_of: &impl Fn(usize) -> f64,
) -> Option<(usize, usize)> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some((amin, amax)), Some((bmin, bmax))) => Some((
            if y_of(bmin) < y_of(amin) { bmin } else { amin },
            if y_of(bmax) > y_of(amax) { bmax } else { amax },
        )),
    }
}

/// Reduces the points of `[x0, x1]` to at most two per bucket (`buckets` = the chart's width in
/// columns): each bucket keeps its minimum and its maximum, in x order, so spikes stay visible.
/// `xs` must be sorted. The nearest point outside each end is kept, so lines reach the edges.
/// Non-finite y values are dropped. With an up-to-date `index` of `y_of`, the cost depends on
/// the number of buckets, not on the number of points.
pub fn decimate(
    n: usize,
    x_of: impl Fn(usize) -> f64,
    y_of: impl Fn(usize) -> f64,
    x0: f64,
    x1: f64,
    buckets: usize,
) -> Vec<(f64, f64)> {
    decimate_indexed(n, x_of, y_of, x0, x1, buckets, None)
}

/// [`decimate`] with a [`MinMaxIndex`] of `y_of`.
pub fn decimate_indexed(
    n: usize,
    x_of: impl Fn(usize) -> f64,
    y_of: impl Fn(usize) -> f64,
    x0: f64,
    x1: f64,
    buckets: usize,
    index: Option<&MinMaxIndex>,
) -> Vec<(f64, f64)> {
    if n == 0 {
        return Vec::new();
    }
    // Binary search on the sorted xs.
    let first_in = partition(n, |i| x_of(i) < x0);
    let end_in = partition(n, |i| x_of(i) <= x1);
    let start = first_in.saturating_sub(1);
    let end = (end_in + 1).min(n);
    let mut out = Vec::new();
    let push = |i: usize, out: &mut Vec<(f64, f64)>| {
        let y = y_of(i);
        if y.is_finite() {
            out.push((x_of(i), y));
        }
    };
    let buckets = buckets.max(1);
    if end - start <= 2 * buckets + 2 || x1 <= x0 {
        for i in start..end {
            push(i, &mut out);
        }
        return out;
    }
    if start < first_in {
        push(start, &mut out);
    }
    let width = (x1 - x0) / buckets as f64;
    let mut lo = first_in;
    for b in 0..buckets {
        let hi = if b + 1 == buckets {
            end_in
        } else {
            let edge = x0 + width * (b + 1) as f64;
            lo + partition(end_in - lo, |k| x_of(lo + k) < edge)
        };
        if hi > lo {
            let mm = match index {
                Some(ix) => ix.range(lo, hi, &y_of),
                None => scan(lo, hi, &y_of),
            };
            match mm {
                Some((a, b)) if a == b => push(a, &mut out),
                Some((a, b)) => {
                    push(a.min(b), &mut out);
                    push(a.max(b), &mut out);
                }
                None => {}
            }
        }
        lo = hi;
    }
    if end_in < end {
        push(end_in, &mut out);
    }
    out
}

/// The first index in 0..n for which `pred` is false (pred true on a prefix).
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_spikes_and_bounds_the_count() {
        let n = 1_000_000;
        let ys: Vec<f64> = (0..n)
            .map(|i| if i == 123_457 { 100.0 } else { (i % 7) as f64 })
            .collect();
        let out = decimate(n, |i| i as f64, |i| ys[i], 0.0, (n - 1) as f64, 100);
        assert!(out.len() <= 2 * 100 + 2, "{}", out.len());
        assert!(out.iter().any(|&(_, y)| y == 100.0), "spike lost");
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0), "x order");
        // The block index gives the same points.
        let mut ix = MinMaxIndex::default();
        ix.update(0, n, |i| ys[i]);
        let fast = decimate_indexed(
            n,
            |i| i as f64,
            |i| ys[i],
            0.0,
            (n - 1) as f64,
            100,
            Some(&ix),
        );
        assert_eq!(fast, out);
        let a = decimate(n, |i| i as f64, |i| ys[i], 1234.5, 800_000.0, 77);
        let b = decimate_indexed(n, |i| i as f64, |i| ys[i], 1234.5, 800_000.0, 77, Some(&ix));
        assert_eq!(a, b);
        // A window keeps its neighbours outside.
        let out = decimate(n, |i| i as f64, |i| ys[i], 10.0, 20.0, 100);
        assert_eq!(out.first().unwrap().0, 9.0);
        assert_eq!(out.last().unwrap().0, 21.0);
    }

    #[test]
    fn ema_is_debiased_and_incremental() {
        let mut e = Ema::default();
        e.update(0.9, 0, [2.0, 2.0].into_iter());
        assert!((e.values[0] - 2.0).abs() < 1e-6, "first value unbiased");
        assert!((e.values[1] - 2.0).abs() < 1e-6);
        let mut full = Ema::default();
        let data: Vec<f64> = (0..100).map(|i| (i % 10) as f64).collect();
        full.update(0.6, 0, data.iter().copied());
        let mut inc = Ema::default();
        inc.update(0.6, 0, data[..40].iter().copied());
        inc.update(0.6, 0, data.iter().copied());
        assert_eq!(full.values, inc.values);
        inc.update(0.6, 1, data.iter().copied());
        assert_eq!(full.values, inc.values, "a new generation recomputes");
    }
}
