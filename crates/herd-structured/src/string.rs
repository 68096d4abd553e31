//! The byte-level machine for the inside of a JSON string: escapes, UTF-8
//! validity and the length in characters that `minLength`/`maxLength` count.
//!
//! It accepts only strings that every JSON parser reads back as valid UTF-8:
//! raw control characters are refused, and `\u` escapes of UTF-16 surrogates
//! (which need a matching pair) are refused too — such characters can be
//! written directly in UTF-8 instead.

/// Where the machine is inside an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Escape {
    /// Not in an escape.
    #[default]
    None,
    /// After `\`.
    Backslash,
    /// After `\u` and `4 - left` hex digits; `no_surrogate`: the first digit
    /// was `d`, so the second must be `0`–`7`.
    Hex { left: u8, no_surrogate: bool },
}

/// The state inside a string after some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct StrState {
    /// Characters so far; saturated at the lower bound when there is no
    /// upper bound, so that long free strings keep one state (and one cached
    /// token mask).
    pub len: u32,
    /// Escape in progress.
    pub escape: Escape,
    /// Continuation bytes still owed by a multi-byte UTF-8 character.
    pub utf8_left: u8,
    /// Allowed range of the next continuation byte (it is narrower right
    /// after some lead bytes, to refuse overlong forms and surrogates).
    pub utf8_lo: u8,
    /// See `utf8_lo`.
    pub utf8_hi: u8,
}

/// Length bounds of a string, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bounds {
    /// `minLength`.
    pub min: u32,
    /// `maxLength`, if any.
    pub max: Option<u32>,
}

/// What a byte did to a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrStep {
    /// Taken; the string goes on.
    Consumed,
    /// The closing quote: the string is complete.
    Closed,
    /// Not allowed here.
    Dead,
}

impl StrState {
    /// True while a character or escape is incomplete.
    pub fn mid_char(&self) -> bool {
        self.utf8_left > 0 || self.escape != Escape::None
    }

    /// Feeds one byte of string content (the opening quote already read).
    pub fn step(&mut self, b: u8, bounds: Bounds) -> StrStep {
        match self.escape {
            Escape::Backslash => self.after_backslash(b),
            Escape::Hex { left, no_surrogate } => self.hex_digit(b, left, no_surrogate),
            Escape::None if self.utf8_left > 0 => {
                if !(self.utf8_lo..=self.utf8_hi).contains(&b) {
                    return StrStep::Dead;
                }
                self.utf8_left -= 1;
                (self.utf8_lo, self.utf8_hi) = (0x80, 0xbf);
                StrStep::Consumed
            }
            Escape::None => self.char_start(b, bounds),
        }
    }

    /// A byte where a new character may start.
    fn char_start(&mut self, b: u8, bounds: Bounds) -> StrStep {
        if b == b'"' {
            return if self.len >= bounds.min {
                StrStep::Closed
            } else {
                StrStep::Dead
            };
        }
        // (continuation bytes owed, range of the first one)
        let (left, lo, hi) = match b {
            0x00..=0x1f => return StrStep::Dead,
            0x20..=0x7f => (0, 0, 0),
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xed => (2, 0x80, 0x9f),
            0xe1..=0xef => (2, 0x80, 0xbf),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            _ => return StrStep::Dead,
        };
        if bounds.max.is_some_and(|max| self.len >= max) {
            return StrStep::Dead;
        }
        self.len = match bounds.max {
            Some(_) => self.len + 1,
            None => (self.len + 1).min(bounds.min),
        };
        (self.utf8_left, self.utf8_lo, self.utf8_hi) = (left, lo, hi);
        if b == b'\\' {
            self.escape = Escape::Backslash;
        }
        StrStep::Consumed
    }

    fn after_backslash(&mut self, b: u8) -> StrStep {
        self.escape = match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Escape::None,
            b'u' => Escape::Hex {
                left: 4,
                no_surrogate: false,
            },
            _ => return StrStep::Dead,
        };
        StrStep::Consumed
    }

    fn hex_digit(&mut self, b: u8, left: u8, no_surrogate: bool) -> StrStep {
        if !b.is_ascii_hexdigit() || (no_surrogate && !(b'0'..=b'7').contains(&b)) {
            return StrStep::Dead;
        }
        self.escape = match left {
            1 => Escape::None,
            _ => Escape::Hex {
                left: left - 1,
                no_surrogate: left == 4 && b.eq_ignore_ascii_case(&b'd'),
            },
        };
        StrStep::Consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `content` (after the opening quote); `Some(true)` if it closes
    /// exactly at its last byte, `Some(false)` if still open, `None` if dead.
    fn run(content: &[u8], bounds: Bounds) -> Option<bool> {
        let mut s = StrState::default();
        for (i, &b) in content.iter().enumerate() {
            match s.step(b, bounds) {
                StrStep::Consumed => {}
                StrStep::Closed => return (i + 1 == content.len()).then_some(true),
                StrStep::Dead => return None,
            }
        }
        Some(false)
    }

    #[test]
    fn escapes_and_utf8() {
        let free = Bounds::default();
        assert_eq!(run(br#"a\"b\\\/\n\u00e9""#, free), Some(true));
        assert_eq!(run("grüße 🦀\"".as_bytes(), free), Some(true));
        assert_eq!(run(b"\\x", free), None);
        assert_eq!(run(b"\\ud800", free), None, "lone surrogate escape");
        assert_eq!(run(b"\\uD7ff\"", free), Some(true));
        assert_eq!(run(b"a\nb", free), None, "raw control character");
        assert_eq!(run(&[0xc0, 0x80], free), None, "overlong");
        assert_eq!(run(&[0xed, 0xa0, 0x80], free), None, "UTF-8 surrogate");
        assert_eq!(
            run(&[0xe2, 0x82, b'"'], free),
            None,
            "quote inside a character"
        );
        assert_eq!(run(&[0xe2, 0x82], free), Some(false));
    }

    #[test]
    fn length_counts_characters() {
        let b = Bounds {
            min: 2,
            max: Some(3),
        };
        assert_eq!(run(b"a\"", b), None, "too short");
        assert_eq!(run("é\\n\"".as_bytes(), b), Some(true));
        assert_eq!(run("aé\\u0041\"".as_bytes(), b), Some(true));
        assert_eq!(run(b"abcd", b), None, "too long");
    }

    #[test]
    fn free_strings_saturate_their_length() {
        let b = Bounds { min: 1, max: None };
        let mut s = StrState::default();
        for &byte in b"abcdef" {
            assert_eq!(s.step(byte, b), StrStep::Consumed);
        }
        assert_eq!(
            s,
            StrState {
                len: 1,
                ..StrState::default()
            }
        );
    }
}
