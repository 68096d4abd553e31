//! [`Tokenizer::token_bytes`]: the raw bytes a token stands for.
//!
//! Constrained decoding (JSON schemas) has to know, before a token is
//! sampled, which bytes it would add to the output — including tokens that
//! hold only part of a UTF-8 character, which [`Tokenizer::decode`] turns
//! into U+FFFD. Byte-level BPE spells every byte as one character of GPT-2's
//! byte→unicode table, so the bytes are recovered by inverting that table,
//! exactly as the `tokenizers` `ByteLevel` decoder does: a token whose
//! characters are all in the table maps to those bytes, any other token (a
//! non-special added token such as `" foo"`) to its own UTF-8 text.

use tokenizers::DecoderWrapper;

use crate::bpe::gpt2_byte_chars;
use crate::tokenizer::Tokenizer;

impl Tokenizer {
    /// The bytes token `id` adds to decoded text, or `None` for special
    /// tokens (which stand for no text), ids outside the vocabulary, and
    /// every token of a tokenizer whose decoder is not byte-level (whose
    /// tokens are not byte strings).
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.token_bytes_with(id, &ByteTable::new())
    }

    /// [`Tokenizer::token_bytes`] of every id `0..vocab_size`, sharing one
    /// inverse byte table (for callers that index the whole vocabulary).
    pub fn all_token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let table = ByteTable::new();
        (0..self.vocab_size() as u32)
            .map(|id| self.token_bytes_with(id, &table))
            .collect()
    }

    fn token_bytes_with(&self, id: u32, table: &ByteTable) -> Option<Vec<u8>> {
        if !matches!(
            self.backend().get_decoder(),
            Some(DecoderWrapper::ByteLevel(_))
        ) {
            return None;
        }
        let token = self.backend().id_to_token(id)?;
        if self.special_id(&token) == Some(id) {
            return None;
        }
        let mapped: Option<Vec<u8>> = token.chars().map(|c| table.byte_of(c)).collect();
        Some(mapped.unwrap_or_else(|| token.into_bytes()))
    }
}

/// GPT-2's byte→unicode table inverted: every character of the table is below
/// U+0144, so a flat array indexed by code point holds the inverse.
struct ByteTable {
    bytes: [Option<u8>; 0x144],
}

impl ByteTable {
    fn new() -> Self {
        let mut bytes = [None; 0x144];
        for (byte, c) in (0..=255u8).zip(gpt2_byte_chars()) {
            bytes[c as usize] = Some(byte);
        }
        ByteTable { bytes }
    }

    fn byte_of(&self, c: char) -> Option<u8> {
        self.bytes.get(c as usize).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tiny() -> Tokenizer {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama32-tied");
        Tokenizer::from_dir(dir).expect("fixture tokenizer")
    }

    /// Concatenated token bytes equal the decoded text, byte for byte, even
    /// where single tokens hold partial UTF-8 characters.
    #[test]
    fn token_bytes_concatenate_to_the_decoded_text() {
        let tok = tiny();
        let text = "Grüße, 世界! {\"a\": [1, 2]}\n\ttabs 🦀";
        let ids = tok.encode(text).expect("encode");
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| tok.token_bytes(id).expect("ordinary token has bytes"))
            .collect();
        assert_eq!(bytes, text.as_bytes());
        assert!(
            ids.len() > text.chars().count() / 4,
            "really split into tokens"
        );
    }

    #[test]
    fn special_and_unknown_tokens_have_no_bytes() {
        let tok = tiny();
        for id in tok.stop_ids() {
            assert_eq!(tok.token_bytes(id), None);
        }
        assert_eq!(tok.token_bytes(tok.vocab_size() as u32), None);
        let all = tok.all_token_bytes();
        assert_eq!(all.len(), tok.vocab_size());
        // Every single byte is a token of a byte-level vocabulary.
        for byte in 0..=255u8 {
            assert!(
                all.iter().any(|b| b.as_deref() == Some(&[byte][..])),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn byte_table_inverts_gpt2_table() {
        let table = ByteTable::new();
        assert_eq!(table.byte_of('Ġ'), Some(b' '));
        assert_eq!(table.byte_of('Ċ'), Some(b'\n'));
        assert_eq!(table.byte_of('A'), Some(b'A'));
        assert_eq!(table.byte_of(' '), None);
        assert_eq!(table.byte_of('世'), None);
    }
}
