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
//! The special tokens are Meta's 256, at the ids right after the last rank.
//! The rest — pre-tokenizer, decoder, validation — is the builder shared with
//! the GGUF loader (`bpe.rs`).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;

use crate::bpe::{self, gpt2_byte_chars, BpeVocab, TokenKind};
use crate::error::{TiktokenLineProblem, TiktokenVocabProblem, TokenizerError};

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
            other => {
                return Err(line_error(
                    line_no,
                    TiktokenLineProblem::FieldCount(other.len()),
                ))
            }
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
            return Err(line_error(
                line_no,
                TiktokenLineProblem::DuplicateToken { first_line },
            ));
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
            None => {
                return Err(vocab_error(TiktokenVocabProblem::RankGap {
                    count,
                    missing: rank,
                }))
            }
        }
    }
    Ok(tokens)
}

/// Spells the ranks and Meta's special tokens as a [`BpeVocab`], with the
/// merges derived from the ranks as described at the top of this file.
fn build(path: &Path, tokens: &[Vec<u8>]) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let rank_of: HashMap<&[u8], u32> = tokens
        .iter()
        .enumerate()
        .map(|(rank, token)| (token.as_slice(), rank as u32))
        .collect();
    let byte_chars = gpt2_byte_chars();
    let spell =
        |bytes: &[u8]| -> String { bytes.iter().map(|b| byte_chars[usize::from(*b)]).collect() };

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
    let vocab = BpeVocab {
        tokens: tokens
            .iter()
            .map(|token| (spell(token), TokenKind::Ordinary))
            .chain(
                llama3_special_token_names()
                    .into_iter()
                    .map(|name| (name, TokenKind::Special)),
            )
            .collect(),
        merges,
    };
    bpe::build(vocab, |problem| TokenizerError::TiktokenVocab {
        path: path.to_owned(),
        problem: TiktokenVocabProblem::Vocab(problem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_token_names_match_meta() {
        let names = llama3_special_token_names();
        assert_eq!(names.len(), 256);
        assert_eq!(names[9], "<|eot_id|>");
        assert_eq!(names[12], "<|reserved_special_token_2|>");
        assert_eq!(names[255], "<|reserved_special_token_245|>");
    }
}
