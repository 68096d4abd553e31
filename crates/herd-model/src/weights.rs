//! Weight files: single or sharded safetensors, memory-mapped and never
//! copied. A [`Weight`] borrows its bytes straight from the page cache, so a
//! 16 GB bf16 checkpoint costs 16 GB of (shared, evictable) memory rather than
//! 16 GB of heap plus the file cache, and loads in the time it takes to read
//! the headers. Only a tensor whose offset is not aligned to its element size
//! (legal in safetensors, never produced by `transformers`) is copied.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use herd_gguf::FileBytes;
use herd_kernels::WeightSlice;
use memmap2::Mmap;
use serde::Deserialize;

use crate::config::WeightDtype;
use crate::error::{ModelError, Result};
use crate::rope::RopeLayout;

/// Where a weight's bytes live: a range of a shared file buffer (a memory
/// map, or an 8-byte-aligned copy for checkpoints held in memory such as the
/// model embedded in the `herd` binary). `FileBytes` is herd-gguf's shared
/// buffer type, used for safetensors as well so there is one of it.
#[derive(Clone)]
struct Bytes {
    source: FileBytes,
    start: usize,
    len: usize,
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        &self.source[self.start..self.start + self.len]
    }

    /// `range` of `source`, shared without a copy unless its start is not
    /// aligned for `dtype` (legal in safetensors; then it is copied).
    fn share(source: &FileBytes, range: std::ops::Range<usize>, dtype: WeightDtype) -> Bytes {
        if (source.as_ptr() as usize + range.start).is_multiple_of(dtype.alignment()) {
            Bytes {
                source: source.clone(),
                start: range.start,
                len: range.len(),
            }
        } else {
            Bytes::copy_of(&source[range])
        }
    }

    fn copy_of(bytes: &[u8]) -> Bytes {
        Bytes {
            source: FileBytes::copy_of(bytes),
            start: 0,
            len: bytes.len(),
        }
    }
}

/// One tensor of a checkpoint: dtype, shape and its (mapped) bytes. Cheap to
/// clone; immutable.
#[derive(Clone)]
pub struct Weight {
    bytes: Bytes,
    dtype: WeightDtype,
    shape: Vec<usize>,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weight({}, {:?})", self.dtype, self.shape)
    }
}

impl Weight {
    /// The stored element type.
    pub fn dtype(&self) -> WeightDtype {
        self.dtype
    }

