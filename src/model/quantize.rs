//! INT8 post-training quantization of the deploy form, simulated in float (quantize →
//! dequantize), as in the paper's §4.4 / Table 8.
//!
//! Every model is first brought to its deploy form: one 3x3 conv with bias per block (RepVGG's
//! three branches fused; RepOpt-VGG's and HS's BN folded into the conv). Then:
//! - weights: symmetric INT8, `q = clamp(round(w / s), -127, 127)`, `s = max|w| / 127` per output
//!   channel or per tensor (rounding half to even, as PyTorch's `round`); biases stay float (an
//!   INT8 kernel keeps them in 32 bits);
//! - activations (the input of every quantized layer): one range per tensor calibrated on
//!   training images, by min/max or by a percentile of |x|. A range with no negative values
//!   (after a ReLU) is unsigned, `[0, 255]` with `s = hi / 255`; otherwise symmetric, `[-127, 127]`.
//! - the first block and the classifier (or the first and the last block and the classifier)
//!   may be kept in float, as the official RepVGG quantization code's `quantlayers` options.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::blocks::{Block, DeployBlock, HsBlock, RepVggBlock, TargetBlock};
use super::fuse::{equivalent_kernel, fold, fuse_block, host};
use super::layers::{Conv, Linear};
use super::net::{DeployNet, Net};

/// The largest magnitude of a symmetric INT8 value (−128 is left out, so the grid is symmetric).
pub const QMAX: f32 = 127.0;
/// The largest unsigned INT8 value (activations after a ReLU).
pub const UQMAX: f32 = 255.0;

/// How weight scales are shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One scale per output channel.
    PerChannel,
    /// One scale for the whole kernel.
    PerTensor,
}

impl Granularity {
    pub fn label(self) -> &'static str {
        match self {
            Granularity::PerChannel => "per-channel",
            Granularity::PerTensor => "per-tensor",
        }
    }
}

/// How an activation range is calibrated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// This percentile of |x| (e.g. 99.99) as the largest magnitude.
    Percentile(f64),
}

impl Calibration {
    pub fn label(self) -> String {
        match self {
            Calibration::MinMax => "min/max".to_string(),
            Calibration::Percentile(p) => format!("p{p}"),
        }
    }
}

/// Which layers stay in float (the official `quantlayers`: `all`, `exclud_first_and_linear`,
/// `exclud_first_and_last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepFloat {
    /// Everything quantized.
    None,
    /// stage0 and the linear classifier in float.
    FirstAndLinear,
    /// stage0, the last block (stage4) and the linear classifier in float.
    FirstAndLast,
}

impl KeepFloat {
    pub fn label(self) -> &'static str {
        match self {
            KeepFloat::None => "none",
            KeepFloat::FirstAndLinear => "first-and-linear",
            KeepFloat::FirstAndLast => "first-and-last",
        }
    }

    /// Whether block `i` of `blocks` is quantized.
    pub fn quantizes_block(self, i: usize, blocks: usize) -> bool {
        match self {
            KeepFloat::None => true,
            KeepFloat::FirstAndLinear => i != 0,
            KeepFloat::FirstAndLast => i != 0 && i + 1 != blocks,
        }
    }

    pub fn quantizes_linear(self) -> bool {
        self == KeepFloat::None
    }
}

/// One quantization scheme.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scheme {
    pub weights: Granularity,
    pub activations: Calibration,
    pub keep_float: KeepFloat,
}

/// `v` quantized to the grid `scale · [qmin, qmax]` and back. A zero scale (an all-zero channel)
/// maps everything to 0.
pub fn fake_quant(v: f32, scale: f32, qmin: f32, qmax: f32) -> f32 {
    if scale <= 0.0 || !scale.is_finite() {
        return 0.0;
    }
    (v / scale).round_ties_even().clamp(qmin, qmax) * scale
}

/// The symmetric INT8 scale of `values`: max|v| / 127.
pub fn symmetric_scale(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs())) / QMAX
}

