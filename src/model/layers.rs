//! Layers with PyTorch semantics and PyTorch state-dict names (`weight`, `bias`,
//! `running_mean`, `running_var`), so official checkpoints map one to one.
//!
//! Initial values come from a seeded ChaCha RNG on the host, so a model built from the same seed
//! is bit-identical on every backend (CPU and CUDA) and in every process.

use burn::module::{Module, Param, RunningState};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// U(-bound, bound) values, PyTorch's default for conv and linear layers when
/// bound = 1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)).
pub fn uniform_data(shape: Vec<usize>, bound: f32, rng: &mut ChaCha8Rng) -> TensorData {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
    TensorData::new(values, shape)
}

/// A 2-D convolution with square kernel, PyTorch weight layout [out, in, k, k].
#[derive(Module, Debug)]
pub struct Conv<B: Backend> {
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub stride: usize,
    pub padding: usize,
}

impl<B: Backend> Conv<B> {
    /// PyTorch's default initialization: weight and bias U(±1/sqrt(fan_in)).
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        bias: bool,
        rng: &mut ChaCha8Rng,
        device: &B::Device,
    ) -> Self {
        let bound = 1.0 / ((cin * kernel * kernel) as f32).sqrt();
        let weight = Tensor::from_data(
            uniform_data(vec![cout, cin, kernel, kernel], bound, rng),
            device,
        );
        let bias = bias.then(|| {
            Param::from_tensor(Tensor::from_data(
                uniform_data(vec![cout], bound, rng),
                device,
            ))
        });
        Conv {
            weight: Param::from_tensor(weight),
            bias,
            stride,
            padding: kernel / 2,
        }
    }

    pub fn from_tensors(weight: Tensor<B, 4>, bias: Option<Tensor<B, 1>>, stride: usize) -> Self {
        let padding = weight.dims()[2] / 2;
        Conv {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        #[cfg(feature = "tch")]
        if super::torch_ops::is_torch_autodiff::<B>() {
            let y = super::torch_ops::conv2d(x, self.weight.val(), &options);
            return match &self.bias {
                Some(b) => {
                    let c = b.dims()[0];
                    y + b.val().reshape([1, c, 1, 1])
                }
                None => y,
            };
        }
        conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            options,
        )
    }
}

/// BatchNorm2d as PyTorch defines it: batch statistics in training (biased variance to
/// normalize, unbiased variance into the running estimate), running statistics in evaluation.
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    /// gamma
    pub weight: Param<Tensor<B, 1>>,
    /// beta
    pub bias: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    pub running_var: RunningState<Tensor<B, 1>>,
}

impl<B: Backend> BatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        BatchNorm2d {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        // Work on [n, c, h·w] with per-(sample, channel) operands of shape [n, c, 1]: reductions
        // run over the contiguous inner axis and every broadcast is one scalar per row, the
        // layouts the CPU backend has vectorized fast paths for.
        let x = x.reshape([n, c, h * w]);
        if !train {
            let (scale, shift) = self.eval_affine();
            let y = x * per_row(scale, n) + per_row(shift, n);
            return y.reshape([n, c, h, w]);
        }
        let count = (n * h * w) as f64;
        let mean = x
            .clone()
            .sum_dim(2)
            .sum_dim(0)
            .div_scalar(count)
            .reshape([c]);
        let centered = x - per_row(mean.clone(), n);
        let var = centered
            .clone()
            .square()
            .sum_dim(2)
            .sum_dim(0)
            .div_scalar(count)
            .reshape([c]);

        let unbiased = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let batch_mean = mean.detach();
        let batch_var = var.clone().detach().mul_scalar(unbiased);
        let rm = self.running_mean.value_sync().detach();
        let rv = self.running_var.value_sync().detach();
        self.running_mean
            .update(rm.mul_scalar(1.0 - BN_MOMENTUM) + batch_mean.mul_scalar(BN_MOMENTUM));
        self.running_var
            .update(rv.mul_scalar(1.0 - BN_MOMENTUM) + batch_var.mul_scalar(BN_MOMENTUM));
        // RunningState defers an update until the next read on the same thread; flush it now so
        // that visitors (checkpoints, exports) and other threads see the current statistics.
        self.running_mean.value_sync();
        self.running_var.value_sync();

        let scale = self.weight.val() / var.add_scalar(BN_EPS).sqrt();
        let y = centered * per_row(scale, n) + per_row(self.bias.val(), n);
        y.reshape([n, c, h, w])
    }

    /// Evaluation-mode BN as y = x·scale + shift (also the fusion rule of structural re-param).
    pub fn eval_affine(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scale = self.weight.val() / self.running_var.value_sync().add_scalar(BN_EPS).sqrt();
        let shift = self.bias.val() - self.running_mean.value_sync() * scale.clone();
        (scale, shift)
    }
}

/// A per-channel vector [c] as [n, c, 1]: one scalar per row of an [n, c, h·w] tensor.
fn per_row<B: Backend>(v: Tensor<B, 1>, n: usize) -> Tensor<B, 3> {
    let c = v.dims()[0];
    v.reshape([1, c, 1]).repeat_dim(0, n)
}

/// Per-channel multiplier (the HS model's trainable scales), official `ScaleLayer` without bias.
#[derive(Module, Debug)]
pub struct ScaleLayer<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
}

impl<B: Backend> ScaleLayer<B> {
    pub fn new(channels: usize, init: f32, device: &B::Device) -> Self {
        ScaleLayer {
            weight: Param::from_tensor(Tensor::full([channels], init, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        (x.reshape([n, c, h * w]) * per_row(self.weight.val(), n)).reshape([n, c, h, w])
    }
}

/// Fully connected layer with PyTorch's layout: weight [out, in], bias [out].
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    pub fn new(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng, device: &B::Device) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        let weight = Tensor::from_data(uniform_data(vec![outputs, inputs], bound, rng), device);
        let bias = Tensor::from_data(uniform_data(vec![outputs], bound, rng), device);
        Linear {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let outputs = self.bias.dims()[0];
        x.matmul(self.weight.val().transpose()) + self.bias.val().reshape([1, outputs])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn batch_norm_running_statistics_follow_pytorch() {
        let device = Default::default();
        let bn = BatchNorm2d::<Autodiff<Flex>>::new(1, &device);
        // One channel, values 1..=4: mean 2.5, biased var 1.25, unbiased var 5/3.
        let x = Tensor::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 1, 1, 2]),
            &device,
        );
        let y: Vec<f32> = bn.forward(x, true).into_data().to_vec().unwrap();
        let expected = (1.0f32 - 2.5) / (1.25f32 + 1e-5).sqrt();
        assert!(
            (y[0] - expected).abs() < 1e-5,
            "normalized with the biased variance"
        );
        let rm: Vec<f32> = bn.running_mean.value().into_data().to_vec().unwrap();
        let rv: Vec<f32> = bn.running_var.value().into_data().to_vec().unwrap();
        assert!((rm[0] - 0.25).abs() < 1e-6, "0.9·0 + 0.1·2.5");
        assert!(
            (rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6,
            "unbiased variance into the running estimate"
        );
    }
}