    /// The stored shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, typed, for the matrix kernels.
    pub fn as_slice(&self) -> WeightSlice<'_> {
        let bytes = self.bytes.as_slice();
        let n = self.len();
        // SAFETY: alignment to the element size was checked (or forced by
        // copying) when the weight was created, the byte length is exactly
        // n * size, and every bit pattern is a valid f32/f16/bf16.
        unsafe {
            match self.dtype {
                WeightDtype::F32 => {
                    WeightSlice::F32(std::slice::from_raw_parts(bytes.as_ptr().cast(), n))
                }
                WeightDtype::F16 => {
                    WeightSlice::F16(std::slice::from_raw_parts(bytes.as_ptr().cast(), n))
                }
                WeightDtype::Bf16 => {
                    WeightSlice::Bf16(std::slice::from_raw_parts(bytes.as_ptr().cast(), n))
                }
                WeightDtype::Quant(q) => WeightSlice::Quant(q, bytes),
            }
        }
    }

    /// Converts elements `[start, start + out.len())` to f32 into `out`
    /// (for quantized weights, both ends must fall on block boundaries —
    /// whole rows always do).
    pub fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let end = start + out.len();
        if end > self.len() {
            return Err(ModelError::InvalidInput(format!(
                "elements {start}..{end} of a {}-element tensor",
                self.len()
            )));
        }
        match self.as_slice() {
            WeightSlice::F32(s) => out.copy_from_slice(&s[start..end]),
            WeightSlice::F16(s) => out
                .iter_mut()
                .zip(&s[start..end])
                .for_each(|(o, v)| *o = f16::to_f32(*v)),
            WeightSlice::Bf16(s) => out
                .iter_mut()
                .zip(&s[start..end])
                .for_each(|(o, v)| *o = bf16::to_f32(*v)),
            WeightSlice::Quant(q, bytes) => {
                let (elems, size) = (q.block_elems(), q.block_bytes());
                if !start.is_multiple_of(elems) || !out.len().is_multiple_of(elems) {
                    return Err(ModelError::InvalidInput(format!(
                        "{q:?} reads must cover whole blocks of {elems}"
                    )));
                }
                herd_kernels::dequantize(q, &bytes[start / elems * size..end / elems * size], out)?;
            }
        }
        Ok(())
    }

    /// All elements as f32 (small tensors such as norm weights; conversion).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.len()];
        self.read_f32(0, &mut out)?;
        Ok(out)
    }

    /// A weight over `range` of a GGUF file's bytes, without copying unless
    /// the range is misaligned for the element type.
    pub(crate) fn from_gguf(
        file: &FileBytes,
        range: std::ops::Range<usize>,
        dtype: WeightDtype,
        shape: Vec<usize>,
    ) -> Weight {
        Weight {
            bytes: Bytes::share(file, range, dtype),
            dtype,
            shape,
        }
    }

    /// Bytes of stored data.
    pub fn byte_len(&self) -> usize {
        self.bytes.len
    }

    /// Rows `range` of a matrix `(rows, cols)`, sharing the bytes (rows are
    /// contiguous, so a tensor-parallel rank's output features cost no copy
    /// and only their pages are ever read).
    pub fn rows(&self, range: std::ops::Range<usize>) -> Result<Weight> {
        let (rows, cols) = self.matrix_dims()?;
        if range.start > range.end || range.end > rows {
            return Err(ModelError::InvalidShard(format!(
                "rows {}..{} of a {rows}-row matrix",
                range.start, range.end
            )));
        }
        let row_bytes = self.row_bytes(cols)?;
        Ok(Weight {
            bytes: Bytes {
                source: self.bytes.source.clone(),
                start: self.bytes.start + range.start * row_bytes,
                len: range.len() * row_bytes,
            },
            dtype: self.dtype,
            shape: vec![range.len(), cols],
        })
    }

    /// Columns `range` of a matrix `(rows, cols)`, copied (each row's slice
    /// is a separate run of bytes). Quantized matrices split only on block
    /// boundaries.
    pub fn columns(&self, range: std::ops::Range<usize>) -> Result<Weight> {
        let (rows, cols) = self.matrix_dims()?;
        let (elems, size) = match self.dtype {
            WeightDtype::Quant(q) => (q.block_elems(), q.block_bytes()),
            other => (1, other.alignment()),
        };
        if range.start > range.end
            || range.end > cols
            || !range.start.is_multiple_of(elems)
            || !range.len().is_multiple_of(elems)
        {
            return Err(ModelError::InvalidShard(format!(
                "columns {}..{} of a {cols}-column {} matrix (blocks of {elems})",
                range.start, range.end, self.dtype
            )));
        }
        let row_bytes = self.row_bytes(cols)?;
        let (from, len) = (range.start / elems * size, range.len() / elems * size);
        let src = self.bytes.as_slice();
        let mut out = Vec::with_capacity(rows * len);
        for row in src.chunks_exact(row_bytes) {
            out.extend_from_slice(&row[from..from + len]);
        }
        Ok(Weight {
            bytes: Bytes::copy_of(&out),
            dtype: self.dtype,
            shape: vec![rows, range.len()],
        })
    }

    fn matrix_dims(&self) -> Result<(usize, usize)> {
        match self.shape[..] {
            [rows, cols] => Ok((rows, cols)),
            _ => Err(ModelError::InvalidShard(format!(
                "only matrices can be sliced, not shape {:?}",
                self.shape
            ))),
        }
    }

    fn row_bytes(&self, cols: usize) -> Result<usize> {
        self.dtype.bytes_for(cols).ok_or_else(|| {
            ModelError::InvalidShard(format!(
                "rows of {cols} {} values are not whole blocks",
                self.dtype
            ))
        })
    }

    /// A weight built from f32 values held in memory (tests, tools).
    pub fn from_f32(values: &[f32], shape: Vec<usize>) -> Weight {
        // SAFETY: reinterpreting initialised f32s as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len() * 4) };
        Weight {
            bytes: Bytes::copy_of(bytes),
            dtype: WeightDtype::F32,
            shape,
        }
    }
}

/// Checkpoint tensors looked up by their Hugging Face name, whatever the file
/// format: the model code names tensors once, and each format translates.
pub trait TensorSource {
    /// The tensor `name` (HF naming), checked against the `expected` shape
    /// in PyTorch order (`(out_features, in_features)` for a linear layer).
    fn get(&self, name: &str, expected: &[usize]) -> Result<Weight>;
    /// Whether the tensor exists.
    fn has(&self, name: &str) -> bool;
    /// Total bytes of tensor data.
    fn total_bytes(&self) -> u64;
    /// How the q/k projections' rows pair dimensions for RoPE.
    fn rope_layout(&self) -> RopeLayout;
}

impl TensorSource for WeightFiles {
    fn get(&self, name: &str, expected: &[usize]) -> Result<Weight> {
        WeightFiles::get(self, name, expected)
    }

    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }

    fn total_bytes(&self) -> u64 {
        WeightFiles::total_bytes(self)
    }

    fn rope_layout(&self) -> RopeLayout {
        RopeLayout::HalfSplit
    }
}

/// Metadata of one tensor inside one mapped file.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: WeightDtype,
    shape: Vec<usize>,
    start: usize,
    len: usize,
}

struct MappedFile {
    path: PathBuf,
    source: FileBytes,
}

