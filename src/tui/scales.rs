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
