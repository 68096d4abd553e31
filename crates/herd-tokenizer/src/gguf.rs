//! A GGUF file's tokenizer metadata (`tokenizer.ggml.*`, written by
//! llama.cpp's converter) → the builder's [`BpeVocab`], and back
//! ([`export`], for writing GGUF files).
//!
//! The metadata travels as plain data ([`GgufVocab`]) so that this crate does
//! not depend on a GGUF parser: whoever opens or writes the file handles the
//! keys.
//!
//! llama.cpp's `gpt2` vocabulary is the HF `tokenizer.json` vocabulary laid
//! out by id: ordinary tokens in GPT-2's byte→unicode spelling, added tokens
//! as plain text, merges as `"left right"`. Token types decide what a token
//! is to herd, following what llama.cpp's tokenizer does with each type:
//!
//! | type | llama.cpp | herd |
//! |------|-----------|------|
//! | 1 normal | BPE output | ordinary |
//! | 2 unknown, 3 control | matched in text only when parsing specials | special |
//! | 4 user-defined | always cut out of text, printed as plain text | non-special added token |
//! | 5 unused, 6 byte | never matched in text, print nothing | special (inert) |
//!
//! herd never parses specials out of user text (see the crate docs), so
//! "special" is the faithful choice for types 2 and 3; unused (`[PAD{id}]`
//! fillers for ids a checkpoint does not use) and byte tokens are never
//! produced from text either way.

use std::collections::HashMap;

use serde::Deserialize;

use crate::bpe::{self, BpeVocab, TokenKind};
use crate::error::{BackendOp, GgufExportProblem, GgufVocabProblem, TokenizerError};

/// llama.cpp's token types (`llama_token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// llama.cpp's names for Llama 3's pre-tokenizer: the converter writes
/// `llama-bpe`; `llama3` and `llama-v3` are older spellings llama.cpp still
/// maps to the same split. Other members of llama.cpp's group (`falcon3`,
/// `pixtral`, ...) share the regex but not Llama 3's vocabulary or chat format.
const LLAMA3_PRE_TOKENIZERS: [&str; 3] = ["llama-bpe", "llama3", "llama-v3"];

/// The tokenizer metadata of a GGUF file, as llama.cpp's converter writes it.
/// Field docs name the key each field comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) for Llama 3.
    pub model: String,
    /// `tokenizer.ggml.pre`: `"llama-bpe"` for Llama 3.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: every token by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte. Absent: all normal, as in llama.cpp
    /// (then no token is special and the chat format refuses to run).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`. Only checked to be a token: herd stops
    /// at `<|end_of_text|>`, `<|eom_id|>` and `<|eot_id|>` by name
    /// ([`Tokenizer::stop_ids`](crate::Tokenizer::stop_ids)); a model's own
    /// EOS ids are added by the caller, as for `config.json`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; llama.cpp defaults it to true for
    /// `llama-bpe`.
    pub add_bos: Option<bool>,
}

/// What [`check_bos`] needs of a [`GgufVocab`] after the tokens are consumed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BosSettings {
    bos_id: Option<u32>,
    add_bos: Option<bool>,
}

