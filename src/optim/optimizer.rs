//! SGD and AdamW with Grad Mult masks, in the exact order of the official `RepOptimizerSGD` /
//! `RepOptimizerAdamW`. State is keyed by parameter name, so it survives a rebuilt model and
//! can be saved in a checkpoint.

use std::collections::{HashMap, HashSet};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::kernels::FactoredMask;
use crate::model::Variant;
use crate::model::params::PathStack;
use crate::profile::ScalesProfile;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum UpdateRule {
    /// SGD with momentum (no dampening, PyTorch semantics), optionally Nesterov.
    Sgd { momentum: f64, nesterov: bool },
    /// AdamW with decoupled weight decay (the RepOptimizer uses power-1 masks; exact only for
    /// positive scales).
    AdamW { beta1: f64, beta2: f64, eps: f64 },
}

impl UpdateRule {
    /// The official recipe: momentum 0.9, Nesterov.
    pub fn official_sgd() -> Self {
        UpdateRule::Sgd {
            momentum: 0.9,
            nesterov: true,
        }
    }

    /// Power of the scales in the Grad Mult masks: 2 for SGD, 1 for AdamW.
    pub fn mask_power(&self) -> i32 {
        match self {
            UpdateRule::Sgd { .. } => 2,
            UpdateRule::AdamW { .. } => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub rule: UpdateRule,
    /// Applied to the parameters `decays` selects.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (HS runs only: it breaks the equivalence).
    pub grad_clip_norm: Option<f64>,
    /// Test-only negative control: multiply the weight-decay term by the mask too (wrong).
    pub mask_weight_decay: bool,
}

impl OptimizerConfig {
    pub fn new(rule: UpdateRule, weight_decay: f64) -> Self {
        OptimizerConfig {
            rule,
            weight_decay,
            grad_clip_norm: None,
            mask_weight_decay: false,
        }
    }
}

/// The official weight-decay groups (`set_weight_decay`): identity scales decay; other 1-D
/// tensors and biases do not (BN, HS s/t scales, linear bias); everything else does (conv and
/// linear weights).
pub fn decays(name: &str, rank: usize) -> bool {
    if name.contains("identity.weight") {
        return true;
    }
    !(rank == 1 || name.ends_with(".bias"))
}

/// Grad Mult masks by parameter name (`stage1.0.conv.weight`): kept as per-channel factors
/// (what the fused loops read), expanded to flat tensors on the device on first use by the
/// tensor-operation paths (GPUs).
pub struct GradMults<B: Backend> {
    factors: HashMap<String, FactoredMask>,
    dense: HashMap<String, Tensor<B, 1>>,
    device: Option<B::Device>,
}

impl<B: Backend> GradMults<B> {
    pub fn none() -> Self {
        GradMults {
            factors: HashMap::new(),
            dense: HashMap::new(),
            device: None,
        }
    }

    /// Masks for every block's 3x3 conv weight of the target model (`<block>.conv.weight`),
    /// stage0 and the stride-2 blocks included. `power` is 2 for SGD, 1 for AdamW.
    pub fn from_scales(
        scales: &ScalesProfile,
        variant: &Variant,
        power: i32,
        device: &B::Device,
    ) -> Self {
        let mut factors = HashMap::new();
        for (plan, block) in variant.plan().iter().zip(&scales.blocks) {
            factors.insert(
                format!("{}.conv.weight", plan.name),
                FactoredMask::new(
                    plan.in_channels,
                    &block.s,
                    &block.t,
                    plan.has_identity(),
                    power,
                ),
            );
        }
        GradMults {
            factors,
            dense: HashMap::new(),
            device: Some(device.clone()),
        }
    }

    pub fn len(&self) -> usize {
        self.factors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.factors.is_empty()
    }

    /// The mask of a parameter as per-channel factors.
    pub fn factors(&self, name: &str) -> Option<&FactoredMask> {
        self.factors.get(name)
    }

    /// The mask of a parameter as a flat tensor on the device (built once, then kept).
    pub fn get(&mut self, name: &str) -> Option<Tensor<B, 1>> {
        if let Some(t) = self.dense.get(name) {
            return Some(t.clone());
        }
        let f = self.factors.get(name)?;
        let device = self.device.as_ref()?;
        let mut values = Vec::with_capacity(f.row_len() * f.s_pow.len());
        for o in 0..f.s_pow.len() {
            values.extend(f.row(o));
        }
        let n = values.len();
        let t = Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device);
        self.dense.insert(name.to_string(), t.clone());
        Some(t)
    }
}

/// Per-parameter optimizer state, flattened.
#[derive(Clone)]
struct ParamState<B: Backend> {
    /// SGD momentum buffer.
    momentum: Option<Tensor<B, 1>>,
    /// AdamW first and second moments.
    exp_avg: Option<Tensor<B, 1>>,
    exp_avg_sq: Option<Tensor<B, 1>>,
    /// AdamW step count of this parameter.
    steps: u64,
}

impl<B: Backend> Default for ParamState<B> {
    fn default() -> Self {
        ParamState {
            momentum: None,
            exp_avg: None,
            exp_avg_sq: None,
            steps: 0,
        }
    }
}

/// How the update is computed; chosen from the backend, tests pick each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePath {
    /// burn tensor operations on any backend (burn-cuda uses this).
    TensorOps,
    /// Flex: fused loops over host memory (`host.rs`).
    FlexHost,
    /// LibTorch: in place on torch memory, fused loops on the CPU (`torch.rs`).
    #[cfg(feature = "tch")]
    TorchFused,
    /// LibTorch: in-place torch operations (what CUDA devices run; tests run it on the CPU).
    #[cfg(feature = "tch")]
    TorchOps,
}

