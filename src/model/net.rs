//! The network: stage0, stages 1–4, global average pool, linear head.

use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::blocks::{Block, DeployBlock, HsBlock, RepVggBlock, TargetBlock};
use super::layers::Linear;
use super::variant::Variant;

/// A RepOpt-VGG-shaped network whose blocks are `K`.
#[derive(Module, Debug)]
pub struct Net<B: Backend, K: Module<B>> {
    pub stage0: K,
    pub stage1: Vec<K>,
    pub stage2: Vec<K>,
    pub stage3: Vec<K>,
    pub stage4: Vec<K>,
    pub linear: Linear<B>,
}

/// RepOpt-VGG trained with the RepOptimizer (plain conv3x3 + BN + ReLU blocks).
pub type TargetNet<B> = Net<B, TargetBlock<B>>;
/// The Hyper-Search model (CSLA blocks with trainable scales).
pub type HsNet<B> = Net<B, HsBlock<B>>;
/// RepVGG at training time (three branches).
pub type RepVggNet<B> = Net<B, RepVggBlock<B>>;
/// RepVGG converted to its deploy form.
pub type DeployNet<B> = Net<B, DeployBlock<B>>;

impl<B: Backend, K: Block<B>> Net<B, K> {
    /// Builds the network; every initial value is drawn from a ChaCha8 RNG seeded by `seed`.
    pub fn init(variant: &Variant, classes: usize, seed: u64, device: &B::Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut blocks = variant
            .plan()
            .into_iter()
            .map(|plan| K::init(&plan, &mut rng, device));
        let stage0 = blocks.next().expect("plan has stage0");
        let mut stages: [Vec<K>; 4] = Default::default();
        for (stage, &n) in stages.iter_mut().zip(variant.blocks.iter()) {
            stage.extend(blocks.by_ref().take(n));
        }
        let linear = Linear::new(variant.feature_width(), classes, &mut rng, device);
        let [stage1, stage2, stage3, stage4] = stages;
        Net {
            stage0,
            stage1,
            stage2,
            stage3,
            stage4,
            linear,
        }
    }

    /// Blocks in forward order (the order of `Variant::plan`).
    pub fn blocks(&self) -> impl Iterator<Item = &K> {
        std::iter::once(&self.stage0)
            .chain(self.stage1.iter())
            .chain(self.stage2.iter())
            .chain(self.stage3.iter())
            .chain(self.stage4.iter())
    }

    /// Rebuilds the network with every block mapped by `f` (in forward order).
    pub fn map_blocks<K2: Module<B>>(self, mut f: impl FnMut(usize, K) -> K2) -> Net<B, K2> {
        let mut i = 0;
        let mut g = |k: K| {
            let out = f(i, k);
            i += 1;
            out
        };
        let stage0 = g(self.stage0);
        let stage1 = self.stage1.into_iter().map(&mut g).collect();
        let stage2 = self.stage2.into_iter().map(&mut g).collect();
        let stage3 = self.stage3.into_iter().map(&mut g).collect();
        let stage4 = self.stage4.into_iter().map(&mut g).collect();
        Net {
            stage0,
            stage1,
            stage2,
            stage3,
            stage4,
            linear: self.linear,
        }
    }

    /// Features before the classifier: [batch, channels] after global average pooling.
    pub fn features(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 2> {
        let x = self.blocks().fold(x, |x, block| block.forward(x, train));
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// Logits [batch, classes].
    pub fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 2> {
        self.linear.forward(self.features(x, train))
    }

    pub fn classes(&self) -> usize {
        self.linear.bias.dims()[0]
    }
}

/// What the training loop needs of a model, whatever its blocks.
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits [batch, classes]; `train` selects batch statistics (and updates the running ones).
    fn logits(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 2>;
}

impl<B: Backend, K: Block<B>> Classifier<B> for Net<B, K> {
    fn logits(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 2> {
        self.forward(x, train)
    }
}
