//! [`TokenVocab`]: every token's bytes, and a trie over them laid out for a
//! fast depth-first walk.
//!
//! The walk tests all tokens against one automaton state: tokens sharing a
//! prefix share the work for it, and a byte the automaton refuses skips the
//! whole subtree below it (every token starting with that prefix). The trie
//! is stored in preorder as flat arrays; each node knows its depth and where
//! its subtree ends, so the walk is a loop over an array with jumps, and
//! needs no recursion or pointers:
//!
//! ```text
//!   tokens: "a"=7  "ab"=3  "b"=9
//!   index:   0      1       2
//!   byte:    a      b       b
//!   depth:   1      2       1
//!   skip:    2      2       3      (first index after the subtree)
//!   tokens: [7]    [3]     [9]
//! ```
//!
//! Building it for Llama 3's 128k tokens takes tens of milliseconds, so one
//! `TokenVocab` is built per tokenizer and shared (`Arc`) by every request.

use herd_tokenizer::Tokenizer;

use crate::error::StructuredError;

/// The bytes of every token of a vocabulary, indexed for constrained decoding.
#[derive(Debug)]
pub struct TokenVocab {
    /// Bytes of each token id; `None` for special tokens.
    bytes: Vec<Option<Box<[u8]>>>,
    /// Whether each byte value is a token on its own.
    single: [bool; 256],
    /// The trie of all tokens, in preorder.
    pub(crate) trie: VocabTrie,
    /// Tokens that are plain string content (see [`plain_chars`]) as
    /// `(characters, id)`, fewest characters first.
    plain: Vec<(u32, u32)>,
    /// The trie of all other tokens.
    pub(crate) other_trie: VocabTrie,
}

/// The number of characters in `bytes` if they are plain JSON string
/// content: whole UTF-8 characters, none of them `"`, `\` or a control
/// character. Inside a string such a token only adds to the length, whatever
/// the state, so it needs no automaton run (most of a 128k vocabulary is
/// plain text).
fn plain_chars(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = text.chars().all(|c| c >= ' ' && c != '"' && c != '\\');
    plain.then(|| text.chars().count() as u32)
}

/// The vocabulary trie as flat arrays (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct VocabTrie {
    /// The byte of each node.
    pub byte: Vec<u8>,
    /// Depth of each node, 1 for the first byte of a token.
    pub depth: Vec<u16>,
    /// Index of the first node after each node's subtree.
    pub skip: Vec<u32>,
    /// Each node's tokens are `ids[start[i]..start[i + 1]]`.
    pub start: Vec<u32>,
    /// Token ids, grouped by node.
    pub ids: Vec<u32>,
    /// Longest token, in bytes.
    pub max_depth: usize,
}

impl VocabTrie {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.byte.len()
    }

    /// The tokens whose bytes end at node `i`.
    pub fn tokens(&self, i: usize) -> &[u32] {
        &self.ids[self.start[i] as usize..self.start[i + 1] as usize]
    }

    /// The trie of the tokens `keep` selects.
    fn build(tokens: &[Option<Box<[u8]>>], keep: impl Fn(&[u8]) -> bool) -> VocabTrie {
        let mut sorted: Vec<(&[u8], u32)> = (0u32..)
            .zip(tokens)
            .filter_map(|(id, bytes)| bytes.as_deref().map(|b| (b, id)))
            .filter(|(b, _)| keep(b))
            .collect();
        sorted.sort_unstable();
        let mut trie = VocabTrie::default();
        // Node index at each depth of the current path.
        let mut path: Vec<usize> = Vec::new();
        let mut previous: &[u8] = &[];
        for (bytes, id) in sorted {
            let common = previous
                .iter()
                .zip(bytes)
                .take_while(|(a, b)| a == b)
                .count();
            for node in path.drain(common..) {
                trie.skip[node] = trie.byte.len() as u32;
            }
            for (depth, &b) in bytes.iter().enumerate().skip(common) {
                path.push(trie.byte.len());
                trie.byte.push(b);
                trie.depth.push((depth + 1) as u16);
                trie.skip.push(0);
                trie.start.push(trie.ids.len() as u32);
            }
            trie.ids.push(id);
            trie.max_depth = trie.max_depth.max(bytes.len());
            previous = bytes;
        }
        for node in path {
            trie.skip[node] = trie.byte.len() as u32;
        }
        trie.start.push(trie.ids.len() as u32);
        trie
    }
}

