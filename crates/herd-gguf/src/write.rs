//! Writing GGUF version 3 files.
//!
//! Tensor sizes follow from type and dims, so every offset is computed before
//! the first byte is written and the output only needs [`Write`], not `Seek`.
//! Tensor data is either given up front (borrowed, e.g. straight from a source
//! file's map, or owned) or produced lazily by a closure when its turn comes,
//! so `herd quantize` holds one quantized tensor in memory at a time.
//!
//! The layout matches llama.cpp's own writer: tensors in insertion order, each
//! padded with zeros to the alignment, so llama.cpp (which requires offsets to
//! be exactly the running padded sizes) loads the result.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{GgufError, Origin, Result};
use crate::metadata::Metadata;
use crate::read::{align_up, alignment_of, tensor_size, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use crate::value::{MetadataArray, MetadataValue};
use crate::GgmlType;

/// The version this crate writes.
pub const WRITE_VERSION: u32 = 3;
/// ggml's `GGML_MAX_NAME`: tensor names must be shorter (they are stored NUL-terminated).
pub const MAX_TENSOR_NAME: usize = 64;

/// The error type a deferred tensor's producer may return.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

type Producer<'a> = Box<dyn FnOnce() -> Result<Vec<u8>, SourceError> + 'a>;

enum Data<'a> {
    Ready(Cow<'a, [u8]>),
    Deferred(Producer<'a>),
}

struct Planned<'a> {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    n_bytes: u64,
    data: Data<'a>,
}

/// Assembles a GGUF file: metadata plus tensors, written in insertion order.
///
/// ```
/// # use herd_gguf::{GgufWriter, GgmlType, GgufFile};
/// let weights: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
/// let mut w = GgufWriter::new();
/// w.metadata_mut().set("general.architecture", "llama");
/// w.add_tensor("output_norm.weight", GgmlType::F32, &[2], &weights[..])?;
/// let mut bytes = Vec::new();
/// w.write(&mut bytes)?;
/// let file = GgufFile::from_bytes(&bytes)?;
/// assert_eq!(file.tensor("output_norm.weight").unwrap().data(), &weights[..]);
/// # Ok::<(), herd_gguf::GgufError>(())
/// ```
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<Planned<'a>>,
    names: HashSet<String>,
}

impl<'a> GgufWriter<'a> {
    /// An empty file: no metadata, no tensors.
    pub fn new() -> GgufWriter<'a> {
        GgufWriter::default()
    }

    /// Starts from existing metadata, e.g. a source file's when re-quantizing.
    pub fn with_metadata(metadata: Metadata) -> GgufWriter<'a> {
        GgufWriter {
            metadata,
            ..GgufWriter::default()
        }
    }

    /// The metadata to write. Setting `general.alignment` (a `u32` power of
    /// two) changes the alignment; otherwise it is 32 and the key is not written.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Adds a tensor whose bytes are at hand. `dims` are in GGUF order
    /// (`dims[0]` = row length); `data` must be exactly the size they imply.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let data = data.into();
        let n_bytes = self.check_new(name, ggml_type, dims)?;
        check_size(&Origin::Writer, name, n_bytes, data.len())?;
        self.push(name, ggml_type, dims, n_bytes, Data::Ready(data));
        Ok(())
    }

    /// Adds a tensor whose bytes `produce` computes when the tensor is written,
    /// so only one such tensor is in memory at a time. Its error is reported as
    /// [`GgufError::TensorSource`] naming the tensor.
    pub fn add_tensor_with<F, E>(
        &mut self,
        name: &str,
        ggml_type: GgmlType,
        dims: &[u64],
        produce: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Result<Vec<u8>, E> + 'a,
        E: Into<SourceError>,
    {
        let n_bytes = self.check_new(name, ggml_type, dims)?;
        let producer: Producer<'a> = Box::new(move || produce().map_err(Into::into));
        self.push(name, ggml_type, dims, n_bytes, Data::Deferred(producer));
        Ok(())
    }

    /// Writes the file to `out` and returns the number of bytes written.
    /// `out` is written in many small pieces: give it a `BufWriter`.
    pub fn write<W: Write>(self, out: W) -> Result<u64> {
        self.write_inner(out, &Origin::Writer, &|source| GgufError::Io {
            origin: Origin::Writer,
            source,
        })
    }

    /// Writes the file to `path` atomically: into a temporary file in the same
    /// directory, synced, then renamed over `path`. A failure (including a
    /// tensor producer's) leaves `path` untouched and no temporary file behind.
    pub fn write_to_path(self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let tmp = temp_path(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_error(&tmp))?;
        let result = self
            .write_inner(
                BufWriter::new(&file),
                &Origin::File(path.to_path_buf()),
                &io_error(&tmp),
            )
            .and_then(|n| file.sync_all().map(|()| n).map_err(io_error(&tmp)))
            .and_then(|n| {
                std::fs::rename(&tmp, path)
                    .map(|()| n)
                    .map_err(io_error(path))
            });
        if result.is_err() {
            // Best effort: the original error is the one worth reporting.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn check_new(&self, name: &str, ggml_type: GgmlType, dims: &[u64]) -> Result<u64> {
        if name.len() >= MAX_TENSOR_NAME {
            return Err(GgufError::TensorNameTooLong {
                origin: Origin::Writer,
                tensor: name.to_string(),
                len: name.len(),
            });
        }
        if self.names.contains(name) {
            return Err(GgufError::DuplicateTensor {
                origin: Origin::Writer,
                tensor: name.to_string(),
            });
        }
        if dims.len() > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                origin: Origin::Writer,
                tensor: name.to_string(),
                n_dims: dims.len() as u32,
            });
        }
        tensor_size(&Origin::Writer, name, ggml_type, dims)
    }

    fn push(
        &mut self,
        name: &str,
        ggml_type: GgmlType,
        dims: &[u64],
        n_bytes: u64,
        data: Data<'a>,
    ) {
        self.names.insert(name.to_string());
        self.tensors.push(Planned {
            name: name.to_string(),
            ggml_type,
            dims: dims.to_vec(),
            n_bytes,
            data,
        });
    }

    /// Writes everything; `origin` names the output in format errors, `io`
    /// turns an I/O error into one naming the file actually being written.
    fn write_inner<W: Write>(
        self,
        out: W,
        origin: &Origin,
        io: &dyn Fn(io::Error) -> GgufError,
    ) -> Result<u64> {
        let alignment = alignment_of(&self.metadata, origin)?;
        for (index, (key, value)) in self.metadata.iter().enumerate() {
            if key.is_empty() {
                return Err(GgufError::EmptyKey {
                    origin: origin.clone(),
                    offset: 0,
                    index: index as u64,
                });
            }
            if let MetadataValue::Array(a) = value {
                if nesting(a) > MAX_ARRAY_DEPTH {
                    let key = key.to_string();
                    return Err(GgufError::ArrayTooDeep {
                        origin: origin.clone(),
                        offset: 0,
                        key,
                        limit: MAX_ARRAY_DEPTH,
                    });
                }
            }
        }
        let mut out = Counting {
            inner: out,
            written: 0,
        };

        out.write_all(&GGUF_MAGIC).map_err(io)?;
        out.write_all(&WRITE_VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&(self.tensors.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&(self.metadata.len() as u64).to_le_bytes())
            .map_err(io)?;
        for (key, value) in self.metadata.iter() {
            write_string(&mut out, key).map_err(io)?;
            out.write_all(&value.value_type().id().to_le_bytes())
                .map_err(io)?;
            write_value(&mut out, value).map_err(io)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut out, &t.name).map_err(io)?;
            out.write_all(&(t.dims.len() as u32).to_le_bytes())
                .map_err(io)?;
            for d in &t.dims {
                out.write_all(&d.to_le_bytes()).map_err(io)?;
            }
            out.write_all(&t.ggml_type.id().to_le_bytes()).map_err(io)?;
            out.write_all(&offset.to_le_bytes()).map_err(io)?;
            // Saturating: no file that large can be written anyway.
            offset = align_up(offset.saturating_add(t.n_bytes), alignment);
        }
        pad(&mut out, alignment).map_err(io)?;

        for t in self.tensors {
            let data = match t.data {
                Data::Ready(bytes) => bytes,
                Data::Deferred(produce) => {
                    let bytes = produce().map_err(|source| GgufError::TensorSource {
                        origin: origin.clone(),
                        tensor: t.name.clone(),
                        source,
                    })?;
                    check_size(origin, &t.name, t.n_bytes, bytes.len())?;
                    Cow::Owned(bytes)
                }
            };
            out.write_all(&data).map_err(io)?;
            pad(&mut out, alignment).map_err(io)?;
        }
        out.flush().map_err(io)?;
        Ok(out.written)
    }
}

