//! Data parallelism over several devices in one process: the main model lives on the first
//! device; each other device holds a replica built separately (its own BN running state).
//! Every step: copy the main model's tensors (parameters and BN buffers, as PyTorch DDP
//! broadcasts buffers from rank 0) to the replicas, run forward/backward on each shard, move the
//! gradients to the main device, average them, and let the optimizer update the main model.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::data::Batch;
use crate::model::Classifier;
use crate::model::loss::{correct_top_k, cross_entropy};
use crate::model::params::PathStack;

/// Parameter ids by name.
pub fn param_ids<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M) -> HashMap<String, ParamId> {
    struct Ids {
        path: PathStack,
        out: HashMap<String, ParamId>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Ids {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.insert(self.path.path(), param.id);
        }
    }
    let mut v = Ids {
        path: PathStack::default(),
        out: HashMap::new(),
    };
    model.visit(&mut v);
    v.out
}

/// Collects `source`'s tensors (inner backend, moved to `device`) keyed by the ids that the
/// same names have in the destination.
struct Gather<'a, B: AutodiffBackend> {
    path: PathStack,
    dest_ids: &'a HashMap<String, ParamId>,
    device: B::Device,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(id) = self.dest_ids.get(&self.path.path()) {
            self.out
                .register::<B::InnerBackend, D>(*id, param.val().inner().to_device(&self.device));
        }
    }
}

/// Replaces each tensor whose id is in `values`.
pub(crate) struct Scatter<'a> {
    pub values: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Scatter<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(value) = self.values.remove::<B::InnerBackend, D>(param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let mut t = Tensor::<B, D>::from_inner(value);
        if tensor.is_require_grad() {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// One replica on a device other than the main one.
pub struct Replica<B: AutodiffBackend, M> {
    pub device: B::Device,
    pub model: M,
    ids: HashMap<String, ParamId>,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Replica<B, M> {
    pub fn new(model: M, device: B::Device) -> Self {
        let ids = param_ids::<B, M>(&model);
        Replica { device, model, ids }
    }

    /// Makes the replica equal to `main` (parameters and BN buffers).
    pub fn sync_from(&mut self, main: &M) {
        let mut gather = Gather::<B> {
            path: PathStack::default(),
            dest_ids: &self.ids,
            device: self.device.clone(),
            out: GradientsParams::new(),
        };
        main.visit(&mut gather);
        let mut values = gather.out;
        self.model = self.model.clone().map(&mut Scatter {
            values: &mut values,
        });
    }

    /// The replica's gradients re-keyed by the main model's ids and moved to its device.
    pub fn grads_for_main(
        &self,
        mut grads: GradientsParams,
        main_ids: &HashMap<String, ParamId>,
        main_device: &B::Device,
    ) -> GradientsParams {
        struct Rekey<'a, B: AutodiffBackend> {
            path: PathStack,
            grads: &'a mut GradientsParams,
            main_ids: &'a HashMap<String, ParamId>,
            device: B::Device,
            out: GradientsParams,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Rekey<'_, B> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.enter(name);
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.exit();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let (Some(g), Some(id)) = (
                    self.grads.remove::<B::InnerBackend, D>(param.id),
                    self.main_ids.get(&self.path.path()),
                ) {
                    self.out
                        .register::<B::InnerBackend, D>(*id, g.to_device(&self.device));
                }
            }
        }
        let mut v = Rekey::<B> {
            path: PathStack::default(),
            grads: &mut grads,
            main_ids,
            device: main_device.clone(),
            out: GradientsParams::new(),
        };
        self.model.visit(&mut v);
        v.out
    }
}

/// The mean of several gradient sets keyed by `main`'s ids.
pub fn average_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    main: &M,
    mut sets: Vec<GradientsParams>,
) -> GradientsParams {
    struct Avg<'a> {
        sets: &'a mut [GradientsParams],
        out: GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Avg<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = self.sets.len() as f64;
            let mut sum: Option<Tensor<B::InnerBackend, D>> = None;
            for set in self.sets.iter_mut() {
                if let Some(g) = set.remove::<B::InnerBackend, D>(param.id) {
                    sum = Some(match sum {
                        None => g,
                        Some(s) => s + g,
                    });
                }
            }
            if let Some(s) = sum {
                self.out
                    .register::<B::InnerBackend, D>(param.id, s.div_scalar(n));
            }
        }
    }
    let mut v = Avg {
        sets: &mut sets,
        out: GradientsParams::new(),
    };
    main.visit(&mut v);
    v.out
}

/// What one data-parallel forward/backward produced.
pub struct StepOutput {
    /// Gradients averaged over the devices, keyed by the main model's ids, on the main device.
    pub grads: GradientsParams,
    /// Sum of the per-image losses and the number of correct top-1 predictions.
    pub loss_sum: f64,
    pub correct: u64,
    pub images: usize,
}

/// Forward and backward of one shard per device (shard r on device r: the main model for r = 0,
/// replica r − 1 otherwise), gradients averaged on the main device.
pub fn forward_backward<B: AutodiffBackend, M: AutodiffModule<B> + Classifier<B>>(
    model: &M,
    main_device: &B::Device,
    replicas: &mut [Replica<B, M>],
    main_ids: &HashMap<String, ParamId>,
    shards: Vec<Batch>,
    label_smoothing: f64,
    classes: usize,
) -> StepOutput {
    let world = shards.len();
    let (mut loss_sum, mut correct, mut images) = (0.0f64, 0u64, 0usize);
    let mut grad_sets = Vec::with_capacity(world);
    for (r, batch) in shards.into_iter().enumerate() {
        let labels = batch.labels.clone();
        let (device, m) = if r == 0 {
            (main_device, model)
        } else {
            replicas[r - 1].sync_from(model);
            (&replicas[r - 1].device, &replicas[r - 1].model)
        };
        let (x, y) = batch.into_tensors::<B>(device);
        let logits = m.logits(x, true);
        let loss = cross_entropy(logits.clone(), y, label_smoothing);
        let grads = GradientsParams::from_grads(loss.backward(), m);
        let host: Vec<f32> = logits
            .inner()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32");
        correct += correct_top_k(&host, classes, &labels, 1) as u64;
        loss_sum +=
            burn::tensor::ElementConversion::elem::<f64>(loss.into_scalar()) * labels.len() as f64;
        images += labels.len();
        grad_sets.push(if r == 0 {
            grads
        } else {
            replicas[r - 1].grads_for_main(grads, main_ids, main_device)
        });
    }
    let grads = if world == 1 {
        grad_sets.pop().expect("one shard")
    } else {
        average_grads::<B, M>(model, grad_sets)
    };
    StepOutput {
        grads,
        loss_sum,
        correct,
        images,
    }
}
