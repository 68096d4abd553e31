//! Synthetic training data from a teacher: `herd generate-data`.
//!
//! Prompts (JSON lines of `{"prompt"}` or `{"messages", "tools"}`) go to a
//! [`Teacher`] — a model in this process through the serving engine
//! ([`LocalTeacher`], continuous batching) or any OpenAI-compatible
//! endpoint ([`herd_remote::RemoteTeacher`]) — and come back as records in
//! OpenAI's `messages` shape that `herd finetune` and `herd distill` read.
//!
//! # Design decisions
//!
//! **One trait, two teachers, same samples.** Sample `i` of a prompt uses
//! seed `s + i`, where `s` comes from the run's seed and the prompt's
//! content ([`prompt_seed`]), and assistant messages are written in one
//! canonical form, as `herd serve` seeds choice `i` of a request. Seeds not
//! depending on prompt order make a resumed local run generate exactly what
//! the interrupted one would have (tested byte for byte). The same model
//! behind `herd serve` does not yet give byte-identical files (to be
//! investigated: prompt rendering or sampling differences).
//!
//! **Append-only output with a journal** (`journal.rs`): records first,
//! synced, then one journal line per finished prompt, synced. Resuming cuts
//! the output back to the last journaled prompt, so an interruption at any
//! instant loses at most the prompts in flight and never duplicates one.
//!
//! **Filters after the teacher, in one place** (`run.rs`): cut-off answers,
//! repeats (a 64-bit FNV hash of the record, kept across resumes), a mean
//! log-probability threshold and an external verifier command run in the
//! writing thread, in prompt order, so the kept set does not depend on
//! thread timing.

#![deny(missing_docs)]

mod error;
mod journal;
mod prompts;
mod run;
mod teacher;

pub use error::{DatagenError, Result};
pub use journal::{journal_path, read_finished, Counts, Finished, Output};
pub use prompts::{read_prompts, Prompt};
pub use run::{plan, prompt_seed, record, run, Filter, Plan, RunOptions};
pub use teacher::{LocalTeacher, Sample, SampleSpec, Teacher};
