//! The one builder behind the tiktoken and GGUF loaders: a byte-level BPE
//! vocabulary (tokens by id, merges in priority order) → a `tokenizers`
//! pipeline with Llama 3's pre-tokenizer.
//!
//! Both file formats describe the same thing in different spellings, so
//! each loader only translates its file into a [`BpeVocab`] and everything
//! that decides ids — validation, the BPE model, the pre-tokenizer, where the
//! added tokens go — lives here once.
//!
//! # Where added tokens go
//!
//! `tokenizers` gives an added token the id of an equal model-vocabulary
//! entry if there is one, and otherwise the next id after the model
//! vocabulary. So the trailing run of added tokens (Llama 3's 256 specials,
//! the tiny tokenizer's 11) stays out of the BPE model, exactly as in the
//! `tokenizer.json` files HF ships, and takes its ids by order; an added
//! token in the middle of the vocabulary (llama.cpp allows that) is put into
//! the BPE model as well so that it keeps its id.
//!
//! ```text
//! ids:   0 ............................. k-1 | k ........ n-1
//!        ordinary (and mid-vocab added)      | trailing added tokens
//!        └──────── BPE model vocab ────────┘  └ added in id order ┘
//! ```

use std::collections::HashMap;

use ahash::AHashMap;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{BackendOp, TokenizerError, VocabProblem};

/// Meta's Llama 3 pre-tokenization regex (`llama_models.llama3.tokenizer.Tokenizer.pat_str`).
pub const LLAMA3_SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What a token is to the tokenizer, whichever file it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Produced by BPE from text; spelled with GPT-2's byte→unicode table.
    Ordinary,
    /// An added token flagged special: never matched in text (see the crate
    /// docs), inserted only by id, dropped by `decode(.., skip_special)`.
    Special,
    /// An added token that is not special: cut out of the text wherever its
    /// plain text appears, before BPE — HF's non-special added tokens,
    /// llama.cpp's user-defined tokens.
    UserDefined,
}

/// A byte-level BPE vocabulary in the form both loaders produce.
pub(crate) struct BpeVocab {
    /// Every token by id: ordinary tokens spelled with GPT-2's byte table,
    /// added tokens as plain text.
    pub tokens: Vec<(String, TokenKind)>,
    /// Merges in priority order, highest first.
    pub merges: Vec<(String, String)>,
}

