//! Layers whose backward pass burn's LibTorch backend does not delegate to libtorch: burn
//! computes a convolution's weight gradient as a convolution whose kernel is the whole output
//! gradient (and BN as a dozen element-wise ops), where PyTorch calls oneDNN's / cuDNN's own
//! backward kernels. On `Autodiff<LibTorch>` a training-mode block (target, RepVGG, HS) runs
//! under torch's autograd instead: one burn autodiff node whose backward is torch's
//! (`convolution_backward`, `native_batch_norm_backward`, `threshold_backward`). The same
//! formulas as PyTorch; every other backend, and evaluation, keep burn's.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::{LibTorch, TchTensor};
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorPrimitive};

use super::blocks::{HsBlock, RepVggBlock, TargetBlock};
use super::layers::{BN_EPS, BN_MOMENTUM, BatchNorm2d, Conv};

type At = Autodiff<LibTorch>;
type AtPrimitive = burn::tensor::ops::FloatTensor<At>;

/// Whether `B` is the LibTorch training backend.
pub fn is_torch_autodiff<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<At>()
}

fn down<B: Backend, const D: usize>(t: Tensor<B, D>) -> AtPrimitive {
    let boxed: Box<dyn Any> = Box::new(t);
    boxed
        .downcast::<Tensor<At, D>>()
        .expect("torch layers run on Autodiff<LibTorch> only")
        .into_primitive()
        .tensor()
}

fn up<B: Backend, const D: usize>(p: AtPrimitive) -> Tensor<B, D> {
    let t = Tensor::<At, D>::from_primitive(TensorPrimitive::Float(p));
    let boxed: Box<dyn Any> = Box::new(t);
    *boxed
        .downcast::<Tensor<B, D>>()
        .expect("torch layers run on Autodiff<LibTorch> only")
}

/// What the backward pass needs: torch's graph from the leaves to the output, and burn's
/// handles of the inputs (held so that burn never writes them in place while torch keeps them).
struct TorchGraph {
    output: tch::Tensor,
    leaves: Vec<tch::Tensor>,
    _inputs: Vec<TchTensor>,
}

impl Clone for TorchGraph {
    fn clone(&self) -> Self {
        TorchGraph {
            output: self.output.shallow_clone(),
            leaves: self.leaves.iter().map(|t| t.shallow_clone()).collect(),
            _inputs: self._inputs.clone(),
        }
    }
}

impl std::fmt::Debug for TorchGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TorchGraph({:?})", self.output.size())
    }
}

#[derive(Debug)]
struct TorchAutograd<const N: usize>;

impl<const N: usize> Backward<LibTorch, N> for TorchAutograd<N> {
    type State = TorchGraph;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let wanted: Vec<(usize, burn::backend::autodiff::NodeId)> = ops
            .parents
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|node| (i, node.id)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let graph = ops.state;
        let inputs: Vec<&tch::Tensor> = wanted.iter().map(|(i, _)| &graph.leaves[*i]).collect();
        // torch's `grad(outputs, inputs)` takes no output gradient: ⟨output, grad⟩ has exactly
        // `grad` as its gradient with respect to the output (one dot product, one scaled copy).
        let surrogate = graph.output.flatten(0, -1).dot(&grad.tensor.reshape([-1]));
        let results = tch::Tensor::run_backward(&[surrogate], &inputs, false, false);
        for ((_, id), g) in wanted.into_iter().zip(results) {
            grads.register::<LibTorch>(id, TchTensor::new(g));
        }
    }
}

