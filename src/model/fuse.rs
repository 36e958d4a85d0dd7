//! Structural re-parameterization of RepVGG: each training-time block (3x3+BN, 1x1+BN,
//! identity BN) becomes one 3x3 conv with bias, exactly equal in evaluation mode.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::blocks::{DeployBlock, RepVggBlock};
use super::layers::{BatchNorm2d, Conv};
use super::net::{DeployNet, RepVggNet};

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 tensor")
}

/// Folds an evaluation-mode BN into the [cout, cin, 3, 3] kernel before it: returns the kernel
/// scaled per output channel and the bias.
fn fold(kernel: &mut [f32], bn: &BatchNorm2d<impl Backend>) -> Vec<f32> {
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
