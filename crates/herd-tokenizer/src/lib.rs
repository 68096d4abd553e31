//! Tokenizers for herd: Hugging Face `tokenizer.json`, Meta's tiktoken
//! `tokenizer.model` and a GGUF file's tokenizer metadata ([`GgufVocab`]),
//! behind one [`Tokenizer`], plus the Llama 3 chat format ([`ChatFormat`])
//! and a streaming decoder ([`StreamDecoder`]), and the Llama 3.1 tool-call
//! parser ([`parse_tool_output`]) that reads calls back out of generated text.
//!
//! # Design decisions
//!
//! **One engine for every format.** A tiktoken file is converted at load time
//! into a `tokenizers` byte-level BPE pipeline (see `tiktoken.rs` for how the
//! merge list is derived from ranks, following HF's `TikTokenConverter`);
//! GGUF metadata is llama.cpp's spelling of the same vocabulary (`gguf.rs`).
//! Both feed one builder (`bpe.rs`), and all formats then share every code
//! path — encode, decode, streaming, chat — so a test that passes through one
//! path exercises the others, and the ids are proven equal to Meta's
//! `tiktoken` ids by the committed fixtures. herd takes GGUF metadata as
//! plain data rather than depending on a GGUF parser, and writes it back
//! ([`Tokenizer::to_gguf_vocab`]) for GGUF files it produces.
//!
//! **User text never becomes special tokens.** The `tokenizers` crate normally
//! cuts added tokens such as `<|eot_id|>` out of the input before BPE, so a
//! user who types `<|eot_id|>` would end their own turn and could forge
//! headers. Meta's reference encodes with `disallowed_special=()`, i.e. as
//! ordinary bytes. Rather than keeping a second copy of a 128k-token
//! tokenizer without added tokens, herd sets the library's
//! `encode_special_tokens` flag on the one tokenizer it loads: tokens flagged
//! *special* are then never matched in input text, while decoding still knows
//! them. Special ids enter a sequence only where herd inserts them by id (the
//! chat format). [`Tokenizer::special_id`] offers only tokens flagged
//! special, so a vocabulary that lists `<|eot_id|>` as an ordinary (hence
//! user-producible) token fails loudly instead of being trusted.
//!
//! **Ids are looked up by name.** herd's own small models keep Llama 3's
//! special-token names at other ids; only the tiktoken loader knows that
//! Meta puts them at 128000..128255.
//!
//! **Meta's quirks are mirrored, not fixed.** Meta's encoder cuts runs longer
//! than 25,000 (non-)whitespace characters before BPE, which changes ids;
//! herd does the same so long inputs match. Meta's chat formatter does not
//! strip content and encodes each part separately; so does [`ChatFormat`].
//! Where herd is stricter (a malformed tiktoken line, a field a role cannot
//! carry) it returns an error where Meta would log and continue or silently
//! ignore.
//!
//! **herd's own tokenizers are Llama 3's, retrained.** [`train_bpe`] learns
//! merges for a small corpus but keeps the split regex, the byte alphabet
//! and all 256 special tokens by name (see `train.rs`), so small models use
//! the identical chat format. [`ChatRecord`] reads the OpenAI chat JSON
//! records that datasets (and chat requests) come in.
//!
//! **Immutable tokenizer, separate state.** [`Tokenizer`] is `Send + Sync`
//! and shared by all requests; [`StreamDecoder`] is per-sequence state that
//! borrows the tokenizer only for the duration of a call.

#![deny(missing_docs)]

mod bpe;
mod chat;
mod error;
mod gguf;
mod openai;
mod pyfmt;
mod stream;
mod tiktoken;
mod token_bytes;
mod tokenizer;
mod tool_parse;
mod tools;
mod train;

pub use bpe::LLAMA3_SPLIT_PATTERN;
pub use chat::{
    ChatFormat, EncodedDialog, Message, MessageEnd, MessageSpan, Role, ToolCall, ToolPromptFormat,
    ToolValue,
};
pub use error::{
    BackendOp, GgufExportProblem, GgufVocabProblem, MessageProblem, RecordProblem,
    TiktokenLineProblem, TiktokenVocabProblem, TokenizerError, VocabProblem,
};
pub use gguf::GgufVocab;
pub use openai::ChatRecord;
pub use stream::StreamDecoder;
pub use tiktoken::llama3_special_token_names;
pub use tokenizer::{SpecialToken, Tokenizer, TokenizerFormat};
pub use tool_parse::{may_start_tool_call, parse_tool_output, ParsedToolOutput};
pub use tools::{BuiltinTool, ToolDefinition, ToolPlacement, ToolPrompt, DEFAULT_TODAY};
pub use train::{dialog_text_pieces, train_bpe, write_tokenizer_dir, BpeTrainingOptions};
