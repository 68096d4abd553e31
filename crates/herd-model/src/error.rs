//! The one error type of this crate. Every variant names the file, tensor or
//! limit involved, because a user pointing herd at a 16 GB download needs to
//! know exactly which piece is wrong.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A required file is absent from the model directory.
    #[error("{path} not found{hint}")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
        /// Extra advice, starting with "; " or empty.
        hint: String,
    },
    /// A JSON file (config, index, generation config) does not parse.
    #[error("{path} is not a valid {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file was expected to be, e.g. "Llama config.json".
        what: &'static str,
        /// The parser's reason, with line and column.
        source: serde_json::Error,
    },
    /// The configuration parses but describes something herd cannot run.
    #[error("{path}: {reason}")]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A model architecture other than Llama.
    #[error("{path}: unsupported architecture {found:?}; herd runs LlamaForCausalLM (model_type \"llama\")")]
    UnsupportedArchitecture {
        /// The config file.
        path: PathBuf,
        /// What the file declares.
        found: String,
    },
    /// A RoPE scaling type other than the ones Llama 3.x uses.
    #[error("{path}: unsupported rope type {found:?}; herd supports \"default\" and \"llama3\"")]
    UnsupportedRope {
        /// The config file.
        path: PathBuf,
        /// The declared rope type.
        found: String,
    },
    /// A safetensors file is malformed.
    #[error("{path} is not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// A GGUF file is malformed or lacks a required key.
    #[error("{path}: {reason}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// The parser's reason, naming the key or tensor.
        reason: String,
    },
    /// A GGUF file could not be parsed (the message names the file).
    #[error(transparent)]
    GgufFile(#[from] herd_gguf::GgufError),
    /// Writing a model file failed.
    #[error("export: {0}")]
    Export(String),
    /// A tensor the architecture needs is in none of the weight files.
    #[error("tensor {name} not found in {location}")]
    MissingTensor {
        /// The checkpoint name of the tensor.
        name: String,
        /// The file(s) searched.
        location: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error(
        "tensor {name} in {path} has shape {actual:?}, expected {expected:?} from config.json"
    )]
    WrongShape {
        /// The checkpoint name of the tensor.
        name: String,
        /// The file holding it.
        path: PathBuf,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape stored in the file.
        actual: Vec<usize>,
    },
    /// A tensor is stored in a dtype herd does not load.
    #[error("tensor {name} in {path} has dtype {dtype}; herd loads F32, F16 and BF16")]
    UnsupportedDtype {
        /// The checkpoint name of the tensor.
        name: String,
        /// The file holding it.
        path: PathBuf,
        /// The stored dtype.
        dtype: String,
    },
    /// A sequence would grow past the model's context window.
    #[error("sequence of {requested} tokens exceeds the model's context length of {limit} tokens")]
    ContextOverflow {
        /// The context length from config.json (`max_position_embeddings`).
        limit: usize,
        /// The length the sequence would reach.
        requested: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A request that makes no sense, e.g. an empty batch entry.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor × pipeline parallel shard that cannot be cut from this model.
    #[error("invalid shard: {0}")]
    InvalidShard(String),
    /// A collective among tensor-parallel ranks failed (the message names it).
    #[error("tensor-parallel collective: {0}")]
    Collective(String),
    /// A matrix kernel rejected its arguments (an internal shape bug).
    #[error("matrix kernel: {0}")]
    Kernel(#[from] herd_kernels::KernelError),
    /// A candle tensor operation failed (an internal shape bug).
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
