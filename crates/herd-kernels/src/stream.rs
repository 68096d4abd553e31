//! The streaming (decode) strategy: `m` is tiny, every weight is used once per call,
//! and the only thing that matters is reading `W` at full memory bandwidth.
//!
//! The `n` rows of `W` are cut into contiguous chunks; rayon hands each thread a run of
//! neighbouring chunks, so every core streams its own region of the matrix sequentially
//! (which the hardware prefetchers follow) and all cores together saturate DRAM. A few
//! chunks per thread let an idle core steal work when another is slowed by a neighbour.

use std::ops::Range;

use rayon::prelude::*;

use crate::problem::{OutPtr, Problem};

/// An instruction set's streaming kernel.
pub(crate) trait RowKernel {
    /// Per-call data every chunk reads, e.g. `X` rearranged for the kernel, built once
    /// so chunks do not each redo it.
    type Shared: Sync;

    /// Builds the shared data.
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set.
    unsafe fn prepare(p: &Problem<'_>) -> Self::Shared;

    /// `Y[i][j]` for every row `i` of `X` and every `j` in `rows`.
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set; `rows` must lie in `0..n`,
    /// and the caller must own those columns of `Y`.
    unsafe fn rows(p: &Problem<'_>, shared: &Self::Shared, rows: Range<usize>, out: OutPtr);
}

/// Chunks per rayon thread: enough for work stealing to even out a core slowed by a
/// neighbour, few enough that each chunk is a long sequential stream.
const CHUNKS_PER_THREAD: usize = 4;

/// Below this many weight bytes the call is too short to be worth waking the pool
/// (a few microseconds of fork/join overhead).
const PARALLEL_MIN_BYTES: usize = 256 << 10;

/// Chunks are multiples of this many rows, so only the last chunk has a row tail.
const ROW_ALIGN: usize = 16;

/// Runs kernel `K` over all of `W`, split across the global rayon pool.
///
/// # Safety
/// The CPU must support `K`'s instruction set.
pub(crate) unsafe fn run<K: RowKernel>(p: &Problem<'_>, out: OutPtr) {
    let shared = K::prepare(p);
    let bytes = p.n * p.k * p.w.element_size();
    let threads = rayon::current_num_threads();
    if bytes < PARALLEL_MIN_BYTES || threads == 1 {
        K::rows(p, &shared, 0..p.n, out);
        return;
    }
    let chunks = threads * CHUNKS_PER_THREAD;
    let chunk = p.n.div_ceil(chunks).next_multiple_of(ROW_ALIGN);
    (0..p.n.div_ceil(chunk)).into_par_iter().for_each(|c| {
        let range = c * chunk..((c + 1) * chunk).min(p.n);
        // SAFETY: the caller guarantees CPU support; the chunks are disjoint, so each
        // task writes its own columns of `Y`.
        unsafe { K::rows(p, &shared, range, out) }
    });
}
