//! [`StreamDecoder`]: turns generated ids into text one id at a time.
//!
//! A byte-level token can end in the middle of a UTF-8 character (an emoji
//! is often three or four tokens), and some decoders change a token's text
//! depending on what precedes it (leading-space stripping). So the decoder
//! keeps a small window of ids: the ids whose text was returned last time
//! (context) followed by the ids not yet returned (pending). Each step
//! decodes the window; if the text ends in U+FFFD the character may still be
//! incomplete and nothing is returned yet, otherwise the text past the
//! context's is returned and the pending ids become the new context:
//!
//! ```text
//!   window: [ context ids | pending ids ]
//!   decode(window) = context_text + new_text      → return new_text
//!   window := [ pending ids ],  context_text := decode(pending ids)
//! ```
//!
//! The concatenation of everything returned, plus [`StreamDecoder::finish`],
//! equals [`Tokenizer::decode`] of all the ids. A text that genuinely ends in
//! U+FFFD is held back until the next id or `finish`, never lost.

use crate::error::TokenizerError;
use crate::tokenizer::Tokenizer;

/// Incremental decoder state for one sequence. It holds no reference to the
/// tokenizer, so it can live in per-request state while one [`Tokenizer`]
/// serves every request.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    /// Whether special tokens produce no text.
    skip_special: bool,
    /// Context ids followed by pending ids.
    window: Vec<u32>,
    /// How many ids at the start of `window` are context.
    context_len: usize,
    /// `decode(window[..context_len])`, already returned to the caller.
    context_text: String,
}

impl StreamDecoder {
    /// A decoder for a new sequence.
    pub fn new(skip_special: bool) -> Self {
        Self {
            skip_special,
            ..Self::default()
        }
    }

    /// Adds one id; returns the text it completes, or `None` while a
    /// character is still incomplete (or the id produced no text).
    pub fn step(
        &mut self,
        tokenizer: &Tokenizer,
        id: u32,
    ) -> Result<Option<String>, TokenizerError> {
        self.window.push(id);
        let text = match tokenizer.decode(&self.window, self.skip_special) {
            Ok(text) => text,
            Err(e) => {
                // Keep the state usable: an unknown id is dropped.
                self.window.pop();
                return Err(e);
            }
        };
        if text.len() <= self.context_text.len() || text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let Some(new_text) = text.strip_prefix(self.context_text.as_str()) else {
            return Err(TokenizerError::StreamPrefix {
                id,
                expected: self.context_text.clone(),
                actual: text,
            });
        };
        let new_text = new_text.to_owned();
        self.window.drain(..self.context_len);
        self.context_len = self.window.len();
        self.context_text = tokenizer.decode(&self.window, self.skip_special)?;
        Ok(Some(new_text))
    }

    /// Ends the sequence, returning whatever is still held back (an
    /// incomplete character comes out as U+FFFD, as in a full decode).
    pub fn finish(self, tokenizer: &Tokenizer) -> Result<String, TokenizerError> {
        if self.window.len() == self.context_len {
            return Ok(String::new());
        }
        let text = tokenizer.decode(&self.window, self.skip_special)?;
        match text.strip_prefix(self.context_text.as_str()) {
            Some(rest) => Ok(rest.to_owned()),
            None => Err(TokenizerError::StreamPrefix {
                id: self.window.last().copied().unwrap_or_default(),
                expected: self.context_text,
                actual: text,
            }),
        }
    }
}
