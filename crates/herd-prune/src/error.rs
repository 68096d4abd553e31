//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong while measuring importance or writing a pruned model.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A pruning request that the model cannot satisfy; the message says which.
    #[error("invalid pruning request: {0}")]
    InvalidRequest(String),
    /// Calibration data that cannot be used.
    #[error("calibration data: {0}")]
    Calibration(String),
    /// The source config.json could not be read or rewritten.
    #[error("config.json: {0}")]
    Config(String),
    /// Writing the output failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] herd_model::ModelError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, PruneError>;