/// A `[cout, …]` kernel (row-major, output channel first) quantized and dequantized; returns the
/// kernel and its scales (one, or one per output channel).
pub fn quantize_weights(w: &[f32], out_channels: usize, g: Granularity) -> (Vec<f32>, Vec<f32>) {
    match g {
        Granularity::PerTensor => {
            let s = symmetric_scale(w);
            (
                w.iter().map(|&v| fake_quant(v, s, -QMAX, QMAX)).collect(),
                vec![s],
            )
        }
        Granularity::PerChannel => {
            let per = w.len() / out_channels.max(1);
            let mut out = Vec::with_capacity(w.len());
            let mut scales = Vec::with_capacity(out_channels);
            for row in w.chunks(per.max(1)) {
                let s = symmetric_scale(row);
                out.extend(row.iter().map(|&v| fake_quant(v, s, -QMAX, QMAX)));
                scales.push(s);
            }
            (out, scales)
        }
    }
}

/// ‖q − w‖ / ‖w‖ (0 for an all-zero `w`).
pub fn relative_error(w: &[f32], q: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &b) in w.iter().zip(q) {
        num += f64::from(a - b).powi(2);
        den += f64::from(a).powi(2);
    }
    if den == 0.0 { 0.0 } else { (num / den).sqrt() }
}

/// What makes a kernel hard to quantize: its range against its spread, and the error INT8 makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerQuantStats {
    /// `stage0`, `stage1.0`, …, `linear`.
    pub name: String,
    /// (max − min) / standard deviation of the deploy kernel: large for heavy-tailed kernels,
    /// whose few large values stretch the INT8 grid over the many small ones.
    pub range_over_std: f64,
    /// ‖Q(W) − W‖ / ‖W‖ with one scale per tensor.
    pub error_per_tensor: f64,
    /// ‖Q(W) − W‖ / ‖W‖ with one scale per output channel.
    pub error_per_channel: f64,
}

/// The statistics of a `[cout, …]` kernel.
pub fn layer_stats(name: &str, w: &[f32], out_channels: usize) -> LayerQuantStats {
    let n = w.len().max(1) as f64;
    let mean = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = w
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let (lo, hi) = w
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let std = var.sqrt();
    let range = if w.is_empty() {
        0.0
    } else {
        f64::from(hi) - f64::from(lo)
    };
    let (qt, _) = quantize_weights(w, out_channels, Granularity::PerTensor);
    let (qc, _) = quantize_weights(w, out_channels, Granularity::PerChannel);
    LayerQuantStats {
        name: name.to_string(),
        range_over_std: if std > 0.0 { range / std } else { 0.0 },
        error_per_tensor: relative_error(w, &qt),
        error_per_channel: relative_error(w, &qc),
    }
}

/// The quantizer of one activation tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    pub scale: f32,
    pub qmin: f32,
    pub qmax: f32,
}

impl ActQuant {
    /// From a calibrated range: unsigned when nothing negative was seen, else symmetric.
    pub fn from_range(lo: f32, hi: f32) -> Self {
        if lo >= 0.0 {
            ActQuant {
                scale: hi.max(0.0) / UQMAX,
                qmin: 0.0,
                qmax: UQMAX,
            }
        } else {
            ActQuant {
                scale: lo.abs().max(hi.abs()) / QMAX,
                qmin: -QMAX,
                qmax: QMAX,
            }
        }
    }

    pub fn apply_value(&self, v: f32) -> f32 {
        fake_quant(v, self.scale, self.qmin, self.qmax)
    }

    /// The same on a tensor.
    pub fn apply<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if self.scale <= 0.0 || !self.scale.is_finite() {
            return x.zeros_like();
        }
        let s = f64::from(self.scale);
        x.div_scalar(s)
            .round()
            .clamp(f64::from(self.qmin), f64::from(self.qmax))
            .mul_scalar(s)
    }
}

/// The values of one activation seen during calibration.
#[derive(Clone, Debug, Default)]
pub struct ActStats {
    pub min: f32,
    pub max: f32,
    seen: bool,
    /// |x| of a strided sample of the values (for the percentile).
    sample: Vec<f32>,
}