/// Runs `f` on leaves that alias `inputs` under torch's autograd, as one node of burn's graph.
fn node<const N: usize>(
    inputs: [AtPrimitive; N],
    f: impl FnOnce(&[tch::Tensor]) -> tch::Tensor,
) -> AtPrimitive {
    let nodes = inputs.each_ref().map(|t| t.node.clone());
    match TorchAutograd::<N>
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let leaves: Vec<tch::Tensor> = inputs
                .iter()
                .map(|t| t.primitive.tensor.detach().set_requires_grad(true))
                .collect();
            let output = f(&leaves);
            let value = TchTensor::new(output.detach());
            let held = inputs.into_iter().map(|t| t.primitive).collect();
            prep.finish(
                TorchGraph {
                    output,
                    leaves,
                    _inputs: held,
                },
                value,
            )
        }
        OpsKind::UnTracked(prep) => {
            let _guard = tch::no_grad_guard();
            let plain: Vec<tch::Tensor> = inputs
                .iter()
                .map(|t| t.primitive.tensor.shallow_clone())
                .collect();
            prep.finish(TchTensor::new(f(&plain)))
        }
    }
}

/// [`node`] for a number of inputs known at run time (blocks with or without an identity branch).
fn under_torch_autograd(
    inputs: Vec<AtPrimitive>,
    f: impl FnOnce(&[tch::Tensor]) -> tch::Tensor,
) -> AtPrimitive {
    macro_rules! arity {
        ($($n:literal)*) => {
            match inputs.len() {
                $($n => node::<$n>(inputs.try_into().unwrap_or_else(|_| unreachable!()), f),)*
                n => unreachable!("no torch node of {n} inputs"),
            }
        };
    }
    arity!(1 2 3 4 5 6 7 8 9)
}

fn i64s<const N: usize>(v: [usize; N]) -> [i64; N] {
    v.map(|x| x as i64)
}

/// conv2d without bias; `B` must be `Autodiff<LibTorch>` (see [`is_torch_autodiff`]).
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    o: &ConvOptions<2>,
) -> Tensor<B, 4> {
    let (stride, padding, dilation, groups) = (
        i64s(o.stride),
        i64s(o.padding),
        i64s(o.dilation),
        o.groups as i64,
    );
    up(under_torch_autograd(vec![down(x), down(weight)], |t| {
        t[0].conv2d(
            &t[1],
            None::<tch::Tensor>,
            stride,
            padding,
            dilation,
            groups,
        )
    }))
}

/// A BN layer's running statistics as torch tensors that torch's `batch_norm` updates in place,
/// and their way back into the layer.
struct Running {
    mean: tch::Tensor,
    var: tch::Tensor,
}

impl Running {
    fn of<B: Backend>(bn: &BatchNorm2d<B>) -> Running {
        let copy = |t: Tensor<B, 1>| {
            let t = down(t).primitive.tensor;
            let mut out = tch::Tensor::empty(t.size(), (t.kind(), t.device()));
            out.copy_(&t);
            out
        };
        Running {
            mean: copy(bn.running_mean.value_sync()),
            var: copy(bn.running_var.value_sync()),
        }
    }

