//! The loop's clocks and running sums: how often it reports, samples the GPUs and checkpoints,
//! the window of steps a `step` event summarises, and the run's time over all its processes.

use std::time::{Duration, Instant};

/// A console progress line at most this often (events are written every `log_every` steps).
pub const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);
/// A `gpu` event at most this often: NVML queries cost about a millisecond per device.
pub const GPU_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// A clock that is due once per period.
#[derive(Debug, Clone)]
pub struct Every {
    period: Duration,
    last: Option<Instant>,
}

impl Every {
    /// Due first one period from now.
    pub fn from_now(period: Duration) -> Every {
        Every {
            period,
            last: Some(Instant::now()),
        }
    }

    /// Due at once, then once per period.
    pub fn due_at_once(period: Duration) -> Every {
        Every { period, last: None }
    }

    pub fn is_due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= self.period)
    }

    /// Starts a new period now (the thing it times was just done).
    pub fn restart(&mut self) {
        self.last = Some(Instant::now());
    }

    /// Whether it is due; if so a new period starts.
    pub fn tick(&mut self) -> bool {
        let due = self.is_due();
        if due {
            self.restart();
        }
        due
    }
}

/// The timed checkpoints of `checkpoint.every_minutes`, between the end-of-epoch ones.
#[derive(Debug, Clone)]
pub struct CheckpointTimer(Option<Every>);

impl CheckpointTimer {
    pub fn new(every_minutes: Option<f64>) -> CheckpointTimer {
        CheckpointTimer(every_minutes.map(|m| Every::from_now(Duration::from_secs_f64(m * 60.0))))
    }

    /// Whether a timed checkpoint is due (never without `every_minutes`).
    pub fn is_due(&self) -> bool {
        self.0.as_ref().is_some_and(Every::is_due)
    }

    /// A checkpoint was just written (timed or at the end of an epoch).
    pub fn written(&mut self) {
        if let Some(every) = &mut self.0 {
            every.restart();
        }
    }
}

/// The steps since the last `step` event: their mean loss, accuracy and throughput.
#[derive(Debug, Clone)]
pub struct MetricsWindow {
    loss_sum: f64,
    correct: u64,
    seen: u64,
    start: Instant,
    /// Multi-node jobs: per rank, the images and the compute seconds of its steps, and the
    /// seconds this process spent in the steps' all-reduces.
    ranks: Vec<(u64, f64)>,
    all_reduce_s: f64,
    steps: u64,
}

impl Default for MetricsWindow {
    fn default() -> Self {
        MetricsWindow {
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            start: Instant::now(),
            ranks: Vec::new(),
            all_reduce_s: 0.0,
            steps: 0,
        }
    }
}

impl MetricsWindow {
    pub fn add(&mut self, loss_sum: f64, correct: u64, images: u64) {
        self.loss_sum += loss_sum;
        self.correct += correct;
        self.seen += images;
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }

    /// Training top-1 in percent.
    pub fn top1(&self) -> f64 {
        100.0 * self.correct as f64 / self.seen.max(1) as f64
    }

    pub fn images_per_s(&self) -> f64 {
        self.seen as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// A multi-node step: each rank's images and compute seconds, and this process's
    /// all-reduce seconds.
    pub fn add_ranks(&mut self, ranks: impl IntoIterator<Item = (u64, f64)>, all_reduce_s: f64) {
        for (i, (images, secs)) in ranks.into_iter().enumerate() {
            if self.ranks.len() <= i {
                self.ranks.push((0, 0.0));
            }
            self.ranks[i].0 += images;
            self.ranks[i].1 += secs;
        }
        self.all_reduce_s += all_reduce_s;
        self.steps += 1;
    }

    /// Each rank's own throughput (its images over its compute time), when multi-node.
    pub fn rank_images_per_s(&self) -> Option<Vec<f64>> {
        (!self.ranks.is_empty()).then(|| {
            self.ranks
                .iter()
                .map(|&(n, s)| n as f64 / s.max(1e-9))
                .collect()
        })
    }

    /// Mean milliseconds per step spent in the all-reduce, when multi-node.
    pub fn all_reduce_ms(&self) -> Option<f64> {
        (self.steps > 0).then(|| 1e3 * self.all_reduce_s / self.steps as f64)
    }

    /// Empties the window; its clock starts again.
    pub fn restart(&mut self) {
        *self = MetricsWindow::default();
    }
}

/// This process's share of the run: its start, the training time of earlier processes (from
/// the checkpoint it resumed), and the steps it has taken.
#[derive(Debug, Clone)]
pub struct ProcessClock {
    start: Instant,
    before: f64,
    pub steps: u64,
}

impl ProcessClock {
    pub fn start(elapsed_before: f64) -> ProcessClock {
        ProcessClock {
            start: Instant::now(),
            before: elapsed_before,
            steps: 0,
        }
    }

    /// Seconds of this process.
    pub fn process_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Seconds of training over all processes of the run.
    pub fn run_s(&self) -> f64 {
        self.before + self.process_s()
    }

    /// Seconds until `remaining` more steps at this process's rate.
    pub fn eta_s(&self, remaining: f64) -> f64 {
        let rate = self.steps as f64 / self.process_s().max(1e-9);
        remaining / rate.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_is_due_once_per_period() {
        let mut at_once = Every::due_at_once(Duration::from_secs(3600));
        assert!(at_once.tick(), "due at once");
        assert!(!at_once.tick(), "then not before its period");
        let later = Every::from_now(Duration::from_secs(3600));
        assert!(!later.is_due());
        let mut zero = Every::from_now(Duration::ZERO);
        assert!(zero.tick() && zero.tick(), "a zero period is always due");
    }

    #[test]
    fn checkpoint_timer_without_minutes_is_never_due() {
        assert!(!CheckpointTimer::new(None).is_due());
        assert!(CheckpointTimer::new(Some(0.0)).is_due());
        assert!(!CheckpointTimer::new(Some(60.0)).is_due());
    }

    #[test]
    fn metrics_window_means_by_hand() {
        let mut w = MetricsWindow::default();
        w.add(6.0, 3, 4);
        w.add(2.0, 1, 4);
        assert_eq!(w.mean_loss(), 1.0);
        assert_eq!(w.top1(), 50.0);
        w.restart();
        assert_eq!(
            (w.mean_loss(), w.top1()),
            (0.0, 0.0),
            "an empty window reads 0"
        );
    }

    #[test]
    fn eta_at_the_process_rate() {
        let mut clock = ProcessClock::start(100.0);
        assert!(clock.run_s() >= 100.0);
        clock.steps = 0;
        assert!(clock.eta_s(10.0) > 1e6, "no step yet: no useful rate");
    }
}
