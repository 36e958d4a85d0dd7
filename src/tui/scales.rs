//! Scales profiles (`scales.ron`, `profiles/scales/*.ron`) for the scales view.
//!

use std::path::Path;

use crate::rundir::events::{LayerScales, ScalesEvent};
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
    fn load_for_view(path: &Path) -> Result<Self, String> {
        Self::load(path).map_err(|e| e.to_string())
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
