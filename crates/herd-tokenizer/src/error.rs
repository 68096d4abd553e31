//! The one error type of this crate. Loading errors name the file and, for the
//! line-oriented tiktoken format, the 1-based line, because the person reading
//! the message is usually looking at a download that went wrong.

use std::path::PathBuf;

use crate::chat::Role;

/// Everything that can go wrong while loading a tokenizer, encoding, decoding
/// or formatting a dialog.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// There is no tokenizer file at the path, or none in the directory.
    #[error("no tokenizer at {path}: {looked_for}")]
    NotFound {
        /// The path that was given.
        path: PathBuf,
        /// What was looked for there, for the message.
        looked_for: &'static str,
    },
    /// The file exists but could not be read (permissions, not UTF-8, ...).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A `tokenizer.json` is not valid JSON or not a tokenizer the `tokenizers`
    /// crate understands.
    #[error("{path} is not a valid tokenizer.json: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's reason, with line and column.
        source: serde_json::Error,
    },
    /// One line of a tiktoken `tokenizer.model` is malformed.
    #[error("{path}:{line}: bad tiktoken line: {problem}")]
    TiktokenLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        problem: TiktokenLineProblem,
    },
    /// Every line of a tiktoken file parses, but the ranks do not form a
    /// usable byte-level BPE vocabulary.
    #[error("{path}: unusable tiktoken vocabulary: {problem}")]
    TiktokenVocab {
        /// The file.
        path: PathBuf,
        /// What is wrong with the vocabulary as a whole.
        problem: TiktokenVocabProblem,
    },
    /// A special token that an operation needs is not in this vocabulary.
    #[error("the vocabulary has no special token {name}")]
    MissingSpecialToken {
        /// The token's name, e.g. `<|eot_id|>`.
        name: String,
    },
    /// A token id to decode is not in the vocabulary (the `tokenizers` crate
    /// would silently drop it).
    #[error("token id {id} is not in the vocabulary ({vocab_size} tokens)")]
    UnknownId {
        /// The offending id.
        id: u32,
        /// The vocabulary size including special tokens.
        vocab_size: usize,
    },
    /// A message of a dialog sets a field its role cannot carry. Meta's
    /// formatter silently ignores such fields; herd refuses so that, say, a
    /// tool call attached to a user message is not lost without notice.
    #[error("message {index} ({role}): {problem}")]
    InvalidMessage {
        /// Position of the message in the dialog.
        index: usize,
        /// The message's role.
        role: Role,
        /// Which field is not allowed for that role.
        problem: MessageProblem,
    },
    /// The streaming decoder saw earlier text change when more tokens arrived,
    /// which only a decoder that rewrites earlier output can cause.
    #[error("streaming decode of token {id}: earlier text {expected:?} changed to {actual:?}")]
    StreamPrefix {
        /// The token that was being added.
        id: u32,
        /// The text already returned.
        expected: String,
        /// The text the tokenizer now decodes the same window to.
        actual: String,
    },
    /// The `tokenizers` crate failed while building, encoding or decoding.
    #[error("tokenizers failed to {op}: {source}")]
    Backend {
        /// What was being done.
        op: BackendOp,
        /// The library's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What is wrong with one line of a tiktoken file.
#[derive(Debug, thiserror::Error)]
pub enum TiktokenLineProblem {
    /// A line must be exactly `base64token rank`.
    #[error("expected 2 fields `base64token rank`, found {0}")]
    FieldCount(usize),
    /// The token is not valid base64.
    #[error("token is not base64: {0}")]
    Base64(base64::DecodeError),
    /// The token decodes to zero bytes.
    #[error("token is empty")]
    EmptyToken,
    /// The rank is not a non-negative integer that fits in a token id.
    #[error("rank is not a token id: {0}")]
    Rank(std::num::ParseIntError),
    /// The same byte string appears on two lines.
    #[error("token already defined on line {first_line}")]
    DuplicateToken {
        /// 1-based line of the first definition.
        first_line: usize,
    },
    /// The same rank appears on two lines.
    #[error("rank {rank} already used on line {first_line}")]
    DuplicateRank {
        /// The repeated rank.
        rank: u32,
        /// 1-based line of the first use.
        first_line: usize,
    },
}

/// What is wrong with a tiktoken vocabulary as a whole.
#[derive(Debug, thiserror::Error)]
pub enum TiktokenVocabProblem {
    /// The file holds no tokens.
    #[error("no tokens")]
    Empty,
    /// Ranks must be exactly `0..n`, because special tokens take the ids
    /// right after the last rank.
    #[error("ranks are not 0..{count}: rank {missing} is missing")]
    RankGap {
        /// Number of tokens in the file.
        count: usize,
        /// The smallest rank below `count` that no line defines.
        missing: u32,
    },
    /// Byte-level BPE needs every single byte as a token, or some text could
    /// not be encoded at all.
    #[error("single-byte token 0x{0:02x} is missing")]
    MissingByte(u8),
    /// A BPE token is spelled like one of Meta's special tokens, so the
    /// special token could not take its id after the last rank.
    #[error("special token {0} is also an ordinary token")]
    SpecialTokenInVocab(String),
}

/// Which field a message may not carry for its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageProblem {
    /// Only assistant messages carry tool calls.
    #[error("only assistant messages can carry tool calls")]
    ToolCallsOutsideAssistant,
    /// Only assistant messages can end with `<|eom_id|>`.
    #[error("only assistant messages can end with <|eom_id|>")]
    EomOutsideAssistant,
    /// Only user messages carry retrieval context.
    #[error("only user messages can carry context")]
    ContextOutsideUser,
}

/// The `tokenizers` operation that failed, for [`TokenizerError::Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendOp {
    /// Building the BPE model from a tiktoken vocabulary.
    BuildBpe,
    /// Compiling the pre-tokenizer's split regex.
    CompileRegex,
    /// Registering the special tokens.
    AddSpecialTokens,
    /// Encoding text.
    Encode,
    /// Decoding ids.
    Decode,
}

impl std::fmt::Display for BackendOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendOp::BuildBpe => "build the BPE model",
            BackendOp::CompileRegex => "compile the split regex",
            BackendOp::AddSpecialTokens => "add the special tokens",
            BackendOp::Encode => "encode text",
            BackendOp::Decode => "decode ids",
        })
    }
}
