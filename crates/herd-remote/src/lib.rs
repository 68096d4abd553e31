//! A teacher that runs elsewhere: a client for any OpenAI-compatible
//! endpoint (`herd serve`, vLLM, SGLang, llama.cpp's server, a cloud API),
//! for synthetic data and logit distillation.
//!
//! # Design decisions
//!
//! **Blocking HTTP on threads.** Callers are batch jobs (`herd
//! generate-data`, a teacher cache) that keep a fixed number of requests in
//! flight; a thread per request slot with `ureq` is simpler than an async
//! runtime and as fast, since the server, not the client, is the bottleneck.
//! [`RemoteTeacher`] is `Send + Sync` and bounds requests in flight itself
//! ([`RemoteConfig::concurrency`]), so it can be shared freely.
//!
//! **Fail early, retry what is transient.** [`RemoteTeacher::connect`]
//! asks `/v1/models` first, so a wrong key, URL or model name is an error
//! before any work. After that, 408/429/5xx answers, timeouts and refused
//! connections (a restarting server) are retried with exponential back-off
//! and jitter, honouring `Retry-After` ([`RetryPolicy`]); anything else is
//! reported at once. Every attempt counts against an optional request
//! budget ([`RemoteConfig::max_requests`]).
//!
//! **Local ids, verified.** Servers name tokens by text. [`TokenMap`] maps
//! them back to the local tokenizer's ids, and
//! [`RemoteTeacher::verify_tokenizer`] refuses a teacher whose tokenizer
//! differs, because top-k log-probabilities over another vocabulary would
//! silently teach the student nonsense. [`RemoteTeacher::score`] sends
//! token ids rather than text, so scored positions line up with the local
//! tokenization by construction.
//!
//! **Plain outputs.** A scored position is [`TokenTopK`]: the top-k `(id,
//! logprob)` pairs, the tail mass `1 − Σ p` a cache stores beside them, and
//! [`Scored::k_granted`], the k the server actually returned (most servers
//! cap `top_logprobs` at 20).

#![deny(missing_docs)]

mod client;
mod error;
mod teacher;
mod vocab;

pub use client::{RemoteConfig, RetryPolicy, Traffic};
pub use error::{RemoteError, Result};
pub use teacher::{ChatChoice, ChatRequest, Finish, RemoteTeacher, Scored, TOKENIZER_PROBE};
pub use vocab::{RawToken, TokenMap, TokenTopK};
