//! Named float32 tensors as safetensors bytes (checkpoints and weight export).

use std::collections::HashMap;

use burn::tensor::TensorData;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// Serializes named tensors (converted to f32) with string metadata.
pub fn to_bytes(
    tensors: &[(String, TensorData)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, data)| {
            let values = data
                .clone()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| format!("{name}: {e:?}"))?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name.clone(), data.shape.to_vec(), bytes))
        })
        .collect::<Result<_, String>>()?;
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Named tensors and metadata read from safetensors bytes (f32, f16/bf16 are not expected).
pub type Decoded = (HashMap<String, String>, Vec<(String, TensorData)>);

pub fn from_bytes(bytes: &[u8]) -> Result<Decoded, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(format!(
                "tensor '{name}' is {:?}, expected F32",
                view.dtype()
            ));
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
