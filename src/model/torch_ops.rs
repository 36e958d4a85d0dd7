//! Layers whose backward pass burn's LibTorch backend does not delegate to libtorch: burn
//! computes a convolution's weight gradient as a convolution whose kernel is the whole output
//! gradient (and BN as a dozen element-wise ops), where PyTorch calls oneDNN's / cuDNN's own
//! backward kernels. On `Autodiff<LibTorch>` these layers run under torch's autograd instead:
//! one burn autodiff node whose backward is torch's (`convolution_backward`,
//! `native_batch_norm_backward`). Same formulas as PyTorch; every other backend keeps burn's.

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
        // `grad` as its gradient with respect to the output.
        let surrogate = (&graph.output * &grad.tensor).sum(graph.output.kind());
        let results = tch::Tensor::run_backward(&[surrogate], &inputs, false, false);
        for ((_, id), g) in wanted.into_iter().zip(results) {
            grads.register::<LibTorch>(id, TchTensor::new(g));
        }
    }
}

/// Runs `f` on leaves that alias `inputs` under torch's autograd, as one node of burn's graph.
fn under_torch_autograd<const N: usize>(
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
    up(under_torch_autograd([down(x), down(weight)], |t| {
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

/// Training-mode BatchNorm2d as PyTorch's: batch statistics, the running statistics updated in
/// place (momentum, unbiased variance). Returns the output and the new running mean and variance.
pub fn batch_norm_train<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 1>,
    bias: Tensor<B, 1>,
    running_mean: Tensor<B, 1>,
    running_var: Tensor<B, 1>,
    momentum: f64,
    eps: f64,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let copy = |t: Tensor<B, 1>| {
        let t = down(t).primitive.tensor;
        let mut out = tch::Tensor::empty(t.size(), (t.kind(), t.device()));
        out.copy_(&t);
        out
    };
    let (mean, var) = (copy(running_mean), copy(running_var));
    let y = under_torch_autograd([down(x), down(weight), down(bias)], |t| {
        t[0].batch_norm(
            Some(&t[1]),
            Some(&t[2]),
            Some(&mean),
            Some(&var),
            true,
            momentum,
            eps,
            true,
        )
    });
    // torch's graph keeps the buffers it updated (at their version after the update): burn gets
    // copies, so that nothing it does to them can touch what the backward pass reads.
    let plain = |t: tch::Tensor| up::<B, 1>(AtPrimitive::new(TchTensor::new(t.copy())));
    (up(y), plain(mean), plain(var))
}