    /// Training-mode BN of `x` with parameters `gamma`, `beta` (PyTorch's batch_norm).
    fn bn(&self, x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor) -> tch::Tensor {
        x.batch_norm(
            Some(gamma),
            Some(beta),
            Some(&self.mean),
            Some(&self.var),
            true,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }

    /// Gives the updated statistics to the layer (copies: torch's graph keeps the originals at
    /// the version it saved, and nothing burn does to its copies can touch them).
    fn store<B: Backend>(self, bn: &BatchNorm2d<B>) {
        let plain = |t: &tch::Tensor| up::<B, 1>(AtPrimitive::new(TchTensor::new(t.copy())));
        bn.running_mean.update(plain(&self.mean));
        bn.running_var.update(plain(&self.var));
        bn.running_mean.value_sync();
        bn.running_var.value_sync();
    }
}

fn conv(x: &tch::Tensor, w: &tch::Tensor, c: &Conv<impl Backend>) -> tch::Tensor {
    let s = c.stride as i64;
    let p = c.padding as i64;
    x.conv2d(w, None::<tch::Tensor>, [s, s], [p, p], [1, 1], 1)
}

/// Per-channel scale of an [n, c, h, w] tensor by a [c] vector.
fn scaled(x: &tch::Tensor, s: &tch::Tensor) -> tch::Tensor {
    x * s.view([1, -1, 1, 1])
}

/// Whether a training-mode block whose convolution is `c` can run as one torch node on `x`:
/// torch's BN needs more than one value per channel.
pub fn block_fits<B: Backend>(x: &Tensor<B, 4>, c: &Conv<B>) -> bool {
    let [n, _, h, w] = x.dims();
    let k = c.weight.dims()[2];
    let out = |d: usize| (d + 2 * c.padding - k) / c.stride + 1;
    is_torch_autodiff::<B>() && n * out(h) * out(w) > 1
}

/// The target block conv3x3 → BN → ReLU in training mode as one torch node.
pub fn target_block<B: Backend>(b: &TargetBlock<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let running = Running::of(&b.bn);
    let inputs = vec![
        down(x),
        down(b.conv.weight.val()),
        down(b.bn.weight.val()),
        down(b.bn.bias.val()),
    ];
    let y = under_torch_autograd(inputs, |t| {
        running
            .bn(&conv(&t[0], &t[1], &b.conv), &t[2], &t[3])
            .relu()
    });
    running.store(&b.bn);
    up(y)
}

/// The RepVGG block BN(conv3x3) + BN(conv1x1) [+ BN(x)] → ReLU in training mode as one node.
pub fn repvgg_block<B: Backend>(b: &RepVggBlock<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let (r3, r1) = (Running::of(&b.bn_3x3), Running::of(&b.bn_1x1));
    let rid = b.bn_identity.as_ref().map(Running::of);
    let mut inputs = vec![
        down(x),
        down(b.conv_3x3.weight.val()),
        down(b.bn_3x3.weight.val()),
        down(b.bn_3x3.bias.val()),
        down(b.conv_1x1.weight.val()),
        down(b.bn_1x1.weight.val()),
        down(b.bn_1x1.bias.val()),
    ];
    if let Some(bn) = &b.bn_identity {
        inputs.push(down(bn.weight.val()));
        inputs.push(down(bn.bias.val()));
    }
    let y = under_torch_autograd(inputs, |t| {
        let mut y = r3.bn(&conv(&t[0], &t[1], &b.conv_3x3), &t[2], &t[3])
            + r1.bn(&conv(&t[0], &t[4], &b.conv_1x1), &t[5], &t[6]);
        if let Some(r) = &rid {
            y += r.bn(&t[0], &t[7], &t[8]);
        }
        y.relu()
    });
    r3.store(&b.bn_3x3);
    r1.store(&b.bn_1x1);
    if let (Some(r), Some(bn)) = (rid, &b.bn_identity) {
        r.store(bn);
    }
    up(y)
}

/// The HS block s ⊙ conv3x3(x) + t ⊙ conv1x1(x) [+ u ⊙ x] → BN → ReLU in training mode as one
/// node.
pub fn hs_block<B: Backend>(b: &HsBlock<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let running = Running::of(&b.bn);
    let mut inputs = vec![
        down(x),
        down(b.conv.weight.val()),
        down(b.scale_conv.weight.val()),
        down(b.conv_1x1.weight.val()),
        down(b.scale_1x1.weight.val()),
        down(b.bn.weight.val()),
        down(b.bn.bias.val()),
    ];
    if let Some(u) = &b.scale_identity {
        inputs.push(down(u.weight.val()));
    }
    let y = under_torch_autograd(inputs, |t| {
        let mut y = scaled(&conv(&t[0], &t[1], &b.conv), &t[2])
            + scaled(&conv(&t[0], &t[3], &b.conv_1x1), &t[4]);
        if t.len() > 7 {
            y += scaled(&t[0], &t[7]);
        }
        running.bn(&y, &t[5], &t[6]).relu()
    });
    running.store(&b.bn);
    up(y)
}
