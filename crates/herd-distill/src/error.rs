//! The one error type of this crate. Cache errors name the file and what
//! does not match (teacher, tokenizer, k), so a user who points at the wrong
//! cache learns which one to rebuild instead of training on wrong targets.

use std::path::PathBuf;

/// Everything that can go wrong while caching a teacher or distilling.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A flag or option combination that cannot work.
    #[error("{0}")]
    InvalidOption(String),
    /// Teacher and student cannot be paired.
    #[error("teacher and student do not share a vocabulary: {0}")]
    VocabularyMismatch(String),
    /// A cache shard is unreadable, truncated or not a herd teacher cache.
    #[error("{path}: not a usable teacher cache shard: {reason}; delete it and rerun `herd teacher-cache` to rebuild it")]
    BadCache {
        /// The shard.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A cache made by another teacher, tokenizer or settings.
    #[error("{path}: the cache was made with {what} {found}, but this run uses {expected}; rebuild it with `herd teacher-cache` for this teacher, or use a new -o directory")]
    CacheMismatch {
        /// The shard.
        path: PathBuf,
        /// Which property differs.
        what: &'static str,
        /// The cache's value.
        found: String,
        /// This run's value.
        expected: String,
    },
    /// The teacher produced something unusable.
    #[error("teacher: {0}")]
    Teacher(String),
    /// From the model crate.
    #[error(transparent)]
    Model(#[from] herd_model::ModelError),
    /// From the tokenizer crate.
    #[error(transparent)]
    Tokenizer(#[from] herd_tokenizer::TokenizerError),
    /// From the training crate (data, trainer, checkpoints).
    #[error(transparent)]
    Train(#[from] herd_train::TrainError),
    /// From the engine (sampling).
    #[error(transparent)]
    Engine(#[from] herd_engine::EngineError),
    /// From candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for this crate's results.
pub type Result<T> = std::result::Result<T, DistillError>;

impl DistillError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DistillError {
        let path = path.into();
        move |source| DistillError::Io { path, source }
    }
}

impl From<DistillError> for herd_train::TrainError {
    fn from(e: DistillError) -> Self {
        match e {
            DistillError::Train(t) => t,
            other => herd_train::TrainError::Objective(Box::new(other)),
        }
    }
}
