//! A run's time series folded from its events: steps (on a fractional-epoch axis), evals, scales,
//! checkpoints, probes, GPU samples. A resumed run's repeated iterations replace the abandoned
//! ones, so every reader (the dashboard's charts, `report`) sees one timeline.

use std::collections::VecDeque;

use super::events::{CheckpointEvent, Eval, Event, EventBody, GpuSample, ScalesEvent};
use super::events::{ProbeResult, Started};

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
