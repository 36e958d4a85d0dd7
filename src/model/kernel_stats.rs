//! Kernel statistics of the paper's appendix C (Table 11, Fig. 5): per layer, the standard
//! deviation of the 3x3 kernel's centre taps and of its eight surrounding taps. A RepVGG kernel
//! after branch merging piles the 1x1 and identity branches onto the centre, so its centre spreads
//! far wider than its surroundings; that is what makes RepVGG hard to quantize.
//!
//! Three forms of each block's kernel:
//! - `train`: the 3x3 kernel as trained (RepVGG and HS: the 3x3 branch's kernel);
//! - `bn_fused`: that kernel with its BN folded in (HS: the 3x3 branch with its scale s and the
//!   block's BN, the branch's share of the merged kernel);
//! - `merged`: the one kernel the block becomes for inference, every branch merged and BN folded
//!   (target: `bn_fused`; RepVGG: the deploy conversion; HS: Eq. 4's kernel with the BN folded;
//!   deploy weights: the stored kernel).
//!
//! Standard deviations are population ones (divided by n, numpy's default), over every output
//! and input channel of the layer: n = cout·cin centre taps and 8·cout·cin surrounding taps.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::blocks::{DeployBlock, HsBlock, RepVggBlock, TargetBlock};
use super::fuse::{equivalent_kernel, fold, fuse_block, host};
use super::net::Net;
use super::variant::Variant;

/// Standard deviations of a layer's centre taps and of its surrounding taps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CentreSurround {
    pub centre_std: f64,
    pub surround_std: f64,
}

impl CentreSurround {
    /// Of a [cout, cin, 3, 3] kernel in PyTorch layout (any multiple of 9 values).
    pub fn of(kernel: &[f32]) -> Self {
        assert!(
            !kernel.is_empty() && kernel.len().is_multiple_of(9),
            "a 3x3 kernel has a multiple of 9 values, not {}",
            kernel.len()
        );
        let centre = kernel.chunks_exact(9).map(|k| f64::from(k[4]));
        let surround = kernel.chunks_exact(9).flat_map(|k| {
            k.iter()
                .enumerate()
                .filter(|&(j, _)| j != 4)
                .map(|(_, &x)| f64::from(x))
        });
        CentreSurround {
            centre_std: population_std(centre),
            surround_std: population_std(surround),
        }
    }

    /// How many times wider the centre spreads than the surroundings.
    pub fn ratio(&self) -> f64 {
        self.centre_std / self.surround_std
    }
}

/// Population standard deviation (two passes, f64).
fn population_std(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (n, sum) = values
        .clone()
        .fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    let mean = sum / n as f64;
    let var = values.map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    var.sqrt()
}

/// The statistics of one block, in forward order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerKernelStats {
    /// `stage0`, `stage1.0`, …
    pub layer: String,
    pub out_channels: usize,
    pub in_channels: usize,
    /// The trained 3x3 kernel (absent for deploy weights: only the merged kernel exists).
    pub train: Option<CentreSurround>,
    /// The trained kernel with its BN folded in (absent for deploy weights).
    pub bn_fused: Option<CentreSurround>,
    /// The single inference kernel: all branches merged, BN folded.
    pub merged: CentreSurround,
}

/// The kernel statistics of a whole model: what `kernel-stats --json` prints and what a run
/// writes as `kernel_stats.json` for its final weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelStatsReport {
    /// Where the weights came from (a file, or `model.safetensors` in a run directory).
    pub weights: String,
    /// `target`, `hs`, `repvgg` or `deploy`.
    pub kind: String,
    pub variant: String,
    pub layers: Vec<LayerKernelStats>,
}

impl KernelStatsReport {
    /// The centre/surround ratio averaged over layers, per form (trained, BN-fused, merged): the
    /// one-line summary of Table 11. None for a form no layer has (deploy weights).
    pub fn mean_ratios(&self) -> [Option<f64>; 3] {
        let mean = |f: &dyn Fn(&LayerKernelStats) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = self.layers.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        [
            mean(&|l| l.train.map(|c| c.ratio())),
            mean(&|l| l.bn_fused.map(|c| c.ratio())),
            mean(&|l| Some(l.merged.ratio())),
        ]
    }
}

/// The kernels of a block in the three forms (host values, [cout, cin, 3, 3]).
pub struct KernelForms {
    pub train: Option<Vec<f32>>,
    pub bn_fused: Option<Vec<f32>>,
    pub merged: Vec<f32>,
}

/// A block whose kernel statistics can be taken.
pub trait KernelBlock<B: Backend> {
    fn kernel_forms(&self) -> KernelForms;
}

impl<B: Backend> KernelBlock<B> for TargetBlock<B> {
    fn kernel_forms(&self) -> KernelForms {
        let train = host(self.conv.weight.val());
        let mut fused = train.clone();
        fold(&mut fused, &self.bn);
        KernelForms {
            train: Some(train),
            bn_fused: Some(fused.clone()),
            merged: fused,
        }
    }
}

