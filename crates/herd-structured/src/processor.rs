//! [`JsonProcessor`]: the automaton as a `herd_engine::LogitsProcessor`.
//!
//! Each step it computes which tokens may come next — every token whose
//! bytes the automaton accepts from the current state, found by one walk
//! over the vocabulary trie — and sets the logits of all others to −∞. Once
//! the document is complete only the stop tokens remain.
//!
//! Masks are cached by automaton state: inside a long free-text string the
//! state stays the same from token to token (string lengths saturate when
//! only a lower bound matters), so most steps of a long answer reuse a mask.

use std::collections::HashMap;
use std::sync::Arc;

use herd_engine::LogitsProcessor;

use crate::automaton::State;
use crate::error::{SchemaProblem, StructuredError};
use crate::grammar::{compact, Grammar, Node};
use crate::schema::compile;
use crate::vocab::{TokenVocab, VocabTrie};
use crate::JsonSpec;

/// Masks kept per processor; the cache is emptied when it grows past this.
const CACHE_LIMIT: usize = 64;

/// A set of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mask {
    words: Vec<u64>,
}

impl Mask {
    fn new(len: usize) -> Mask {
        Mask {
            words: vec![0; len.div_ceil(64)],
        }
    }

    fn set(&mut self, id: u32, on: bool) {
        if let Some(word) = self.words.get_mut(id as usize / 64) {
            let bit = 1u64 << (id % 64);
            if on {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    fn contains(&self, id: usize) -> bool {
        self.words
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

/// Constrains one request's output to a JSON document of a [`JsonSpec`].
pub struct JsonProcessor {
    grammar: Arc<Grammar>,
    vocab: Arc<TokenVocab>,
    stop_ids: Vec<u32>,
    state: State,
    /// A stop token was accepted, or a token the mask forbade (then only
    /// stop tokens are offered, ending the request).
    done: bool,
    cache: HashMap<State, Arc<Mask>>,
    /// One automaton state per trie depth, reused by every walk.
    scratch: Vec<State>,
}

impl std::fmt::Debug for JsonProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonProcessor")
            .field("stop_ids", &self.stop_ids)
            .field("done", &self.done)
            .field("cached_masks", &self.cache.len())
            .finish()
    }
}

impl JsonProcessor {
    /// Compiles `spec` for `vocab`. `stop_ids` (at least one) are the tokens
    /// that end the request; they are allowed exactly when the document is
    /// complete. Fails on an invalid or unsupported schema, naming the
    /// problem and where it is.
    pub fn new(
        spec: &JsonSpec,
        vocab: Arc<TokenVocab>,
        stop_ids: Vec<u32>,
    ) -> Result<JsonProcessor, StructuredError> {
        if stop_ids.is_empty() {
            return Err(StructuredError::NoStopToken);
        }
        let grammar = compile(spec)?;
        check_spellable(&grammar, &vocab)?;
        let state = State::new(grammar.root);
        Ok(JsonProcessor {
            grammar: Arc::new(grammar),
            scratch: vec![state.clone(); vocab.trie.max_depth + 1],
            vocab,
            stop_ids,
            state,
            done: false,
            cache: HashMap::new(),
        })
    }

    /// Whether the output so far is a complete document.
    pub fn is_complete(&self) -> bool {
        !self.done && self.state.complete(&self.grammar)
    }

    /// The tokens allowed next, as a mask (cached per automaton state).
    fn mask(&mut self) -> Arc<Mask> {
        if let Some(mask) = self.cache.get(&self.state).filter(|_| !self.done) {
            return mask.clone();
        }
        let len = self
            .vocab
            .len()
            .max(self.stop_ids.iter().max().map_or(0, |&m| m as usize + 1));
        let mut mask = Mask::new(len);
        if !self.done {
            self.walk(&mut mask);
        }
        for &stop in &self.stop_ids {
            mask.set(stop, false);
        }
        // An empty mask would leave the sampler nothing; ending is better.
        let allow_stop = self.done || self.state.complete(&self.grammar) || mask.is_empty();
        for &stop in &self.stop_ids {
            mask.set(stop, allow_stop);
        }
        let mask = Arc::new(mask);
        if !self.done {
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            self.cache.insert(self.state.clone(), mask.clone());
        }
        mask
    }

    /// Marks every token whose bytes the automaton accepts from `self.state`.
    /// Inside a string, plain-content tokens are decided by their length
    /// alone and only the other tokens are walked.
    fn walk(&mut self, mask: &mut Mask) {
        let vocab = self.vocab.clone();
        match self.state.string_room(&self.grammar) {
            Some(room) => {
                for id in vocab.plain_up_to(room) {
                    mask.set(id, true);
                }
                self.walk_trie(&vocab.other_trie, mask);
            }
            None => self.walk_trie(&vocab.trie, mask),
        }
    }

    /// Marks the tokens of `trie` that the automaton accepts.
    fn walk_trie(&mut self, trie: &VocabTrie, mask: &mut Mask) {
        let g = &*self.grammar;
        let check_utf8 = !self.vocab.completes_utf8();
        self.scratch[0].clone_from(&self.state);
        let mut i = 0;
        while i < trie.len() {
            let depth = usize::from(trie.depth[i]);
            let (before, after) = self.scratch.split_at_mut(depth);
            let state = &mut after[0];
            state.clone_from(&before[depth - 1]);
            if state.advance(g, trie.byte[i]) {
                if !(check_utf8 && state.mid_utf8()) {
                    for &id in trie.tokens(i) {
                        mask.set(id, true);
                    }
                }
                i += 1;
            } else {
                i = trie.skip[i] as usize;
            }
        }
    }
}

/// Refuses a grammar whose names or values hold a byte (outside printable
/// ASCII, which every vocabulary here spells) that no single token spells.
fn check_spellable(g: &Grammar, vocab: &TokenVocab) -> Result<(), StructuredError> {
    for (node, path) in g.nodes.iter().zip(&g.paths) {
        let words: Vec<Vec<u8>> = match node {
            Node::Object(o) => o.props.iter().map(|p| p.key.clone()).collect(),
            Node::Literal { values, .. } => values.iter().map(compact).collect(),
            _ => continue,
        };
        for word in words {
            if !word.iter().all(|&b| vocab.has_single(b)) {
                return Err(StructuredError::Schema {
                    path: path.clone(),
                    problem: SchemaProblem::Unspellable(String::from_utf8_lossy(&word).into()),
                });
            }
        }
    }
    Ok(())
}

impl LogitsProcessor for JsonProcessor {
    fn process(&mut self, logits: &mut [f32]) {
        let mask = self.mask();
        for (id, logit) in logits.iter_mut().enumerate() {
            if !mask.contains(id) {
                *logit = f32::NEG_INFINITY;
            }
        }
    }

    fn accept(&mut self, token: u32) {
        if self.done {
            return;
        }
        if self.stop_ids.contains(&token) {
            self.done = true;
            return;
        }
        let Some(bytes) = self.vocab.token_bytes(token) else {
            self.done = true;
            return;
        };
        let g = &*self.grammar;
        self.done = !bytes.iter().all(|&b| self.state.advance(g, b));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Inside strings, the length shortcut for plain tokens gives exactly the
    /// mask of the full walk over every token.
    #[test]
    fn string_shortcut_equals_full_walk() {
        let mut tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        for word in [
            "ab",
            "abc",
            "abcd",
            "é",
            "\"}",
            "x\"",
            "\\n",
            "\"a\":",
            "  ",
            "日本語",
        ] {
            tokens.push(Some(word.as_bytes().to_vec()));
        }
        tokens.push(Some(vec![0xe6, 0x97]));
        tokens.push(None);
        let stop = tokens.len() as u32 - 1;
        let vocab = Arc::new(TokenVocab::from_token_bytes(tokens).unwrap());
        let spec = JsonSpec::Schema(json!({
            "type": "object",
            "properties": {"s": {"type": "string", "maxLength": 3}, "t": {"type": "string"}},
            "additionalProperties": {"type": "string", "minLength": 2},
        }));
        for prefix in [
            "{\"s\":\"",
            "{\"s\":\"a",
            "{\"s\":\"abc",
            "{\"t\":\"xyz",
            "{\"q",
            "{\"q\":\"a",
        ] {
            let mut p = JsonProcessor::new(&spec, vocab.clone(), vec![stop]).unwrap();
            for &b in prefix.as_bytes() {
                p.accept(u32::from(b));
            }
            assert!(p.state.string_room(&p.grammar).is_some(), "{prefix}");
            let mut fast = Mask::new(vocab.len());
            p.walk(&mut fast);
            let mut full = Mask::new(vocab.len());
            p.walk_trie(&vocab.trie, &mut full);
            assert_eq!(fast, full, "{prefix}");
            assert!(!fast.is_empty());
        }
    }
}
