//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong calling a shop tool, generating or writing the corpus,
/// or scoring a model on its test split.
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
    /// Reading a test file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A test case that cannot be scored.
    #[error("{path}:{line}: {problem}")]
    BadTestCase {
        /// The test file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A test file without cases.
    #[error("{0}: no test cases")]
    EmptyTestFile(PathBuf),
    /// A test case that the evaluator cannot use.
    #[error("{0}")]
    Eval(String),
    /// Encoding a test case failed.
    #[error(transparent)]
    Tokenizer(#[from] herd_tokenizer::TokenizerError),
    /// Running the model failed.
    #[error(transparent)]
    Model(#[from] herd_model::ModelError),
    /// Generating a reply failed.
    #[error(transparent)]
    Engine(#[from] herd_engine::EngineError),
}
