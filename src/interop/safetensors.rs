//! Named float32 tensors as safetensors bytes (checkpoints and weight export).

use std::collections::HashMap;

use burn::tensor::TensorData;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// Why named tensors could not be written as, or read from, safetensors bytes.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("tensor '{name}': {why}")]
    Tensor { name: String, why: String },
    #[error("{0}")]
    Format(#[from] safetensors::SafeTensorError),
}

/// Serializes named tensors (converted to f32) with string metadata.
pub fn to_bytes(
    tensors: &[(String, TensorData)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, SafetensorsError> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, data)| {
            let values = data.clone().convert::<f32>().to_vec::<f32>().map_err(|e| {
                SafetensorsError::Tensor {
                    name: name.clone(),
                    why: format!("{e:?}"),
                }
            })?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name.clone(), data.shape.to_vec(), bytes))
        })
        .collect::<Result<_, SafetensorsError>>()?;
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| SafetensorsError::Tensor {
                    name: name.clone(),
                    why: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, SafetensorsError>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// Named tensors and metadata read from safetensors bytes (f32, f16/bf16 are not expected).
pub type Decoded = (HashMap<String, String>, Vec<(String, TensorData)>);

pub fn from_bytes(bytes: &[u8]) -> Result<Decoded, SafetensorsError> {
    let (_, meta) = SafeTensors::read_metadata(bytes)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(SafetensorsError::Tensor {
                why: format!("{:?}, expected F32", view.dtype()),
                name,
            });
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.push((name, TensorData::new(values, view.shape().to_vec())));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((metadata, out))
}
