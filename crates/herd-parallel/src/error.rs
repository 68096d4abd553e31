//! The one error type of this crate.

/// What can go wrong when loading or running a parallel model.
#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    /// The requested TP × PP layout does not fit the job or the model.
    #[error("invalid parallel layout: {0}")]
    Layout(String),
    /// This rank could not open its model (the message names the file).
    #[error("cannot open the model: {0}")]
    Open(String),
    /// Ranks disagree on the model (different files, configurations or sizes).
    #[error("ranks disagree on the model: {0}")]
    Mismatch(String),
    /// Another rank failed; its own message says why.
    #[error("{what} failed on rank(s) {ranks:?}; see their errors")]
    PeerFailed {
        /// The step that failed.
        what: &'static str,
        /// The ranks that reported a failure.
        ranks: Vec<usize>,
    },
    /// A malformed message between ranks (a bug or a mixed-version job).
    #[error("protocol: {0}")]
    Protocol(String),
    /// Loading or running this rank's shard failed.
    #[error(transparent)]
    Model(#[from] herd_model::ModelError),
    /// Moving logits or hidden states in or out of a tensor failed (a shape bug).
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
    /// A collective or point-to-point call failed.
    #[error(transparent)]
    Dist(#[from] herd_dist::DistError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ParallelError>;
