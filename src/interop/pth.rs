//! Reading PyTorch `.pth` files (zip-pickle state dicts) by tensor name, through burn-store's
//! reader, and importing the official Hyper-Search scale files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn_store::pytorch::PytorchReader;
use burn_store::pytorch::lazy_data::LazyDataSource;

use super::pickle::{TensorLayout, tensor_layouts};

use crate::model::Variant;
use crate::profile::{BlockScales, ScalesProfile};

/// A float tensor read from a file: shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{path}: not a readable PyTorch state dict ({reason}); expected a .pth file written by torch.save"
    )]
    NotPytorch { path: PathBuf, reason: String },
    #[error(
        "{path}: tensor '{key}' is stored with strides {stride:?} for shape {shape:?} (a channels_last, transposed or sliced view) in {dtype}, which cannot be read; save it with .contiguous() (or .float()) and try again"
    )]
    Strided {
        path: PathBuf,
        key: String,
        dtype: String,
        shape: Vec<usize>,
        stride: Vec<usize>,
    },
    #[error("{path}: tensor '{key}' could not be read as float32: {reason}")]
    BadTensor {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "{path}: missing key '{key}' (variant {variant} needs it; is the file for another variant?){}",
        unexpected_hint(unexpected)
    )]
    MissingKey {
        path: PathBuf,
        key: String,
        variant: String,
        unexpected: Vec<String>,
    },
    #[error(
        "{path}: unexpected key '{key}' (variant {variant} has no such scale; is the file for another variant?)"
    )]
    SurplusKey {
        path: PathBuf,
        key: String,
        variant: String,
    },
    #[error(
        "{path}: '{key}' has {found} values, variant {variant} needs {expected} (one per output channel)"
    )]
    Length {
        path: PathBuf,
        key: String,
        variant: String,
        expected: usize,
        found: usize,
    },
}

fn unexpected_hint(unexpected: &[String]) -> String {
    match unexpected {
        [] => String::new(),
        keys => format!(
            "; the file has keys the variant does not: {}",
            keys.join(", ")
        ),
    }
}

