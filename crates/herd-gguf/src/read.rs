//! Parsing a GGUF file: header, metadata, tensor infos, data section.
//!
//! ```text
//! "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv ×      key: string | type u32 | value
//! n_tensors × name: string | n_dims u32 | dims: u64 × n_dims | ggml type u32 | offset u64
//! zero padding to `general.alignment` (default 32)
//! data section: each tensor at data_start + offset, offsets multiples of the alignment
//! ```
//! (string = u64 byte length + UTF-8 bytes; array value = element type u32 +
//! u64 length + elements; all little-endian.)
//!
//! Every length read from the file is checked against the bytes that remain
//! *before* anything is allocated for it, using the fewest bytes one item can
//! take on disk, so a corrupt count fails with [`GgufError::LengthPastEof`]
//! instead of an allocation of exabytes; every offset and size is computed with
//! checked arithmetic and compared to the file length.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::bytes::{FileBytes, TensorBytes};
use crate::error::{GgufError, Origin, Result};
use crate::metadata::{Metadata, ALIGNMENT_KEY};
use crate::value::{MetadataArray, MetadataValue, ValueType};
use crate::GgmlType;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// How deeply arrays may nest inside one value. No known writer nests at all
/// (llama.cpp refuses nested arrays); the limit only bounds recursion.
pub const MAX_ARRAY_DEPTH: usize = 16;

/// Most entries or tensors reserved up front. A count passes the file-length
/// check when the file is large, yet the header might still be corrupt: beyond
/// this, vectors grow as entries are actually parsed.
const PREALLOC_LIMIT: u64 = 4096;
/// Fewest bytes one tensor info takes: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Fewest bytes one metadata entry takes: key length, type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// A parsed GGUF file. Metadata and tensor infos are decoded up front; tensor
/// data stays in the file's bytes (a memory map for [`GgufFile::open`]) and is
/// borrowed, or shared through [`Tensor::share`].
pub struct GgufFile {
    origin: Origin,
    bytes: FileBytes,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

/// Where a tensor is and what it holds. Validated: its type is known, its row
/// length is a whole number of blocks and its bytes lie inside the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    offset: u64,
    range: Range<usize>,
}

impl TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Dimensions in GGUF (ggml) order: `dims[0]` is the fastest-varying one,
    /// the row length. A PyTorch `(out, in)` weight is stored as `[in, out]`.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Number of elements (1 for a tensor with no dimensions).
    pub fn n_elements(&self) -> u64 {
        // Cannot overflow: the parser checked the product is at most i64::MAX.
        self.dims.iter().product()
    }

    /// Size of the data in bytes.
    pub fn n_bytes(&self) -> usize {
        self.range.len()
    }

    /// Offset of the data from the start of the data section, as stored.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Absolute byte range of the data within the file.
    pub fn file_range(&self) -> Range<usize> {
        self.range.clone()
    }
}

/// A tensor of a [`GgufFile`]: its info and its bytes, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    info: &'a TensorInfo,
    bytes: &'a FileBytes,
}

impl<'a> Tensor<'a> {
    /// Name, type, dims and position.
    pub fn info(&self) -> &'a TensorInfo {
        self.info
    }

    /// The tensor's bytes, straight from the file.
    pub fn data(&self) -> &'a [u8] {
        // In range: checked against the file length when the info was parsed.
        &self.bytes[self.info.range.clone()]
    }

    /// The tensor's bytes as an owned handle that keeps the file (map) alive.
    pub fn share(&self) -> TensorBytes {
        TensorBytes::new(self.bytes.clone(), self.info.range.clone())
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            origin: Origin::File(path.to_path_buf()),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only. As with every mmap-based loader, a file
        // truncated by another process while mapped is outside our control.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        parse(FileBytes::mapped(map), Origin::File(path.to_path_buf()))
    }

    /// Parses a copy of `bytes` (held 8-byte aligned, as a map would be).
    pub fn from_bytes(bytes: &[u8]) -> Result<GgufFile> {
        parse(FileBytes::copy_of(bytes), Origin::Memory)
    }

    /// Where the file came from (its path, for [`GgufFile::open`]).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The GGUF version, 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The key/value metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str> {
        self.metadata.architecture()
    }

    /// Tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = Tensor<'_>> {
        self.tensors.iter().map(|info| Tensor {
            info,
            bytes: &self.bytes,
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<Tensor<'_>> {
        let &i = self.by_name.get(name)?;
        Some(Tensor {
            info: &self.tensors[i],
            bytes: &self.bytes,
        })
    }

    /// The whole file's bytes (cheap to clone).
    pub fn bytes(&self) -> &FileBytes {
        &self.bytes
    }

    /// The memory map, for files opened with [`GgufFile::open`]; a model can
    /// hold it with [`TensorInfo::file_range`]s and drop the parsed header.
    pub fn mmap_arc(&self) -> Option<Arc<Mmap>> {
        self.bytes.mmap().cloned()
    }
}

