//! Scales profiles (`scales.ron`, `profiles/scales/*.ron`) for the scales view.
//!
//! A local `Deserialize` mirror of the lead's `crate::profile::ScalesProfile` (same field names),
//! so the dashboard does not depend on the profile module; switch to that type once both are on
//! one branch.

use std::path::Path;

use serde::Deserialize;

use crate::rundir::events::{LayerScales, ScalesEvent};
use crate::rundir::scale_stats;

/// Bins of the histograms computed from a profile's raw vectors.
pub const PROFILE_BINS: usize = 16;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScalesProfileFile {
    pub variant: String,
    pub source: String,
    pub blocks: Vec<BlockScalesFile>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BlockScalesFile {
    pub name: String,
    pub s: Vec<f32>,
    pub t: Vec<f32>,
    #[serde(default)]
    pub u: Option<Vec<f32>>,
}

impl ScalesProfileFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ron::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The profile as one `scales` event (epoch 0), so the scales view draws it like a run.
    pub fn to_event(&self) -> ScalesEvent {
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
