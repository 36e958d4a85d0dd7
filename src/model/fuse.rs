//! Structural re-parameterization of RepVGG: each training-time block (3x3+BN, 1x1+BN,
//! identity BN) becomes one 3x3 conv with bias, exactly equal in evaluation mode.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::blocks::{DeployBlock, RepVggBlock};
use super::layers::{BatchNorm2d, Conv};
use super::net::{DeployNet, RepVggNet};

pub(crate) fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 tensor")
}

/// Folds an evaluation-mode BN into the [cout, cin, 3, 3] kernel before it: returns the kernel
/// scaled per output channel and the bias.
pub(crate) fn fold(kernel: &mut [f32], bn: &BatchNorm2d<impl Backend>) -> Vec<f32> {
    let (scale, shift) = bn.eval_affine();
    let (scale, shift) = (host(scale), host(shift));
    let per_out = kernel.len() / scale.len();
    for (o, chunk) in kernel.chunks_mut(per_out).enumerate() {
        chunk.iter_mut().for_each(|w| *w *= scale[o]);
    }
    shift
}

/// One deploy block equal to `block` in evaluation mode.
pub fn fuse_block<B: Backend>(block: RepVggBlock<B>) -> DeployBlock<B> {
    let [cout, cin, _, _] = block.conv_3x3.weight.dims();
    let device = block.conv_3x3.weight.device();
    let stride = block.conv_3x3.stride;

    let mut k3 = host(block.conv_3x3.weight.val());
    let b3 = fold(&mut k3, &block.bn_3x3);

    // The 1x1 kernel is the centre tap of a 3x3 kernel (same stride, padding 1 vs 0).
    let w1 = host(block.conv_1x1.weight.val());
    let mut k1 = vec![0.0f32; cout * cin * 9];
    for (j, w) in w1.iter().enumerate() {
        k1[j * 9 + 4] = *w;
    }
    let b1 = fold(&mut k1, &block.bn_1x1);

    let mut kernel: Vec<f32> = k3.iter().zip(&k1).map(|(a, b)| a + b).collect();
    let mut bias: Vec<f32> = b3.iter().zip(&b1).map(|(a, b)| a + b).collect();

    if let Some(bn) = &block.bn_identity {
        // Identity as a 3x3 kernel: 1 at the centre of channel o → o.
        let mut kid = vec![0.0f32; cout * cin * 9];
        for o in 0..cout {
            kid[(o * cin + o) * 9 + 4] = 1.0;
        }
        let bid = fold(&mut kid, bn);
        kernel.iter_mut().zip(&kid).for_each(|(k, i)| *k += i);
        bias.iter_mut().zip(&bid).for_each(|(b, i)| *b += i);
    }

    let weight = Tensor::from_data(TensorData::new(kernel, [cout, cin, 3, 3]), &device);
    let bias = Tensor::from_data(TensorData::new(bias, [cout]), &device);
    DeployBlock {
        conv: Conv::from_tensors(weight, Some(bias), stride),
    }
}

/// The whole network in deploy form (the classifier is kept as is).
pub fn to_deploy<B: Backend>(model: RepVggNet<B>) -> DeployNet<B> {
    model.map_blocks(|_, block| fuse_block(block))
}

/// The single 3x3 kernel equivalent to a CSLA block s ⊙ conv3x3 + t ⊙ conv1x1 (+ u ⊙ identity):
/// K = s[o]·W3 + centre(t[o]·W1) + centre-diagonal(u[o]) (the paper's Eq. 4, re-initialization).
/// `w3` is [cout, cin, 3, 3], `w1` is [cout, cin, 1, 1].
pub fn equivalent_kernel(
    w3: &[f32],
    w1: &[f32],
    cin: usize,
    s: &[f32],
    t: &[f32],
    u: Option<&[f32]>,
) -> Vec<f32> {
    let cout = s.len();
    assert_eq!(w3.len(), cout * cin * 9, "3x3 kernel size");
    assert_eq!(w1.len(), cout * cin, "1x1 kernel size");
    let mut k: Vec<f32> = w3
        .iter()
        .enumerate()
        .map(|(j, &w)| s[j / (cin * 9)] * w)
        .collect();
    for o in 0..cout {
        for i in 0..cin {
            k[(o * cin + i) * 9 + 4] += t[o] * w1[o * cin + i];
        }
        if let Some(u) = u {
            k[(o * cin + o) * 9 + 4] += u[o];
        }
    }
    k
}
