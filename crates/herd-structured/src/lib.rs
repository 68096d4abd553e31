//! Constrained decoding for structured output: the model can only produce a
//! JSON document — any object (`response_format: json_object`) or one that
//! validates against a JSON schema (`json_schema`).
//!
//! ```text
//!  schema ──compile──▶ Grammar (nodes + tries) ──▶ automaton State
//!                                                     │ per step: walk the
//!  tokenizer ──▶ TokenVocab (bytes of each id, trie) ─┘ vocabulary trie
//!                                                       → mask of allowed ids
//! ```
//!
//! # Design decisions
//!
//! **Bytes, not tokens.** The schema becomes a byte-level pushdown automaton
//! (`automaton.rs`); a token is allowed when the automaton accepts all of its
//! bytes. This is independent of how the tokenizer splits text, so tokens
//! that span structure (`"},` or `":"`) and tokens holding part of a UTF-8
//! character are handled exactly.
//!
//! **One walk over a trie per step.** Testing 128k tokens one by one would
//! repeat the work for their shared prefixes; a depth-first walk over a trie
//! of the vocabulary ([`TokenVocab`]) advances a copy of the state once per
//! trie node and skips the whole subtree below a refused byte. Masks are
//! cached per automaton state.
//!
//! **No dead ends.** Whatever the model picks among the allowed tokens, the
//! document can still be finished: unsatisfiable parts of the schema are
//! pruned before decoding, and the automaton refuses any byte after which
//! the value could not be completed (see `automaton.rs`). The bytes JSON
//! structure needs must be single tokens ([`TokenVocab::from_tokenizer`]
//! checks), so completion never depends on the model finding a long token.
//!
//! **Bounded output.** A gap between tokens of the document is nothing, one
//! space, or a newline and up to 20 spaces or tabs (as in llama.cpp's JSON
//! grammars), numbers to 16 digits before and after the point and 2 in the
//! exponent, nesting to 48 levels, and once the document is complete only
//! stop tokens are allowed — a model cannot spend its budget on blanks.
//!
//! # Supported JSON Schema subset
//!
//! `type` (`object`, `array`, `string`, `number`, `integer`, `boolean`,
//! `null`, or a list of them), `properties`, `required`,
//! `additionalProperties` (`false`, `true` or a schema), `enum`, `const`,
//! `items` (one schema), `anyOf`, `oneOf` (only with branches that cannot
//! match the same value), `$ref` to local pointers (`#/$defs/...`,
//! `#/definitions/...`, `#`; recursion allowed), `minItems`/`maxItems`,
//! `minLength`/`maxLength`. Annotations (`title`, `description`, `default`,
//! `examples`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`,
//! `writeOnly`) are ignored. Any other keyword (`minimum`, `pattern`,
//! `format`, `allOf`, ...) is refused with an error naming it and where it
//! is, as are objects with more than 64 properties.
//!
//! Where a schema allows several shapes the narrower one is generated: an
//! object with `properties` but no `additionalProperties` gets only its
//! declared properties; undeclared properties (where allowed) come only after
//! every required one; `enum`/`const` values are written compactly.
//! Undeclared keys (where allowed) are not checked against each other, so a
//! `json_object` document may repeat a key.
#![deny(missing_docs)]

mod automaton;
mod check;
mod error;
mod grammar;
mod processor;
mod schema;
mod string;
#[cfg(test)]
mod tests;
mod vocab;

pub use error::{SchemaProblem, StructuredError};

use grammar::Grammar;
pub use processor::JsonProcessor;
pub use vocab::TokenVocab;

/// What the output must be.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonSpec {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    AnyObject,
    /// A JSON document valid under this JSON schema (the `schema` of
    /// `response_format: {"type": "json_schema", ...}`).
    Schema(serde_json::Value),
}

/// Judges whole JSON values against a [`JsonSpec`], by the same compiled
/// grammar the decoder follows: a value the validator accepts is one that
/// constrained decoding could have produced (as a set of values, whatever
/// its spelling), so checking a tool call's arguments after the fact and
/// constraining them while they are generated agree.
#[derive(Debug)]
pub struct JsonValidator {
    grammar: Grammar,
}

impl JsonValidator {
    /// Compiles `spec`; fails on an invalid or unsupported schema, naming
    /// the problem and where it is.
    pub fn new(spec: &JsonSpec) -> Result<JsonValidator, StructuredError> {
        Ok(JsonValidator {
            grammar: schema::compile(spec)?,
        })
    }

    /// Whether `value` is valid under the spec.
    pub fn accepts(&self, value: &serde_json::Value) -> bool {
        check::accepts(&self.grammar, self.grammar.root, value)
    }
}
