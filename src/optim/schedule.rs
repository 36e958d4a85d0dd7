//! Learning-rate schedule with the official semantics (timm's `CosineLRScheduler` with
//! `t_in_epochs=False`, updated with `step_update(epoch * iters + idx)` after each step).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate, already linearly scaled by total batch / 256.
    pub base_lr: f64,
    /// Warm-up length in iterations (linear from `warmup_lr`).
    pub warmup_iters: u64,
    pub warmup_lr: f64,
    /// Cosine length in iterations (absolute: counted from iteration 0, warm-up included).
    pub total_iters: u64,
    pub min_lr: f64,
}

impl LrSchedule {
    /// timm's `_get_lr(t)`: linear warm-up for t < warmup, then cosine over absolute t.
    pub fn value_at(&self, t: u64) -> f64 {
        if t < self.warmup_iters {
            let slope = (self.base_lr - self.warmup_lr) / self.warmup_iters as f64;
            return self.warmup_lr + t as f64 * slope;
        }
        if t >= self.total_iters {
            return self.min_lr;
        }
        let progress = t as f64 / self.total_iters as f64;
        self.min_lr
            + 0.5 * (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The rate used by global iteration `g` (0-based). The official loop sets the rate for the
    /// next iteration after each step (`step_update(g)`), and the scheduler starts at t = 0, so
    /// iterations 0 and 1 both use value_at(0) and iteration g ≥ 1 uses value_at(g - 1).
    pub fn lr_for_iteration(&self, g: u64) -> f64 {
        self.value_at(g.saturating_sub(1))
    }
}

/// The official linear scaling rule: lr × total batch / 256.
pub fn scaled_lr(lr: f64, total_batch: usize) -> f64 {
    lr * total_batch as f64 / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_by_hand() {
        let s = LrSchedule {
            base_lr: 0.1,
            warmup_iters: 10,
            warmup_lr: 0.0,
            total_iters: 110,
            min_lr: 0.0,
        };
        assert_eq!(s.lr_for_iteration(0), 0.0);
        assert_eq!(s.lr_for_iteration(1), 0.0);
        assert!((s.lr_for_iteration(6) - 0.05).abs() < 1e-12);
        // t = 10 is the first cosine value: 0.05 * (1 + cos(pi * 10 / 110))
        let expected = 0.05 * (1.0 + (std::f64::consts::PI * 10.0 / 110.0).cos());
        assert!((s.lr_for_iteration(11) - expected).abs() < 1e-12);
        // halfway through the absolute iterations the cosine is at half the peak
        assert!((s.value_at(55) - 0.05).abs() < 1e-12);
        assert_eq!(s.value_at(110), 0.0);
        assert_eq!(scaled_lr(0.1, 8 * 32), 0.1);
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = LrSchedule {
            base_lr: 0.1,
            warmup_iters: 0,
            warmup_lr: 0.0,
            total_iters: 100,
            min_lr: 0.0,
        };
        assert_eq!(s.lr_for_iteration(0), 0.1);
    }
}
