//! The RepOpt-VGG family: blocks per stage and width multipliers, and the block plan they imply.

use std::fmt;

/// One member of the family (DESIGN.md "Topology").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    /// Blocks in stages 1–4 (stage0 is always one block).
    pub blocks: [usize; 4],
    /// Width multiplier of stages 1–3.
    pub a: f64,
    /// Width multiplier of stage 4.
    pub b: f64,
}

/// Every variant, the paper's and the small ones for tests and CPU demos (`T0`, `T1`).
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "A0",
        blocks: [2, 4, 14, 1],
        a: 0.75,
        b: 2.5,
    },
    Variant {
        name: "A1",
        blocks: [2, 4, 14, 1],
        a: 1.0,
        b: 2.5,
    },
    Variant {
        name: "A2",
        blocks: [2, 4, 14, 1],
        a: 1.5,
        b: 2.75,
    },
    Variant {
        name: "B0",
        blocks: [4, 6, 16, 1],
        a: 1.0,
        b: 2.5,
    },
    Variant {
        name: "B1",
        blocks: [4, 6, 16, 1],
        a: 2.0,
        b: 4.0,
    },
    Variant {
        name: "B2",
        blocks: [4, 6, 16, 1],
        a: 2.5,
        b: 5.0,
    },
    Variant {
        name: "B3",
        blocks: [4, 6, 16, 1],
        a: 3.0,
        b: 5.0,
    },
    Variant {
        name: "L1",
        blocks: [8, 14, 24, 1],
        a: 2.0,
        b: 4.0,
    },
    Variant {
        name: "L2",
        blocks: [8, 14, 24, 1],
        a: 2.5,
        b: 5.0,
    },
    // Tiny variants (not in the paper): every block kind appears (stride 2, identity), so tests
    // and CPU demos exercise the same code paths in milliseconds.
    Variant {
        name: "T0",
        blocks: [1, 2, 2, 1],
        a: 0.125,
        b: 0.125,
    },
    Variant {
        name: "T1",
        blocks: [2, 2, 4, 1],
        a: 0.25,
        b: 0.5,
    },
];

/// Looks a variant up by name (case-insensitive).
pub fn variant(name: &str) -> Result<Variant, UnknownVariant> {
    VARIANTS
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| UnknownVariant(name.to_string()))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown model variant '{0}': expected one of {known}", known = known_variants())]
pub struct UnknownVariant(pub String);