impl UpdatePath {
    /// The fastest path for backend `B`.
    pub fn for_backend<B: Backend>() -> Self {
        #[cfg(feature = "tch")]
        if super::torch::is_libtorch::<B>() {
            return UpdatePath::TorchFused;
        }
        if std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Flex>() {
            UpdatePath::FlexHost
        } else {
            UpdatePath::TensorOps
        }
    }
}

/// The RepOptimizer over the inner (non-autodiff) backend `B`.
pub struct RepOptimizer<B: Backend> {
    config: OptimizerConfig,
    masks: GradMults<B>,
    frozen: HashSet<String>,
    state: HashMap<String, ParamState<B>>,
    path: UpdatePath,
}

impl<B: Backend> RepOptimizer<B> {
    pub fn new(config: OptimizerConfig, masks: GradMults<B>) -> Self {
        RepOptimizer {
            config,
            masks,
            frozen: HashSet::new(),
            state: HashMap::new(),
            path: UpdatePath::for_backend::<B>(),
        }
    }

    /// Plain SGD / AdamW: the same code without masks.
    pub fn plain(config: OptimizerConfig) -> Self {
        Self::new(config, GradMults::none())
    }

    /// Parameters that are never updated (the constant s and t of a CSLA model).
    pub fn with_frozen(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.frozen.extend(names);
        self
    }

    /// Uses tensor operations even on the CPU backend (tests compare the two paths).
    pub fn with_tensor_ops(self) -> Self {
        self.with_path(UpdatePath::TensorOps)
    }

    /// Uses the given update path (tests run each one; a backend-specific path on another
    /// backend panics).
    pub fn with_path(mut self, path: UpdatePath) -> Self {
        self.path = path;
        self
    }

    pub fn path(&self) -> UpdatePath {
        self.path
    }

    /// One update of every parameter that has a gradient. Returns the global gradient norm
    /// (before clipping) when clipping is on; computing it costs a pass over every gradient.
    pub fn step<AB, M>(&mut self, model: M, mut grads: GradientsParams, lr: f64) -> (M, Option<f64>)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: AutodiffModule<AB>,
    {
        let (mut norm, mut clip) = (None, None);
        if let Some(max) = self.config.grad_clip_norm {
            let mut visitor = GradNorm::<B> {
                frozen: &self.frozen,
                path: PathStack::default(),
                grads: &grads,
                sum_sq: 0.0,
                _b: Default::default(),
            };
            model.visit(&mut visitor);
            let total = visitor.sum_sq.sqrt();
            // torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6) when that is below 1.
            let factor = max / (total + 1e-6);
            clip = (factor < 1.0).then_some(factor);
            norm = Some(total);
        }
        let mut mapper = StepMapper {
            opt: self,
            path: PathStack::default(),
            grads: &mut grads,
            lr,
            clip,
        };
        let model = model.map(&mut mapper);
        (model, norm)
    }

