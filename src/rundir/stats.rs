//! Building the statistics carried by `scales` events from a raw per-channel vector.

use serde::Serialize;

use super::events::{Event, EventBody, Histogram, LayerScales, ScaleStats, ScalesEvent};

/// Mean, std (population), min, max, negative count and an equal-width histogram over
/// [min, max] with `bins` bins (all values in bin 0 when min = max). Non-finite values are
/// ignored. An empty vector gives zeros and empty bins.
pub fn scale_stats(values: &[f32], bins: usize) -> ScaleStats {
    let bins = bins.max(1);
    let vals: Vec<f64> = values
        .iter()
        .map(|&v| v as f64)
        .filter(|v| v.is_finite())
        .collect();
    if vals.is_empty() {
        return ScaleStats {
            mean: 0.0,
            std: 0.0,
            min: 0.0,
            max: 0.0,
            negative: 0,
            hist: Histogram {
                lo: 0.0,
                hi: 0.0,
                counts: vec![0; bins],
            },
        };
    }
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut counts = vec![0u32; bins];
    for v in &vals {
        let i = if max > min {
            ((v - min) / (max - min) * bins as f64) as usize
        } else {
            0
        };
        counts[i.min(bins - 1)] += 1;
    }
    ScaleStats {
        mean,
        std,
        min,
        max,
        negative: vals.iter().filter(|v| **v < 0.0).count(),
        hist: Histogram {
            lo: min,
            hi: max,
            counts,
        },
    }
}

/// The network's mean s, t and u at one epoch (the paper's Fig. 6, one point per epoch): the
/// average over layers of each layer's channel mean (every layer counts once, as in the block
/// means of Fig. 7); u over the layers that have an identity branch, None when none has.
pub fn network_means(e: &ScalesEvent) -> [Option<f64>; 3] {
    let mean = |pick: &dyn Fn(&LayerScales) -> Option<&ScaleStats>| -> Option<f64> {
        let v: Vec<f64> = e
            .layers
            .iter()
            .filter_map(|l| pick(l).map(|s| s.mean))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    [
        mean(&|l| Some(&l.s)),
        mean(&|l| Some(&l.t)),
        mean(&|l| l.u.as_ref()),
    ]
}

/// The network's mean s, t and u after one epoch (one point of the paper's Fig. 6).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMeans {
    /// 1-based, as the dashboard and the progress lines count.
    pub epoch: u32,
    pub s: Option<f64>,
    pub t: Option<f64>,
    pub u: Option<f64>,
}

/// The paper's Fig. 6 for one run: [`network_means`] of each `scales` event, in file order.
pub fn scales_history(events: &[Event]) -> Vec<EpochMeans> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Scales(s) => {
                let [ms, mt, mu] = network_means(s);
                Some(EpochMeans {
                    epoch: s.epoch + 1,
                    s: ms,
                    t: mt,
                    u: mu,
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_histogram() {
        let s = scale_stats(&[1.0, 2.0, 3.0, 4.0, -1.0, f32::NAN], 5);
        assert_eq!(s.mean, 1.8);
        assert_eq!(s.min, -1.0);
        assert_eq!(s.max, 4.0);
        assert_eq!(s.negative, 1);
        assert_eq!(s.hist.counts, vec![1, 0, 1, 1, 2]);
        assert_eq!(scale_stats(&[], 3).hist.counts, vec![0, 0, 0]);
        assert_eq!(scale_stats(&[2.0, 2.0], 2).hist.counts, vec![2, 0]);
    }

    #[test]
    fn network_means_by_hand() {
        let layer = |name: &str, s: &[f32], t: &[f32], u: Option<&[f32]>| LayerScales {
            name: name.into(),
            s: scale_stats(s, 4),
            t: scale_stats(t, 4),
            u: u.map(|u| scale_stats(u, 4)),
        };
        let e = ScalesEvent {
            epoch: 0,
            layers: vec![
                // s means 2 and 4 (every layer counts once, whatever its width): 3.
                layer("stage0", &[1.0, 3.0], &[0.5, 0.5], None),
                layer(
                    "stage1.0",
                    &[4.0, 4.0, 4.0, 4.0],
                    &[1.5, 2.5, 3.5, 4.5],
                    Some(&[2.0, 0.0, 1.0, 1.0]),
                ),
            ],
        };
        // t: (0.5 + 3) / 2 = 1.75; u: only stage1.0, mean 1.
        assert_eq!(network_means(&e), [Some(3.0), Some(1.75), Some(1.0)]);
        let no_u = ScalesEvent {
            epoch: 0,
            layers: vec![layer("stage0", &[1.0], &[2.0], None)],
        };
        assert_eq!(network_means(&no_u), [Some(1.0), Some(2.0), None]);
    }
}
