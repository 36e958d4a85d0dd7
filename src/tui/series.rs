//! Per-run time series for the charts (folded from events in `rundir::series`), plus the two
//! operations every chart needs on them: EMA smoothing and min/max decimation to the screen's
//! resolution.

pub use crate::rundir::series::{Metric, RunSeries, StepPoint, eval_x};

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
