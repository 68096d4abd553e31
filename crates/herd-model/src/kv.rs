//! Key/value state, kept outside the immutable model so that one loaded
//! [`crate::Llama`] serves any number of sequences at once.
//!
//! Both storages use one layout: per layer, keys and values are rows of
//! `n_kv_heads * head_dim` f32 values, one row per position, heads side by
//! side. Appending a position is a copy of one row (never a reallocation of
//! the whole history), and the attention kernel reads either storage through
//! the same [`KvView`]:
//!
//! ```text
//! KvCache (one sequence)   rows 0 1 2 3 4 5 6 ...            positions in order
//! KvPool  (many)           block 0: rows 0..B   block 1: rows B..2B   ...
//!                          sequence A's table [4, 1]: positions 0..B in block 4,
//!                          B..2B in block 1 (a block is B consecutive positions)
//! ```
//!
//! The pool itself knows nothing of owners: which blocks a sequence holds,
//! which are shared through the prefix cache and when they are reused is the
//! engine's business. The model only writes the new positions of a batch into
//! the blocks the caller names, and reads them back.

use crate::config::Config;
use crate::error::{ModelError, Result};

/// One layer's keys and values, `(rows, n_kv_heads * head_dim)` each.
#[derive(Debug, Clone, Default)]
struct Rows {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Keys and values of every layer for one sequence, contiguous in position.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: `len` rows.
    layers: Vec<Rows>,
    /// `n_kv_heads * head_dim`.
    kv_dim: usize,
    /// Positions already stored.
    len: usize,
}

impl KvCache {
    /// An empty cache for a model of this shape.
    pub fn new(cfg: &Config) -> KvCache {
        KvCache::with_shape(
            cfg.num_hidden_layers,
            cfg.num_key_value_heads * cfg.head_dim,
        )
    }

    /// An empty cache of `num_layers` layers of `kv_dim`-wide rows (a shard's
    /// layers and KV heads).
    pub(crate) fn with_shape(num_layers: usize, kv_dim: usize) -> KvCache {
        KvCache {
            layers: vec![Rows::default(); num_layers],
            kv_dim,
            len: 0,
        }
    }

    /// Number of positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of layers this cache was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.truncate_to(0);
    }

    /// Keeps only the first `len` positions (e.g. a shared chat prefix).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.truncate_to(len.min(self.len));
        Ok(())
    }

    fn truncate_to(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.k.truncate(len * self.kv_dim);
            layer.v.truncate(len * self.kv_dim);
        }
        self.len = len;
    }

    /// Row width this cache stores (`n_kv_heads * head_dim`).
    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Appends rows of keys and values to `layer` (position `len + i` for row `i`).
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let rows = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::InvalidInput(format!("KV cache has no layer {layer}")))?;
        rows.k.extend_from_slice(k);
        rows.v.extend_from_slice(v);
        Ok(())
    }

    /// Everything stored for `layer`, including rows appended in this step.
    pub(crate) fn view(&self, layer: usize) -> KvView<'_> {
        let rows = &self.layers[layer];
        KvView {
            k: &rows.k,
            v: &rows.v,
            kv_dim: self.kv_dim,
            table: None,
        }
    }

    /// Records that `n` positions were appended to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// A fixed pool of KV blocks shared by many sequences: every layer holds
/// `num_blocks` blocks of `block_size` positions. Allocated once, up front.
#[derive(Debug)]
pub struct KvPool {
    /// Per layer: `num_blocks * block_size` rows.
    layers: Vec<Rows>,
    kv_dim: usize,
    block_size: usize,
    num_blocks: usize,
}

impl KvPool {
    /// A pool of `num_blocks` blocks of `block_size` positions for a model of this shape.
    pub fn new(cfg: &Config, block_size: usize, num_blocks: usize) -> Result<KvPool> {
        KvPool::with_shape(
            cfg.num_hidden_layers,
            cfg.num_key_value_heads * cfg.head_dim,
            block_size,
            num_blocks,
        )
    }

    /// A pool of `num_layers` layers of `kv_dim`-wide rows (a shard's layers
    /// and KV heads).
    pub(crate) fn with_shape(
        num_layers: usize,
        kv_dim: usize,
        block_size: usize,
        num_blocks: usize,
    ) -> Result<KvPool> {
        let floats = block_size
            .checked_mul(num_blocks)
            .and_then(|rows| rows.checked_mul(kv_dim))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                ModelError::InvalidInput(format!(
                    "KV pool of {num_blocks} blocks of {block_size} positions is empty or too large"
                ))
            })?;
        let layers = (0..num_layers)
            .map(|_| Rows {
                k: vec![0.0; floats],
                v: vec![0.0; floats],
            })
            .collect();
        Ok(KvPool {
            layers,
            kv_dim,
            block_size,
            num_blocks,
        })
    }

    /// Bytes one block of `block_size` positions takes over all layers (keys and values, f32).
    pub fn bytes_per_block(cfg: &Config, block_size: usize) -> u64 {
        cfg.kv_bytes_per_token().saturating_mul(block_size as u64)
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Number of layers this pool was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Row width this pool stores (`n_kv_heads * head_dim`).
    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Writes rows of keys and values for positions `start..` of the sequence
    /// whose block table is `blocks` (checked by the caller to cover them).
    pub(crate) fn write(
        &mut self,
        layer: usize,
        blocks: &[u32],
        start: usize,
        k: &[f32],
        v: &[f32],
    ) {
        let (bs, d) = (self.block_size, self.kv_dim);
        let rows = &mut self.layers[layer];
        for (i, (k, v)) in k.chunks_exact(d).zip(v.chunks_exact(d)).enumerate() {
            let pos = start + i;
            let row = blocks[pos / bs] as usize * bs + pos % bs;
            rows.k[row * d..(row + 1) * d].copy_from_slice(k);
            rows.v[row * d..(row + 1) * d].copy_from_slice(v);
        }
    }

    /// The positions of the sequence with block table `blocks`, for `layer`.
    pub(crate) fn view<'a>(&'a self, layer: usize, blocks: &'a [u32]) -> KvView<'a> {
        let rows = &self.layers[layer];
        KvView {
            k: &rows.k,
            v: &rows.v,
            kv_dim: self.kv_dim,
            table: Some((blocks, self.block_size)),
        }
    }
}

/// Read access to one sequence's keys and values in one layer, wherever they live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvView<'a> {
    k: &'a [f32],
    v: &'a [f32],
    kv_dim: usize,
    /// Block table and block size; `None` for contiguous storage.
    table: Option<(&'a [u32], usize)>,
}

/// A run of consecutive positions stored in consecutive rows.
pub(crate) struct Run<'a> {
    /// Position of the first row.
    pub start: usize,
    /// Keys, `(rows, kv_dim)`.
    pub k: &'a [f32],
    /// Values, `(rows, kv_dim)`.
    pub v: &'a [f32],
}

impl<'a> KvView<'a> {
    /// Positions `0..len` as runs of consecutive rows, in position order
    /// (one run for a contiguous cache, one per block for the pool).
    pub(crate) fn runs(self, len: usize) -> impl Iterator<Item = Run<'a>> {
        let d = self.kv_dim;
        let run_len = self.table.map_or(len.max(1), |(_, bs)| bs);
        (0..len.div_ceil(run_len)).map(move |r| {
            let start = r * run_len;
            let n = run_len.min(len - start);
            let row = self.table.map_or(0, |(blocks, bs)| blocks[r] as usize * bs);
            Run {
                start,
                k: &self.k[row * d..(row + n) * d],
                v: &self.v[row * d..(row + n) * d],
            }
        })
    }
}
