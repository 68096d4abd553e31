//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong while generating data.
#[derive(Debug, thiserror::Error)]
pub enum DatagenError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A prompt line is not a valid record.
    #[error("{path}:{line}: {problem}")]
    BadPrompt {
        /// The prompts file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The prompts file has no prompt.
    #[error("{0}: no prompts (expected JSON lines like {{\"prompt\": \"...\"}} or {{\"messages\": [...]}})")]
    NoPrompts(PathBuf),
    /// The output exists but cannot be resumed.
    #[error("{path}: {problem}")]
    CannotResume {
        /// The output file.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// The verifier command could not be run.
    #[error("verifier `{command}`: {problem}")]
    Verifier {
        /// The command.
        command: String,
        /// Why it failed.
        problem: String,
    },
    /// A local teacher failed on a prompt.
    #[error("prompt {key}: {problem}")]
    Teacher {
        /// The prompt's key.
        key: String,
        /// What the engine said.
        problem: String,
    },
    /// A remote teacher failed.
    #[error(transparent)]
    Remote(#[from] herd_remote::RemoteError),
    /// Tokenizing a prompt failed.
    #[error(transparent)]
    Tokenizer(#[from] herd_tokenizer::TokenizerError),
    /// The engine refused a request.
    #[error(transparent)]
    Engine(#[from] herd_engine::EngineError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, DatagenError>;

/// An I/O error with its file.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DatagenError + '_ {
    move |source| DatagenError::Io {
        path: path.to_owned(),
        source,
    }
}
