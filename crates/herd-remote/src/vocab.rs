//! From the token strings a server returns to local token ids, and the
//! check that the teacher tokenizes as the local tokenizer does.
//!
//! OpenAI-compatible servers name tokens by their decoded text (herd,
//! vLLM, llama.cpp), or, with vLLM's `--return-tokens-as-token-ids`, as
//! `token_id:N`. [`TokenMap`] inverts the local tokenizer's per-token
//! decoding. A few texts belong to several ids (byte tokens of incomplete
//! UTF-8 all decode to `�`); such alternatives cannot be placed, so they
//! are dropped and their probability counts in the tail mass.

use std::collections::HashMap;

use herd_tokenizer::Tokenizer;

use crate::error::{RemoteError, Result};

/// One position as the server reports it: the token's text, its
/// log-probability, and the alternatives (best first).
#[derive(Debug, Clone, PartialEq)]
pub struct RawToken {
    /// The token's text.
    pub text: String,
    /// Its log-probability (`None` for a prompt's first token).
    pub logprob: Option<f32>,
    /// Alternatives: text and log-probability.
    pub top: Vec<(String, f32)>,
}

/// One position in local ids: what a teacher cache stores.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenTopK {
    /// The token at this position.
    pub id: u32,
    /// Its log-probability under the teacher (`NaN` where the server gave none).
    pub logprob: f32,
    /// The teacher's most likely tokens with log-probabilities, best first,
    /// each id once.
    pub top: Vec<(u32, f32)>,
    /// `1 − Σ exp(top)`, clamped at 0: the probability of every token not in `top`.
    pub tail: f32,
}

/// How a text maps back to ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    One(u32),
    Several,
}

/// Token text → local id, built once per tokenizer.
#[derive(Debug, Clone)]
pub struct TokenMap {
    by_text: HashMap<String, Lookup>,
    vocab_size: usize,
}

impl TokenMap {
    /// Decodes every id of `tokenizer` on its own.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let vocab_size = tokenizer.vocab_size();
        let mut by_text = HashMap::with_capacity(vocab_size);
        for id in 0..vocab_size as u32 {
            let Ok(text) = tokenizer.decode(&[id], false) else {
                continue;
            };
            by_text
                .entry(text)
                .and_modify(|l| *l = Lookup::Several)
                .or_insert(Lookup::One(id));
        }
        Ok(Self {
            by_text,
            vocab_size,
        })
    }

    /// The id of a token text, if it names exactly one local token.
    pub fn id(&self, text: &str) -> Option<u32> {
        if let Some(n) = text.strip_prefix("token_id:") {
            return n.parse().ok().filter(|&id| (id as usize) < self.vocab_size);
        }
        match self.by_text.get(text) {
            Some(Lookup::One(id)) => Some(*id),
            _ => None,
        }
    }

    /// Whether the local vocabulary has a token with this text at all.
    pub fn knows(&self, text: &str) -> bool {
        text.starts_with("token_id:") || self.by_text.contains_key(text)
    }

    /// A position in local ids. `id` is the token when the caller knows it
    /// (scoring its own ids); otherwise the text must name one local token.
    pub fn to_top_k(&self, raw: &RawToken, id: Option<u32>) -> Result<TokenTopK> {
        let id = match id.or_else(|| self.id(&raw.text)) {
            Some(id) => id,
            None => {
                return Err(RemoteError::TokenizerMismatch {
                    detail: format!(
                        "the teacher's token {:?} is {} in the local vocabulary",
                        raw.text,
                        if self.knows(&raw.text) {
                            "ambiguous"
                        } else {
                            "missing"
                        }
                    ),
                })
            }
        };
        let mut top: Vec<(u32, f32)> = Vec::with_capacity(raw.top.len());
        for (text, logprob) in &raw.top {
            if let Some(alt) = self.id(text) {
                if !top.iter().any(|&(t, _)| t == alt) {
                    top.push((alt, *logprob));
                }
            } else if !self.knows(text) {
                return Err(RemoteError::TokenizerMismatch {
                    detail: format!(
                        "the teacher's token {text:?} is missing in the local vocabulary"
                    ),
                });
            }
        }
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mass: f32 = top.iter().map(|&(_, lp)| lp.exp()).sum();
        Ok(TokenTopK {
            id,
            logprob: raw.logprob.unwrap_or(f32::NAN),
            top,
            tail: (1.0 - mass).max(0.0),
        })
    }
}

/// Compares the teacher's tokenization of a text with the local one (both
/// as token texts); a leading BOS present on one side only is ignored.
pub(crate) fn compare_tokenization(
    local: &[String],
    remote: &[String],
    bos: Option<&str>,
) -> Result<()> {
    let strip = |t: &[String]| -> Vec<String> {
        match (t.first(), bos) {
            (Some(first), Some(b)) if first == b => t[1..].to_vec(),
            _ => t.to_vec(),
        }
    };
    let (local, remote) = (strip(local), strip(remote));
    if local == remote {
        return Ok(());
    }
    let at = local
        .iter()
        .zip(&remote)
        .position(|(a, b)| a != b)
        .unwrap_or(local.len().min(remote.len()));
    Err(RemoteError::TokenizerMismatch {
        detail: format!(
            "a probe text is {} tokens for the teacher and {} locally; token {at} is {:?} for \
             the teacher and {:?} locally",
            remote.len(),
            local.len(),
            remote.get(at).map_or("(end)", String::as_str),
            local.get(at).map_or("(end)", String::as_str),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tokenizations_compare_modulo_one_bos() {
        let bos = Some("<s>");
        assert!(
            compare_tokenization(&strings(&["<s>", "a", "b"]), &strings(&["a", "b"]), bos).is_ok()
        );
        let err = compare_tokenization(&strings(&["a", "b"]), &strings(&["a", "bc"]), bos)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token 1 is \"bc\" for the teacher and \"b\" locally"),
            "{err}"
        );
        assert!(compare_tokenization(&strings(&["a"]), &strings(&["a", "b"]), bos).is_err());
    }
}
