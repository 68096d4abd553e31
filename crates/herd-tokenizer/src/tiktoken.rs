//! Meta's tiktoken `tokenizer.model` → an equivalent `tokenizers::Tokenizer`.
//!
//! The file is one `base64token rank` line per token. tiktoken's BPE merges,
//! at every step, the adjacent pair whose concatenation has the lowest rank,
//! after first taking a whole pre-token that is itself in the vocabulary.
//! HF's `tokenizers` BPE instead walks an ordered list of merges. The two
//! agree when the merge list is derived the way HF's `TikTokenConverter` does
//! it (and the way HF built the `tokenizer.json` it ships for Llama 3):
//!
//! * the vocabulary maps each token's bytes, spelled with GPT-2's
//!   byte→unicode table, to its rank;
//! * every way of splitting a token into two tokens that are both in the
//!   vocabulary is a merge, ordered by the rank of the result, then by the
//!   ranks of the left and right halves;
//! * `ignore_merges` is on, so a pre-token that is a whole vocabulary entry
//!   becomes that token directly, as in tiktoken.
//!
//! The pre-tokenizer is Meta's split regex (isolated matches) followed by a
//! byte-level mapping without prefix space or regex of its own; the decoder
//! is byte-level. The special tokens are Meta's 256, at the ids right after
//! the last rank.

use std::collections::HashMap;
use std::path::Path;

use ahash::AHashMap;
use base64::Engine as _;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{BackendOp, TiktokenLineProblem, TiktokenVocabProblem, TokenizerError};

/// Meta's Llama 3 pre-tokenization regex (`llama_models.llama3.tokenizer.Tokenizer.pat_str`).
pub const LLAMA3_SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How many special tokens Meta appends after the BPE ranks.
const NUM_SPECIAL_TOKENS: usize = 256;

/// The named special tokens, in id order; reserved ones fill the rest.
const NAMED_SPECIAL_TOKENS: [&str; 12] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
];

/// Meta's 256 special-token names in id order: the 12 named ones, then
/// `<|reserved_special_token_2|>` .. `<|reserved_special_token_245|>`.
pub fn llama3_special_token_names() -> Vec<String> {
    let reserved = NUM_SPECIAL_TOKENS - NAMED_SPECIAL_TOKENS.len();
    NAMED_SPECIAL_TOKENS
        .iter()
        .map(|s| (*s).to_owned())
        .chain((0..reserved).map(|i| format!("<|reserved_special_token_{}|>", 2 + i)))
        .collect()
}

/// Converts the text of a tiktoken file; `path` is only for error messages.
pub(crate) fn from_text(path: &Path, text: &str) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let tokens = parse(path, text)?;
    build(path, &tokens)
}

/// Parses the lines into the token bytes indexed by rank. Blank lines are
/// skipped, as Meta's loader does; unlike Meta's loader, which logs and skips
/// a malformed line, this refuses it: a skipped line shifts no ids but leaves
/// a hole in the vocabulary that would surface much later as wrong text.
fn parse(path: &Path, text: &str) -> Result<Vec<Vec<u8>>, TokenizerError> {
    let line_error = |line: usize, problem: TiktokenLineProblem| TokenizerError::TiktokenLine {
        path: path.to_owned(),
        line,
        problem,
    };
    let mut by_rank: HashMap<u32, (Vec<u8>, usize)> = HashMap::new();
    let mut line_of_token: HashMap<Vec<u8>, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (token, rank) = match fields.as_slice() {
            [] => continue,
            [token, rank] => (*token, *rank),
            other => return Err(line_error(line_no, TiktokenLineProblem::FieldCount(other.len()))),
        };
        let token = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|e| line_error(line_no, TiktokenLineProblem::Base64(e)))?;
        if token.is_empty() {
            return Err(line_error(line_no, TiktokenLineProblem::EmptyToken));
        }
        let rank: u32 = rank
            .parse()
            .map_err(|e| line_error(line_no, TiktokenLineProblem::Rank(e)))?;
        if let Some(&first_line) = line_of_token.get(&token) {
            return Err(line_error(line_no, TiktokenLineProblem::DuplicateToken { first_line }));
        }
        if let Some((_, first_line)) = by_rank.get(&rank) {
            let first_line = *first_line;
            return Err(line_error(
                line_no,
                TiktokenLineProblem::DuplicateRank { rank, first_line },
            ));
        }
        line_of_token.insert(token.clone(), line_no);
        by_rank.insert(rank, (token, line_no));
    }

    let vocab_error = |problem| TokenizerError::TiktokenVocab {
        path: path.to_owned(),
        problem,
    };
    let count = by_rank.len();
    if count == 0 {
        return Err(vocab_error(TiktokenVocabProblem::Empty));
    }
    let mut tokens = Vec::with_capacity(count);
    for rank in 0..count {
        // `count` distinct u32 ranks fit in u32.
        let rank = rank as u32;
        match by_rank.remove(&rank) {
            Some((token, _)) => tokens.push(token),
            None => return Err(vocab_error(TiktokenVocabProblem::RankGap { count, missing: rank })),
        }
    }
    Ok(tokens)
}

