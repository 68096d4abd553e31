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
    /// The tokenizer metadata of a GGUF file describes no tokenizer herd can
    /// build. No path: the metadata arrives as plain data, and the GGUF
    /// loader that read it names the file.
    #[error("unusable GGUF tokenizer metadata: {problem}")]
    GgufVocab {
        /// What is wrong.
        problem: GgufVocabProblem,
    },
    /// The tokenizer cannot be written as GGUF tokenizer metadata.
    #[error("cannot write the tokenizer as GGUF metadata: {problem}")]
    GgufExport {
        /// Why not.
        problem: GgufExportProblem,
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
    /// A chat record (OpenAI `{"tools", "messages"}` JSON) is malformed.
    #[error("bad chat record: {problem}")]
    InvalidRecord {
        /// What is wrong, naming the field.
        problem: RecordProblem,
    },
    /// A tokenizer to train must hold Llama 3's 256 special tokens and the
    /// 256 single bytes, so smaller vocabularies are refused.
    #[error("vocabulary size {requested} is too small: at least {minimum} (256 special tokens + 256 bytes)")]
    VocabTooSmall {
        /// The size asked for.
        requested: usize,
        /// The smallest size that works.
        minimum: usize,
    },
    /// Training saw no text at all.
    #[error("no training text: the corpus is empty")]
    EmptyCorpus,
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
    /// The tokens, with Meta's special tokens after them, are not a usable
    /// byte-level BPE vocabulary.
    #[error(transparent)]
    Vocab(VocabProblem),
}

/// What is wrong with the tokenizer metadata (`tokenizer.ggml.*`) of a GGUF
/// file.
#[derive(Debug, thiserror::Error)]
pub enum GgufVocabProblem {
    /// `tokenizer.ggml.model` names a tokenizer herd does not implement.
    #[error("tokenizer.ggml.model is {0:?}; herd reads only \"gpt2\" (byte-level BPE, as in Llama 3), not SentencePiece (\"llama\", Llama 1 and 2) or others")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer other than Llama 3's.
    #[error("tokenizer.ggml.pre is {0:?}; herd implements only Llama 3's pre-tokenizer (\"llama-bpe\", \"llama3\", \"llama-v3\")")]
    UnsupportedPreTokenizer(String),
    /// `tokenizer.ggml.pre` is absent. llama.cpp then uses its GPT-2-style
    /// default split, which gives other ids than Llama 3's; such a Llama 3
    /// file predates llama.cpp's pre-tokenizer support.
    #[error("tokenizer.ggml.pre is missing: llama.cpp would use its GPT-2-style default split, which herd does not implement; re-convert the file with a current llama.cpp")]
    MissingPreTokenizer,
    /// `tokenizer.ggml.tokens` is empty.
    #[error("tokenizer.ggml.tokens is empty")]
    Empty,
    /// `tokenizer.ggml.token_type` does not have one entry per token.
    #[error("tokenizer.ggml.token_type has {types} entries for {tokens} tokens")]
    TokenTypeCount {
        /// Entries in `tokenizer.ggml.token_type`.
        types: usize,
        /// Entries in `tokenizer.ggml.tokens`.
        tokens: usize,
    },
    /// A token type is not one of llama.cpp's 1..=6.
    #[error("token {id} has type {value}, expected 1 (normal) to 6 (byte)")]
    UnknownTokenType {
        /// The token's id.
        id: u32,
        /// The type found.
        value: i32,
    },
    /// A merge is not two tokens separated by a space.
    #[error("merge {index} {merge:?} is not two tokens separated by a space")]
    MalformedMerge {
        /// 0-based position in `tokenizer.ggml.merges`.
        index: usize,
        /// The merge as stored.
        merge: String,
    },
    /// A special-token id is not a token of the vocabulary.
    #[error("{key} is {id}, but the vocabulary has {vocab_size} tokens")]
    SpecialIdOutOfRange {
        /// The metadata key, e.g. `tokenizer.ggml.bos_token_id`.
        key: &'static str,
        /// The id found.
        id: u32,
        /// Number of tokens.
        vocab_size: usize,
    },
    /// The file's BOS id is not the special `<|begin_of_text|>` that herd
    /// looks up by name and puts at the start of every prompt.
    #[error("tokenizer.ggml.bos_token_id is {file}, but herd starts sequences with the special token <|begin_of_text|>, {}", describe_id(*.herd))]
    BosMismatch {
        /// `tokenizer.ggml.bos_token_id`.
        file: u32,
        /// The id of the special `<|begin_of_text|>`, if there is one.
        herd: Option<u32>,
    },
    /// `tokenizer.ggml.add_bos_token` is false, but herd starts every prompt
    /// with `<|begin_of_text|>` when the vocabulary has it.
    #[error("tokenizer.ggml.add_bos_token is false, but herd starts every sequence with <|begin_of_text|> ({0})")]
    NoBosWanted(u32),
    /// The tokens and merges are not a usable byte-level BPE vocabulary.
    #[error(transparent)]
    Vocab(VocabProblem),
}