/// The safetensors files of a model directory, indexed by tensor name.
pub struct WeightFiles {
    files: Vec<MappedFile>,
    entries: HashMap<String, Entry>,
    location: String,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl WeightFiles {
    /// Opens `model.safetensors.index.json` and its shards if present, else
    /// `model.safetensors`, else every `*.safetensors` in `dir`.
    pub fn open_dir(dir: &Path) -> Result<WeightFiles> {
        let index_path = dir.join("model.safetensors.index.json");
        let (names, location) = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| ModelError::Io {
                path: index_path.clone(),
                source,
            })?;
            let index: ShardIndex =
                serde_json::from_str(&text).map_err(|source| ModelError::Json {
                    path: index_path.clone(),
                    what: "safetensors shard index",
                    source,
                })?;
            let shards: BTreeSet<String> = index.weight_map.values().cloned().collect();
            (
                shards.into_iter().collect::<Vec<_>>(),
                index_path.display().to_string(),
            )
        } else if dir.join("model.safetensors").exists() {
            (
                vec!["model.safetensors".to_string()],
                dir.join("model.safetensors").display().to_string(),
            )
        } else {
            let mut found: Vec<String> = std::fs::read_dir(dir)
                .map_err(|source| ModelError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(ModelError::MissingFile {
                    path: dir.join("model.safetensors"),
                    hint: "; no *.safetensors weights in the model directory".into(),
                });
            }
            (found, dir.display().to_string())
        };
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        WeightFiles::open_files(&paths, location)
    }

    /// Opens and indexes the given safetensors files.
    pub fn open_files(paths: &[PathBuf], location: String) -> Result<WeightFiles> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (file, path) in paths.iter().enumerate() {
            let map = map_file(path)?;
            for (name, entry) in parse_header(&map, path, file)? {
                entries.insert(name, entry);
            }
            files.push(MappedFile {
                path: path.clone(),
                source: FileBytes::mapped(map),
            });
        }
        Ok(WeightFiles {
            files,
            entries,
            location,
        })
    }

    /// Indexes one safetensors file held in memory; `name` is used in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<WeightFiles> {
        let path = PathBuf::from(name);
        let entries = parse_header(bytes, &path, 0)?.into_iter().collect();
        let source = FileBytes::copy_of(bytes);
        Ok(WeightFiles {
            files: vec![MappedFile { path, source }],
            entries,
            location: name.to_string(),
        })
    }

    /// Names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Total bytes of tensor data.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(|e| e.len as u64).sum()
    }

    /// The stored shape of a tensor, if it exists (for tools that copy
    /// every tensor without knowing the model's layout).
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The tensor `name`, checked against the `expected` shape.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Weight> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                location: self.location.clone(),
            })?;
        let file = &self.files[entry.file];
        if entry.shape != expected {
            return Err(ModelError::WrongShape {
                name: name.to_string(),
                path: file.path.clone(),
                expected: expected.to_vec(),
                actual: entry.shape.clone(),
            });
        }
        let range = entry.start..entry.start + entry.len;
        Ok(Weight {
            bytes: Bytes::share(&file.source, range, entry.dtype),
            dtype: entry.dtype,
            shape: entry.shape.clone(),
        })
    }

    /// The dtype most bytes are stored in (for `herd info`).
    pub fn dominant_dtype(&self) -> Option<WeightDtype> {
        let mut by_dtype: HashMap<String, (u64, WeightDtype)> = HashMap::new();
        for e in self.entries.values() {
            by_dtype
                .entry(e.dtype.to_string())
                .or_insert((0, e.dtype))
                .0 += e.len as u64;
        }
        by_dtype
            .into_values()
            .max_by_key(|(n, _)| *n)
            .map(|(_, d)| d)
    }
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                path: path.to_path_buf(),
                hint: String::new(),
            }
        } else {
            ModelError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    // SAFETY: the map is read-only; as with every mmap-based loader, a file
    // truncated by another process while mapped is outside our control.
    unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_header(map: &[u8], path: &Path, file: usize) -> Result<Vec<(String, Entry)>> {
    let bad = |reason: String| ModelError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let (header_len, metadata) =
        safetensors::SafeTensors::read_metadata(map).map_err(|e| bad(e.to_string()))?;
    let data_start = 8 + header_len;
    let data_len = map.len().saturating_sub(data_start);
    let mut out = Vec::new();
    for (name, info) in metadata.tensors() {
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => WeightDtype::F32,
            safetensors::Dtype::F16 => WeightDtype::F16,
            safetensors::Dtype::BF16 => WeightDtype::Bf16,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    name,
                    path: path.to_path_buf(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let (begin, end) = info.data_offsets;
        let elements: usize = info.shape.iter().product();
        if end < begin || end > data_len || Some(end - begin) != dtype.bytes_for(elements) {
            return Err(bad(format!(
                "tensor {name}: byte range {begin}..{end} does not match shape {:?} of {dtype} within {data_len} data bytes",
                info.shape
            )));
        }
        out.push((
            name,
            Entry {
                file,
                dtype,
                shape: info.shape.clone(),
                start: data_start + begin,
                len: end - begin,
            },
        ));
    }
    Ok(out)
}