impl TokenVocab {
    /// Indexes a tokenizer's vocabulary. Fails if its tokens are not byte
    /// strings (not byte-level BPE) or if a printable ASCII byte, which JSON
    /// structure needs, is not a token on its own.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<TokenVocab, StructuredError> {
        TokenVocab::from_token_bytes(tokenizer.all_token_bytes())
    }

    /// Indexes a vocabulary given as the bytes of each token id (`None` for
    /// special tokens). An empty byte string counts as `None`: a token that
    /// adds nothing could be chosen forever.
    pub fn from_token_bytes(tokens: Vec<Option<Vec<u8>>>) -> Result<TokenVocab, StructuredError> {
        let bytes: Vec<Option<Box<[u8]>>> = tokens
            .into_iter()
            .map(|t| t.filter(|b| !b.is_empty()).map(Vec::into_boxed_slice))
            .collect();
        if bytes.iter().all(Option::is_none) {
            return Err(StructuredError::NotByteLevel);
        }
        let mut single = [false; 256];
        for token in bytes.iter().flatten() {
            if let [b] = **token {
                single[usize::from(b)] = true;
            }
        }
        if let Some(b) = (0x20..=0x7eu8).find(|&b| !single[usize::from(b)]) {
            return Err(StructuredError::MissingByte(b));
        }
        let trie = VocabTrie::build(&bytes, |_| true);
        let other_trie = VocabTrie::build(&bytes, |b| plain_chars(b).is_none());
        let mut plain: Vec<(u32, u32)> = (0u32..)
            .zip(&bytes)
            .filter_map(|(id, b)| Some((plain_chars(b.as_deref()?)?, id)))
            .collect();
        plain.sort_unstable();
        Ok(TokenVocab {
            bytes,
            single,
            trie,
            plain,
            other_trie,
        })
    }

    /// Number of token ids (special ones included).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the vocabulary has no ids at all (never true once built).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of token `id`, `None` for special or unknown ids.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize)?.as_deref()
    }

    /// The plain-content tokens of at most `room` characters.
    pub(crate) fn plain_up_to(&self, room: u32) -> impl Iterator<Item = u32> + '_ {
        let end = self.plain.partition_point(|&(chars, _)| chars <= room);
        self.plain[..end].iter().map(|&(_, id)| id)
    }

    /// Whether byte `b` is a token on its own.
    pub(crate) fn has_single(&self, b: u8) -> bool {
        self.single[usize::from(b)]
    }

    /// Whether every UTF-8 continuation byte is a token on its own, so that a
    /// character left incomplete by one token can always be finished.
    pub(crate) fn completes_utf8(&self) -> bool {
        (0x80..=0xbfu8).all(|b| self.has_single(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(words: &[&str]) -> Vec<Option<Vec<u8>>> {
        let mut tokens: Vec<Option<Vec<u8>>> = (0x20..=0x7eu8).map(|b| Some(vec![b])).collect();
        tokens.extend(words.iter().map(|w| Some(w.as_bytes().to_vec())));
        tokens.push(None);
        tokens
    }

    #[test]
    fn trie_is_preorder_with_subtree_skips() {
        let v = TokenVocab::from_token_bytes(vocab(&["ab", "abc", "ab", "b{"])).unwrap();
        let t = &v.trie;
        // Walk every node: the bytes on the path to each node spell its tokens.
        let mut path = Vec::new();
        let mut found = Vec::new();
        for i in 0..t.len() {
            path.truncate(usize::from(t.depth[i]) - 1);
            path.push(t.byte[i]);
            for &id in t.tokens(i) {
                assert_eq!(v.token_bytes(id), Some(&path[..]));
                found.push(id);
            }
            // The subtree of i is exactly the following deeper nodes.
            let end = t.skip[i] as usize;
            assert!((i + 1..end).all(|j| t.depth[j] > t.depth[i]));
            assert!(end == t.len() || t.depth[end] <= t.depth[i]);
        }
        found.sort_unstable();
        let expected: Vec<u32> = (0..v.len() as u32 - 1).collect();
        assert_eq!(
            found, expected,
            "every token with bytes is in the trie once"
        );
        assert_eq!(t.max_depth, 3);
        assert_eq!(v.token_bytes(v.len() as u32 - 1), None);
    }

    #[test]
    fn plain_tokens_are_split_from_the_others() {
        let v = TokenVocab::from_token_bytes(vocab(&["ab", "é!", "a\"", "\n"])).unwrap();
        let ascii = 0x7f - 0x20;
        // Plain: printable ASCII but `"` and `\`, "ab", "é!"; others: the rest.
        assert_eq!(v.plain_up_to(u32::MAX).count(), ascii - 2 + 2);
        assert_eq!(v.plain_up_to(1).count(), ascii - 2);
        let others: Vec<u32> = (0..v.other_trie.len())
            .flat_map(|i| v.other_trie.tokens(i).to_vec())
            .collect();
        assert_eq!(others.len(), 2 + 2, "quote, backslash, a\", newline");
        assert_eq!(plain_chars("é!".as_bytes()), Some(2));
        assert_eq!(plain_chars(&[0xc3]), None, "partial character");
    }

    #[test]
    fn missing_structural_byte_is_an_error() {
        let mut tokens = vocab(&[]);
        tokens[usize::from(b'}' - 0x20)] = Some(b"}}".to_vec());
        let err = TokenVocab::from_token_bytes(tokens).unwrap_err();
        assert!(err.to_string().contains("0x7d"), "{err}");
        let err = TokenVocab::from_token_bytes(vec![None, Some(vec![])]).unwrap_err();
        assert!(matches!(err, StructuredError::NotByteLevel), "{err}");
    }
}
