//! The four block kinds, each with the official PyTorch module names.

use burn::module::Module;
use burn::tensor::{Tensor, activation::relu, backend::Backend};
use rand_chacha::ChaCha8Rng;

use super::layers::{BatchNorm2d, Conv, ScaleLayer};
use super::variant::BlockPlan;

/// What every block of the network can do.
pub trait Block<B: Backend>: Module<B> + burn::module::ModuleDisplay {
    fn init(plan: &BlockPlan, rng: &mut ChaCha8Rng, device: &B::Device) -> Self;
    fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 4>;
}

/// RepOpt-VGG target block (official `RealVGGBlock`): conv3x3 (no bias) → BN → ReLU.
#[derive(Module, Debug)]
pub struct TargetBlock<B: Backend> {
    pub conv: Conv<B>,
    pub bn: BatchNorm2d<B>,
}

impl<B: Backend> Block<B> for TargetBlock<B> {
    fn init(plan: &BlockPlan, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        TargetBlock {
            conv: Conv::new(
                plan.in_channels,
                plan.out_channels,
                3,
                plan.stride,
                false,
                rng,
                device,
            ),
            bn: BatchNorm2d::new(plan.out_channels, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 4> {
        #[cfg(feature = "tch")]
        if train && super::torch_ops::block_fits(&x, &self.conv) {
            return super::torch_ops::target_block(self, x);
        }
        relu(self.bn.forward(self.conv.forward(x), train))
    }
}

/// Hyper-Search block (official `LinearAddBlock`): s ⊙ conv3x3(x) + t ⊙ conv1x1(x) [+ u ⊙ x]
/// → one BN → ReLU, scales per output channel. With s and t held constant it is the CSLA block.
#[derive(Module, Debug)]
pub struct HsBlock<B: Backend> {
    pub conv: Conv<B>,
    pub scale_conv: ScaleLayer<B>,
    pub conv_1x1: Conv<B>,
    pub scale_1x1: ScaleLayer<B>,
    pub scale_identity: Option<ScaleLayer<B>>,
    pub bn: BatchNorm2d<B>,
}

impl<B: Backend> Block<B> for HsBlock<B> {
    fn init(plan: &BlockPlan, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let (cin, cout, stride) = (plan.in_channels, plan.out_channels, plan.stride);
        let init = plan.hs_scale_init();
        HsBlock {
            conv: Conv::new(cin, cout, 3, stride, false, rng, device),
            scale_conv: ScaleLayer::new(cout, init, device),
            conv_1x1: Conv::new(cin, cout, 1, stride, false, rng, device),
            scale_1x1: ScaleLayer::new(cout, init, device),
            scale_identity: plan
                .has_identity()
                .then(|| ScaleLayer::new(cout, 1.0, device)),
            bn: BatchNorm2d::new(cout, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 4> {
        #[cfg(feature = "tch")]
        if train && super::torch_ops::block_fits(&x, &self.conv) {
            return super::torch_ops::hs_block(self, x);
        }
        let mut y = self.scale_conv.forward(self.conv.forward(x.clone()))
            + self.scale_1x1.forward(self.conv_1x1.forward(x.clone()));
        if let Some(identity) = &self.scale_identity {
            y = y + identity.forward(x);
        }
        relu(self.bn.forward(y, train))
    }
}

/// RepVGG training-time block (official baseline `RepVGGBlock`): BN(conv3x3) + BN(conv1x1)
/// [+ BN(x)] → ReLU.
#[derive(Module, Debug)]
pub struct RepVggBlock<B: Backend> {
    pub conv_3x3: Conv<B>,
    pub bn_3x3: BatchNorm2d<B>,
    pub conv_1x1: Conv<B>,
    pub bn_1x1: BatchNorm2d<B>,
    pub bn_identity: Option<BatchNorm2d<B>>,
}

impl<B: Backend> Block<B> for RepVggBlock<B> {
    fn init(plan: &BlockPlan, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let (cin, cout, stride) = (plan.in_channels, plan.out_channels, plan.stride);
        RepVggBlock {
            conv_3x3: Conv::new(cin, cout, 3, stride, false, rng, device),
            bn_3x3: BatchNorm2d::new(cout, device),
            conv_1x1: Conv::new(cin, cout, 1, stride, false, rng, device),
            bn_1x1: BatchNorm2d::new(cout, device),
            bn_identity: plan.has_identity().then(|| BatchNorm2d::new(cout, device)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 4> {
        #[cfg(feature = "tch")]
        if train && super::torch_ops::block_fits(&x, &self.conv_3x3) {
            return super::torch_ops::repvgg_block(self, x);
        }
        let mut y = self.bn_3x3.forward(self.conv_3x3.forward(x.clone()), train)
            + self.bn_1x1.forward(self.conv_1x1.forward(x.clone()), train);
        if let Some(bn) = &self.bn_identity {
            y = y + bn.forward(x, train);
        }
        relu(y)
    }
}

/// RepVGG deploy block: one conv3x3 with bias → ReLU (the structurally re-parameterized form).
#[derive(Module, Debug)]
pub struct DeployBlock<B: Backend> {
    pub conv: Conv<B>,
}

impl<B: Backend> Block<B> for DeployBlock<B> {
    fn init(plan: &BlockPlan, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        DeployBlock {
            conv: Conv::new(
                plan.in_channels,
                plan.out_channels,
                3,
                plan.stride,
                true,
                rng,
                device,
            ),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, _train: bool) -> Tensor<B, 4> {
        relu(self.conv.forward(x))
    }
}
