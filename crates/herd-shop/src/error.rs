//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong calling a shop tool, generating or writing the corpus.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// The model called a function the shop does not have.
    #[error("unknown tool {0:?} (the shop has lookup_order and check_stock)")]
    UnknownTool(String),
    /// The arguments do not match the tool's schema.
    #[error("bad arguments for {tool}: {problem}")]
    BadArguments {
        /// The tool's name.
        tool: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A corpus option is out of range.
    #[error("invalid corpus option: {0}")]
    InvalidOption(String),
    /// A language code that has no phrasebook.
    #[error("unknown language {0:?} (available: en, de)")]
    UnknownLanguage(String),
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}
