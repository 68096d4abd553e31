//! Shared, immutable file bytes, so tensor data can outlive the [`crate::GgufFile`]
//! that parsed it.
//!
//! A model keeps its weights as byte ranges of the map rather than copies: the
//! page cache holds a 5 GB GGUF once, shared by every process that maps it.
//! [`FileBytes`] is the cheap-to-clone handle (an `Arc`) and [`TensorBytes`] a
//! handle plus the range of one tensor, so a loader can hand each layer its
//! weights and drop the parsed header.

use std::ops::{Deref, Range};
use std::sync::Arc;

use memmap2::Mmap;

/// The bytes of a whole GGUF file: a read-only memory map, or an aligned copy
/// of bytes that were already in memory.
#[derive(Clone)]
pub struct FileBytes {
    backing: Backing,
}

#[derive(Clone)]
enum Backing {
    Mapped(Arc<Mmap>),
    /// Bytes held in `u64` words, so the buffer starts 8-byte aligned as a
    /// (page-aligned) map does: a tensor at an offset aligned to its element
    /// size can then be viewed as `&[f32]` or `&[u16]` without a copy.
    Words(Arc<Words>),
}

struct Words {
    words: Vec<u64>,
    len: usize,
}

impl FileBytes {
    /// Bytes of a memory-mapped file (any format: herd-model maps safetensors too).
    pub fn mapped(map: Mmap) -> FileBytes {
        FileBytes {
            backing: Backing::Mapped(Arc::new(map)),
        }
    }

    /// An 8-byte-aligned copy of bytes already in memory.
    pub fn copy_of(bytes: &[u8]) -> FileBytes {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut le = [0u8; 8];
            le[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(le);
        }
        FileBytes {
            backing: Backing::Words(Arc::new(Words {
                words,
                len: bytes.len(),
            })),
        }
    }

    /// The memory map, when the bytes come from [`crate::GgufFile::open`].
    pub fn mmap(&self) -> Option<&Arc<Mmap>> {
        match &self.backing {
            Backing::Mapped(map) => Some(map),
            Backing::Words(_) => None,
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(map) => map,
            // SAFETY: `words` holds ceil(len / 8) initialised u64s, i.e. at
            // least `len` initialised bytes; u8 has no alignment requirement and
            // the slice borrows `self`, which keeps the Arc alive.
            Backing::Words(w) => unsafe {
                std::slice::from_raw_parts(w.words.as_ptr().cast::<u8>(), w.len)
            },
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::Mapped(_) => "mapped",
            Backing::Words(_) => "in memory",
        };
        write!(f, "FileBytes({} bytes, {kind})", self.len())
    }
}

/// One tensor's bytes, owning a share of the file: `Deref`s to exactly the
/// tensor's data and keeps the map alive after the [`crate::GgufFile`] is dropped.
#[derive(Clone, Debug)]
pub struct TensorBytes {
    file: FileBytes,
    range: Range<usize>,
}

impl TensorBytes {
    /// `range` must lie within `file`; the parser checked it against the file
    /// length before any `TensorBytes` can exist.
    pub(crate) fn new(file: FileBytes, range: Range<usize>) -> TensorBytes {
        TensorBytes { file, range }
    }

    /// The whole file this tensor lives in.
    pub fn file(&self) -> &FileBytes {
        &self.file
    }

    /// The tensor's absolute byte range within [`TensorBytes::file`].
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }
}

impl Deref for TensorBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.file[self.range.clone()]
    }
}