impl ActStats {
    /// Adds the values of one batch, keeping at most `keep` of them for the percentile.
    pub fn add(&mut self, values: &[f32], keep: usize) {
        for &v in values {
            if !v.is_finite() {
                continue;
            }
            if !self.seen {
                (self.min, self.max, self.seen) = (v, v, true);
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        let stride = values.len().div_ceil(keep.max(1)).max(1);
        self.sample.extend(
            values
                .iter()
                .step_by(stride)
                .filter(|v| v.is_finite())
                .map(|v| v.abs()),
        );
    }

    /// The range the calibration picks.
    pub fn range(&self, c: Calibration) -> (f32, f32) {
        match c {
            Calibration::MinMax => (self.min, self.max),
            Calibration::Percentile(p) => {
                let top = percentile(&self.sample, p).min(self.min.abs().max(self.max.abs()));
                if self.min >= 0.0 {
                    (0.0, top.min(self.max))
                } else {
                    (-top, top)
                }
            }
        }
    }
}

/// The `p`-th percentile (0..=100) of `values`, nearest rank; 0 for none.
pub fn percentile(values: &[f32], p: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    let k = rank.clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *x
}

/// A block that has a deploy form: one 3x3 conv with bias, equal in evaluation mode.
pub trait Deployable<B: Backend>: Block<B> {
    fn deploy(&self) -> DeployBlock<B>;
}

fn deploy_block<B: Backend>(kernel: Vec<f32>, bias: Vec<f32>, like: &Conv<B>) -> DeployBlock<B> {
    let [cout, cin, kh, kw] = like.weight.dims();
    let device = like.weight.device();
    let weight = Tensor::from_data(TensorData::new(kernel, [cout, cin, kh, kw]), &device);
    let bias = Tensor::from_data(TensorData::new(bias, [cout]), &device);
    DeployBlock {
        conv: Conv::from_tensors(weight, Some(bias), like.stride),
    }
}

impl<B: Backend> Deployable<B> for TargetBlock<B> {
    fn deploy(&self) -> DeployBlock<B> {
        let mut k = host(self.conv.weight.val());
        let bias = fold(&mut k, &self.bn);
        deploy_block(k, bias, &self.conv)
    }
}

impl<B: Backend> Deployable<B> for HsBlock<B> {
    fn deploy(&self) -> DeployBlock<B> {
        let [_, cin, _, _] = self.conv.weight.dims();
        let s = host(self.scale_conv.weight.val());
        let t = host(self.scale_1x1.weight.val());
        let u = self.scale_identity.as_ref().map(|l| host(l.weight.val()));
        let mut k = equivalent_kernel(
            &host(self.conv.weight.val()),
            &host(self.conv_1x1.weight.val()),
            cin,
            &s,
            &t,
            u.as_deref(),
        );
        let bias = fold(&mut k, &self.bn);
        deploy_block(k, bias, &self.conv)
    }
}

impl<B: Backend> Deployable<B> for RepVggBlock<B> {
    fn deploy(&self) -> DeployBlock<B> {
        fuse_block(self.clone())
    }
}

impl<B: Backend> Deployable<B> for DeployBlock<B> {
    fn deploy(&self) -> DeployBlock<B> {
        self.clone()
    }
}

/// The deploy form of any network (the classifier kept as is).
pub fn deploy_form<B: Backend, K: Deployable<B>>(net: &Net<B, K>) -> DeployNet<B> {
    net.clone().map_blocks(|_, block| block.deploy())
}

/// Block names in forward order, then `linear`.
pub fn layer_names(variant: &super::Variant) -> Vec<String> {
    variant
        .plan()
        .into_iter()
        .map(|p| p.name)
        .chain(std::iter::once("linear".to_string()))
        .collect()
}

/// The input of every block and of the classifier (forward order) for one batch, on the host.
pub fn layer_inputs<B: Backend>(net: &DeployNet<B>, x: Tensor<B, 4>) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    let mut x = x;
    for block in net.blocks() {
        out.push(host(x.clone()));
        x = block.forward(x, false);
    }
    let [n, c, _, _] = x.dims();
    out.push(host(x.mean_dim(3).mean_dim(2).reshape([n, c])));
    out
}

/// Per kernel of a deploy net (blocks, then the classifier): the statistics.
pub fn deploy_layer_stats<B: Backend>(
    net: &DeployNet<B>,
    variant: &super::Variant,
) -> Vec<LayerQuantStats> {
    let names = layer_names(variant);
    let mut kernels: Vec<(Vec<f32>, usize)> = net
        .blocks()
        .map(|b| (host(b.conv.weight.val()), b.conv.weight.dims()[0]))
        .collect();
    kernels.push((host(net.linear.weight.val()), net.classes()));
    names
        .iter()
        .zip(kernels)
        .map(|(n, (w, cout))| layer_stats(n, &w, cout))
        .collect()
}

/// A deploy net with fake-quantized weights and the quantizers of the layers' inputs.
pub struct QuantNet<B: Backend> {
    net: DeployNet<B>,
    /// One per block, then one for the classifier; `None`: kept in float.
    inputs: Vec<Option<ActQuant>>,
}

impl<B: Backend> QuantNet<B> {
    /// Quantizes `net` by `scheme`; `stats` are the calibrated inputs (blocks, then classifier).
    pub fn new(net: &DeployNet<B>, scheme: Scheme, stats: &[ActStats]) -> Self {
        let blocks = net.blocks().count();
        let quantized: Vec<bool> = (0..blocks)
            .map(|i| scheme.keep_float.quantizes_block(i, blocks))
            .chain(std::iter::once(scheme.keep_float.quantizes_linear()))
            .collect();
        let inputs = quantized
            .iter()
            .zip(stats)
            .map(|(&q, s)| {
                q.then(|| {
                    let (lo, hi) = s.range(scheme.activations);
                    ActQuant::from_range(lo, hi)
                })
            })
            .collect();
        let mut q = net.clone().map_blocks(|i, block| {
            if !quantized[i] {
                return block;
            }
            let w = &block.conv.weight;
            let [cout, cin, kh, kw] = w.dims();
            let (k, _) = quantize_weights(&host(w.val()), cout, scheme.weights);
            let weight = Tensor::from_data(TensorData::new(k, [cout, cin, kh, kw]), &w.device());
            DeployBlock {
                conv: Conv::from_tensors(
                    weight,
                    block.conv.bias.as_ref().map(|b| b.val()),
                    block.conv.stride,
                ),
            }
        });
        if quantized[blocks] {
            let w = &q.linear.weight;
            let [out, inp] = w.dims();
            let (k, _) = quantize_weights(&host(w.val()), out, scheme.weights);
            let weight = Tensor::from_data(TensorData::new(k, [out, inp]), &w.device());
            q.linear = Linear {
                weight: burn::module::Param::from_tensor(weight),
                bias: q.linear.bias.clone(),
            };
        }
        QuantNet { net: q, inputs }
    }

