//! [`Tokenizer`]: one type over every source format, with encoding that never
//! produces special tokens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{BackendOp, TokenizerError};
use crate::gguf::{self, GgufVocab};
use crate::tiktoken;

/// Which source a [`Tokenizer`] was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerFormat {
    /// A Hugging Face `tokenizer.json`.
    HfJson,
    /// Meta's tiktoken `tokenizer.model` (`base64token rank` lines).
    Tiktoken,
    /// A GGUF file's `tokenizer.ggml.*` metadata ([`GgufVocab`]).
    Gguf,
}

/// The special tokens herd itself needs, by their Llama 3 names.
///
/// Ids are always looked up by name: herd's own small models keep these names
/// at ids far from Llama 3's 128000.., so no id is fixed anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialToken {
    /// `<|begin_of_text|>`, the BOS token.
    BeginOfText,
    /// `<|end_of_text|>`, end of a document.
    EndOfText,
    /// `<|start_header_id|>`, opens a role header.
    StartHeader,
    /// `<|end_header_id|>`, closes a role header.
    EndHeader,
    /// `<|eom_id|>`, ends an assistant message that waits for a tool result.
    EndOfMessage,
    /// `<|eot_id|>`, ends a turn.
    EndOfTurn,
    /// `<|python_tag|>`, starts a code-interpreter tool call.
    PythonTag,
}

impl SpecialToken {
    /// The token's text in the vocabulary.
    pub const fn name(self) -> &'static str {
        match self {
            SpecialToken::BeginOfText => "<|begin_of_text|>",
            SpecialToken::EndOfText => "<|end_of_text|>",
            SpecialToken::StartHeader => "<|start_header_id|>",
            SpecialToken::EndHeader => "<|end_header_id|>",
            SpecialToken::EndOfMessage => "<|eom_id|>",
            SpecialToken::EndOfTurn => "<|eot_id|>",
            SpecialToken::PythonTag => "<|python_tag|>",
        }
    }
}

/// Tokens that end generation, in Meta's order (`Tokenizer.stop_tokens`).
const STOP_TOKENS: [SpecialToken; 3] = [
    SpecialToken::EndOfText,
    SpecialToken::EndOfMessage,
    SpecialToken::EndOfTurn,
];

/// Meta's encoder cuts text into pieces of at most this many characters
/// before handing it to tiktoken (`TIKTOKEN_MAX_ENCODE_CHARS`).
const MAX_ENCODE_CHARS: usize = 400_000;
/// ... and cuts runs of whitespace or non-whitespace longer than this
/// (`MAX_NO_WHITESPACES_CHARS`), which changes the ids at the cut.
const MAX_RUN_CHARS: usize = 25_000;

/// What [`Tokenizer::from_dir`] looks for, for [`TokenizerError::NotFound`].
const LOOKED_FOR_IN_DIR: &str =
    "expected tokenizer.json, tokenizer.model or original/tokenizer.model in this directory";
/// What [`Tokenizer::from_file`] accepts, for [`TokenizerError::NotFound`].
const LOOKED_FOR_FILE: &str = "expected a tokenizer.json or tiktoken tokenizer.model file";