/// Why a tokenizer cannot be written as a `llama-bpe` GGUF vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum GgufExportProblem {
    /// A part of the pipeline differs from herd's Llama 3 byte-level BPE,
    /// the only tokenizer such a vocabulary describes.
    #[error("its {0} is not Llama 3's byte-level BPE")]
    NotLlama3Bpe(&'static str),
    /// An added token strips whitespace or matches whole words only, which
    /// GGUF token types cannot express.
    #[error("added token {0:?} strips spaces or matches whole words only")]
    AddedTokenOptions(String),
    /// The ids are too sparse to fill the gaps with `[PAD{id}]` tokens.
    #[error("ids run to {id_count} for only {token_count} tokens")]
    SparseIds {
        /// Tokens that exist.
        token_count: usize,
        /// One more than the largest id.
        id_count: usize,
    },
}

/// What is wrong with a byte-level BPE vocabulary, whichever file it came
/// from.
#[derive(Debug, thiserror::Error)]
pub enum VocabProblem {
    /// More tokens than ids (`u32`).
    #[error("{0} tokens do not fit in 32-bit ids")]
    TooManyTokens(usize),
    /// A token is the empty string.
    #[error("token {id} is empty")]
    EmptyToken {
        /// The token's id.
        id: u32,
    },
    /// Two ids have the same token text, so text could not name one id; for
    /// tiktoken, one of them is a special token spelled like an ordinary one.
    #[error("token {token:?} has ids {first_id} and {second_id}")]
    DuplicateToken {
        /// The token's text.
        token: String,
        /// The smaller id.
        first_id: u32,
        /// The larger id.
        second_id: u32,
    },
    /// Byte-level BPE needs every single byte as an ordinary token, or some
    /// text could not be encoded at all.
    #[error("single-byte token 0x{0:02x} is missing or not an ordinary token")]
    MissingByte(u8),
    /// A merge uses, or produces, something that is not an ordinary token.
    #[error("merge {index} uses or produces {token:?}, which is not an ordinary token of the vocabulary")]
    MergeUnknownToken {
        /// 0-based position in the merge list.
        index: usize,
        /// The left part, the right part or their concatenation.
        token: String,
    },
}

/// "id N" or "which this vocabulary lacks", for messages.
fn describe_id(id: Option<u32>) -> String {
    id.map_or_else(
        || "which this vocabulary lacks".to_owned(),
        |id| format!("id {id}"),
    )
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

/// What is wrong with a chat record; `path` names the field, e.g.
/// `messages[2].tool_calls[0].function.arguments`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// The line is not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// A field is missing or has the wrong type.
    #[error("{path}: expected {expected}")]
    Shape {
        /// The field.
        path: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The record has an empty `messages` array.
    #[error("no messages")]
    NoMessages,
    /// A message's role is none of OpenAI's.
    #[error("{path}: unknown role {role:?} (expected system, user, assistant, tool or ipython)")]
    UnknownRole {
        /// The message.
        path: String,
        /// The role found.
        role: String,
    },
    /// Tool-call arguments are not valid JSON.
    #[error("{path}: not valid JSON: {reason}")]
    Arguments {
        /// The arguments field.
        path: String,
        /// The parser's message.
        reason: String,
    },
}

/// The `tokenizers` operation that failed, for [`TokenizerError::Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendOp {
    /// Building the BPE model from a tiktoken or GGUF vocabulary.
    BuildBpe,
    /// Compiling the pre-tokenizer's split regex.
    CompileRegex,
    /// Registering the added (special and user-defined) tokens.
    AddSpecialTokens,
    /// Encoding text.
    Encode,
    /// Decoding ids.
    Decode,
    /// Writing the tokenizer as `tokenizer.json`.
    Serialize,
    /// Training BPE merges on a corpus.
    Train,
}

impl std::fmt::Display for BackendOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendOp::BuildBpe => "build the BPE model",
            BackendOp::CompileRegex => "compile the split regex",
            BackendOp::AddSpecialTokens => "register the added tokens",
            BackendOp::Encode => "encode text",
            BackendOp::Decode => "decode ids",
            BackendOp::Serialize => "serialize the tokenizer",
            BackendOp::Train => "train the BPE model",
        })
    }
}
