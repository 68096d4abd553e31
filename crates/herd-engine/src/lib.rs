//! Generation on top of `herd-model`: samplers, the single-sequence
//! generation loop ([`generate`], for the CLI), speculative decoding with a
//! draft model ([`generate_speculative`]), and the serving engine
//! ([`EngineHandle`]) that many clients share through channels.
//!
//! Sampling lives here rather than in the model crate because it is
//! per-request policy (temperature, penalties, seeds) while the model is
//! shared, immutable state.
//!
//! # The serving engine
//!
//! One thread owns all mutable serving state and runs steps of
//! schedule → execute → update over plain data (see `engine.rs`):
//!
//! - **Continuous batching.** Requests join and leave the running batch at
//!   every step; all running sequences' new tokens are packed into one
//!   forward pass, so the weights are read once per step for all of them.
//! - **Token-centric scheduling** (`scheduler.rs`). Each sequence has tokens
//!   and a count of computed tokens; a step gives sequences a share of
//!   [`EngineConfig::max_batch_tokens`] to catch up (decodes first, then
//!   prefill chunks, then new arrivals). Chunked prefill, prefix-cache hits
//!   and recompute after preemption are all just "computed < tokens".
//! - **Paged KV cache.** [`herd_model::KvPool`] holds fixed-size blocks of
//!   [`EngineConfig::block_size`] positions, sized from
//!   [`EngineConfig::kv_cache_bytes`]; each sequence has a block table.
//!   The block manager (`blocks.rs`) reference-counts blocks and returns them
//!   when a request finishes or its stream is dropped.
//! - **Automatic prefix caching.** Full blocks are registered under the hash
//!   of their tokens chained with their parent's hash; a new request takes
//!   the cached blocks of its longest matching prefix (always leaving its
//!   last prompt token to compute). Unheld cached blocks are reused least
//!   recently released first.
//! - **Preemption by recompute.** When a running sequence needs a block and
//!   none is free, the latest admitted sequence not yet scheduled this step
//!   loses its blocks and goes back to the front of the queue; its sampler
//!   state is kept, so its output is the same as without preemption.
//!
//! A request is [`Request`] in, a stream of [`Event`]s out; dropping the
//! [`RequestStream`] cancels it. [`EngineMetrics`] reports the gauges.
#![deny(missing_docs)]

mod blocks;
mod client;
mod engine;
mod error;
mod generate;
mod request;
mod sampler;
mod scheduler;
mod speculative;

pub use engine::{EngineHandle, PagedModel, RequestStream};
pub use error::{EngineError, Result};
pub use generate::{generate, Decoder, FinishReason, GenerateRequest, Generation};
pub use request::{
    Completion, EngineConfig, EngineMetrics, Event, LogitsProcessor, Request, TokenLogprob,
};
pub use sampler::{argmax, token_logprob, Sampler, Sampling, SamplingParams};
pub use speculative::{generate_speculative, DraftConfig, SpeculationStats, Speculator};
