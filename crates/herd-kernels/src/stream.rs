//! The streaming (decode) strategy: `m` is small, every weight is fetched from memory
//! once per call, and for m = 1 the only thing that matters is reading `W` at full
//! memory bandwidth. The kernels read W in its stored layout (no repacking), which is
//! also the cheapest way to serve a few tens of rows of X.
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

/// Below this much work (weight bytes, or multiply-adds when X has many rows) a call
/// is too short to be worth waking the pool (a few microseconds of fork/join).
const PARALLEL_MIN_WORK: usize = 256 << 10;

/// Chunks are multiples of this many rows, so only the last chunk has a row tail.
const ROW_ALIGN: usize = 16;

/// Bytes of W one group of rows may span, so the group stays in L2 while each chunk of
/// X rows (4 on AVX-512, 2 on AVX2) is run over it; W is read from memory once, and X
/// from L1/L2 once per group rather than once per few rows.
const GROUP_BYTES: usize = 256 << 10;

/// Splits `rows` into groups of whole `nr`-row blocks spanning at most
/// [`GROUP_BYTES`] of W each (at least one block).
pub(crate) fn row_groups(
    rows: Range<usize>,
    k: usize,
    element_size: usize,
    nr: usize,
) -> impl Iterator<Item = Range<usize>> {
    let group = (GROUP_BYTES / (k * element_size).max(1)).max(nr) / nr * nr;
    let end = rows.end;
    rows.step_by(group)
        .map(move |start| start..(start + group).min(end))
}

/// Runs kernel `K` over all of `W`, split across the global rayon pool.
///
/// # Safety
/// The CPU must support `K`'s instruction set.
pub(crate) unsafe fn run<K: RowKernel>(p: &Problem<'_>, out: OutPtr) {
    let shared = K::prepare(p);
    let work = p.n * p.k * p.w.element_size().max(p.m);
    let threads = rayon::current_num_threads();
    if work < PARALLEL_MIN_WORK || threads == 1 {
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
