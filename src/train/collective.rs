//! What the nodes of a multi-node job exchange through [`crate::dist::Collective`], and when:
//! at the start, an agreement on the job (same devices, same profile, same position) and rank
//! 0's model; every step, one all-reduce that carries the gradients (averaged over the nodes
//! after each node averaged its own devices), rank 0's BN running statistics (as PyTorch DDP
//! broadcasts buffers from rank 0 before every forward), every rank's loss, accuracy, images,
//! compute time and stop signal.
//!
//! Every node averages its own devices first, so the result is the mean over all devices when
//! every node has the same number of them, which [`agree`] makes sure of.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use super::replicas::Scatter;
use crate::dist::{Collective, DistError};
use crate::model::params::{PathStack, is_buffer};

/// What a node says about itself before training; every node must say what rank 0 says.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInfo {
    /// The profile's devices on this node.
    pub devices: String,
    /// The global iteration training starts at (0, or the resumed checkpoint's).
    pub global_iter: u64,
    /// The parts of the profile every node must share (kind, variant, recipe, seed, data set
    /// kind and size), as text.
    pub recipe: String,
}

impl StartInfo {
    fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.devices,
            self.global_iter,
            crate::train::checkpoint::sha256_hex(self.recipe.as_bytes())
        )
    }
}

/// Every node's [`StartInfo`] against rank 0's: an error names the node and both values.
pub fn agree(c: &Collective, mine: &StartInfo) -> anyhow::Result<()> {
    let all = c.all_gather_text("comparing the nodes' profiles", &mine.encode())?;
    let fields: Vec<Vec<&str>> = all.iter().map(|t| t.split('\n').collect()).collect();
    let first = &fields[0];
    for (node, f) in fields.iter().enumerate().skip(1) {
        let get = |i: usize| f.get(i).copied().unwrap_or("?");
        if get(0) != first[0] {
            anyhow::bail!(
                "node {node}'s profile has devices [{}], node 0's has [{}]: every node of a job needs the same devices",
                get(0),
                first[0]
            );
        }
        if get(1) != first[1] {
            anyhow::bail!(
                "node {node} starts at global iteration {}, node 0 at {}: on --resume every node must read the same run directory (a shared file system) and the same --run-id",
                get(1),
                first[1]
            );
        }
        if get(2) != first[2] {
            anyhow::bail!(
                "node {node}'s profile differs from node 0's in kind, variant, recipe, seed or data (SHA-256 {} against {}): start every node with the same profile",
                get(2),
                first[2]
            );
        }
    }
    Ok(())
}

/// Where each tensor sits in the flat vector.
struct Slot {
    offset: usize,
    dims: Vec<usize>,
}

/// Flattens the model's buffers (`buffers`) or the gradients it has (`grads`), in visiting
/// order, recording each tensor's slot by id.
struct Flatten<'a, B: AutodiffBackend> {
    path: PathStack,
    grads: Option<&'a mut GradientsParams>,
    buffers: bool,
    all: bool,
    out: Vec<f32>,
    slots: HashMap<ParamId, Slot>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let buffer = is_buffer(&self.path.path());
        let data = if self.all || (self.buffers && buffer) {
            Some(param.val().inner().into_data())
        } else if let (false, Some(grads)) = (buffer, self.grads.as_deref_mut()) {
            grads
                .remove::<B::InnerBackend, D>(param.id)
                .map(|g| g.into_data())
        } else {
            None
        };
        if let Some(data) = data {
            let dims = data.shape.to_vec();
            let values = data.convert::<f32>().to_vec::<f32>().expect("f32 data");
            self.slots.insert(
                param.id,
                Slot {
                    offset: self.out.len(),
                    dims,
                },
            );
            self.out.extend_from_slice(&values);
        }
    }
}

impl<'a, B: AutodiffBackend> Flatten<'a, B> {
    fn new(grads: Option<&'a mut GradientsParams>, buffers: bool, all: bool) -> Self {
        Flatten {
            path: PathStack::default(),
            grads,
            buffers,
            all,
            out: Vec::new(),
            slots: HashMap::new(),
            _b: std::marker::PhantomData,
        }
    }
}

/// Tensors cut from `values` at the slots, keyed by id, on each parameter's device, divided.
struct Unflatten<'a> {
    values: &'a [f32],
    base: usize,
    divisor: f32,
    slots: &'a HashMap<ParamId, Slot>,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(slot) = self.slots.get(&param.id) else {
            return;
        };
        let n: usize = slot.dims.iter().product();
        let start = self.base + slot.offset;
        let mut v = self.values[start..start + n].to_vec();
        if self.divisor != 1.0 {
            // Divided, not multiplied by the inverse: the same rounding as one process's mean.
            v.iter_mut().for_each(|x| *x /= self.divisor);
        }
        let device = param.val().device();
        let t =
            Tensor::<B::InnerBackend, D>::from_data(TensorData::new(v, slot.dims.clone()), &device);
        self.out.register::<B::InnerBackend, D>(param.id, t);
    }
}