/// A summary: a vocabulary would make the derived output megabytes long.
impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("origin", &self.origin)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

/// Which field is being read, for error messages; built without allocating
/// and formatted only when something is wrong.
#[derive(Clone, Copy)]
enum Site<'a> {
    Header(&'static str),
    Key {
        index: u64,
    },
    Value {
        key: &'a str,
    },
    TensorName {
        index: u64,
    },
    TensorField {
        tensor: &'a str,
        field: &'static str,
    },
}

impl fmt::Display for Site<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Header(field) => write!(f, "header {field}"),
            Site::Key { index } => write!(f, "key of metadata entry #{index}"),
            Site::Value { key } => write!(f, "value of {key:?}"),
            Site::TensorName { index } => write!(f, "name of tensor #{index}"),
            Site::TensorField { tensor, field } => write!(f, "{field} of tensor {tensor:?}"),
        }
    }
}

/// A length field: what it counts, for error messages.
#[derive(Clone, Copy)]
enum Length<'a> {
    StringBytes(Site<'a>),
    ArrayElements(Site<'a>),
}

impl fmt::Display for Length<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Length::StringBytes(site) => write!(f, "byte length of {site}"),
            Length::ArrayElements(site) => write!(f, "element count of {site}"),
        }
    }
}

/// A cursor over the file with bounds-checked reads. `pos <= buf.len()` always.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    origin: &'a Origin,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: impl fmt::Display) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                origin: self.origin.clone(),
                offset: self.pos as u64,
                what: what.to_string(),
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self, what: impl fmt::Display) -> Result<[u8; N]> {
        Ok(le_array(self.take(N, what)?))
    }

    fn u32(&mut self, site: Site<'_>) -> Result<u32> {
        self.fixed(site).map(u32::from_le_bytes)
    }

    fn u64(&mut self, site: Site<'_>) -> Result<u64> {
        self.fixed(site).map(u64::from_le_bytes)
    }

    /// Reads a `u64` count of items that take at least `min_each` bytes each
    /// and checks that the rest of the file could hold them.
    fn count(&mut self, what: Length<'_>, min_each: u64) -> Result<usize> {
        let offset = self.pos as u64;
        let count = u64::from_le_bytes(self.fixed(what)?);
        let available = self.remaining() as u64;
        if !fits(count, min_each, available) {
            return Err(GgufError::LengthPastEof {
                origin: self.origin.clone(),
                offset,
                what: what.to_string(),
                count,
                min_bytes_each: min_each,
                available,
            });
        }
        // At most the file length, so it fits in usize.
        Ok(count as usize)
    }

    fn string(&mut self, site: Site<'_>) -> Result<String> {
        let len = self.count(Length::StringBytes(site), 1)?;
        let offset = self.pos as u64;
        let bytes = self.take(len, site)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(GgufError::InvalidUtf8 {
                origin: self.origin.clone(),
                offset,
                what: site.to_string(),
            }),
        }
    }

    fn value_type(&mut self, site: Site<'_>) -> Result<ValueType> {
        let offset = self.pos as u64;
        let id = self.u32(site)?;
        ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
            origin: self.origin.clone(),
            offset,
            what: site.to_string(),
            id,
        })
    }

    fn value(&mut self, key: &str) -> Result<MetadataValue> {
        let site = Site::Value { key };
        Ok(match self.value_type(site)? {
            ValueType::U8 => MetadataValue::U8(u8::from_le_bytes(self.fixed(site)?)),
            ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(self.fixed(site)?)),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.fixed(site)?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.fixed(site)?)),
            ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(self.fixed(site)?)),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.fixed(site)?)),
            ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(self.fixed(site)?)),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.fixed(site)?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.fixed(site)?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.fixed(site)?)),
            ValueType::Bool => MetadataValue::Bool(self.fixed::<1>(site)?[0] != 0),
            ValueType::String => MetadataValue::String(self.string(site)?),
            ValueType::Array => MetadataValue::Array(self.array(key, 0)?),
        })
    }

    /// An array's element type, length and elements; `depth` arrays enclose it.
    fn array(&mut self, key: &str, depth: usize) -> Result<MetadataArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep {
                origin: self.origin.clone(),
                offset: self.pos as u64,
                key: key.to_string(),
                limit: MAX_ARRAY_DEPTH,
            });
        }
        let site = Site::Value { key };
        let element = self.value_type(site)?;
        let n = self.count(Length::ArrayElements(site), element.min_encoded_size())?;
        Ok(match element {
            ValueType::U8 => MetadataArray::U8(self.take(n, site)?.to_vec()),
            ValueType::I8 => MetadataArray::I8(
                self.take(n, site)?
                    .iter()
                    .map(|&b| i8::from_le_bytes([b]))
                    .collect(),
            ),
            ValueType::U16 => MetadataArray::U16(self.elements(n, site, u16::from_le_bytes)?),
            ValueType::I16 => MetadataArray::I16(self.elements(n, site, i16::from_le_bytes)?),
            ValueType::U32 => MetadataArray::U32(self.elements(n, site, u32::from_le_bytes)?),
            ValueType::I32 => MetadataArray::I32(self.elements(n, site, i32::from_le_bytes)?),
            ValueType::U64 => MetadataArray::U64(self.elements(n, site, u64::from_le_bytes)?),
            ValueType::I64 => MetadataArray::I64(self.elements(n, site, i64::from_le_bytes)?),
            ValueType::F32 => MetadataArray::F32(self.elements(n, site, f32::from_le_bytes)?),
            ValueType::F64 => MetadataArray::F64(self.elements(n, site, f64::from_le_bytes)?),
            ValueType::Bool => {
                MetadataArray::Bool(self.take(n, site)?.iter().map(|&b| b != 0).collect())
            }
            ValueType::String => {
                MetadataArray::String((0..n).map(|_| self.string(site)).collect::<Result<_>>()?)
            }
            ValueType::Array => MetadataArray::Array(
                (0..n)
                    .map(|_| self.array(key, depth + 1))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// `n` fixed-size little-endian elements. `count` checked `n * N` fits in
    /// the rest of the file, so the multiplication cannot overflow.
    fn elements<const N: usize, T>(
        &mut self,
        n: usize,
        site: Site<'_>,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>> {
        let bytes = self.take(n.saturating_mul(N), site)?;
        Ok(bytes.chunks_exact(N).map(|c| decode(le_array(c))).collect())
    }
}

/// Copies a slice of exactly `N` bytes (guaranteed by the callers) into an array.
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Whether `count` items of at least `min_each` bytes fit in `available` bytes.
fn fits(count: u64, min_each: u64, available: u64) -> bool {
    count
        .checked_mul(min_each)
        .is_some_and(|need| need <= available)
}

/// The parse, as the file reads: header, metadata, tensor infos, then the
/// data section each tensor is placed in.
fn parse(bytes: FileBytes, origin: Origin) -> Result<GgufFile> {
    let buf: &[u8] = &bytes;
    let mut r = Reader {
        buf,
        pos: 0,
        origin: &origin,
    };
    let (version, n_tensors, n_kv) = read_header(&mut r)?;
    let metadata = read_metadata(&mut r, n_kv)?;
    let alignment = alignment_of(&metadata, &origin)?;

    let mut infos = Vec::with_capacity(n_tensors.min(PREALLOC_LIMIT) as usize);
    let mut by_name = HashMap::with_capacity(n_tensors.min(PREALLOC_LIMIT) as usize);
    for index in 0..n_tensors {
        let info = read_tensor_info(&mut r, index)?;
        if by_name.insert(info.name.clone(), infos.len()).is_some() {
            return Err(GgufError::DuplicateTensor {
                origin,
                tensor: info.name,
            });
        }
        infos.push(info);
    }

    let data_offset = align_up(r.pos as u64, alignment);
    let tensors = infos
        .into_iter()
        .map(|info| info.place(data_offset, alignment, buf.len(), &origin))
        .collect::<Result<Vec<_>>>()?;

    Ok(GgufFile {
        origin,
        bytes,
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
        by_name,
    })
}

/// Magic, version, and the two counts (each checked against the file length).
fn read_header(r: &mut Reader<'_>) -> Result<(u32, u64, u64)> {
    let origin = r.origin;
    let magic = r.fixed::<4>(Site::Header("magic"))?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic {
            origin: origin.clone(),
            found: magic,
        });
    }
    let version = r.u32(Site::Header("version"))?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion {
            origin: origin.clone(),
            version,
        });
    }
    let n_tensors = r.u64(Site::Header("tensor count"))?;
    let n_kv = r.u64(Site::Header("metadata entry count"))?;
    let available = r.remaining() as u64;
    for (offset, what, count, min_bytes_each) in [
        (16, "metadata entry count", n_kv, MIN_KV_BYTES),
        (8, "tensor count", n_tensors, MIN_TENSOR_INFO_BYTES),
    ] {
        if !fits(count, min_bytes_each, available) {
            return Err(GgufError::LengthPastEof {
                origin: origin.clone(),
                offset,
                what: what.to_string(),
                count,
                min_bytes_each,
                available,
            });
        }
    }
    Ok((version, n_tensors, n_kv))
}