    /// Logits [batch, classes].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = x;
        for (block, q) in self.net.blocks().zip(&self.inputs) {
            if let Some(q) = q {
                x = q.apply(x);
            }
            x = block.forward(x, false);
        }
        let [n, c, _, _] = x.dims();
        let mut f = x.mean_dim(3).mean_dim(2).reshape([n, c]);
        if let Some(Some(q)) = self.inputs.last() {
            f = q.apply(f);
        }
        self.net.linear.forward(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::BatchNorm2d;
    use crate::model::{Classifier, TargetNet, variant};
    use burn::backend::Flex;
    use burn::module::{Param, RunningState};
    use rand::{Rng, SeedableRng};

    type B = Flex;

    #[test]
    fn per_tensor_quantization_by_hand() {
        // max|w| = 2.54 → s = 0.02: 0.01 / 0.02 = 0.5 rounds to 0 (half to even), 0.03 → 1.5 → 2
        // → 0.04, -1.0 → -50 → -1.0, 2.54 → 127, 0.05 → 2.5 → 2 → 0.04.
        let w = [0.01f32, 0.03, -1.0, 2.54, 0.05];
        let (q, s) = quantize_weights(&w, 1, Granularity::PerTensor);
        assert_eq!(s.len(), 1);
        assert!((s[0] - 0.02).abs() < 1e-7, "{s:?}");
        let want = [0.0f32, 0.04, -1.0, 2.54, 0.04];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{q:?} vs {want:?}");
        }
    }