fn unflatten<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    values: &[f32],
    base: usize,
    divisor: f32,
    slots: &HashMap<ParamId, Slot>,
) -> GradientsParams {
    let mut u = Unflatten {
        values,
        base,
        divisor,
        slots,
        out: GradientsParams::new(),
    };
    model.visit(&mut u);
    u.out
}

/// Makes every node's model rank 0's (parameters and BN statistics): a fresh start's weights
/// then do not depend on each node's initialization, and a resumed one is checked equal.
pub fn broadcast_model<B: AutodiffBackend, M: AutodiffModule<B>>(
    c: &Collective,
    model: M,
) -> Result<M, DistError> {
    let mut f = Flatten::<B>::new(None, false, true);
    model.visit(&mut f);
    let (mut values, slots) = (f.out, f.slots);
    if c.rank() != 0 {
        values.iter_mut().for_each(|x| *x = 0.0);
    }
    let values = c.all_reduce_sum("receiving rank 0's model", values)?;
    if c.rank() == 0 {
        return Ok(model);
    }
    let mut replace = unflatten::<B, M>(&model, &values, 0, 1.0, &slots);
    Ok(model.map(&mut Scatter {
        values: &mut replace,
    }))
}

/// A node's numbers for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalStep {
    pub loss_sum: f64,
    pub correct: u64,
    pub images: usize,
    /// Seconds this node spent on its data, forward and backward (not waiting for the others).
    pub compute_s: f64,
    /// The signal this node caught (0: none).
    pub stop: usize,
}

/// One step's numbers over the whole job.
pub struct GlobalStep {
    /// Gradients averaged over every device of every node, keyed by the model's ids.
    pub grads: GradientsParams,
    pub loss_sum: f64,
    pub correct: u64,
    pub images: usize,
    /// Each node's own step, by rank.
    pub per_rank: Vec<LocalStep>,
    /// A signal any node caught (0: none): every node stops after this step.
    pub stop: usize,
    /// Seconds this node spent in the all-reduce (waiting for the others included).
    pub all_reduce_s: f64,
}

const STATS: usize = 5;

/// The step's all-reduce: returns the model with rank 0's BN statistics and the job's step.
pub fn sync_step<B: AutodiffBackend, M: AutodiffModule<B>>(
    c: &Collective,
    model: M,
    mut grads: GradientsParams,
    local: LocalStep,
) -> Result<(M, GlobalStep), DistError> {
    let start = std::time::Instant::now();
    let mut g = Flatten::<B>::new(Some(&mut grads), false, false);
    model.visit(&mut g);
    let (mut values, grad_slots) = (g.out, g.slots);
    let grads_len = values.len();
    let mut b = Flatten::<B>::new(None, true, false);
    model.visit(&mut b);
    let (mut buffers, buffer_slots) = (b.out, b.slots);
    if c.rank() != 0 {
        buffers.iter_mut().for_each(|x| *x = 0.0);
    }
    let buffers_len = buffers.len();
    values.extend(buffers);
    let nodes = c.nodes() as usize;
    let stats_base = values.len();
    values.resize(stats_base + STATS * nodes, 0.0);
    let mine = stats_base + STATS * c.rank() as usize;
    values[mine..mine + STATS].copy_from_slice(&[
        local.loss_sum as f32,
        local.correct as f32,
        local.images as f32,
        local.compute_s as f32,
        local.stop as f32,
    ]);
    let values = c.all_reduce_sum("the step's all-reduce", values)?;
    let grads = unflatten::<B, M>(&model, &values, 0, nodes as f32, &grad_slots);
    let model = if c.rank() != 0 && buffers_len > 0 {
        let mut replace = unflatten::<B, M>(&model, &values, grads_len, 1.0, &buffer_slots);
        model.map(&mut Scatter {
            values: &mut replace,
        })
    } else {
        model
    };
    let per_rank: Vec<LocalStep> = values[stats_base..]
        .chunks(STATS)
        .map(|s| LocalStep {
            loss_sum: s[0] as f64,
            correct: s[1] as u64,
            images: s[2] as usize,
            compute_s: s[3] as f64,
            stop: s[4] as usize,
        })
        .collect();
    let step = GlobalStep {
        grads,
        loss_sum: per_rank.iter().map(|s| s.loss_sum).sum(),
        correct: per_rank.iter().map(|s| s.correct).sum(),
        images: per_rank.iter().map(|s| s.images).sum(),
        stop: per_rank.iter().map(|s| s.stop).max().unwrap_or(0),
        per_rank,
        all_reduce_s: start.elapsed().as_secs_f64(),
    };
    Ok((model, step))
}