/// A loaded tokenizer: immutable, `Send + Sync`, shared by all requests.
pub struct Tokenizer {
    /// The `tokenizers` pipeline, with special-token extraction turned off
    /// for encoding (see the crate docs).
    inner: tokenizers::Tokenizer,
    /// Added tokens flagged special, by name.
    specials: HashMap<String, u32>,
    /// One more than the largest id.
    vocab_size: usize,
    /// Which file format it came from.
    format: TokenizerFormat,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("format", &self.format)
            .field("vocab_size", &self.vocab_size)
            .field("specials", &self.specials.len())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a tokenizer from a model directory ([`Tokenizer::from_dir`]) or
    /// a file ([`Tokenizer::from_file`]).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        if path.is_dir() {
            Self::from_dir(path)
        } else {
            Self::from_file(path)
        }
    }

    /// Loads the tokenizer of a model directory: `tokenizer.json` (HF
    /// layout) if present, else `tokenizer.model` or
    /// `original/tokenizer.model` (Meta's layout).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let candidates = [
            "tokenizer.json",
            "tokenizer.model",
            "original/tokenizer.model",
        ];
        let file = candidates
            .iter()
            .map(|name| dir.join(name))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| TokenizerError::NotFound {
                path: dir.to_owned(),
                looked_for: LOOKED_FOR_IN_DIR,
            })?;
        Self::from_file(file)
    }

    /// Loads a tokenizer file, detecting its format from the content: a
    /// `tokenizer.json` starts with `{`, anything else is read as tiktoken.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let text = read_text(path, LOOKED_FOR_FILE)?;
        if text.trim_start().starts_with('{') {
            Self::from_json_text(path, &text)
        } else {
            Self::from_tiktoken_text(path, &text)
        }
    }

    /// Loads a `tokenizer.json` held in memory (e.g. compiled into a binary);
    /// errors name the file `<memory>`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let inner: tokenizers::Tokenizer =
            serde_json::from_slice(bytes).map_err(|source| TokenizerError::Json {
                path: PathBuf::from("<memory>"),
                source,
            })?;
        Ok(Self::from_inner(inner, TokenizerFormat::HfJson))
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let text = read_text(path, "expected a tokenizer.json file")?;
        Self::from_json_text(path, &text)
    }

    /// Loads Meta's tiktoken `tokenizer.model` and adds Meta's 256 Llama 3
    /// special tokens after the last rank.
    pub fn from_tiktoken(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let text = read_text(path, "expected a tiktoken tokenizer.model file")?;
        Self::from_tiktoken_text(path, &text)
    }

    /// Builds the tokenizer described by a GGUF file's tokenizer metadata
    /// (llama.cpp's `gpt2` vocabulary with the `llama-bpe` pre-tokenizer, as
    /// written for Llama 3). Control tokens become special tokens, found by
    /// [`Tokenizer::special_id`]; see `gguf.rs` for every token type.
    ///
    /// Refuses what herd cannot reproduce: another tokenizer model or
    /// pre-tokenizer (naming it), a BOS other than the special
    /// `<|begin_of_text|>`, or `add_bos_token = false`.
    pub fn from_gguf_vocab(vocab: GgufVocab) -> Result<Self, TokenizerError> {
        let (inner, bos) = gguf::build(vocab)?;
        let tokenizer = Self::from_inner(inner, TokenizerFormat::Gguf);
        gguf::check_bos(bos, tokenizer.bos_id())?;
        Ok(tokenizer)
    }

    /// This tokenizer as the tokenizer metadata llama.cpp's converter writes
    /// into GGUF files (Llama 3's `gpt2` / `llama-bpe` vocabulary), for
    /// writing a GGUF file; [`Tokenizer::from_gguf_vocab`] reads it back.
    /// The EOS is `<|eot_id|>` if the vocabulary has it, as in Llama 3
    /// Instruct files, else `<|end_of_text|>`; a caller that knows the
    /// checkpoint's own EOS sets `eos_id`. Fails for a `tokenizer.json` whose
    /// pipeline is not herd's Llama 3 byte-level BPE.
    pub fn to_gguf_vocab(&self) -> Result<GgufVocab, TokenizerError> {
        let eos = [SpecialToken::EndOfTurn, SpecialToken::EndOfText]
            .iter()
            .find_map(|token| self.special_id(token.name()));
        gguf::export(&self.inner, self.bos_id(), eos)
    }

    /// This tokenizer as a Hugging Face `tokenizer.json` document, e.g. to
    /// keep a converted tiktoken or GGUF tokenizer next to exported weights,
    /// or to compare its vocabulary and merges with another converter's.
    pub fn to_tokenizer_json(&self) -> Result<String, TokenizerError> {
        self.inner
            .to_string(false)
            .map_err(|source| TokenizerError::Backend {
                op: BackendOp::Serialize,
                source,
            })
    }

    fn from_json_text(path: &Path, text: &str) -> Result<Self, TokenizerError> {
        let inner: tokenizers::Tokenizer =
            serde_json::from_str(text).map_err(|source| TokenizerError::Json {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self::from_inner(inner, TokenizerFormat::HfJson))
    }

    fn from_tiktoken_text(path: &Path, text: &str) -> Result<Self, TokenizerError> {
        let inner = tiktoken::from_text(path, text)?;
        Ok(Self::from_inner(inner, TokenizerFormat::Tiktoken))
    }

    pub(crate) fn from_inner(mut inner: tokenizers::Tokenizer, format: TokenizerFormat) -> Self {
        // Text from users is never parsed into special tokens.
        inner.set_encode_special_tokens(true);
        // A tokenizer.json may carry training-time truncation or padding; an
        // inference engine must see every token of a prompt, unpadded.
        inner.with_padding(None);
        // Removing truncation cannot fail (only setting a bad stride can).
        let _ = inner.with_truncation(None);
        let specials: HashMap<String, u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| (token.content, id))
            .collect();
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |max| *max as usize + 1);
        Self {
            inner,
            specials,
            vocab_size,
            format,
        }
    }

    /// The `tokenizers` pipeline, for this crate's other `impl Tokenizer` blocks.
    pub(crate) fn backend(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Which file format this tokenizer was loaded from.
    pub fn format(&self) -> TokenizerFormat {
        self.format
    }

    /// Encodes plain text. Special-token text such as `<|eot_id|>` inside
    /// `text` is encoded as the ordinary characters it is made of, as Meta's
    /// `Tokenizer.encode(s, bos=False, eos=False)` does; no BOS is added.
    ///
    /// Like Meta's encoder, the text is first cut into runs of at most 25,000
    /// whitespace or non-whitespace characters, so very long runs get the
    /// same ids as Meta's reference.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        for piece in meta_pieces(text) {
            let encoding =
                self.inner
                    .encode_fast(piece, false)
                    .map_err(|source| TokenizerError::Backend {
                        op: BackendOp::Encode,
                        source,
                    })?;
            ids.extend_from_slice(encoding.get_ids());
        }
        Ok(ids)
    }

    /// Decodes ids to text; invalid UTF-8 becomes U+FFFD, as in Meta's
    /// `decode`. With `skip_special`, special tokens produce no text.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|id| self.inner.id_to_token(**id).is_none()) {
            return Err(TokenizerError::UnknownId {
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|source| TokenizerError::Backend {
                op: BackendOp::Decode,
                source,
            })
    }

    /// The id of the special token with this name, e.g. `<|eot_id|>`. Only
    /// tokens flagged special count: a vocabulary whose `<|eot_id|>` is an
    /// ordinary token could produce it from user text, so it is not offered.
    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.specials.get(name).copied()
    }

    /// The id of a special token herd needs, or an error naming it.
    pub fn require(&self, token: SpecialToken) -> Result<u32, TokenizerError> {
        self.special_id(token.name())
            .ok_or_else(|| TokenizerError::MissingSpecialToken {
                name: token.name().to_owned(),
            })
    }

    /// One more than the largest token id, special tokens included: the least
    /// number of embedding rows a model needs (128256 for Llama 3).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of `<|begin_of_text|>`, if this vocabulary has it.
    pub fn bos_id(&self) -> Option<u32> {
        self.special_id(SpecialToken::BeginOfText.name())
    }

    /// The ids that end generation: `<|end_of_text|>`, `<|eom_id|>` and
    /// `<|eot_id|>`, those of them this vocabulary has, in that order.
    pub fn stop_ids(&self) -> Vec<u32> {
        STOP_TOKENS
            .iter()
            .filter_map(|token| self.special_id(token.name()))
            .collect()
    }
}

