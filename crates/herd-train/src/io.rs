//! Files written so that an interruption never leaves a half-written one:
//! everything goes to a temporary file beside the target, is flushed to
//! disk, and then renamed over it (a rename within a directory is atomic).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use safetensors::tensor::TensorView;

use crate::error::{Result, TrainError};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Raw little-endian bytes and safetensors dtype of a tensor.
fn tensor_bytes(t: &Tensor) -> Result<(safetensors::Dtype, Vec<u8>)> {
    let flat = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::BF16 => (
            safetensors::Dtype::BF16,
            flat.to_vec1::<half::bf16>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            safetensors::Dtype::F16,
            flat.to_vec1::<half::f16>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        _ => (
            safetensors::Dtype::F32,
            flat.to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    })
}

/// Writes named tensors (f32, f16 or bf16 as they are) and optional string
/// metadata as one safetensors file, atomically.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let data = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.dims().to_vec(), tensor_bytes(t)?)))
        .collect::<Result<Vec<_>>>()?;
    let views = data
        .iter()
        .map(|(name, shape, (dtype, bytes))| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| TrainError::BadCheckpoint {
                    path: path.to_path_buf(),
                    reason: format!("tensor {name}: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| TrainError::BadCheckpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
