//! Re-initialization of the target model from the scales (the paper's Eq. 4): each 3x3 conv
//! becomes the kernel of the imaginary CSLA block it stands for at initialization.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::kernels::equivalent_kernel;
use crate::model::layers::uniform_data;
use crate::model::{TargetNet, Variant};
use crate::profile::ScalesProfile;

/// What the identity branch of the imaginary CSLA block contributes at initialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum IdentityInit {
    /// The trained u of the scales (official code's default, `use_identity_scales_for_reinit`).
    #[default]
    Trained,
    /// 1, as the paper writes it.
    One,
}

/// W' = s[o]·W3 + centre(t[o]·W1) + centre-diagonal(u[o] or 1) for every block's conv, with W3 the
/// conv's own fresh initialization and W1 a fresh 1x1 initialization (PyTorch's default,
/// U(±1/sqrt(cin)), drawn from a ChaCha RNG seeded by `seed`). Only conv weights change.
pub fn reinitialize<B: Backend>(
    model: TargetNet<B>,
    variant: &Variant,
    scales: &ScalesProfile,
    identity: IdentityInit,
    seed: u64,
) -> TargetNet<B> {
    let plan = variant.plan();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ W1_STREAM);
    model.map_blocks(|i, mut block| {
        let (p, sc) = (&plan[i], &scales.blocks[i]);
        let (cin, cout) = (p.in_channels, p.out_channels);
        let w1 = uniform_data(vec![cout, cin, 1, 1], 1.0 / (cin as f32).sqrt(), &mut rng);
        let w1 = w1.to_vec::<f32>().expect("f32 data");
        let ones = vec![1.0f32; cout];
        let u = match identity {
            IdentityInit::Trained => sc.u.as_deref(),
            IdentityInit::One => sc.u.as_ref().map(|_| ones.as_slice()),
        };
        block.conv.weight = block.conv.weight.map(|w| {
            let device = w.device();
            let require_grad = w.is_require_grad();
            let w3 = w
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 data");
            let k = equivalent_kernel(&w3, &w1, cin, &sc.s, &sc.t, u);
            let t = Tensor::from_data(TensorData::new(k, [cout, cin, 3, 3]), &device);
            if require_grad { t.require_grad() } else { t }
        });
        block
    })
}

/// Keeps the 1x1 draws independent of the model's own initialization stream.
const W1_STREAM: u64 = 0x5eed_0101;