    fn update<const D: usize>(
        &mut self,
        name: &str,
        param: Tensor<B, D>,
        grad: Tensor<B, D>,
        lr: f64,
    ) -> Tensor<B, D> {
        let wd = if decays(name, D) {
            self.config.weight_decay
        } else {
            0.0
        };
        match self.path {
            UpdatePath::FlexHost => return self.update_host(name, wd, param, grad, lr),
            #[cfg(feature = "tch")]
            UpdatePath::TorchFused => return self.update_torch(name, wd, param, grad, lr, true),
            #[cfg(feature = "tch")]
            UpdatePath::TorchOps => return self.update_torch(name, wd, param, grad, lr, false),
            UpdatePath::TensorOps => {}
        }
        // Tensor operations on flattened tensors (state and masks are kept flat).
        let shape = param.shape();
        let n = shape.num_elements();
        self.update_tensor_ops(name, wd, param.reshape([n]), grad.reshape([n]), lr)
            .reshape(shape)
    }

    fn update_tensor_ops(
        &mut self,
        name: &str,
        wd: f64,
        param: Tensor<B, 1>,
        grad: Tensor<B, 1>,
        lr: f64,
    ) -> Tensor<B, 1> {
        let mask = self.masks.get(name);
        let state = self.state.entry(name.to_string()).or_default();
        match self.config.rule {
            UpdateRule::Sgd { momentum, nesterov } => {
                // g ← grad ⊙ M; g ← g + wd·W (after the mask: weight decay is never masked).
                let mut g = match &mask {
                    Some(m) => grad * m.clone(),
                    None => grad,
                };
                if wd != 0.0 {
                    let decay = param.clone().mul_scalar(wd);
                    g = match (&mask, self.config.mask_weight_decay) {
                        (Some(m), true) => g + decay * m.clone(),
                        _ => g + decay,
                    };
                }
                if momentum != 0.0 {
                    // First step: buf = g; then buf = momentum·buf + g (no dampening).
                    let buf = match state.momentum.take() {
                        None => g.clone(),
                        Some(buf) => buf.mul_scalar(momentum) + g.clone(),
                    };
                    g = if nesterov {
                        g + buf.clone().mul_scalar(momentum)
                    } else {
                        buf.clone()
                    };
                    state.momentum = Some(buf);
                }
                param - g.mul_scalar(lr)
            }
            UpdateRule::AdamW { beta1, beta2, eps } => {
                // Official RepOptimizerAdamW: the gradient is multiplied by M, the moments are
                // built from it, and the update is multiplied by M once more.
                let g = match &mask {
                    Some(m) => grad * m.clone(),
                    None => grad,
                };
                state.steps += 1;
                let param = if wd != 0.0 {
                    param.mul_scalar(1.0 - lr * wd)
                } else {
                    param
                };
                let m = match state.exp_avg.take() {
                    None => g.clone().mul_scalar(1.0 - beta1),
                    Some(m) => m.mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1),
                };
                let v = match state.exp_avg_sq.take() {
                    None => g.clone().square().mul_scalar(1.0 - beta2),
                    Some(v) => v.mul_scalar(beta2) + g.square().mul_scalar(1.0 - beta2),
                };
                let bias1 = 1.0 - beta1.powi(state.steps as i32);
                let bias2 = 1.0 - beta2.powi(state.steps as i32);
                let denom = v.clone().sqrt().div_scalar(bias2.sqrt()).add_scalar(eps);
                let numer = match &mask {
                    Some(mk) => m.clone() * mk.clone(),
                    None => m.clone(),
                };
                state.exp_avg = Some(m);
                state.exp_avg_sq = Some(v);
                param - (numer / denom).mul_scalar(lr / bias1)
            }
        }
    }

    /// [`Self::update`] on host memory: the CPU backend hands its buffers over without copies
    /// when they are not shared.
    fn update_host<const D: usize>(
        &mut self,
        name: &str,
        wd: f64,
        param: Tensor<B, D>,
        grad: Tensor<B, D>,
        lr: f64,
    ) -> Tensor<B, D> {
        let device = param.device();
        let n = param.shape().num_elements();
        let mask = self.masks.factors(name);
        let state = self.state.entry(name.to_string()).or_default();
        let host = |t: Option<Tensor<B, 1>>| -> (TensorData, bool) {
            match t {
                Some(t) => (t.into_data().convert::<f32>(), false),
                None => (TensorData::new(vec![0f32; n], [n]), true),
            }
        };
        let mut p = param.into_data().convert::<f32>();
        let g = host_values(grad);
        let (pv, gv) = (
            p.as_mut_slice::<f32>().expect("f32"),
            g.as_slice::<f32>().expect("f32"),
        );
        match self.config.rule {
            UpdateRule::Sgd { momentum, nesterov } => {
                let mut buf = (momentum != 0.0).then(|| host(state.momentum.take()));
                let first = buf.as_ref().is_some_and(|b| b.1);
                let bv = buf
                    .as_mut()
                    .map(|b| b.0.as_mut_slice::<f32>().expect("f32"));
                super::host::sgd(
                    pv,
                    gv,
                    mask,
                    bv,
                    first,
                    wd as f32,
                    self.config.mask_weight_decay,
                    momentum as f32,
                    nesterov,
                    lr as f32,
                );
                state.momentum = buf.map(|b| Tensor::from_data(b.0, &device));
            }
            UpdateRule::AdamW { beta1, beta2, eps } => {
                state.steps += 1;
                let (mut m, first) = host(state.exp_avg.take());
                let (mut v, _) = host(state.exp_avg_sq.take());
                let bias1 = 1.0 - beta1.powi(state.steps as i32);
                let bias2 = 1.0 - beta2.powi(state.steps as i32);
                super::host::adamw(
                    pv,
                    gv,
                    mask,
                    m.as_mut_slice::<f32>().expect("f32"),
                    v.as_mut_slice::<f32>().expect("f32"),
                    first,
                    wd as f32,
                    lr as f32,
                    beta1 as f32,
                    beta2 as f32,
                    eps as f32,
                    bias1 as f32,
                    bias2.sqrt() as f32,
                );
                state.exp_avg = Some(Tensor::from_data(m, &device));
                state.exp_avg_sq = Some(Tensor::from_data(v, &device));
            }
        }
        Tensor::from_data(p, &device)
    }

    /// [`Self::update`] in place on LibTorch tensors (`torch.rs`).
    #[cfg(feature = "tch")]
    fn update_torch<const D: usize>(
        &mut self,
        name: &str,
        wd: f64,
        param: Tensor<B, D>,
        grad: Tensor<B, D>,
        lr: f64,
        fused: bool,
    ) -> Tensor<B, D> {
        use super::torch;
        let mask = torch::MaskSource {
            masks: &mut self.masks,
            name,
        };
        let state = self.state.entry(name.to_string()).or_default();
        match self.config.rule {
            UpdateRule::Sgd { momentum, nesterov } => {
                let args = torch::Sgd {
                    wd,
                    mask_weight_decay: self.config.mask_weight_decay,
                    momentum,
                    nesterov,
                    lr,
                };
                let (p, buf) = torch::sgd(param, grad, mask, state.momentum.take(), args, fused);
                state.momentum = buf;
                p
            }
            UpdateRule::AdamW { beta1, beta2, eps } => {
                state.steps += 1;
                let args = torch::AdamW {
                    wd,
                    lr,
                    beta1,
                    beta2,
                    eps,
                    bias1: 1.0 - beta1.powi(state.steps as i32),
                    bias2: 1.0 - beta2.powi(state.steps as i32),
                };
                let moments = state.exp_avg.take().zip(state.exp_avg_sq.take());
                let (p, (m, v)) = torch::adamw(param, grad, mask, moments, args, fused);
                state.exp_avg = Some(m);
                state.exp_avg_sq = Some(v);
                p
            }
        }
    }

    /// The state as named tensors (`<param>.momentum_buffer`, `<param>.exp_avg`,
    /// `<param>.exp_avg_sq`, `<param>.step`), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, TensorData)> {
        let mut out = Vec::new();
        let mut names: Vec<_> = self.state.keys().collect();
        names.sort();
        for name in names {
            let s = &self.state[name];
            for (suffix, t) in [
                ("momentum_buffer", &s.momentum),
                ("exp_avg", &s.exp_avg),
                ("exp_avg_sq", &s.exp_avg_sq),
            ] {
                if let Some(t) = t {
                    out.push((format!("{name}.{suffix}"), t.clone().into_data()));
                }
            }
            if s.steps > 0 {
                out.push((
                    format!("{name}.step"),
                    TensorData::new(vec![s.steps as f32], [1]),
                ));
            }
        }
        out
    }

    /// Restores state written by `state_tensors`.
    pub fn load_state_tensors(
        &mut self,
        tensors: Vec<(String, TensorData)>,
        device: &B::Device,
    ) -> Result<(), String> {
        self.state.clear();
        for (key, data) in tensors {
            let (name, suffix) = key
                .rsplit_once('.')
                .ok_or_else(|| format!("bad optimizer state key '{key}'"))?;
            let n = data.num_elements();
            let s = self.state.entry(name.to_string()).or_default();
            let tensor = || {
                Tensor::<B, 1>::from_data(
                    TensorData::new(
                        data.clone()
                            .convert::<f32>()
                            .to_vec::<f32>()
                            .unwrap_or_default(),
                        [n],
                    ),
                    device,
                )
            };
            match suffix {
                "momentum_buffer" => s.momentum = Some(tensor()),
                "exp_avg" => s.exp_avg = Some(tensor()),
                "exp_avg_sq" => s.exp_avg_sq = Some(tensor()),
                "step" => {
                    s.steps = data
                        .convert::<f32>()
                        .to_vec::<f32>()
                        .map_err(|e| format!("{key}: {e:?}"))?[0]
                        as u64;
                }
                _ => return Err(format!("unknown optimizer state '{key}'")),
            }
        }
        Ok(())
    }
}