/// Validates the metadata and translates it for the shared builder.
pub(crate) fn build(
    vocab: GgufVocab,
) -> Result<(tokenizers::Tokenizer, BosSettings), TokenizerError> {
    let error = |problem| TokenizerError::GgufVocab { problem };
    let GgufVocab {
        model,
        pre,
        tokens,
        token_types,
        merges,
        bos_id,
        eos_id,
        add_bos,
    } = vocab;
    if model != "gpt2" {
        return Err(error(GgufVocabProblem::UnsupportedModel(model)));
    }
    match pre {
        None => return Err(error(GgufVocabProblem::MissingPreTokenizer)),
        Some(pre) if !LLAMA3_PRE_TOKENIZERS.contains(&pre.as_str()) => {
            return Err(error(GgufVocabProblem::UnsupportedPreTokenizer(pre)))
        }
        Some(_) => {}
    }
    if tokens.is_empty() {
        return Err(error(GgufVocabProblem::Empty));
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", bos_id),
        ("tokenizer.ggml.eos_token_id", eos_id),
    ] {
        if let Some(id) = id.filter(|id| *id as usize >= tokens.len()) {
            return Err(error(GgufVocabProblem::SpecialIdOutOfRange {
                key,
                id,
                vocab_size: tokens.len(),
            }));
        }
    }
    let kinds = match token_types {
        None => vec![TokenKind::Ordinary; tokens.len()],
        Some(types) if types.len() != tokens.len() => {
            return Err(error(GgufVocabProblem::TokenTypeCount {
                types: types.len(),
                tokens: tokens.len(),
            }))
        }
        Some(types) => types
            .iter()
            .zip(0u32..)
            .map(|(&value, id)| match value {
                NORMAL => Ok(TokenKind::Ordinary),
                UNKNOWN | CONTROL | UNUSED | BYTE => Ok(TokenKind::Special),
                USER_DEFINED => Ok(TokenKind::UserDefined),
                _ => Err(error(GgufVocabProblem::UnknownTokenType { id, value })),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let merges = merges
        .into_iter()
        .enumerate()
        .map(|(index, merge)| {
            // llama.cpp splits at the first space after the first byte.
            match merge.bytes().skip(1).position(|b| b == b' ') {
                Some(at) => Ok((merge[..=at].to_owned(), merge[at + 2..].to_owned())),
                None => Err(error(GgufVocabProblem::MalformedMerge { index, merge })),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab = BpeVocab {
        tokens: tokens.into_iter().zip(kinds).collect(),
        merges,
    };
    let tokenizer = bpe::build(vocab, |problem| error(GgufVocabProblem::Vocab(problem)))?;
    Ok((tokenizer, BosSettings { bos_id, add_bos }))
}

/// Checks that herd starts a sequence as llama.cpp would with this file:
/// herd prepends the special `<|begin_of_text|>` (`herd_bos`) wherever it
/// exists, so the file must want a BOS and name that token.
pub(crate) fn check_bos(
    settings: BosSettings,
    herd_bos: Option<u32>,
) -> Result<(), TokenizerError> {
    let error = |problem| Err(TokenizerError::GgufVocab { problem });
    if let Some(file) = settings.bos_id.filter(|id| Some(*id) != herd_bos) {
        return error(GgufVocabProblem::BosMismatch {
            file,
            herd: herd_bos,
        });
    }
    match (settings.add_bos, herd_bos) {
        (Some(false), Some(bos)) => error(GgufVocabProblem::NoBosWanted(bos)),
        _ => Ok(()),
    }
}

/// The parts of a serialized `tokenizers::Tokenizer` that [`export`] reads.
#[derive(Deserialize)]
struct Serialized {
    normalizer: serde_json::Value,
    pre_tokenizer: serde_json::Value,
    decoder: serde_json::Value,
    model: serde_json::Map<String, serde_json::Value>,
    added_tokens: Vec<SerializedAddedToken>,
}

/// One entry of `added_tokens`.
#[derive(Deserialize)]
struct SerializedAddedToken {
    id: u32,
    content: String,
    special: bool,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
}

fn serialize(tokenizer: &tokenizers::Tokenizer) -> Result<Serialized, TokenizerError> {
    serde_json::to_value(tokenizer)
        .and_then(serde_json::from_value)
        .map_err(|source| TokenizerError::Backend {
            op: BackendOp::Serialize,
            source: source.into(),
        })
}

/// What llama.cpp's converter (`convert_hf_to_gguf.py`, `get_vocab_base`)
/// writes for this tokenizer: tokens by id, added tokens control if special
/// else user-defined, `[PAD{id}]` (unused) for ids without a token, merges
/// as `"left right"`, pre-tokenizer `llama-bpe`.
///
/// Only a tokenizer that is herd's Llama 3 pipeline — same normalizer,
/// pre-tokenizer, BPE options and decoder as the builder's — can be written
/// so, because a GGUF reader rebuilds exactly that pipeline from the arrays.
pub(crate) fn export(
    tokenizer: &tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
) -> Result<GgufVocab, TokenizerError> {
    let error = |problem| TokenizerError::GgufExport { problem };
    let reference = serialize(&bpe::reference()?)?;
    let mut this = serialize(tokenizer)?;
    let same_model = reference
        .model
        .iter()
        .filter(|(key, _)| *key != "vocab" && *key != "merges")
        .all(|(key, value)| this.model.get(key) == Some(value));
    let different = [
        ("normalizer", this.normalizer == reference.normalizer),
        (
            "pre-tokenizer",
            this.pre_tokenizer == reference.pre_tokenizer,
        ),
        ("model", same_model),
        // The decoder's flags only matter for encoding.
        ("decoder", this.decoder["type"] == reference.decoder["type"]),
    ]
    .into_iter()
    .find(|(_, same)| !same);
    if let Some((part, _)) = different {
        return Err(error(GgufExportProblem::NotLlama3Bpe(part)));
    }

    let backend = |source: serde_json::Error| TokenizerError::Backend {
        op: BackendOp::Serialize,
        source: source.into(),
    };
    let vocab: HashMap<String, u32> =
        serde_json::from_value(this.model.remove("vocab").unwrap_or_default()).map_err(backend)?;
    let merges: Vec<(String, String)> =
        serde_json::from_value(this.model.remove("merges").unwrap_or_default()).map_err(backend)?;
    let token_count = vocab.len() + this.added_tokens.len();
    let ids = vocab
        .values()
        .chain(this.added_tokens.iter().map(|t| &t.id));
    let id_count = ids.max().map_or(0, |max| *max as usize + 1);
    // Every id below the largest gets a token, so a few stray ids must not
    // turn into billions of fillers.
    if id_count > 2 * token_count {
        return Err(error(GgufExportProblem::SparseIds {
            token_count,
            id_count,
        }));
    }
    let mut by_id: Vec<Option<(String, i32)>> = vec![None; id_count];
    for (text, id) in vocab {
        by_id[id as usize] = Some((text, NORMAL));
    }
    for added in this.added_tokens {
        if added.single_word || added.lstrip || added.rstrip {
            return Err(error(GgufExportProblem::AddedTokenOptions(added.content)));
        }
        let kind = if added.special { CONTROL } else { USER_DEFINED };
        by_id[added.id as usize] = Some((added.content, kind));
    }
    let (tokens, token_types) = by_id
        .into_iter()
        .enumerate()
        .map(|(id, token)| token.unwrap_or_else(|| (format!("[PAD{id}]"), UNUSED)))
        .unzip();
    Ok(GgufVocab {
        model: "gpt2".to_owned(),
        pre: Some(LLAMA3_PRE_TOKENIZERS[0].to_owned()),
        tokens,
        token_types: Some(token_types),
        merges: merges
            .into_iter()
            .map(|(left, right)| format!("{left} {right}"))
            .collect(),
        bos_id,
        eos_id,
        add_bos: Some(bos_id.is_some()),
    })
}
