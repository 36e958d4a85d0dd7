//! Scales that do not come from a Hyper-Search, for the ablations of the paper's Table 4: all
//! ones, the HS model's initial values (appendix B.1), and any scales averaged across the
//! channels of each layer. Each result is an ordinary scales profile: the RepOptimizer (masks,
//! re-initialization) uses it exactly as it uses searched scales.

use crate::model::Variant;
use crate::profile::{BlockScales, ScalesProfile};

/// Every s, t and u equal to `value` (u only for blocks with an identity branch).
pub fn constant_scales(variant: &Variant, value: f32, source: &str) -> ScalesProfile {
    from_plan(variant, source, |_| value)
}

/// All ones: the CSLA block 3x3 + 1x1 + identity with unit scales (Table 4, "all 1").
pub fn ones(variant: &Variant) -> ScalesProfile {
    constant_scales(variant, 1.0, "all ones")
}

/// The HS model's initial scales (Table 4, "same as HS initialization"): s and t are 1 for stage0
/// and for the first block of each stage, else sqrt(2 / i) with i the block's 0-based index in its
/// stage; u is 1.
pub fn hs_init(variant: &Variant) -> ScalesProfile {
    let plan = variant.plan();
    let blocks = plan
        .iter()
        .map(|p| {
            let c = p.out_channels;
            let init = p.hs_scale_init();
            BlockScales {
                name: p.name.clone(),
                s: vec![init; c],
                t: vec![init; c],
                u: p.has_identity().then(|| vec![1.0; c]),
            }
        })
        .collect();
    ScalesProfile {
        variant: variant.name.to_string(),
        source: "HS initialization (1 for the first block of a stage, else sqrt(2/i); u = 1)"
            .into(),
        blocks,
    }
}

fn from_plan(variant: &Variant, source: &str, value: impl Fn(usize) -> f32) -> ScalesProfile {
    let blocks = variant
        .plan()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let c = p.out_channels;
            BlockScales {
                name: p.name.clone(),
                s: vec![value(i); c],
                t: vec![value(i); c],
                u: p.has_identity().then(|| vec![value(i); c]),
            }
        })
        .collect();
    ScalesProfile {
        variant: variant.name.to_string(),
        source: source.to_string(),
        blocks,
    }
}

/// The mean of a vector (in f64), repeated for every channel.
fn averaged(v: &[f32]) -> Vec<f32> {
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
    vec![mean as f32; v.len()]
}

/// Each layer's s, t and u replaced by their average across the layer's channels (Table 4,
/// "average across channels"): what is left of the searched scales is one number per branch and
/// layer.
pub fn channel_average(scales: &ScalesProfile) -> ScalesProfile {
    ScalesProfile {
        variant: scales.variant.clone(),
        source: format!("channel average of: {}", scales.source),
        blocks: scales
            .blocks
            .iter()
            .map(|b| BlockScales {
                name: b.name.clone(),
                s: averaged(&b.s),
                t: averaged(&b.t),
                u: b.u.as_deref().map(averaged),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::variant;

    #[test]
    fn the_average_of_a_two_channel_layer_by_hand() {
        let p = ScalesProfile {
            variant: "T0".into(),
            source: "hand".into(),
            blocks: vec![BlockScales {
                name: "stage0".into(),
                s: vec![0.5, -1.5],
                t: vec![2.0, 3.0],
                u: Some(vec![1.0, 0.25]),
            }],
        };
        let a = channel_average(&p);
        let b = &a.blocks[0];
        // (0.5 - 1.5) / 2 = -0.5; (2 + 3) / 2 = 2.5; (1 + 0.25) / 2 = 0.625
        assert_eq!(b.s, vec![-0.5, -0.5]);
        assert_eq!(b.t, vec![2.5, 2.5]);
        assert_eq!(b.u, Some(vec![0.625, 0.625]));
        assert_eq!(a.source, "channel average of: hand");
        // Averaging again changes nothing.
        assert_eq!(channel_average(&a).blocks, a.blocks);
    }

    #[test]
    fn ones_and_hs_init_fit_their_variant_with_the_values_of_appendix_b1() {
        let v = variant("T1").unwrap();
        let one = ones(&v);
        one.check(&v).unwrap();
        for b in &one.blocks {
            assert!(b.s.iter().chain(&b.t).all(|&x| x == 1.0), "{}", b.name);
            assert!(b.u.iter().flatten().all(|&x| x == 1.0), "{}", b.name);
        }
        let init = hs_init(&v);
        init.check(&v).unwrap();
        // T1: stage0, then stages of 2, 2, 4, 1 blocks; i = 0 → 1, i = 1 → sqrt(2), i = 2 → 1,
        // i = 3 → sqrt(2/3).
        let expected: [(&str, f32, bool); 10] = [
            ("stage0", 1.0, false),
            ("stage1.0", 1.0, false),
            ("stage1.1", 2f32.sqrt(), true),
            ("stage2.0", 1.0, false),
            ("stage2.1", 2f32.sqrt(), true),
            ("stage3.0", 1.0, false),
            ("stage3.1", 2f32.sqrt(), true),
            ("stage3.2", 1.0, true),
            ("stage3.3", (2.0f32 / 3.0).sqrt(), true),
            ("stage4.0", 1.0, false),
        ];
        assert_eq!(init.blocks.len(), expected.len());
        for (b, (name, value, identity)) in init.blocks.iter().zip(expected) {
            assert_eq!(b.name, name);
            assert!(b.s.iter().chain(&b.t).all(|&x| (x - value).abs() < 1e-7));
            assert_eq!(b.u.is_some(), identity, "{name}");
            assert!(
                b.u.iter().flatten().all(|&x| x == 1.0),
                "{name}: u starts at 1"
            );
        }
    }
}
