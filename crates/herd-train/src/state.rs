//! Training checkpoints: one safetensors file holding the trainable
//! weights, both AdamW moments and, in its metadata, the step, the data
//! cursor and the run's identity. One file, written atomically, so a crash
//! or Ctrl-C while saving leaves the previous checkpoint intact and a
//! checkpoint can never mix the weights of one step with the moments of
//! another.
//!
//! The generator that shuffles the data is re-seeded from `(seed, epoch)`
//! at each epoch, so `(epoch, row)` is its whole state; LoRA's initial `A`
//! is overwritten by the saved values. Everything that shapes the loss
//! curve is thus restored, which makes a resumed run bit-identical to an
//! uninterrupted one on the same machine and thread count.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::Cursor;
use crate::error::{Result, TrainError};
use crate::io::save_safetensors;
use crate::model::TrainModel;
use crate::optim::AdamW;

const METADATA_KEY: &str = "herd_train_state";
const FORMAT_VERSION: u32 = 1;

/// What a checkpoint must agree on to be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The model's configuration.
    pub model: String,
    /// FNV-1a of the initial embedding matrix (which base checkpoint).
    pub base_weights: String,
    /// Full or LoRA (rank, alpha, targets).
    pub tuning: String,
    /// FNV-1a of the training examples' ids and loss masks.
    pub data: String,
    /// Every option that shapes the trajectory (rates, batch, seed, ...).
    pub options: String,
}

impl RunIdentity {
    /// The first difference from `other` in words, if any.
    fn difference(&self, saved: &RunIdentity) -> Option<String> {
        let fields = [
            ("model configuration", &self.model, &saved.model),
            ("base weights", &self.base_weights, &saved.base_weights),
            ("tuning", &self.tuning, &saved.tuning),
            ("training data", &self.data, &saved.data),
            ("training options", &self.options, &saved.options),
        ];
        fields.into_iter().find(|(_, now, then)| now != then).map(|(what, now, then)| {
            format!("the checkpoint was made with a different {what}:\n  checkpoint: {then}\n  now:        {now}")
        })
    }
}

/// The scalar state saved with the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// Format version.
    pub version: u32,
    /// The run this belongs to.
    pub identity: RunIdentity,
    /// Optimizer steps completed.
    pub step: usize,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Row of the next batch.
    pub row: usize,
    /// AdamW's update counter.
    pub adam_t: usize,
    /// Input positions processed so far.
    pub tokens: u64,
}

impl SavedState {
    /// A state for `step` with `cursor`.
    pub fn new(
        identity: RunIdentity,
        step: usize,
        cursor: Cursor,
        adam_t: usize,
        tokens: u64,
    ) -> SavedState {
        SavedState {
            version: FORMAT_VERSION,
            identity,
            step,
            epoch: cursor.epoch,
            row: cursor.row,
            adam_t,
            tokens,
        }
    }

    /// The data cursor.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            row: self.row,
        }
    }
}

/// Writes the checkpoint atomically.
pub fn save(path: &Path, model: &TrainModel, opt: &AdamW, state: &SavedState) -> Result<()> {
    let mut tensors = Vec::with_capacity(3 * model.trainable().len());
    for (i, (name, var)) in model.trainable().iter().enumerate() {
        tensors.push((format!("param.{name}"), var.as_tensor().clone()));
        tensors.push((format!("adam_m.{name}"), opt.m[i].clone()));
        tensors.push((format!("adam_v.{name}"), opt.v[i].clone()));
    }
    let json = serde_json::to_string(state).map_err(|e| TrainError::BadCheckpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let metadata = HashMap::from([(METADATA_KEY.to_string(), json)]);
    save_safetensors(path, &tensors, Some(metadata))
}

/// Restores weights and moments from `path` after checking that it belongs
/// to the same run; returns the saved scalar state.
pub fn load(
    path: &Path,
    model: &TrainModel,
    opt: &mut AdamW,
    identity: &RunIdentity,
) -> Result<SavedState> {
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| bad(format!("no {METADATA_KEY} metadata")))?;
    let state: SavedState = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    if state.version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {} (this herd writes {FORMAT_VERSION})",
            state.version
        )));
    }
    if let Some(reason) = identity.difference(&state.identity) {
        return Err(TrainError::CheckpointMismatch {
            path: path.to_path_buf(),
            reason,
        });
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let get = |key: String, like: &Tensor| -> Result<Tensor> {
        let t = tensors
            .get(&key)
            .ok_or_else(|| bad(format!("tensor {key} is missing")))?;
        if t.dims() != like.dims() {
            return Err(bad(format!(
                "tensor {key} has shape {:?}, the model needs {:?}",
                t.dims(),
                like.dims()
            )));
        }
        Ok(t.clone())
    };
    for (i, (name, var)) in model.trainable().iter().enumerate() {
        var.set(&get(format!("param.{name}"), var.as_tensor())?)?;
        opt.m[i] = get(format!("adam_m.{name}"), var.as_tensor())?;
        opt.v[i] = get(format!("adam_v.{name}"), var.as_tensor())?;
    }
    opt.t = state.adam_t;
    Ok(state)
}

/// FNV-1a (64-bit) of a byte stream, as 16 hex digits: a stable fingerprint
/// (std's hasher may change between Rust releases).
pub fn fnv1a(chunks: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for &b in chunk.as_ref() {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