impl<B: Backend> KernelBlock<B> for RepVggBlock<B> {
    fn kernel_forms(&self) -> KernelForms {
        let train = host(self.conv_3x3.weight.val());
        let mut fused = train.clone();
        fold(&mut fused, &self.bn_3x3);
        let merged = host(fuse_block(self.clone()).conv.weight.val());
        KernelForms {
            train: Some(train),
            bn_fused: Some(fused),
            merged,
        }
    }
}

impl<B: Backend> KernelBlock<B> for HsBlock<B> {
    fn kernel_forms(&self) -> KernelForms {
        let [cout, cin, _, _] = self.conv.weight.dims();
        let train = host(self.conv.weight.val());
        let s = host(self.scale_conv.weight.val());
        let t = host(self.scale_1x1.weight.val());
        let u = self.scale_identity.as_ref().map(|l| host(l.weight.val()));
        // The 3x3 branch as it enters the BN: s[o]·W3.
        let zeros_t = vec![0.0; cout];
        let mut fused = equivalent_kernel(&train, &vec![0.0; cout * cin], cin, &s, &zeros_t, None);
        fold(&mut fused, &self.bn);
        let w1 = host(self.conv_1x1.weight.val());
        let mut merged = equivalent_kernel(&train, &w1, cin, &s, &t, u.as_deref());
        fold(&mut merged, &self.bn);
        KernelForms {
            train: Some(train),
            bn_fused: Some(fused),
            merged,
        }
    }
}

impl<B: Backend> KernelBlock<B> for DeployBlock<B> {
    fn kernel_forms(&self) -> KernelForms {
        KernelForms {
            train: None,
            bn_fused: None,
            merged: host(self.conv.weight.val()),
        }
    }
}

