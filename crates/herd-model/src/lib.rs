//! Llama 3.x models: configuration, memory-mapped weights and a forward pass
//! that is numerically the same as Hugging Face `transformers`.
//!
//! Design decisions:
//! - **Weights are immutable, state is separate.** [`Llama::forward`] takes
//!   `&self` and a batch of [`SeqInput`]s, each owning a [`KvCache`], so one
//!   loaded model serves many sequences (and threads) at once.
//!   [`Llama::forward_paged`] does the same for sequences whose KV lives in
//!   blocks of a shared [`KvPool`] (the serving engine's paged cache); both
//!   run the same attention loops, so they give the same logits.
//! - **All positions.** The forward pass can return logits for every new
//!   position ([`Logits::All`]): training and distillation need them;
//!   generation asks for [`Logits::Last`] and skips the vocabulary projection
//!   of the rest.
//! - **Own matrix kernels, candle for the rest.** Linear layers read their
//!   bf16/f16/f32 weights straight from the memory-mapped file through
//!   `herd-kernels` (candle's bf16 matrix-vector product is ~10x slower than
//!   its f32 one on CPU, and candle would copy the weights); attention and
//!   rotary embeddings are plain f32 loops over the KV rows (so paged and
//!   contiguous KV need no gathering); normalisation uses candle's CPU ops.
//! - **Sharding hooks.** A [`Shard`] loads one rank's slice of a tensor ×
//!   pipeline parallel layout, and [`Llama::forward_stage`] runs it with the
//!   collectives of a [`TensorParallel`] group; the single-process model is
//!   the shard that holds everything, so both paths share one forward pass.
//! - **Two-stage configuration.** [`RawConfig`] mirrors `config.json`;
//!   [`Config`] is resolved and validated, accepting both the legacy
//!   `rope_theta`/`rope_scaling` keys and the newer `rope_parameters`.
#![deny(missing_docs)]

mod attention;
mod checkpoint;
mod config;
mod error;
mod export;
mod gguf;
mod kv;
mod layers;
mod model;
mod rope;
mod shard;
mod weights;

pub use checkpoint::{Checkpoint, Tensors};
pub use config::{
    Config, GenerationConfig, RawConfig, RawRope, RopeScaling, TokenIds, WeightDtype,
};
pub use error::{ModelError, Result};
pub use export::{add_model_tensors, model_metadata, FileType};
pub use gguf::GgufWeights;
pub use kv::{KvCache, KvPool};
pub use model::{logits_row, Llama, Logits, PagedSeq, SeqInput, Trace, TracePoint};
pub use rope::{Rope, RopeAngles, RopeLayout};
pub use shard::{NoTensorParallel, Shard, StageInput, StageOutput, TensorParallel};
pub use weights::{TensorSource, Weight, WeightFiles};