/// "A0, A1, …" for error messages and help texts.
pub fn known_variants() -> String {
    VARIANTS
        .iter()
        .map(|v| v.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One block of the network, in forward order.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockPlan {
    /// State-dict prefix: `stage0`, `stage1.0`, `stage1.1`, …
    pub name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: usize,
    /// 0-based index inside its stage (0 for stage0).
    pub index: usize,
}

impl BlockPlan {
    /// A block has an identity branch iff in = out channels and stride 1.
    pub fn has_identity(&self) -> bool {
        self.in_channels == self.out_channels && self.stride == 1
    }

    /// Initial value of the HS scales s and t: 1 for the first block of a stage, else sqrt(2 / i).
    pub fn hs_scale_init(&self) -> f32 {
        if self.index == 0 {
            1.0
        } else {
            (2.0 / self.index as f64).sqrt() as f32
        }
    }
}

impl Variant {
    /// Width of stages 1–4: int(64a), int(128a), int(256a), int(512b).
    pub fn stage_widths(&self) -> [usize; 4] {
        [
            (64.0 * self.a) as usize,
            (128.0 * self.a) as usize,
            (256.0 * self.a) as usize,
            (512.0 * self.b) as usize,
        ]
    }

    /// Channels out of stage0: min(64, int(64a)).
    pub fn stem_width(&self) -> usize {
        64.min((64.0 * self.a) as usize)
    }

    /// Channels into the classifier.
    pub fn feature_width(&self) -> usize {
        self.stage_widths()[3]
    }

    /// Every block in forward order.
    pub fn plan(&self) -> Vec<BlockPlan> {
        let mut plan = vec![BlockPlan {
            name: "stage0".into(),
            in_channels: 3,
            out_channels: self.stem_width(),
            stride: 2,
            index: 0,
        }];
        let mut cin = self.stem_width();
        for (stage, (&n, &width)) in self
            .blocks
            .iter()
            .zip(self.stage_widths().iter())
            .enumerate()
        {
            for i in 0..n {
                plan.push(BlockPlan {
                    name: format!("stage{}.{}", stage + 1, i),
                    in_channels: cin,
                    out_channels: width,
                    stride: if i == 0 { 2 } else { 1 },
                    index: i,
                });
                cin = width;
            }
        }
        plan
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b1_plan_matches_the_official_layout() {
        let plan = variant("b1").unwrap().plan();
        assert_eq!(plan.len(), 1 + 4 + 6 + 16 + 1);
        assert_eq!(plan[0].out_channels, 64);
        assert_eq!(plan[1].name, "stage1.0");
        assert_eq!(
            (plan[1].in_channels, plan[1].out_channels, plan[1].stride),
            (64, 128, 2)
        );
        assert!(!plan[1].has_identity());
        assert!(plan[2].has_identity());
        assert_eq!(plan.last().unwrap().out_channels, 2048);
        assert_eq!(plan.iter().filter(|b| b.has_identity()).count(), 3 + 5 + 15);
        assert_eq!(plan[3].hs_scale_init(), 1.0); // stage1.2: sqrt(2/2)
        assert!((plan[2].hs_scale_init() - 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn a0_stem_is_capped_by_the_stage1_width() {
        let v = variant("A0").unwrap();
        assert_eq!(v.stem_width(), 48);
        assert_eq!(v.stage_widths(), [48, 96, 192, 1280]);
    }

    #[test]
    fn unknown_variant_lists_the_known_ones() {
        let e = variant("Z9").unwrap_err().to_string();
        assert!(e.contains("'Z9'") && e.contains("B1"), "{e}");
    }
}

/// The model families built on a variant's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ModelKind {
    /// RepOpt-VGG: conv3x3 + BN + ReLU blocks, trained with the RepOptimizer.
    Target,
    /// The Hyper-Search model: CSLA blocks with trainable scales.
    Hs,
    /// RepVGG at training time (three branches, three BNs).
    RepVgg,
    /// RepVGG after structural re-parameterization (one conv3x3 with bias per block).
    Deploy,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Target,
        ModelKind::Hs,
        ModelKind::RepVgg,
        ModelKind::Deploy,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::Target => "target",
            ModelKind::Hs => "hs",
            ModelKind::RepVgg => "repvgg",
            ModelKind::Deploy => "deploy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }

    /// The network's name in messages ("cannot load the RepVGG weights …").
    pub fn label(&self) -> &'static str {
        match self {
            ModelKind::Target => "target",
            ModelKind::Hs => "HS",
            ModelKind::RepVgg => "RepVGG",
            ModelKind::Deploy => "RepVGG deploy",
        }
    }
}

impl Variant {
    /// Learnable parameters of `kind` with `classes` outputs, from the plan alone (no tensors):
    /// what PyTorch's `sum(p.numel() for p in model.parameters())` gives.
    pub fn parameter_count(&self, kind: ModelKind, classes: usize) -> usize {
        let blocks: usize = self
            .plan()
            .iter()
            .map(|p| {
                let (i, o) = (p.in_channels, p.out_channels);
                let id = p.has_identity() as usize;
                match kind {
                    ModelKind::Target => o * i * 9 + 2 * o,
                    ModelKind::Hs => o * i * 9 + o * i + 2 * o + id * o + 2 * o,
                    ModelKind::RepVgg => o * i * 9 + 2 * o + o * i + 2 * o + id * 2 * o,
                    ModelKind::Deploy => o * i * 9 + o,
                }
            })
            .sum();
        blocks + self.feature_width() * classes + classes
    }
}

/// 51841832 → "51,841,832".
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
