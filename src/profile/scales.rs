//! Scales profiles: per block, in forward order, the per-output-channel vectors s (3x3 branch),
//! t (1x1 branch) and, for blocks with an identity branch, u. They are the RepOptimizer's
//! hyper-parameters, produced by a Hyper-Search run or imported from the official `.pth` files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Invalid, ProfileError, load_ron, to_ron, write_atomic};
use crate::model::Variant;

/// Where a Target run's scales come from: the `scales` field of a run profile, and the `--from`
/// of `scales derive` / `scales show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleSource {
    /// A scales profile (`profiles/scales/b1.ron`), or an HS run directory (its `scales.ron`).
    Path(PathBuf),
    /// `run:<profile name or run id>`: the `scales.ron` of the newest such run in the runs
    /// directory.
    Run(String),
    /// `ones`: every s, t and u equal to 1 (the paper's Table 4, "all 1").
    Ones,
    /// `hs-init`: the HS model's initial values (1, or sqrt(2/i) for block i > 0 of a stage; u = 1).
    HsInit,
}

impl ScaleSource {
    /// The accepted forms, for error messages.
    pub const FORMS: &'static str = "a scales profile (profiles/scales/b1.ron), an HS run directory, \
         run:<hs profile or run id>, ones, or hs-init";

    pub fn parse(spec: &str) -> Result<Self, String> {
        match spec {
            "" => Err(format!("empty; expected {}", Self::FORMS)),
            "ones" => Ok(ScaleSource::Ones),
            "hs-init" => Ok(ScaleSource::HsInit),
            _ => match spec.strip_prefix("run:") {
                Some("") => Err(format!(
                    "\"{spec}\" names no run: write run:<hs profile or run id>, e.g. run:demo-hs"
                )),
                Some(name) => Ok(ScaleSource::Run(name.to_string())),
                None => Ok(ScaleSource::Path(PathBuf::from(spec))),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalesProfile {
    /// The model variant these scales belong to (`B1`, …).
    pub variant: String,
    /// Where they came from (an HS run, an imported file).
    pub source: String,
    pub blocks: Vec<BlockScales>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockScales {
    /// `stage0`, `stage1.0`, …
    pub name: String,
    /// Scale of the 3x3 branch, one per output channel (official `scale_conv`).
    pub s: Vec<f32>,
    /// Scale of the 1x1 branch (official `scale_1x1`).
    pub t: Vec<f32>,
    /// Scale of the identity branch (official `scale_identity`); only where in = out, stride 1.
    #[serde(default)]
    pub u: Option<Vec<f32>>,
}

/// Summary of one scale vector, for `scales show` and the dashboard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorStats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub negative: usize,
}

impl VectorStats {
    pub fn of(v: &[f32]) -> Self {
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
        let min = v.iter().fold(f64::INFINITY, |m, &x| m.min(x as f64));
        let max = v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let negative = v.iter().filter(|&&x| x < 0.0).count();
        VectorStats {
            mean,
            min,
            max,
            negative,
        }
    }
}

impl ScalesProfile {
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        load_ron(path)
    }

    /// Loads and checks the profile against the variant the run uses.
    pub fn load_for(path: &Path, variant: &Variant) -> Result<Self, ProfileError> {
        let profile = Self::load(path)?;
        profile.check(variant).map_err(|e| e.in_file(path))?;
        Ok(profile)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, self.to_ron().as_bytes())
    }

    /// The profile as RON text (what `save` writes).
    pub fn to_ron(&self) -> String {
        to_ron(self)
    }

    /// Checks that the profile fits `variant`: same block names in forward order, vector lengths
    /// equal to the output channels, u present exactly where the block has an identity branch,
    /// all values finite.
    pub fn check(&self, variant: &Variant) -> Result<(), Invalid> {
        self.problems(variant).map_err(Invalid)
    }

    fn problems(&self, variant: &Variant) -> Result<(), String> {
        if !self.variant.eq_ignore_ascii_case(variant.name) {
            return Err(format!(
                "these scales are for variant {}, the run uses {} (search or import scales for {})",
                self.variant, variant.name, variant.name
            ));
        }
        let plan = variant.plan();
        if plan.len() != self.blocks.len() {
            return Err(format!(
                "{} blocks in the profile, variant {} has {}",
                self.blocks.len(),
                variant.name,
                plan.len()
            ));
        }
        for (p, b) in plan.iter().zip(&self.blocks) {
            if p.name != b.name {
                return Err(format!(
                    "block '{}' where '{}' was expected (blocks must be in forward order)",
                    b.name, p.name
                ));
            }
            let c = p.out_channels;
            for (label, v) in [("s", Some(&b.s)), ("t", Some(&b.t)), ("u", b.u.as_ref())] {
                if let Some(v) = v {
                    if v.len() != c {
                        return Err(format!(
                            "{}.{label} has {} values, the block has {c} output channels",
                            b.name,
                            v.len()
                        ));
                    }
                    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                        return Err(format!("{}.{label}[{i}] is not a finite number", b.name));
                    }
                }
            }
            match (p.has_identity(), b.u.is_some()) {
                (true, false) => return Err(format!("{} has an identity branch but no u", b.name)),
                (false, true) => {
                    return Err(format!(
                        "{} has no identity branch but the profile gives u",
                        b.name
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// How many values are negative, over s, t and u.
    pub fn negative_count(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| {
                VectorStats::of(&b.s).negative
                    + VectorStats::of(&b.t).negative
                    + b.u.as_deref().map_or(0, |u| VectorStats::of(u).negative)
            })
            .sum()
    }

    /// The table printed by `repopt-tui scales show`.
    pub fn summary_table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "variant {}  ({} blocks)  source: {}",
            self.variant,
            self.blocks.len(),
            self.source
        );
        let _ = writeln!(
            out,
            "{:<10} {:>5}  {:>27}  {:>27}  {:>27}",
            "block",
            "ch",
            "s mean [min, max] neg",
            "t mean [min, max] neg",
            "u mean [min, max] neg"
        );
        let cell = |v: Option<&[f32]>| match v {
            None => format!("{:>27}", "-"),
            Some(v) => {
                let s = VectorStats::of(v);
                format!(
                    "{:>6.3} [{:>6.3}, {:>6.3}] {:>3}",
                    s.mean, s.min, s.max, s.negative
                )
            }
        };
        for b in &self.blocks {
            let _ = writeln!(
                out,
                "{:<10} {:>5}  {}  {}  {}",
                b.name,
                b.s.len(),
                cell(Some(&b.s)),
                cell(Some(&b.t)),
                cell(b.u.as_deref())
            );
        }
        let _ = writeln!(out, "negative values in all: {}", self.negative_count());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_sources_parse_by_their_form() {
        assert_eq!(ScaleSource::parse("ones"), Ok(ScaleSource::Ones));
        assert_eq!(ScaleSource::parse("hs-init"), Ok(ScaleSource::HsInit));
        assert_eq!(
            ScaleSource::parse("run:hs-b1"),
            Ok(ScaleSource::Run("hs-b1".into()))
        );
        assert_eq!(
            ScaleSource::parse("profiles/scales/b1.ron"),
            Ok(ScaleSource::Path("profiles/scales/b1.ron".into()))
        );
        // Only the exact keywords are generated sources: anything else is a path.
        assert_eq!(
            ScaleSource::parse("./ones"),
            Ok(ScaleSource::Path("./ones".into()))
        );
        assert!(ScaleSource::parse("").unwrap_err().contains("empty"));
        assert!(
            ScaleSource::parse("run:")
                .unwrap_err()
                .contains("names no run")
        );
    }
}
