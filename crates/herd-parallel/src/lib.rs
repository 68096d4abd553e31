//! One Llama across many processes: tensor parallelism (TP) inside a
//! pipeline stage, pipeline parallelism (PP) across stages, over any
//! [`herd_dist::Communicator`] (MPI under `mpirun`, or the single-process
//! one in ordinary tests).
//!
//! Ranks are laid out stage-major: rank `stage * tp + tp_rank`. Each rank
//! loads only its [`herd_model::Shard`] (its stage's layers, and of each
//! matrix its rows or columns); the forward pass itself is herd-model's,
//! given the stage's TP group as its [`herd_model::TensorParallel`]:
//!
//! ```text
//!            stage 0 (layers 0..k)            stage 1 (layers k..L)
//! tokens ─▶  rank 0 ─┐ all-reduce ×2/layer    rank 2 ─┐ all-reduce ×2/layer ─▶ logits
//!            rank 1 ─┘ ── hidden (send/recv) ▶ rank 3 ─┘ all-gather (vocab)      │
//!   ▲                                                                          │
//!   └───────────── rank 0 samples, broadcasts the next step ◀── logits (send) ──┘
//! ```
//!
//! Rank 0 leads: it tokenizes, runs the sampler and decides each step; it
//! broadcasts the step (the new tokens and where they start), every rank
//! runs its stage, and the last stage sends the logits back to rank 0.
//! Other ranks [`ParallelLlama::follow`] until rank 0 says stop.
//!
//! Serving uses the same protocol: the [`Leader`] is the serving engine's
//! [`herd_engine::PagedModel`], so each engine step (a packed batch with
//! block tables) is broadcast and run by every rank on a KV pool of its own
//! shape with the same block ids. With several stages a step's batch flows
//! through them as micro-batches, so the stages overlap.
//!
//! Failure handling: loading is collective — every rank reports whether it
//! could open its model and whether its model's fingerprint matches rank
//! 0's, so bad input is a clear error on every rank rather than a hang. A
//! rank that fails mid-generation aborts the job through the communicator;
//! a rank that stops answering trips the others' [`herd_dist::Watchdog`].
#![deny(missing_docs)]

mod command;
mod error;
mod layout;
mod load;
mod run;

pub use error::{ParallelError, Result};
pub use layout::Layout;
pub use load::{agree, fingerprint, load_shard};
pub use run::{Leader, ParallelLlama};