/// A tensor's values on the host, in row-major order. A strided Flex tensor (a weight gradient
/// is a permuted view) is copied by runs rather than by Flex's element-by-element walk.
fn host_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> TensorData {
    let primitive = t.into_primitive().tensor();
    let strided = (&primitive as &dyn std::any::Any)
        .downcast_ref::<burn::backend::flex::FlexTensor>()
        .filter(|f| !f.is_contiguous() && f.dtype() == burn::tensor::DType::F32)
        .and_then(|f| {
            let l = f.layout();
            let values = super::host::strided_to_contiguous(
                f.storage::<f32>(),
                l.shape(),
                l.strides(),
                l.start_offset(),
            )?;
            Some(TensorData::new(values, l.shape().clone()))
        });
    strided.unwrap_or_else(|| {
        Tensor::<B, D>::from_primitive(burn::tensor::TensorPrimitive::Float(primitive))
            .into_data()
            .convert::<f32>()
    })
}

struct GradNorm<'a, B: Backend> {
    frozen: &'a HashSet<String>,
    path: PathStack,
    grads: &'a GradientsParams,
    sum_sq: f64,
    _b: std::marker::PhantomData<B>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for GradNorm<'_, AB::InnerBackend> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if self.frozen.contains(&self.path.path()) {
            return;
        }
        if let Some(g) = self.grads.get::<AB::InnerBackend, D>(param.id) {
            self.sum_sq += g.square().sum().into_scalar().elem::<f64>();
        }
    }
}

struct StepMapper<'a, B: Backend> {
    opt: &'a mut RepOptimizer<B>,
    path: PathStack,
    grads: &'a mut GradientsParams,
    lr: f64,
    clip: Option<f64>,
}

impl<AB: AutodiffBackend> ModuleMapper<AB> for StepMapper<'_, AB::InnerBackend> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<AB, D>>) -> Param<Tensor<AB, D>> {
        let name = self.path.path();
        let Some(grad) = self.grads.remove::<AB::InnerBackend, D>(param.id) else {
            return param;
        };
        if self.opt.frozen.contains(&name) {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let mut grad = grad;
        if let Some(c) = self.clip {
            grad = grad.mul_scalar(c);
        }
        let updated = self.opt.update(&name, tensor.inner(), grad, self.lr);
        let mut tensor = Tensor::<AB, D>::from_inner(updated);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