/// Builds the tokenizer. `vocab_error` wraps a [`VocabProblem`] into the
/// loader's own error, which names the file or the metadata.
///
/// `ignore_merges` is on, as in Llama 3's `tokenizer.json`, tiktoken and
/// llama.cpp's `llama-bpe`: a pre-token that is a whole vocabulary entry
/// becomes that token without running merges.
pub(crate) fn build(
    vocab: BpeVocab,
    vocab_error: impl Fn(VocabProblem) -> TokenizerError,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let BpeVocab { tokens, merges } = vocab;
    let count = u32::try_from(tokens.len())
        .map_err(|_| vocab_error(VocabProblem::TooManyTokens(tokens.len())))?;
    let mut id_of: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
    for (id, (text, _)) in (0..count).zip(&tokens) {
        if text.is_empty() {
            return Err(vocab_error(VocabProblem::EmptyToken { id }));
        }
        if let Some(&first_id) = id_of.get(text.as_str()) {
            return Err(vocab_error(VocabProblem::DuplicateToken {
                token: text.clone(),
                first_id,
                second_id: id,
            }));
        }
        id_of.insert(text, id);
    }
    let is_ordinary = |text: &str| {
        id_of
            .get(text)
            .is_some_and(|&id| tokens[id as usize].1 == TokenKind::Ordinary)
    };
    // Byte-level BPE can encode any text only if every byte is a token;
    // otherwise `tokenizers` (and llama.cpp) silently drop the byte.
    let byte_chars = gpt2_byte_chars();
    if let Some(byte) =
        (0..=255u8).find(|b| !is_ordinary(byte_chars[usize::from(*b)].encode_utf8(&mut [0; 4])))
    {
        return Err(vocab_error(VocabProblem::MissingByte(byte)));
    }
    // `tokenizers` would refuse these too, but without saying which merge.
    for (index, (left, right)) in merges.iter().enumerate() {
        let merged = format!("{left}{right}");
        let unknown = [left.as_str(), right.as_str(), merged.as_str()]
            .into_iter()
            .find(|t| !is_ordinary(t))
            .map(str::to_owned);
        if let Some(token) = unknown {
            return Err(vocab_error(VocabProblem::MergeUnknownToken {
                index,
                token,
            }));
        }
    }

    let tail = tokens
        .iter()
        .rev()
        .take_while(|(_, kind)| *kind != TokenKind::Ordinary)
        .count();
    let model_len = tokens.len() - tail;
    let model_vocab: AHashMap<String, u32> = (0..count)
        .zip(&tokens[..model_len])
        .map(|(id, (text, _))| (text.clone(), id))
        .collect();

    let backend = |op| move |source| TokenizerError::Backend { op, source };
    let bpe = BPE::builder()
        .vocab_and_merges(model_vocab, merges)
        .ignore_merges(true)
        .build()
        .map_err(backend(BackendOp::BuildBpe))?;
    let split = Split::new(
        SplitPattern::Regex(LLAMA3_SPLIT_PATTERN.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(backend(BackendOp::CompileRegex))?;

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    // The decoder flags only matter for encoding; these are HF's defaults.
    tokenizer.with_decoder(Some(ByteLevel::default()));

    let added: Vec<(u32, &str, TokenKind)> = (0..count)
        .zip(&tokens)
        .filter(|(_, (_, kind))| *kind != TokenKind::Ordinary)
        .map(|(id, (text, kind))| (id, text.as_str(), *kind))
        .collect();
    tokenizer
        .add_tokens(
            added
                .iter()
                .map(|(_, text, kind)| AddedToken::from(*text, *kind == TokenKind::Special)),
        )
        .map_err(backend(BackendOp::AddSpecialTokens))?;
    // Guaranteed by the layout above and the duplicate check; checked because
    // a wrong id here would silently shift every special token.
    if let Some((id, text, _)) = added
        .iter()
        .find(|(id, text, _)| tokenizer.token_to_id(text) != Some(*id))
    {
        return Err(TokenizerError::Backend {
            op: BackendOp::AddSpecialTokens,
            source: format!("{text} did not get id {id}").into(),
        });
    }
    Ok(tokenizer)
}

/// The pipeline [`build`] makes, with only the 256 byte tokens: what another
/// tokenizer must equal, vocabulary and merges aside, to be the same
/// tokenizer (see `gguf::export`).
pub(crate) fn reference() -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab = BpeVocab {
        tokens: gpt2_byte_chars()
            .iter()
            .map(|c| (c.to_string(), TokenKind::Ordinary))
            .collect(),
        merges: Vec::new(),
    };
    build(vocab, |problem| TokenizerError::Backend {
        op: BackendOp::BuildBpe,
        source: problem.into(),
    })
}

/// GPT-2's reversible byte → printable character table, which byte-level
/// BPE vocabularies (`tokenizer.json`, GGUF `gpt2` vocabularies) use to spell
/// raw bytes.
pub(crate) fn gpt2_byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut next_unprintable = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        chars[usize::from(byte)] = if printable {
            char::from(byte)
        } else {
            // 68 bytes are remapped to U+0100..U+0143, all scalar values.
            let c = char::from_u32(256 + next_unprintable).unwrap_or(char::REPLACEMENT_CHARACTER);
            next_unprintable += 1;
            c
        };
    }
    chars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_is_a_bijection_matching_known_entries() {
        let chars = gpt2_byte_chars();
        assert_eq!(chars[usize::from(b' ')], 'Ġ');
        assert_eq!(chars[usize::from(b'\n')], 'Ċ');
        assert_eq!(chars[usize::from(b'A')], 'A');
        let distinct: std::collections::HashSet<char> = chars.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    /// 256 byte tokens, then `extra`.
    fn vocab(extra: &[(&str, TokenKind)], merges: &[(&str, &str)]) -> BpeVocab {
        let chars = gpt2_byte_chars();
        BpeVocab {
            tokens: chars
                .iter()
                .map(|c| (c.to_string(), TokenKind::Ordinary))
                .chain(extra.iter().map(|(t, k)| ((*t).to_owned(), *k)))
                .collect(),
            merges: merges
                .iter()
                .map(|(l, r)| ((*l).to_owned(), (*r).to_owned()))
                .collect(),
        }
    }

    /// An added token in the middle of the vocabulary keeps its id, and the
    /// ordinary token after it is still produced by BPE.
    #[test]
    fn added_tokens_keep_their_ids_wherever_they_are() {
        use TokenKind::*;
        let v = vocab(
            &[
                ("<ctl>", Special),
                ("ab", Ordinary),
                ("<u>", UserDefined),
                ("<end>", Special),
            ],
            &[("a", "b")],
        );
        let tok = build(v, |p| panic!("{p}")).expect("build");
        assert_eq!(tok.token_to_id("<ctl>"), Some(256));
        assert_eq!(tok.token_to_id("ab"), Some(257));
        assert_eq!(tok.token_to_id("<u>"), Some(258));
        assert_eq!(tok.token_to_id("<end>"), Some(259));
        let ids = tok
            .encode_fast("ab<u>", false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(ids, vec![257, 258]);
    }

    /// Merges may only join and produce ordinary tokens: BPE output is never
    /// a special token.
    #[test]
    fn a_merge_producing_a_special_token_is_refused() {
        let v = vocab(&[("ab", TokenKind::Special)], &[("a", "b")]);
        match build(v, |p| TokenizerError::GgufVocab {
            problem: crate::error::GgufVocabProblem::Vocab(p),
        }) {
            Err(TokenizerError::GgufVocab {
                problem:
                    crate::error::GgufVocabProblem::Vocab(VocabProblem::MergeUnknownToken {
                        index: 0,
                        token,
                    }),
            }) => assert_eq!(token, "ab"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
