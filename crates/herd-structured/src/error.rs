//! The one error type of this crate. Schema errors carry the JSON pointer of
//! the offending subschema, so a server can answer "400: #/properties/age:
//! `minimum` is not supported" instead of a bare "invalid schema".

/// What can go wrong building a vocabulary index or a JSON processor.
#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
    /// The tokenizer is not byte-level, so its tokens have no byte strings.
    #[error("the tokenizer's tokens are not byte strings (only byte-level BPE tokenizers are supported)")]
    NotByteLevel,
    /// A byte that JSON needs is not a token on its own, so some valid
    /// documents could not be finished.
    #[error("the vocabulary has no single-byte token for byte 0x{0:02x}, which JSON output needs")]
    MissingByte(u8),
    /// No stop token was given, so a finished document could never end.
    #[error("constrained decoding needs at least one stop token")]
    NoStopToken,
    /// The schema is malformed, uses something outside the supported subset,
    /// or accepts no value at all.
    #[error("invalid JSON schema at {path}: {problem}")]
    Schema {
        /// JSON pointer of the subschema, e.g. `#/properties/name`.
        path: String,
        /// What is wrong there.
        problem: SchemaProblem,
    },
}

/// Why a schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    /// A keyword outside the supported subset (see the crate docs).
    #[error("`{0}` is not supported")]
    UnsupportedKeyword(String),
    /// A keyword whose value has the wrong JSON type or range.
    #[error("`{keyword}` must be {expected}")]
    BadValue {
        /// The keyword.
        keyword: &'static str,
        /// What it must be, in words.
        expected: &'static str,
    },
    /// A `type` name that JSON Schema does not define.
    #[error("unknown type `{0}`")]
    UnknownType(String),
    /// A lower bound above its upper bound.
    #[error("`{min}` is greater than `{max}`")]
    EmptyRange {
        /// The lower-bound keyword.
        min: &'static str,
        /// The upper-bound keyword.
        max: &'static str,
    },
    /// `$ref`, `anyOf` or `oneOf` next to keywords that would constrain it further.
    #[error("`{0}` cannot be combined with other constraints here")]
    CombinedKeyword(&'static str),
    /// A `$ref` that is not a local JSON pointer to a subschema.
    #[error("cannot resolve `$ref` \"{0}\" (only local references such as \"#/$defs/name\")")]
    UnresolvedRef(String),
    /// A chain of references that never reaches a schema.
    #[error("`$ref` \"{0}\" refers only to itself")]
    CircularRef(String),
    /// Alternatives (`anyOf`/`oneOf`/`$ref`) that contain themselves
    /// without an enclosing object or array.
    #[error("the schema contains itself as an alternative, without an enclosing object or array")]
    LeftRecursion,
    /// Keywords of several types and no `type` to choose between them.
    #[error("keywords of several types (object, array, string) without `type`; add `type`")]
    MissingType,
    /// A required property that `additionalProperties: false` forbids.
    #[error("required property \"{0}\" is not allowed by `additionalProperties: false`")]
    RequiredNotAllowed(String),
    /// More properties than the automaton tracks in one object.
    #[error("{0} properties in one object; at most 64 are supported")]
    TooManyProperties(usize),
    /// Two `oneOf` branches that could match the same value.
    #[error("`oneOf` branches {0} and {1} may match the same value; only disjoint branches (different types, different const/enum values, or objects told apart by a required const property) are supported — use `anyOf`")]
    OverlappingOneOf(usize, usize),
    /// A name or value containing bytes the vocabulary cannot spell.
    #[error("the vocabulary cannot spell {0}")]
    Unspellable(String),
    /// No JSON value satisfies the schema.
    #[error("no value satisfies this schema")]
    Unsatisfiable,
}