/// `n_kv` key/value entries; keys must be non-empty and distinct.
fn read_metadata(r: &mut Reader<'_>, n_kv: u64) -> Result<Metadata> {
    let mut metadata = Metadata::with_capacity(n_kv.min(PREALLOC_LIMIT) as usize);
    for index in 0..n_kv {
        let offset = r.pos as u64;
        let key = r.string(Site::Key { index })?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey {
                origin: r.origin.clone(),
                offset,
                index,
            });
        }
        let value = r.value(&key)?;
        if !metadata.insert_new(key.clone(), value) {
            return Err(GgufError::DuplicateKey {
                origin: r.origin.clone(),
                key,
            });
        }
    }
    Ok(metadata)
}

/// A tensor info as stored, with its shape checked but not yet placed in the
/// data section (whose start depends on where the infos end).
struct RawTensorInfo {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    offset: u64,
    n_bytes: u64,
}

fn read_tensor_info(r: &mut Reader<'_>, index: u64) -> Result<RawTensorInfo> {
    let origin = r.origin;
    let name = r.string(Site::TensorName { index })?;
    let tensor = name.as_str();
    let field = |field| Site::TensorField { tensor, field };
    let n_dims = r.u32(field("dimension count"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            origin: origin.clone(),
            tensor: name,
            n_dims,
        });
    }
    let dims = (0..n_dims)
        .map(|_| r.u64(field("dimensions")))
        .collect::<Result<Vec<u64>>>()?;
    let type_id = r.u32(field("ggml type"))?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownGgmlType {
            origin: origin.clone(),
            tensor: name,
            id: type_id,
        });
    };
    let offset = r.u64(field("data offset"))?;
    let n_bytes = tensor_size(origin, tensor, ggml_type, &dims)?;
    Ok(RawTensorInfo {
        name,
        ggml_type,
        dims,
        offset,
        n_bytes,
    })
}

