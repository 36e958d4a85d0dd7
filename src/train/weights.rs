//! Weights from files, by their official PyTorch names: `.pth` state dicts, safetensors, and
//! this tool's checkpoints. Used to evaluate, export and fine-tune.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use burn::module::Module;
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;

use super::checkpoint;
use crate::model::params::{describe_load_errors, load_named};

/// Named tensors of a weights file (`.ckpt`, `.safetensors`, else a PyTorch `.pth`). BN's
/// `num_batches_tracked` counters are PyTorch bookkeeping and are left out.
pub fn read_weights(path: &Path) -> anyhow::Result<HashMap<String, TensorData>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    Ok(match ext {
        "ckpt" => checkpoint::read(path)?.model.into_iter().collect(),
        "safetensors" => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            crate::interop::safetensors::from_bytes(&bytes)
                .map_err(|e| {
                    anyhow::anyhow!("{}: not a readable safetensors file: {e}", path.display())
                })?
                .1
                .into_iter()
                .collect()
        }
        _ => crate::interop::read_pth(path)?
            .into_iter()
            .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
            .map(|(k, t)| (k, TensorData::new(t.values, t.shape)))
            .collect(),
    })
}

/// Replaces `model`'s tensors by those of `path`; strict (missing, surplus or mis-shaped
/// tensors are errors naming them).
pub fn load_weights<B: Backend, M: Module<B>>(
    model: M,
    path: &Path,
    kind: &str,
    device: &B::Device,
) -> anyhow::Result<M> {
    load_tensors(model, read_weights(path)?, path, kind, device)
}

/// [`load_weights`] with tensors already read from `source`.
pub fn load_tensors<B: Backend, M: Module<B>>(
    model: M,
    tensors: HashMap<String, TensorData>,
    source: &Path,
    kind: &str,
    device: &B::Device,
) -> anyhow::Result<M> {
    load_named(model, tensors, device).map_err(|errors| {
        anyhow::anyhow!(
            "{} does not fit the {kind} model:\n{}",
            source.display(),
            describe_load_errors(&errors, 12)
        )
    })
}
