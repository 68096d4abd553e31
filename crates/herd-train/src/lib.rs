//! Training for herd: fine-tuning (LoRA or full) and training from scratch
//! with the same loop.
//!
//! Design decisions:
//! - **Own differentiable forward pass.** herd-model's inference pass runs on
//!   memory-mapped weights with kernels that have no gradients; training
//!   keeps f32 master weights as candle `Var`s and rebuilds the same math
//!   from ops with backward rules ([`TrainModel`]). Loss and gradients are
//!   checked against PyTorch on the committed fixtures.
//! - **State that can be saved exactly.** AdamW is written here
//!   ([`optim`]) so its moments are plain tensors; the data order is a pure
//!   function of `(seed, epoch)` ([`data`]); a checkpoint ([`state`]) is one
//!   atomically written file. Together they make `--resume` produce a loss
//!   curve bit-identical to an uninterrupted run.
//! - **Files the ecosystem reads.** Adapters in PEFT's layout ([`lora`]),
//!   full models as Hugging Face directories ([`export`]), datasets as
//!   OpenAI-shaped JSONL ([`record`]).
#![deny(missing_docs)]

pub mod data;
mod error;
pub mod export;
pub mod io;
pub mod lora;
mod model;
mod ops;
pub mod optim;
pub mod record;
pub mod report;
pub mod state;
mod trainer;

pub use data::{DataOptions, Dataset};
pub use error::{Result, TrainError};
pub use export::{load_with_adapter, merge_to_dir, save_trained};
pub use lora::{Adapter, LoraConfig, LoraTarget};
pub use model::{loss_sum, TrainModel, Tuning};
pub use record::{Example, LossOn};
pub use report::RunReport;
pub use trainer::{
    has_checkpoint, holds_run, loss_and_grads, run_identity, train, train_in, train_with,
    validation_loss, CrossEntropy, Objective, RunFiles, Session, TrainOptions,
};