/// Every tensor of a `.pth` state dict, by name, converted to f32. Tensors stored as strided
/// views (channels_last, transposed, sliced: burn-store reads them as if they were contiguous)
/// are gathered through their strides from the whole storage.
pub fn read_pth(path: &Path) -> Result<BTreeMap<String, HostTensor>, ImportError> {
    let reader = PytorchReader::new(path).map_err(|e| ImportError::NotPytorch {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let layouts = zip_layouts(path)?;
    let mut out = BTreeMap::new();
    for (key, snapshot) in reader.into_tensors() {
        let bad = |reason: String| ImportError::BadTensor {
            path: path.to_path_buf(),
            key: key.clone(),
            reason,
        };
        if let Some((source, prefix, layouts)) = &layouts
            && let Some(layout) = layouts.get(&key)
            && !layout.is_contiguous()
        {
            let values = gather(path, &key, source, prefix, layout)?;
            out.insert(
                key,
                HostTensor {
                    shape: layout.shape.clone(),
                    values,
                },
            );
            continue;
        }
        let data = snapshot.to_data().map_err(|e| bad(format!("{e:?}")))?;
        let shape = data.shape.to_vec();
        let values = data
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| bad(format!("{e:?}")))?;
        out.insert(key, HostTensor { shape, values });
    }
    Ok(out)
}

type Layouts = HashMap<String, TensorLayout>;

/// For a zip checkpoint (the format of `torch.save` since PyTorch 1.6): its storages, the
/// archive's folder prefix, and every tensor's layout. `None` for the older formats.
fn zip_layouts(path: &Path) -> Result<Option<(LazyDataSource, String, Layouts)>, ImportError> {
    let Ok(source) = LazyDataSource::from_zip(path) else {
        return Ok(None);
    };
    let not_pytorch = |reason: String| ImportError::NotPytorch {
        path: path.to_path_buf(),
        reason,
    };
    // Storages are `<prefix>data/<key>`, the program `<prefix>data.pkl`.
    let prefix = source
        .keys()
        .iter()
        .find_map(|k| k.rfind("data/").map(|i| k[..i].to_string()))
        .unwrap_or_default();
    let pkl = source
        .read(&format!("{prefix}data.pkl"))
        .map_err(|e| not_pytorch(format!("no {prefix}data.pkl: {e}")))?;
    let layouts = tensor_layouts(&pkl)
        .map_err(|e| not_pytorch(format!("cannot read the tensor layouts in data.pkl: {e}")))?;
    Ok(Some((source, prefix, layouts)))
}

/// The values of a strided tensor, gathered from its whole storage.
fn gather(
    path: &Path,
    key: &str,
    source: &LazyDataSource,
    prefix: &str,
    layout: &TensorLayout,
) -> Result<Vec<f32>, ImportError> {
    let bad = |reason: String| ImportError::BadTensor {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let size = match layout.dtype.as_str() {
        "FloatStorage" => 4,
        "DoubleStorage" => 8,
        _ => {
            return Err(ImportError::Strided {
                path: path.to_path_buf(),
                key: key.to_string(),
                dtype: layout.dtype.clone(),
                shape: layout.shape.clone(),
                stride: layout.stride.clone(),
            });
        }
    };
    let bytes = source
        .read(&format!("{prefix}data/{}", layout.storage))
        .map_err(|e| bad(format!("storage {}: {e}", layout.storage)))?;
    let count = bytes.len() / size;
    // Check the extent before allocating anything: the largest index must lie in the storage.
    let numel = layout
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= 1 << 31)
        .ok_or_else(|| bad(format!("shape {:?} is too large", layout.shape)))?;
    let last = layout
        .shape
        .iter()
        .zip(&layout.stride)
        .try_fold(layout.offset, |m, (&d, &s)| {
            m.checked_add(d.saturating_sub(1).checked_mul(s)?)
        });
    if numel > 0 && last.is_none_or(|l| l >= count) {
        return Err(bad(format!(
            "its view (offset {}, shape {:?}, strides {:?}) reaches past its storage of {count} values (a damaged file?)",
            layout.offset, layout.shape, layout.stride
        )));
    }
    let values = layout
        .indices()
        .into_iter()
        .map(|i| {
            let b = &bytes[i * size..(i + 1) * size];
            if size == 4 {
                f32::from_le_bytes(b.try_into().expect("4 bytes"))
            } else {
                f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32
            }
        })
        .collect::<Vec<f32>>();
    Ok(values)
}

/// Imports an official scales file (`stage0.scale_conv.weight`, `stageK.I.scale_{conv,1x1,identity}.weight`,
/// per output channel) for `variant`. Matching is strict and by name: a missing key, a key the
/// variant does not have, or a vector of the wrong length is an error naming the key.
pub fn import_scales(path: &Path, variant: &Variant) -> Result<ScalesProfile, ImportError> {
    let mut tensors = read_pth(path)?;
    let name = variant.name.to_string();
    let expected_keys: Vec<String> = variant
        .plan()
        .iter()
        .flat_map(|p| {
            let mut keys = vec![
                format!("{}.scale_conv.weight", p.name),
                format!("{}.scale_1x1.weight", p.name),
            ];
            if p.has_identity() {
                keys.push(format!("{}.scale_identity.weight", p.name));
            }
            keys
        })
        .collect();
    let unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !expected_keys.contains(k))
        .cloned()
        .collect();
    let mut take = |key: String, expected: usize| -> Result<Vec<f32>, ImportError> {
        let t = tensors
            .remove(&key)
            .ok_or_else(|| ImportError::MissingKey {
                path: path.to_path_buf(),
                key: key.clone(),
                variant: name.clone(),
                unexpected: unexpected.clone(),
            })?;
        if t.values.len() != expected || t.shape.len() != 1 {
            return Err(ImportError::Length {
                path: path.to_path_buf(),
                key,
                variant: name.clone(),
                expected,
                found: t.values.len(),
            });
        }
        Ok(t.values)
    };
    let mut blocks = Vec::new();
    for p in variant.plan() {
        let c = p.out_channels;
        let s = take(format!("{}.scale_conv.weight", p.name), c)?;
        let t = take(format!("{}.scale_1x1.weight", p.name), c)?;
        let u = if p.has_identity() {
            Some(take(format!("{}.scale_identity.weight", p.name), c)?)
        } else {
            None
        };
        blocks.push(BlockScales {
            name: p.name.clone(),
            s,
            t,
            u,
        });
    }
    if let Some(key) = tensors.into_keys().next() {
        return Err(ImportError::SurplusKey {
            path: path.to_path_buf(),
            key,
            variant: name,
        });
    }
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(ScalesProfile {
        variant: variant.name.to_string(),
        source: format!("imported from {file}"),
        blocks,
    })
}
