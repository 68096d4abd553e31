//! Generation on top of `herd-model`: samplers and the generation loop.
//!
//! Sampling lives here rather than in the model crate because it is
//! per-request policy (temperature, penalties, seeds) while the model is
//! shared, immutable state.
#![deny(missing_docs)]

mod error;
mod generate;
mod sampler;

pub use error::{EngineError, Result};
pub use generate::{generate, FinishReason, GenerateRequest, Generation};
pub use sampler::{argmax, Sampler, Sampling, SamplingParams};