    #[test]
    fn per_channel_quantization_by_hand() {
        // Two output channels of two values: channel 0 max 1.27 (s = 0.01), channel 1 max 254
        // (s = 2). 0.004 → 0.4 → 0; 1.27 → 127; 3.0 / 2 = 1.5 → 2 → 4.0; -254 → -127 → -254.
        let w = [0.004f32, 1.27, 3.0, -254.0];
        let (q, s) = quantize_weights(&w, 2, Granularity::PerChannel);
        assert!(
            (s[0] - 0.01).abs() < 1e-7 && (s[1] - 2.0).abs() < 1e-6,
            "{s:?}"
        );
        let want = [0.0f32, 1.27, 4.0, -254.0];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{q:?} vs {want:?}");
        }
        // Per tensor the small channel is lost: s = 2, 1.27 / 2 = 0.635 → 1 → 2.0, 0.004 → 0.
        let (qt, _) = quantize_weights(&w, 2, Granularity::PerTensor);
        assert_eq!(qt, vec![0.0, 2.0, 4.0, -254.0]);
    }

    #[test]
    fn values_beyond_the_range_clamp_at_127() {
        assert_eq!(fake_quant(10.0, 0.05, -QMAX, QMAX), 127.0 * 0.05);
        assert_eq!(fake_quant(-10.0, 0.05, -QMAX, QMAX), -127.0 * 0.05);
        // Unsigned activations clamp at 0 and 255.
        let a = ActQuant::from_range(0.0, 2.55);
        assert!((a.scale - 0.01).abs() < 1e-7);
        assert_eq!(a.apply_value(-1.0), 0.0);
        assert!((a.apply_value(3.0) - 2.55).abs() < 1e-6);
        // A signed range is symmetric around 0: [-0.5, 1.27] → s = 0.01, grid ±127.
        let s = ActQuant::from_range(-0.5, 1.27);
        assert_eq!((s.qmin, s.qmax), (-QMAX, QMAX));
        assert!((s.apply_value(-2.0) + 1.27).abs() < 1e-6);
        // An all-zero channel has scale 0 and stays 0.
        assert_eq!(fake_quant(1.0, 0.0, -QMAX, QMAX), 0.0);
    }

    #[test]
    fn tensor_and_host_activation_quantizers_agree() {
        let q = ActQuant::from_range(-1.0, 1.0);
        let values = vec![-3.0f32, -0.5, 0.0, 0.123, 0.99, 1.5, 1.0 / 254.0];
        let d = Default::default();
        let t = Tensor::<B, 1>::from_data(TensorData::new(values.clone(), [values.len()]), &d);
        let got = host(q.apply(t));
        let want: Vec<f32> = values.iter().map(|&v| q.apply_value(v)).collect();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn calibration_by_min_max_and_percentile() {
        let mut s = ActStats::default();
        let mut v: Vec<f32> = (1..=1000).map(|i| i as f32 / 1000.0).collect();
        v.push(100.0); // one outlier
        s.add(&v, 1 << 20);
        assert_eq!(s.range(Calibration::MinMax), (0.001, 100.0));
        // 1001 values: rank ceil(0.99 · 1001) = 991 → 0.991.
        let (lo, hi) = s.range(Calibration::Percentile(99.0));
        assert_eq!(lo, 0.0);
        assert!((hi - 0.991).abs() < 1e-6, "{hi}");
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 100.0), 3.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
    }

