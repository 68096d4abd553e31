//! Generation on top of `herd-model`: samplers, the single-sequence
//! generation loop, and the serving engine ([`EngineHandle`]) that many
//! clients share through channels.
//!
//! Sampling lives here rather than in the model crate because it is
//! per-request policy (temperature, penalties, seeds) while the model is
//! shared, immutable state.
#![deny(missing_docs)]

mod blocks;
mod client;
mod engine;
mod error;
mod generate;
mod request;
mod sampler;
mod scheduler;

pub use engine::{EngineHandle, RequestStream};
pub use error::{EngineError, Result};
pub use generate::{generate, FinishReason, GenerateRequest, Generation};
pub use request::{
    Completion, EngineConfig, EngineMetrics, Event, LogitsProcessor, Request, TokenLogprob,
};
pub use sampler::{argmax, token_logprob, Sampler, Sampling, SamplingParams};
