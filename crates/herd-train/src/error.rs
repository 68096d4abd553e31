//! The one error type of this crate. Data errors name the file and line of
//! the record, checkpoint errors name the file and what does not match, so a
//! user with a 100,000-line dataset or a day-old checkpoint knows what to fix.

use std::path::PathBuf;

/// Everything that can go wrong while preparing data, training or saving.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// One JSONL record is malformed or cannot be used.
    #[error("{path}:{line}: {reason}{hint}")]
    BadRecord {
        /// The dataset file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
        /// Advice (starts with "; ") or empty.
        hint: String,
    },
    /// No usable examples.
    #[error("{path}: no training examples{detail}")]
    EmptyDataset {
        /// The dataset file.
        path: PathBuf,
        /// Why (e.g. how many records were skipped), starting with " (" or empty.
        detail: String,
    },
    /// A collective call of a data-parallel run failed.
    #[error(transparent)]
    Dist(#[from] herd_dist::DistError),
    /// A flag or option combination that cannot work.
    #[error("{0}")]
    InvalidOption(String),
    /// A LoRA target that the model does not have.
    #[error("unknown LoRA target {found:?}; choose from q, k, v, o, gate, up, down (or q_proj, ..., down_proj)")]
    UnknownLoraTarget {
        /// What was asked for.
        found: String,
    },
    /// A LoRA adapter directory is malformed or does not fit the model.
    #[error("{path}: {reason}")]
    BadAdapter {
        /// The adapter directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A training checkpoint cannot be resumed with these settings.
    #[error("{path}: cannot resume: {reason}")]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A checkpoint or adapter file is not what herd wrote.
    #[error("{path}: not a valid herd checkpoint: {reason}")]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Loss or gradients became NaN or infinite.
    #[error("training diverged at step {step}: the loss is {loss}; lower --lr or raise --warmup")]
    Diverged {
        /// The optimizer step.
        step: usize,
        /// The offending value.
        loss: f32,
    },
    /// A pluggable [`crate::Objective`] failed (e.g. its teacher).
    #[error(transparent)]
    Objective(Box<dyn std::error::Error + Send + Sync>),
    /// From the model crate (config, weights).
    #[error(transparent)]
    Model(#[from] herd_model::ModelError),
    /// From the tokenizer crate.
    #[error(transparent)]
    Tokenizer(#[from] herd_tokenizer::TokenizerError),
    /// From candle (tensor shapes, backward).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Writing the loss curve failed.
    #[error("{path}: cannot draw the loss curve: {reason}")]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// The drawing backend's reason.
        reason: String,
    },
}

/// Shorthand for this crate's results.
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