impl RawTensorInfo {
    /// Checks the offset is aligned and the bytes lie inside the file.
    fn place(
        self,
        data_offset: u64,
        alignment: u64,
        file_len: usize,
        origin: &Origin,
    ) -> Result<TensorInfo> {
        let RawTensorInfo {
            name,
            ggml_type,
            dims,
            offset,
            n_bytes,
        } = self;
        if !offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                origin: origin.clone(),
                tensor: name,
                offset,
                alignment,
            });
        }
        let file_len = file_len as u64;
        let start = data_offset.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => {
                // Both at most the file length, which is a usize.
                let range = start as usize..end as usize;
                Ok(TensorInfo {
                    name,
                    ggml_type,
                    dims,
                    offset,
                    range,
                })
            }
            _ => Err(GgufError::TensorPastEof {
                origin: origin.clone(),
                tensor: name,
                start: start.unwrap_or(u64::MAX),
                end: end.unwrap_or(u64::MAX),
                file_len,
            }),
        }
    }
}

/// `general.alignment` if present (it must be a `u32` power of two, as
/// llama.cpp requires), 32 otherwise.
pub(crate) fn alignment_of(metadata: &Metadata, origin: &Origin) -> Result<u64> {
    match metadata.get(ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(MetadataValue::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(MetadataValue::U32(a)) => Err(GgufError::BadAlignment {
            origin: origin.clone(),
            found: format!("u32 {a} (not a power of two)"),
        }),
        Some(other) => Err(GgufError::BadAlignment {
            origin: origin.clone(),
            found: other.type_description(),
        }),
    }
}

/// Bytes of a tensor of type `ggml_type` and shape `dims`, with ggml's rules:
/// each dimension and the element count at most `i64::MAX`, the row length
/// (`dims[0]`) a whole number of blocks.
pub(crate) fn tensor_size(
    origin: &Origin,
    tensor: &str,
    ggml_type: GgmlType,
    dims: &[u64],
) -> Result<u64> {
    let too_large = || GgufError::TensorTooLarge {
        origin: origin.clone(),
        tensor: tensor.to_string(),
        dims: dims.to_vec(),
        ggml_type,
    };
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64))
        .ok_or_else(too_large)?;
    let row = dims.first().copied().unwrap_or(1);
    let block_size = ggml_type.block_size();
    if !row.is_multiple_of(block_size as u64) {
        return Err(GgufError::RowNotBlockMultiple {
            origin: origin.clone(),
            tensor: tensor.to_string(),
            ggml_type,
            row,
            block_size,
        });
    }
    ggml_type.bytes_for(n_elements).ok_or_else(too_large)
}

/// `pos` rounded up to a multiple of `alignment` (a power of two), saturating:
/// a position near `u64::MAX` cannot be inside a real file, and the tensor
/// bounds checks then report it.
pub(crate) fn align_up(pos: u64, alignment: u64) -> u64 {
    pos.div_ceil(alignment).saturating_mul(alignment)
}
