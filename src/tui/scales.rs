//! Scales profiles (`scales.ron`, `profiles/scales/*.ron`) for the scales view.
//!

use std::path::Path;

use crate::rundir::events::{LayerScales, ScaleStats, ScalesEvent};
use crate::rundir::scale_stats;

/// Bins of the histograms computed from a profile's raw vectors.
pub const PROFILE_BINS: usize = 16;

/// A scales profile, read with the strict profile loader.
pub type ScalesProfileFile = crate::profile::ScalesProfile;

/// The scales view's use of a profile.
pub trait ScalesProfileView {
    fn load_for_view(path: &Path) -> Result<ScalesProfileFile, String>;
    fn to_event(&self) -> ScalesEvent;
}

impl ScalesProfileView for ScalesProfileFile {
    /// Loads a profile and checks it against its variant (block names, channel counts, identity
    /// branches), so a profile that a run would reject is never drawn as if valid.
    fn load_for_view(path: &Path) -> Result<Self, String> {
        let p = Self::load(path).map_err(|e| e.to_string())?;
        let v =
            crate::model::variant(&p.variant).map_err(|e| format!("{}: {e}", path.display()))?;
        p.check(&v)
            .map_err(|e| format!("{}: not a valid {} profile: {e}", path.display(), p.variant))?;
        Ok(p)
    }

    /// The profile as one `scales` event (epoch 0), so the scales view draws it like a run.
    fn to_event(&self) -> ScalesEvent {
        ScalesEvent {
            epoch: 0,
            layers: self
                .blocks
                .iter()
                .map(|b| LayerScales {
                    name: b.name.clone(),
                    s: scale_stats(&b.s, PROFILE_BINS),
                    t: scale_stats(&b.t, PROFILE_BINS),
                    u: b.u.as_ref().map(|u| scale_stats(u, PROFILE_BINS)),
                })
                .collect(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