/// Reads a file, reporting a missing one as [`TokenizerError::NotFound`].
fn read_text(path: &Path, looked_for: &'static str) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TokenizerError::NotFound {
                path: path.to_owned(),
                looked_for,
            }
        } else {
            TokenizerError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// The pieces Meta's `Tokenizer.encode` hands to tiktoken one by one: slices
/// of at most 400,000 characters, each cut further so that no run of
/// whitespace or of non-whitespace exceeds 25,000 characters.
fn meta_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    loop {
        let cut = rest
            .char_indices()
            .nth(MAX_ENCODE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let (head, tail) = rest.split_at(cut);
        split_long_runs(head, &mut pieces);
        if tail.is_empty() {
            return pieces;
        }
        rest = tail;
    }
}

/// Meta's `_split_whitespaces_or_nonwhitespaces`, character for character.
fn split_long_runs<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let mut run_is_space = text.chars().next().is_some_and(python_isspace);
    let mut run_len = 0usize;
    let mut start = 0usize;
    for (i, c) in text.char_indices() {
        let is_space = python_isspace(c);
        if is_space != run_is_space {
            run_len = 1;
            run_is_space = is_space;
        } else {
            run_len += 1;
            if run_len > MAX_RUN_CHARS {
                pieces.push(&text[start..i]);
                start = i;
                run_len = 1;
            }
        }
    }
    pieces.push(&text[start..]);
}

