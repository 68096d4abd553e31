//! The one error type of this crate.

/// What can go wrong when planning or communicating.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A layout that cannot work for this model or cluster; the message says why.
    #[error("invalid parallel layout: {0}")]
    InvalidPlan(String),
    /// A collective or point-to-point call was given buffers of the wrong size or rank.
    #[error("communication error: {0}")]
    Comm(String),
    /// A backend that cannot run on this host or build (no GPU, no
    /// libnccl, a binary built without it); the message says what is missing.
    #[error("communication backend unavailable: {0}")]
    Unavailable(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, DistError>;
