//! The one error type of this crate. A GGUF file is a length-prefixed binary
//! format, so nearly every failure is "this number does not fit the bytes that
//! are there": each variant names where the bytes came from, the byte offset,
//! the key or tensor involved, and the numbers that disagree, so a user with a
//! 5 GB download can tell a truncated copy from a file written by a buggy tool.

use std::fmt;
use std::path::PathBuf;

use crate::GgmlType;

/// Results of this crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// Where the GGUF bytes an error talks about came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk: opened with [`crate::GgufFile::open`], or the
    /// destination of [`crate::GgufWriter::write_to_path`].
    File(PathBuf),
    /// Bytes given to [`crate::GgufFile::from_bytes`].
    Memory,
    /// A file being assembled by [`crate::GgufWriter`].
    Writer,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Memory => f.write_str("<in-memory GGUF>"),
            Origin::Writer => f.write_str("<GGUF writer>"),
        }
    }
}

/// Everything that can go wrong reading, querying or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening, mapping, writing or renaming a file failed.
    #[error("{origin}: {source}")]
    Io {
        /// The file (or [`Origin::Writer`] for a caller's stream).
        origin: Origin,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("{origin}: not a GGUF file (starts with {found:?}, expected \"GGUF\")")]
    BadMagic {
        /// Where the bytes came from.
        origin: Origin,
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A GGUF version other than 2 or 3.
    #[error("{origin}: GGUF version {version} is not supported (herd reads versions 2 and 3){}", endian_hint(*version))]
    UnsupportedVersion {
        /// Where the bytes came from.
        origin: Origin,
        /// The version field, read little-endian.
        version: u32,
    },
    /// The file ends in the middle of a fixed-size field.
    #[error("{origin}: truncated at byte {offset}: {what} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// Where the bytes came from.
        origin: Origin,
        /// Where the field starts.
        offset: u64,
        /// The field, e.g. "value of 'llama.block_count'".
        what: String,
        /// The field's size.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },
    /// A string length or element count that the rest of the file cannot hold
    /// (checked before anything is allocated).
    #[error(
        "{origin}: at byte {offset}, {what} is {count} (at least {min_bytes_each} bytes each) \
         but only {available} bytes remain in the file"
    )]
    LengthPastEof {
        /// Where the bytes came from.
        origin: Origin,
        /// Where the length field starts.
        offset: u64,
        /// The length, e.g. "element count of array 'tokenizer.ggml.tokens'".
        what: String,
        /// The declared length.
        count: u64,
        /// The fewest bytes each counted item takes.
        min_bytes_each: u64,
        /// Bytes left in the file after the length field.
        available: u64,
    },
    /// A string that is not UTF-8.
    #[error("{origin}: {what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the bytes came from.
        origin: Origin,
        /// Where the string's bytes start.
        offset: u64,
        /// The string, e.g. "name of tensor #3".
        what: String,
    },
    /// A metadata value type id outside 0..=12.
    #[error("{origin}: {what} at byte {offset} has unknown GGUF value type {id}")]
    UnknownValueType {
        /// Where the bytes came from.
        origin: Origin,
        /// Where the type id is.
        offset: u64,
        /// The value, e.g. "value of 'general.name'".
        what: String,
        /// The type id.
        id: u32,
    },
    /// Arrays nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    #[error("{origin}: value of {key:?} at byte {offset} nests arrays deeper than {limit} levels")]
    ArrayTooDeep {
        /// Where the bytes came from.
        origin: Origin,
        /// Where the too-deep array starts.
        offset: u64,
        /// The key.
        key: String,
        /// The nesting limit.
        limit: usize,
    },
    /// A metadata key that is the empty string.
    #[error("{origin}: metadata entry #{index} at byte {offset} has an empty key")]
    EmptyKey {
        /// Where the bytes came from.
        origin: Origin,
        /// Where the key starts.
        offset: u64,
        /// The entry's position in the metadata section.
        index: u64,
    },
    /// The same metadata key twice.
    #[error("{origin}: metadata key {key:?} appears twice")]
    DuplicateKey {
        /// Where the bytes came from.
        origin: Origin,
        /// The key.
        key: String,
    },
    /// `general.alignment` is not a `u32` power of two.
    #[error("{origin}: general.alignment must be a u32 power of two, found {found}")]
    BadAlignment {
        /// Where the bytes came from.
        origin: Origin,
        /// The value and its type, e.g. "u32 48" or "string".
        found: String,
    },
    /// A tensor with more than four dimensions (ggml's limit).
    #[error("{origin}: tensor {tensor:?} has {n_dims} dimensions; ggml allows at most 4")]
    TooManyDims {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// The declared dimension count.
        n_dims: u32,
    },
    /// A ggml type id this crate does not know.
    #[error("{origin}: tensor {tensor:?} has unknown ggml type id {id}")]
    UnknownGgmlType {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// The type id.
        id: u32,
    },
    /// A row length (`dims[0]`) that is not a whole number of blocks.
    #[error("{origin}: tensor {tensor:?} of type {ggml_type} has rows of {row} elements, not a multiple of the block size {block_size}")]
    RowNotBlockMultiple {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
        /// `dims[0]`.
        row: u64,
        /// Elements per block of `ggml_type`.
        block_size: usize,
    },
    /// A shape whose element count exceeds `i64::MAX` or whose byte size
    /// overflows.
    #[error("{origin}: tensor {tensor:?} with dims {dims:?} of type {ggml_type} is too large to address")]
    TensorTooLarge {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// Its dimensions, GGUF order.
        dims: Vec<u64>,
        /// Its type.
        ggml_type: GgmlType,
    },
    /// Two tensors with the same name.
    #[error("{origin}: tensor name {tensor:?} appears twice")]
    DuplicateTensor {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
    },
    /// A tensor offset that is not a multiple of the file's alignment.
    #[error("{origin}: tensor {tensor:?} starts at data offset {offset}, not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// Its offset from the start of the data section.
        offset: u64,
        /// `general.alignment`, or 32.
        alignment: u64,
    },
    /// A tensor whose bytes run past the end of the file.
    #[error("{origin}: tensor {tensor:?} occupies bytes {start}..{end} but the file is {file_len} bytes long (truncated download?)")]
    TensorPastEof {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// Absolute start of its data (saturated at `u64::MAX`).
        start: u64,
        /// Absolute end of its data (saturated at `u64::MAX`).
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// A metadata key that is not present.
    #[error("metadata key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value of the wrong type.
    #[error("metadata key {key:?} should be {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What the getter wanted, e.g. "u32" or "array of string".
        expected: &'static str,
        /// What the file holds, e.g. "string" or "array of i32".
        found: String,
    },
    /// An integer metadata value that does not fit the requested type.
    #[error("metadata key {key:?} is {value}, which does not fit in {target}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The stored value.
        value: i128,
        /// The requested type.
        target: &'static str,
    },
    /// A ggml type name that [`GgmlType::from_str`](std::str::FromStr) does not know.
    #[error(
        "unknown ggml type {name:?} (expected a name such as f32, f16, bf16, q8_0, q4_K, q6_K)"
    )]
    UnknownTypeName {
        /// The name given.
        name: String,
    },
    /// A tensor name that llama.cpp cannot load (`GGML_MAX_NAME` is 64 bytes
    /// including the terminating NUL).
    #[error("{origin}: tensor name {tensor:?} is {len} bytes; llama.cpp allows at most 63")]
    TensorNameTooLong {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// The name's length in bytes.
        len: usize,
    },
    /// Tensor data whose length disagrees with its type and dimensions.
    #[error(
        "{origin}: tensor {tensor:?} needs {expected} bytes for its type and dims, got {actual}"
    )]
    TensorDataSize {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// Bytes implied by type and dims.
        expected: u64,
        /// Bytes supplied.
        actual: u64,
    },
    /// A deferred tensor's producer (e.g. a quantizer) failed.
    #[error("{origin}: producing data for tensor {tensor:?} failed: {source}")]
    TensorSource {
        /// Where the bytes came from.
        origin: Origin,
        /// The tensor.
        tensor: String,
        /// The producer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A big-endian GGUF file read little-endian has its version in the high bytes.
fn endian_hint(version: u32) -> &'static str {
    if version != 0 && version & 0xFFFF == 0 {
        "; the file looks big-endian, which herd does not read"
    } else {
        ""
    }
}