/// Builds the byte-level BPE tokenizer from token bytes indexed by rank.
fn build(path: &Path, tokens: &[Vec<u8>]) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab_error = |problem| TokenizerError::TiktokenVocab {
        path: path.to_owned(),
        problem,
    };
    let rank_of: HashMap<&[u8], u32> = tokens
        .iter()
        .enumerate()
        .map(|(rank, token)| (token.as_slice(), rank as u32))
        .collect();
    if let Some(byte) = (0..=255u8).find(|b| !rank_of.contains_key(&[*b][..])) {
        return Err(vocab_error(TiktokenVocabProblem::MissingByte(byte)));
    }

    let byte_chars = gpt2_byte_chars();
    let spell = |bytes: &[u8]| -> String { bytes.iter().map(|b| byte_chars[usize::from(*b)]).collect() };

    let vocab: AHashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(rank, token)| (spell(token), rank as u32))
        .collect();
    // Iterating in rank order gives the converter's stable sort by result rank.
    let mut merges = Vec::new();
    for token in tokens.iter().filter(|t| t.len() > 1) {
        let mut local: Vec<(u32, u32)> = (1..token.len())
            .filter_map(|i| {
                let (left, right) = token.split_at(i);
                Some((*rank_of.get(left)?, *rank_of.get(right)?))
            })
            .collect();
        local.sort_unstable();
        merges.extend(
            local
                .into_iter()
                .map(|(l, r)| (spell(&tokens[l as usize]), spell(&tokens[r as usize]))),
        );
    }

    let backend = |op| move |source| TokenizerError::Backend { op, source };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
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

    let names = llama3_special_token_names();
    tokenizer
        .add_special_tokens(names.iter().map(|n| AddedToken::from(n.as_str(), true)))
        .map_err(backend(BackendOp::AddSpecialTokens))?;
    for (offset, name) in names.iter().enumerate() {
        let expected = (tokens.len() + offset) as u32;
        if tokenizer.token_to_id(name) != Some(expected) {
            return Err(vocab_error(TiktokenVocabProblem::SpecialTokenInVocab(name.clone())));
        }
    }
    Ok(tokenizer)
}

/// GPT-2's reversible byte → printable character table, which byte-level
/// BPE vocabularies (and `tokenizer.json` files) use to spell raw bytes.
fn gpt2_byte_chars() -> [char; 256] {
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

    #[test]
    fn special_token_names_match_meta() {
        let names = llama3_special_token_names();
        assert_eq!(names.len(), 256);
        assert_eq!(names[9], "<|eot_id|>");
        assert_eq!(names[12], "<|reserved_special_token_2|>");
        assert_eq!(names[255], "<|reserved_special_token_245|>");
    }
}