fn check_size(origin: &Origin, name: &str, expected: u64, actual: usize) -> Result<()> {
    if actual as u64 != expected {
        return Err(GgufError::TensorDataSize {
            origin: origin.clone(),
            tensor: name.to_string(),
            expected,
            actual: actual as u64,
        });
    }
    Ok(())
}

/// `.<name>.<pid>-<n>.tmp` next to `path`, so the final rename stays on one
/// file system and concurrent writers never share a temporary file.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> GgufError + '_ {
    move |source| GgufError::Io {
        origin: Origin::File(path.to_path_buf()),
        source,
    }
}

/// Levels of arrays in `array`: 1 for a flat array.
fn nesting(array: &MetadataArray) -> usize {
    match array {
        MetadataArray::Array(inner) => 1 + inner.iter().map(nesting).max().unwrap_or(0),
        _ => 1,
    }
}

/// A writer that counts bytes, for padding and the returned size.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(out: &mut Counting<W>, alignment: u64) -> io::Result<()> {
    let n = align_up(out.written, alignment) - out.written;
    io::copy(&mut io::repeat(0).take(n), out).map(|_| ())
}

fn write_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn write_value(out: &mut impl Write, value: &MetadataValue) -> io::Result<()> {
    match value {
        MetadataValue::U8(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I8(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::U64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.write_all(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.write_all(&[u8::from(*v)]),
        MetadataValue::String(s) => write_string(out, s),
        MetadataValue::Array(a) => write_array(out, a),
    }
}

/// Element type, length, elements; inner arrays carry their own type and length.
fn write_array(out: &mut impl Write, array: &MetadataArray) -> io::Result<()> {
    out.write_all(&array.element_type().id().to_le_bytes())?;
    out.write_all(&(array.len() as u64).to_le_bytes())?;
    fn each<T, const N: usize>(
        out: &mut impl Write,
        v: &[T],
        enc: fn(&T) -> [u8; N],
    ) -> io::Result<()> {
        v.iter().try_for_each(|x| out.write_all(&enc(x)))
    }
    match array {
        MetadataArray::U8(v) => out.write_all(v),
        MetadataArray::I8(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::U16(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::I16(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::U32(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::I32(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::U64(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::I64(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::F32(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::F64(v) => each(out, v, |x| x.to_le_bytes()),
        MetadataArray::Bool(v) => each(out, v, |x| [u8::from(*x)]),
        MetadataArray::String(v) => v.iter().try_for_each(|s| write_string(out, s)),
        MetadataArray::Array(v) => v.iter().try_for_each(|a| write_array(out, a)),
    }
}