/// Python's `str.isspace`: Unicode `White_Space` plus the ASCII information
/// separators U+001C..U+001F, which Python also counts as space.
fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meta's tokenizer, fetched by tools/fetch_llama3_tokenizer.sh.
    fn llama3_model_path() -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/llama3-tokenizer/tokenizer.model");
        assert!(
            path.is_file(),
            "{} is missing: run `tools/fetch_llama3_tokenizer.sh` from the repository root first",
            path.display()
        );
        path
    }

    fn fixture_json(rel: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(rel);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn fnv1a64(data: &[u8]) -> String {
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    /// The vocabulary and merges herd derives from Meta's ranks are exactly
    /// those of transformers' `TikTokenConverter` (fingerprinted by
    /// tools/make_tokenizer_fixtures.py), and the converted tokenizer
    /// survives a trip through tokenizer.json with Meta's ids intact.
    #[test]
    fn tiktoken_conversion_equals_transformers_converter_and_survives_json() {
        let tok = Tokenizer::from_tiktoken(llama3_model_path()).expect("load");
        let json = tok.to_tokenizer_json().expect("serialize");
        let value: serde_json::Value = serde_json::from_str(&json).expect("parse");
        let model = &value["model"];
        assert_eq!(model["ignore_merges"], serde_json::Value::Bool(true));

        let mut vocab: Vec<(&str, u64)> = model["vocab"]
            .as_object()
            .expect("vocab")
            .iter()
            .map(|(token, id)| (token.as_str(), id.as_u64().expect("id")))
            .collect();
        vocab.sort_by_key(|(_, id)| *id);
        let mut text = String::new();
        for (token, id) in &vocab {
            text.push_str(&format!("{token}\t{id}\n"));
        }
        let merges = model["merges"].as_array().expect("merges");
        for merge in merges {
            let pair = merge.as_array().expect("[left, right]");
            text.push_str(&format!(
                "{} {}\n",
                pair[0].as_str().expect("left"),
                pair[1].as_str().expect("right")
            ));
        }
        let expected = fixture_json("tokenizer/multilingual.ids.json");
        let hf = &expected["hf_converter"];
        assert_eq!(
            vocab.len() as u64,
            hf["vocab_size"].as_u64().expect("vocab_size")
        );
        assert_eq!(merges.len() as u64, hf["merges"].as_u64().expect("merges"));
        assert_eq!(
            fnv1a64(text.as_bytes()),
            hf["fnv1a64_of_vocab_and_merges"]
                .as_str()
                .expect("fingerprint")
        );

        let reloaded = Tokenizer::from_json_bytes(json.as_bytes()).expect("reload");
        assert_eq!(reloaded.format(), TokenizerFormat::HfJson);
        assert_eq!(reloaded.vocab_size(), tok.vocab_size());
        assert_eq!(reloaded.stop_ids(), tok.stop_ids());
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tokenizer/multilingual.txt");
        let text = std::fs::read_to_string(path).expect("text");
        let ids: Vec<u32> = serde_json::from_value(expected["ids"].clone()).expect("ids");
        assert!(
            reloaded.encode(&text).expect("encode") == ids,
            "tokenizer.json path differs from Meta"
        );
    }

    /// One loaded tokenizer serves every request and thread.
    #[test]
    fn tokenizer_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Tokenizer>();
    }

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(meta_pieces(""), vec![""]);
        assert_eq!(meta_pieces("a b  c"), vec!["a b  c"]);
    }

    #[test]
    fn long_runs_are_cut_like_meta() {
        let text = format!("{}{}", "x".repeat(MAX_RUN_CHARS + 3), " ".repeat(2));
        let pieces = meta_pieces(&text);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), MAX_RUN_CHARS);
        assert_eq!(pieces[1], "xxx  ");
    }

    #[test]
    fn python_space_includes_separators() {
        assert!(python_isspace('\u{1f}'));
        assert!(python_isspace('\u{3000}'));
        assert!(!python_isspace('\u{200b}'));
    }
}
