//! The one error type of this crate.

/// What can go wrong while generating.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Sampling parameters out of range; the message names the parameter.
    #[error("invalid sampling parameters: {0}")]
    InvalidSampling(String),
    /// A request that cannot be served, e.g. an empty prompt.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The model rejected the input or failed.
    #[error(transparent)]
    Model(#[from] herd_model::ModelError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, EngineError>;