    /// Same spread (standard deviation), different tails: the heavy-tailed kernel's few large
    /// values stretch the grid and it loses more.
    #[test]
    fn a_heavy_tailed_kernel_loses_more_than_a_narrow_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 8 * 8 * 9;
        let narrow: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut heavy: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        // A few large taps, as on the centre diagonal of a fused RepVGG kernel (identity + 1x1).
        for o in 0..8 {
            heavy[(o * 8 + o) * 9 + 4] = 40.0;
        }
        let a = layer_stats("narrow", &narrow, 8);
        let b = layer_stats("heavy", &heavy, 8);
        assert!(b.range_over_std > 2.0 * a.range_over_std, "{a:?} {b:?}");
        assert!(b.error_per_tensor > 2.0 * a.error_per_tensor, "{a:?} {b:?}");
        // Relative to the small values it is worse still: measure the error on them alone.
        let (qh, _) = quantize_weights(&heavy, 8, Granularity::PerTensor);
        let small: Vec<usize> = (0..n).filter(|&j| heavy[j].abs() < 1.0).collect();
        let err = |w: &[f32], q: &[f32]| {
            relative_error(
                &small.iter().map(|&j| w[j]).collect::<Vec<_>>(),
                &small.iter().map(|&j| q[j]).collect::<Vec<_>>(),
            )
        };
        let (qn, _) = quantize_weights(&narrow, 8, Granularity::PerTensor);
        assert!(err(&heavy, &qh) > 10.0 * err(&narrow, &qn));
    }

    fn random_bn<Bk: Backend>(
        c: usize,
        rng: &mut rand_chacha::ChaCha8Rng,
        d: &Bk::Device,
    ) -> BatchNorm2d<Bk> {
        let mut v = |lo: f32, hi: f32| {
            let x: Vec<f32> = (0..c).map(|_| rng.random_range(lo..hi)).collect();
            Tensor::<Bk, 1>::from_data(TensorData::new(x, [c]), d)
        };
        BatchNorm2d {
            weight: Param::from_tensor(v(0.5, 2.0)),
            bias: Param::from_tensor(v(-0.5, 0.5)),
            running_mean: RunningState::new(v(-0.3, 0.3)),
            running_var: RunningState::new(v(0.2, 3.0)),
        }
    }

    /// BN folded into every conv gives the same logits as the conv + BN model, in float.
    #[test]
    fn bn_folding_equals_the_unfolded_model() {
        let d = Default::default();
        let v = variant("T0").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let net = TargetNet::<B>::init(&v, 5, 1, &d).map_blocks(|_, b| TargetBlock {
            bn: random_bn(b.bn.weight.dims()[0], &mut rng, &d),
            conv: b.conv,
        });
        let x: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(x, [2, 3, 16, 16]), &d);
        let want = host(net.logits(x.clone(), false));
        let deploy = deploy_form(&net);
        assert!(deploy.blocks().all(|b| b.conv.bias.is_some()));
        let got = host(deploy.logits(x, false));
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-4 * scale.max(1.0),
                "{got:?} vs {want:?}"
            );
        }
        // And the folded kernels differ from the trained ones (the check is not vacuous).
        let first = host(net.stage0.conv.weight.val());
        assert_ne!(first, host(deploy.stage0.conv.weight.val()));
    }

    /// Quantized with everything kept in float and min/max ranges over the very batch, the
    /// quantized net is close to the float one but not equal; with all layers quantized it moves
    /// further.
    #[test]
    fn quantized_net_is_near_the_float_net() {
        let d = Default::default();
        let v = variant("T0").unwrap();
        let net = deploy_form(&TargetNet::<B>::init(&v, 5, 1, &d));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let x: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(x, [2, 3, 16, 16]), &d);
        let mut stats = vec![ActStats::default(); layer_names(&v).len()];
        for (s, values) in stats.iter_mut().zip(layer_inputs(&net, x.clone())) {
            s.add(&values, 1 << 20);
        }
        let float = host(net.forward(x.clone(), false));
        let q = QuantNet::new(
            &net,
            Scheme {
                weights: Granularity::PerChannel,
                activations: Calibration::MinMax,
                keep_float: KeepFloat::None,
            },
            &stats,
        );
        let got = host(q.forward(x));
        let err = relative_error(&float, &got);
        assert!(err > 0.0 && err < 0.1, "{err}");
    }

    /// Layers kept in float keep their weights and get no input quantizer; the others are on
    /// the INT8 grid (the official `quantlayers` options).
    #[test]
    fn layers_kept_in_float_are_untouched() {
        let d = Default::default();
        let v = variant("T0").unwrap();
        let net = deploy_form(&TargetNet::<B>::init(&v, 5, 1, &d));
        let blocks = net.blocks().count();
        let mut stats = vec![ActStats::default(); blocks + 1];
        stats.iter_mut().for_each(|s| s.add(&[-1.0, 2.0], 16));
        let kernels = |n: &DeployNet<B>| -> Vec<Vec<f32>> {
            n.blocks()
                .map(|b| host(b.conv.weight.val()))
                .chain(std::iter::once(host(n.linear.weight.val())))
                .collect()
        };
        let float = kernels(&net);
        for (keep, kept) in [
            (KeepFloat::None, vec![]),
            (KeepFloat::FirstAndLinear, vec![0, blocks]),
            (KeepFloat::FirstAndLast, vec![0, blocks - 1, blocks]),
        ] {
            let scheme = Scheme {
                weights: Granularity::PerTensor,
                activations: Calibration::MinMax,
                keep_float: keep,
            };
            let q = QuantNet::new(&net, scheme, &stats);
            let got = kernels(&q.net);
            for (i, (f, g)) in float.iter().zip(&got).enumerate() {
                assert_eq!(
                    q.inputs[i].is_none(),
                    kept.contains(&i),
                    "{keep:?} layer {i}"
                );
                if kept.contains(&i) {
                    assert_eq!(f, g, "{keep:?} layer {i} kept in float");
                } else {
                    assert_ne!(f, g, "{keep:?} layer {i} quantized");
                    let s = symmetric_scale(f);
                    assert!(g.iter().all(|w| ((w / s) - (w / s).round()).abs() < 1e-3));
                }
            }
        }
    }

    fn random_vec<Bk: Backend>(
        c: usize,
        lo: f32,
        hi: f32,
        rng: &mut rand_chacha::ChaCha8Rng,
        d: &Bk::Device,
    ) -> Param<Tensor<Bk, 1>> {
        let x: Vec<f32> = (0..c).map(|_| rng.random_range(lo..hi)).collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(x, [c]), d))
    }

    /// The deploy forms of the HS model (scales merged, BN folded) and of RepVGG (branches
    /// fused) give their models' logits in evaluation mode.
    #[test]
    fn deploy_forms_of_hs_and_repvgg_equal_their_models() {
        use crate::model::{HsNet, RepVggNet};
        let d = Default::default();
        let v = variant("T0").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let hs = HsNet::<B>::init(&v, 5, 2, &d).map_blocks(|_, b| {
            let c = b.bn.weight.dims()[0];
            HsBlock {
                bn: random_bn(c, &mut rng, &d),
                scale_conv: crate::model::layers::ScaleLayer {
                    weight: random_vec(c, -1.5, 1.5, &mut rng, &d),
                },
                scale_1x1: crate::model::layers::ScaleLayer {
                    weight: random_vec(c, -1.5, 1.5, &mut rng, &d),
                },
                scale_identity: b.scale_identity.map(|_| crate::model::layers::ScaleLayer {
                    weight: random_vec(c, 0.0, 2.0, &mut rng, &d),
                }),
                conv: b.conv,
                conv_1x1: b.conv_1x1,
            }
        });
        let rep = RepVggNet::<B>::init(&v, 5, 3, &d).map_blocks(|_, b| {
            let c = b.bn_3x3.weight.dims()[0];
            RepVggBlock {
                bn_3x3: random_bn(c, &mut rng, &d),
                bn_1x1: random_bn(c, &mut rng, &d),
                bn_identity: b.bn_identity.map(|_| random_bn(c, &mut rng, &d)),
                conv_3x3: b.conv_3x3,
                conv_1x1: b.conv_1x1,
            }
        });
        let x: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(x, [2, 3, 16, 16]), &d);
        for (want, got) in [
            (
                host(hs.logits(x.clone(), false)),
                host(deploy_form(&hs).logits(x.clone(), false)),
            ),
            (
                host(rep.logits(x.clone(), false)),
                host(deploy_form(&rep).logits(x.clone(), false)),
            ),
        ] {
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0);
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-4 * scale.max(1.0),
                    "{got:?} vs {want:?}"
                );
            }
        }
    }
}
