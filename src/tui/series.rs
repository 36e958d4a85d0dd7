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
            EventBody::Finished(_) | EventBody::Stopped(_) | EventBody::Failed(_) => {}
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

/// Reduces the points of `[x0, x1]` to at most two per bucket (`buckets` = the chart's width in
/// columns): each bucket keeps its minimum and its maximum, in x order, so spikes stay visible.
/// `xs` must be sorted. The nearest point outside each end is kept, so lines reach the edges.
/// Non-finite y values are dropped.
pub fn decimate(
    n: usize,
    x_of: impl Fn(usize) -> f64,
    y_of: impl Fn(usize) -> f64,
    x0: f64,
    x1: f64,
    buckets: usize,
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
    let mut i = first_in;
    while i < end_in {
        let b = (((x_of(i) - x0) / width) as usize).min(buckets - 1);
        let mut lo: Option<(usize, f64)> = None;
        let mut hi: Option<(usize, f64)> = None;
        while i < end_in && (((x_of(i) - x0) / width) as usize).min(buckets - 1) == b {
            let y = y_of(i);
            if y.is_finite() {
                if lo.is_none_or(|(_, v)| y < v) {
                    lo = Some((i, y));
                }
                if hi.is_none_or(|(_, v)| y > v) {
                    hi = Some((i, y));
                }
            }
            i += 1;
        }
        match (lo, hi) {
            (Some(a), Some(b)) if a.0 == b.0 => push(a.0, &mut out),
            (Some(a), Some(b)) => {
                let (p, q) = if a.0 < b.0 { (a.0, b.0) } else { (b.0, a.0) };
                push(p, &mut out);
                push(q, &mut out);
            }
            _ => {}
        }
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