/// Per block of `net` (in forward order, named by `variant`'s plan): the kernel statistics.
pub fn kernel_stats<B, K>(net: &Net<B, K>, variant: &Variant) -> Vec<LayerKernelStats>
where
    B: Backend,
    K: KernelBlock<B> + super::blocks::Block<B>,
{
    net.blocks()
        .zip(variant.plan())
        .map(|(block, plan)| {
            let forms = block.kernel_forms();
            LayerKernelStats {
                layer: plan.name,
                out_channels: plan.out_channels,
                in_channels: plan.in_channels,
                train: forms.train.as_deref().map(CentreSurround::of),
                bn_fused: forms.bn_fused.as_deref().map(CentreSurround::of),
                merged: CentreSurround::of(&forms.merged),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{BatchNorm2d, Conv};
    use burn::backend::Flex;
    use burn::module::{Param, RunningState};
    use burn::tensor::{Tensor, TensorData};

    type B = Flex;

    /// Two output channels, one input channel:
    /// channel 0 = 1 2 3 / 4 10 5 / 6 7 8, channel 1 = 0 everywhere but a centre of -2.
    fn kernel() -> Vec<f32> {
        let mut k = vec![1., 2., 3., 4., 10., 5., 6., 7., 8.];
        k.extend([0., 0., 0., 0., -2., 0., 0., 0., 0.]);
        k
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn centre_and_surround_by_hand() {
        let c = CentreSurround::of(&kernel());
        // Centres {10, -2}: mean 4, deviations ±6 → 6.
        assert!(close(c.centre_std, 6.0), "{c:?}");
        // Surroundings {1..8} and eight 0s: mean 36/16 = 2.25, mean of squares 204/16 = 12.75,
        // variance 12.75 - 2.25² = 7.6875.
        assert!(close(c.surround_std, 7.6875f64.sqrt()), "{c:?}");
        assert!(close(c.ratio(), 6.0 / 7.6875f64.sqrt()));
    }

    fn bn(gamma: [f32; 2], var: [f32; 2]) -> BatchNorm2d<B> {
        let d = &Default::default();
        let t = |v: [f32; 2]| Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [2]), d);
        BatchNorm2d {
            weight: Param::from_tensor(t(gamma)),
            bias: Param::from_tensor(t([0.5, -0.5])),
            running_mean: RunningState::new(t([0.1, 0.2])),
            running_var: RunningState::new(t(var)),
        }
    }

    #[test]
    fn bn_fusion_scales_each_output_channel_by_gamma_over_sigma() {
        let d = Default::default();
        // sqrt(var + eps) = 1 and 2: scales 2 / 1 = 2 and 0.5 / 2 = 0.25.
        let eps = crate::model::layers::BN_EPS as f32;
        let block = TargetBlock::<B> {
            conv: Conv::from_tensors(
                Tensor::from_data(TensorData::new(kernel(), [2, 1, 3, 3]), &d),
                None,
                1,
            ),
            bn: bn([2.0, 0.5], [1.0 - eps, 4.0 - eps]),
        };
        let forms = block.kernel_forms();
        let fused = CentreSurround::of(forms.bn_fused.as_ref().unwrap());
        // Centres {20, -0.5}: std 10.25. Surroundings {2, 4, …, 16} and eight 0s: mean 4.5,
        // mean of squares 4·204/16 = 51, variance 51 - 20.25 = 30.75.
        assert!(close(fused.centre_std, 10.25), "{fused:?}");
        assert!(close(fused.surround_std, 30.75f64.sqrt()), "{fused:?}");
        assert_eq!(forms.merged, *forms.bn_fused.as_ref().unwrap());
        assert_eq!(forms.train.unwrap(), kernel());
    }

    #[test]
    fn repvgg_merging_puts_the_1x1_and_identity_branches_on_the_centre() {
        let d = Default::default();
        let eps = crate::model::layers::BN_EPS as f32;
        // Two channels in and out, stride 1: an identity branch. Every BN has sigma = 1 and
        // gamma = 1 (scale 1), so merging adds W1 and 1 to the centres, nothing else.
        let ones = || bn([1.0, 1.0], [1.0 - eps, 1.0 - eps]);
        let mut k3 = vec![0.0f32; 36];
        k3.iter_mut().enumerate().for_each(|(j, x)| *x = j as f32);
        let block = RepVggBlock::<B> {
            conv_3x3: Conv::from_tensors(
                Tensor::from_data(TensorData::new(k3.clone(), [2, 2, 3, 3]), &d),
                None,
                1,
            ),
            bn_3x3: ones(),
            conv_1x1: Conv::from_tensors(
                Tensor::from_data(
                    TensorData::new(vec![10.0f32, 20.0, 30.0, 40.0], [2, 2, 1, 1]),
                    &d,
                ),
                None,
                1,
            ),
            bn_1x1: ones(),
            bn_identity: Some(ones()),
        };
        let forms = block.kernel_forms();
        assert_eq!(forms.train.as_ref().unwrap(), &k3);
        let merged = &forms.merged;
        // Centres: 4 + 10 + 1, 13 + 20, 22 + 30, 31 + 40 + 1; every other tap unchanged.
        assert_eq!(
            [merged[4], merged[13], merged[22], merged[31]],
            [15.0, 33.0, 52.0, 72.0]
        );
        for (j, (&m, &k)) in merged.iter().zip(&k3).enumerate() {
            if j % 9 != 4 {
                assert_eq!(m, k, "tap {j}");
            }
        }
        let c = CentreSurround::of(merged);
        // Centres {15, 33, 52, 72}: mean 43, deviations -28, -10, 9, 29 → var (784 + 100 + 81 +
        // 841) / 4 = 451.5.
        assert!(close(c.centre_std, 451.5f64.sqrt()), "{c:?}");
    }

    #[test]
    fn hs_forms_by_hand() {
        use crate::model::layers::ScaleLayer;
        let d = &Default::default();
        let eps = crate::model::layers::BN_EPS as f32;
        let t1 = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [1]), d);
        let scale = |v: f32| ScaleLayer::<B> {
            weight: Param::from_tensor(t1(vec![v])),
        };
        // One channel in and out: W3 = 1 everywhere, W1 = 2, s = 0.5, t = 3, u = 0.25; the BN
        // scale is gamma / sigma = 2 / 1.
        let block = HsBlock::<B> {
            conv: Conv::from_tensors(Tensor::ones([1, 1, 3, 3], d), None, 1),
            scale_conv: scale(0.5),
            conv_1x1: Conv::from_tensors(Tensor::full([1, 1, 1, 1], 2.0, d), None, 1),
            scale_1x1: scale(3.0),
            scale_identity: Some(scale(0.25)),
            bn: BatchNorm2d {
                weight: Param::from_tensor(t1(vec![2.0])),
                bias: Param::from_tensor(t1(vec![0.0])),
                running_mean: RunningState::new(t1(vec![0.0])),
                running_var: RunningState::new(t1(vec![1.0 - eps])),
            },
        };
        let forms = block.kernel_forms();
        assert_eq!(forms.train.unwrap(), vec![1.0; 9]);
        // The 3x3 branch through the BN: 0.5 · 1 · 2 = 1 everywhere.
        let fused = forms.bn_fused.unwrap();
        assert!(fused.iter().all(|&x| (x - 1.0).abs() < 1e-5), "{fused:?}");
        // Merged: corners 0.5 · 2 = 1, centre (0.5 + 3 · 2 + 0.25) · 2 = 13.5.
        let m = forms.merged;
        assert!(
            (m[4] - 13.5).abs() < 1e-4 && (m[0] - 1.0).abs() < 1e-5,
            "{m:?}"
        );
    }
}
