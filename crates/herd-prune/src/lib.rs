//! Structured pruning in the style of NVIDIA's Minitron (Muralidharan et al.
//! 2024, "Compact Language Models via Pruning and Knowledge Distillation"):
//! a smaller student is cut out of a teacher, keeping its most important
//! parts, and then distilled back to health.
//!
//! 1. **Measure** ([`measure`]): run the teacher over calibration text and
//!    record, through [`herd_model::Trace`], how much each part is used:
//!    - a layer: `1 − cos(input, output)` of the residual stream, averaged
//!      over tokens (ShortGPT's block importance; a layer that barely turns
//!      the stream can go);
//!    - a KV group (one key/value head and the query heads that share it):
//!      the summed L2 norm of its query heads' outputs, so that grouped-query
//!      attention stays well-formed (whole groups are kept or dropped);
//!    - an MLP channel: the mean magnitude of `silu(gate) · up`;
//!    - an embedding (hidden) channel: the mean magnitude of the residual
//!      stream in that channel, each token normalised to unit RMS, summed
//!      over the layers' inputs.
//! 2. **Plan** ([`plan`]): keep the top-ranked parts for the requested
//!    depth and widths ([`PruneSpec`]); the order of what is kept is the
//!    original order, so pruning nothing is the identity.
//! 3. **Write** ([`write_pruned`]): slice every tensor accordingly and write
//!    a Hugging Face directory (`config.json` with the new shape, f32
//!    `model.safetensors`) that herd and `transformers` load.
//!
//! Width pruning applies one width to every layer (Hugging Face's Llama
//! config has a single `intermediate_size` and head count), each layer
//! keeping its own most important channels and groups.
#![deny(missing_docs)]

mod error;
mod importance;
mod plan;
mod write;

pub use error::{PruneError, Result};
pub use importance::{measure, perplexity, Importance};
pub use plan::{plan, Plan, PruneSpec};
pub use write::write_pruned;
