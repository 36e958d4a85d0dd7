//! Parameters by their PyTorch state-dict names (`stage1.0.conv.weight`, …): listing, counting,
//! reading and replacing them. The names come from the module field names, so they match the
//! official checkpoints without remapping.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Tracks the dotted path while a visitor or mapper walks a module.
#[derive(Default)]
pub struct PathStack(Vec<String>);

impl PathStack {
    pub fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    pub fn exit(&mut self) {
        self.0.pop();
    }
    pub fn path(&self) -> String {
        self.0.join(".")
    }
}

/// Running statistics are module state, not parameters (PyTorch's buffers).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

struct Collect<'a> {
    path: PathStack,
    out: &'a mut Vec<(String, TensorData)>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push((self.path.path(), param.val().into_data()));
    }
}

/// Every float tensor of the module (parameters and BN running statistics), in visiting order.
pub fn named_tensors<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, TensorData)> {
    let mut out = Vec::new();
    module.visit(&mut Collect {
        path: PathStack::default(),
        out: &mut out,
    });
    out
}

struct Shapes<'a> {
    path: PathStack,
    out: &'a mut Vec<(String, Vec<usize>)>,
}

impl<B: Backend> ModuleVisitor<B> for Shapes<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out
            .push((self.path.path(), param.lazy_shape().dims::<D>().to_vec()));
    }
}

/// Names and shapes of every float tensor, without reading any data.
pub fn named_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    module.visit(&mut Shapes {
        path: PathStack::default(),
        out: &mut out,
    });
    out
}

/// Learnable parameter count, as PyTorch's `sum(p.numel() for p in model.parameters())`.
pub fn parameter_count<B: Backend, M: Module<B>>(module: &M) -> usize {
    named_shapes::<B, M>(module)
        .into_iter()
        .filter(|(name, _)| !is_buffer(name))
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum()
}

/// Why a set of named tensors does not fit a module.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoadError {
    #[error(
        "missing tensor '{0}' (the model expects it; is the file for another variant or model kind?)"
    )]
    Missing(String),
    #[error(
        "unexpected tensor '{0}' (the model has no such parameter; is the file for another variant or model kind?)"
    )]
    Surplus(String),
    #[error("tensor '{name}' has shape {found:?}, the model expects {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

struct Replace<'a, B: Backend> {
    path: PathStack,
    tensors: &'a mut HashMap<String, TensorData>,
    device: B::Device,
    errors: Vec<LoadError>,
}

impl<B: Backend> ModuleMapper<B> for Replace<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.path();
        let Some(data) = self.tensors.remove(&name) else {
            self.errors.push(LoadError::Missing(name));
            return param;
        };
        let expected = param.lazy_shape().dims::<D>().to_vec();
        if data.shape.as_slice() != expected.as_slice() {
            self.errors.push(LoadError::Shape {
                name,
                expected,
                found: data.shape.to_vec(),
            });
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let mut value = Tensor::from_data(data.convert::<f32>(), &self.device);
        if require_grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Replaces every float tensor of `module` by the tensor of the same name. Strict: a missing
/// name, a surplus name or a shape that differs is an error (all of them are reported).
/// Parameter ids are kept, so optimizer state keyed by id stays valid.
pub fn load_named<B: Backend, M: Module<B>>(
    module: M,
    tensors: HashMap<String, TensorData>,
    device: &B::Device,
) -> Result<M, Vec<LoadError>> {
    let mut tensors = tensors;
    let mut mapper = Replace::<B> {
        path: PathStack::default(),
        tensors: &mut tensors,
        device: device.clone(),
        errors: vec![],
    };
    let module = module.map(&mut mapper);
    let mut errors = mapper.errors;
    let surplus: BTreeMap<_, _> = tensors.into_iter().collect();
    errors.extend(surplus.into_keys().map(LoadError::Surplus));
    if errors.is_empty() {
        Ok(module)
    } else {
        Err(errors)
    }
}

/// Formats load errors as one message: missing and unexpected names grouped (at most `max` of
/// each shown), shape mismatches one per line.
pub fn describe_load_errors(errors: &[LoadError], max: usize) -> String {
    let list = |names: Vec<&String>| {
        let shown: Vec<&str> = names.iter().take(max).map(|s| s.as_str()).collect();
        let more = names.len().saturating_sub(max);
        format!(
            "{}{}",
            shown.join(", "),
            if more > 0 {
                format!(", … and {more} more")
            } else {
                String::new()
            }
        )
    };
    let missing: Vec<&String> = errors
        .iter()
        .filter_map(|e| {
            if let LoadError::Missing(n) = e {
                Some(n)
            } else {
                None
            }
        })
        .collect();
    let surplus: Vec<&String> = errors
        .iter()
        .filter_map(|e| {
            if let LoadError::Surplus(n) = e {
                Some(n)
            } else {
                None
            }
        })
        .collect();
    let mut lines = Vec::new();
    if !missing.is_empty() {
        lines.push(format!(
            "  - {} missing tensor(s) the model expects: {}",
            missing.len(),
            list(missing)
        ));
    }
    if !surplus.is_empty() {
        lines.push(format!(
            "  - {} unexpected tensor(s) the model does not have: {}",
            surplus.len(),
            list(surplus)
        ));
    }
    lines.extend(
        errors
            .iter()
            .filter(|e| matches!(e, LoadError::Shape { .. }))
            .take(max)
            .map(|e| format!("  - {e}")),
    );
    lines.push("  (is the file for another variant or model kind?)".to_string());
    lines.join("\n")
}
