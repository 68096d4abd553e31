//! Distillation for herd: a large teacher's next-token distributions train a
//! small student, online (the teacher runs beside the student), from a
//! cache of the teacher's top-k, or on-policy (the student writes some of
//! its training replies and the teacher scores them, as in GKD).
//!
//! Design decisions:
//! - **herd-train's loop, not a copy.** A distillation run is a herd-train
//!   run with another [`herd_train::Objective`] ([`Distiller`]): the same
//!   data order, accumulation, clipping, AdamW, checkpoints, metrics and
//!   bit-exact resume, LoRA or full.
//! - **Losses with hand-written gradients, fused with the output
//!   projection** ([`loss`], [`fused`]): one pass over a position's logits
//!   gives its loss and `∂L/∂logits`, which are immediately projected back
//!   to the hidden state and the head, chunk by chunk, so the
//!   `(positions, vocab)` logits never exist as a whole. Each loss and
//!   gradient is checked against PyTorch on committed fixtures.
//! - **A compact, resumable, Python-readable cache** ([`cache`]): 4 bytes
//!   per top-k entry (id and quantised log-probability in one u32) plus a
//!   tail mass per token, in safetensors shards written atomically, with
//!   the teacher's and tokenizer's identity in every header.
//! - **A producer trait** ([`TopKSource`]) so that a remote teacher behind
//!   an OpenAI-compatible API fills the same cache as a local one.
#![deny(missing_docs)]

pub mod cache;
mod error;
pub mod fused;
pub mod loss;
mod objective;
mod student;
mod teacher;

pub use cache::{write_cache, CacheHeader, CacheSummary, TeacherCache};
pub use error::{DistillError, Result};
pub use fused::{head_loss, TeacherRows, TeacherSide, TopK};
pub use loss::{DistillLoss, LossSpec, TeacherRow};
pub use objective::{Distiller, OnPolicy};
pub use student::{student_config, student_config_json};
pub use teacher::{
    check_vocabularies, dir_identity, model_identity, tokenizer_identity, top_k_rows, vocabulary,
    LocalTeacher, SourceInfo, TopKSource,
};
