//! GGUF files (llama.cpp's model format, versions 2 and 3): reading and writing.
//!
//! This crate is only the container. It knows the file layout, the metadata
//! value types and the ggml tensor types' block sizes; it knows nothing about
//! Llama (the model crate maps `llama.*` keys and tensor names) and decodes no
//! quantized block (the kernel crate does). Keeping it that small lets the model
//! loader, `herd info` and `herd quantize` share one parser without pulling in
//! candle.
//!
//! # Design decisions
//! - **Memory-mapped, zero-copy data.** [`GgufFile::open`] maps the file,
//!   decodes metadata and tensor infos, and leaves tensor data in the map.
//!   [`Tensor::data`] borrows it; [`Tensor::share`] returns a [`TensorBytes`]
//!   that owns an `Arc` of the map, so a model can keep its weights after the
//!   parsed header is dropped.
//! - **Untrusted input.** Every count, length and offset is checked against the
//!   bytes actually present before it is used or allocated for, with checked
//!   arithmetic; a truncated or corrupt file gives a [`GgufError`] naming the
//!   byte offset and the key or tensor, never a panic or a huge allocation.
//! - **Typed metadata, lenient integers.** Values keep their on-disk type
//!   ([`MetadataValue`]); getters such as [`Metadata::get_u32`] accept any
//!   integer type whose value fits, because converters disagree on widths.
//! - **Writer computes offsets up front.** Sizes follow from type and dims, so
//!   [`GgufWriter`] needs only `Write`, can produce tensor data lazily one
//!   tensor at a time, and writes paths atomically (temporary file + rename).
//!
//! # Dimensions
//! GGUF stores dims in ggml order: `dims[0]` is the fastest-varying dimension
//! (the row length). A PyTorch `nn.Linear` weight of shape `(out, in)` appears
//! as `[in, out]`.
#![deny(missing_docs)]

mod bytes;
mod dump;
mod error;
mod ggml_type;
mod metadata;
mod read;
mod value;
mod write;

pub use bytes::{FileBytes, TensorBytes};
pub use dump::dump;
pub use error::{GgufError, Origin, Result};
pub use ggml_type::GgmlType;
pub use metadata::{Metadata, OptionalKey, ALIGNMENT_KEY, ARCHITECTURE_KEY};
pub use read::{
    GgufFile, Tensor, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS,
};
pub use value::{MetadataArray, MetadataValue, ValueType};
pub use write::{GgufWriter, SourceError, MAX_TENSOR_NAME, WRITE_VERSION};
