//! The blocked (prefill) strategy: `m` is large, so the product is compute-bound and
//! each weight should be fetched and converted once, then used for every row of `X`.
//!
//! ```text
//! for each block of NC rows of W            (parallel: one rayon task per block)
//!   for each k-block of KC                  (packed B block: NC × KC, lives in L2)
//!     pack W[block, k-block] → NC/NR panels, each KC × NR, k-major, f32
//!     for each MC rows of X                 (A block: MC × KC, lives in L2)
//!       for each panel                      (B micro-panel: KC × NR, lives in L1)
//!         for each MR rows of X             (A micro-panel: MR × KC, streamed)
//!           micro-kernel: C[MR × NR] (+)= A · panel   (accumulators in registers)
//! ```
//!
//! The micro-kernel is an outer product: per k it loads NR packed weights as vectors,
//! broadcasts MR activations, and does MR·NR/lanes FMAs, so loads stay well below the
//! FMA count. Packing transposes W (stored `n × k`) into k-major panels, which is what
//! lets the kernel load NR weights of one k with one or two vector loads.
//!
//! Tails: a last partial MR block of `X` is copied into a zero-padded buffer, a last
//! partial panel of `W` is zero-padded when packed, and the kernel writes only the
//! valid part of a partial tile, so the micro-kernel itself never branches on shape.

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;

use crate::problem::{OutPtr, Problem};
use crate::WeightSlice;

/// k-block length: a B micro-panel of KC × 32 f32 is 32 KiB, which stays in a 48 KiB
/// L1 next to the A micro-panel. Even, so bf16 pairs never straddle k-blocks.
pub(crate) const KC: usize = 256;

/// Rows of `X` per A block (rounded down to a multiple of MR): MC × KC f32 is 256 KiB,
/// which stays in L2 next to the packed B block while the panels sweep over it.
const MC: usize = 256;

/// Largest block of W rows per task: NC × KC f32 is 256 KiB of packed B.
const NC_MAX: usize = 256;

/// Tasks per rayon thread, so a slowed core's work can be stolen.
const TASKS_PER_THREAD: usize = 4;

/// Where a micro-kernel writes its `MR × NR` result: the valid `rows × cols` corner of
/// the tile at `ptr` in `Y` (row stride `ldc`), overwritten on the first k-block and
/// accumulated into on later ones.
pub(crate) struct Tile {
    pub ptr: *mut f32,
    pub ldc: usize,
    pub rows: usize,
    pub cols: usize,
    pub accumulate: bool,
}

impl Tile {
    /// Writes the valid corner of `acc` (`MR × nr`, row-major) into `Y`; the slow path
    /// for partial tiles.
    ///
    /// # Safety
    /// The tile's `rows × cols` cells must lie in `Y` and belong to the caller.
    pub unsafe fn write_from(&self, acc: &[f32], nr: usize) {
        for i in 0..self.rows {
            for j in 0..self.cols {
                let c = self.ptr.add(i * self.ldc + j);
                let v = acc[i * nr + j];
                *c = if self.accumulate { *c + v } else { v };
            }
        }
    }
}

/// The activations as the micro-kernel reads them: MR rows at a time with stride
/// `lda`. Rows past the last full MR block live in a zero-padded copy.
pub(crate) struct AOperand<'a, T: Clone> {
    main: Cow<'a, [T]>,
    lda: usize,
    full_rows: usize,
    tail: Vec<T>,
}

impl<'a, T: Copy + Default> AOperand<'a, T> {
    /// `main` holds `m` rows of stride `lda`; `mr` is the micro-kernel's row count.
    pub fn new(main: Cow<'a, [T]>, m: usize, lda: usize, mr: usize) -> Self {
        let full_rows = m / mr * mr;
        let mut tail = Vec::new();
        if full_rows < m {
            tail = vec![T::default(); mr * lda];
            let rows = &main[full_rows * lda..m * lda];
            tail[..rows.len()].copy_from_slice(rows);
        }
        AOperand { main, lda, full_rows, tail }
    }

    /// The MR-row block starting at row `i` (a multiple of MR), column `k0`.
    fn ptr(&self, i: usize, k0: usize) -> *const T {
        if i < self.full_rows {
            self.main[i * self.lda + k0..].as_ptr()
        } else {
            self.tail[k0..].as_ptr()
        }
    }
}

/// One instruction set's register-blocked micro-kernel and the packing it needs.
pub(crate) trait Microkernel {
    /// Element of the A operand the kernel broadcasts (f32, or bf16 for `Bf16Dot`).
    type A: Copy + Default + Send + Sync;
    /// Element of a packed weight panel (f32, or a `u32` holding a bf16 pair).
    type B: Copy + Default + Send + Sync;
    /// Rows of `X` per tile.
    const MR: usize;
    /// Rows of `W` (columns of `Y`) per tile.
    const NR: usize;
    /// k indices covered by one packed element (1, or 2 for bf16 pairs).
    const KPACK: usize;

    /// Builds the A operand from `X`.
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set.
    unsafe fn prepare_a<'a>(p: &Problem<'a>) -> AOperand<'a, Self::A>;

    /// Packs `W[rows, ks]` into `rows.len().div_ceil(NR)` panels of
    /// `ks.len().div_ceil(KPACK) × NR` elements, zero-padding the last panel.
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set; `dst` must hold the panels.
    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, ks: Range<usize>, dst: &mut [Self::B]);

    /// `tile (+)= A[MR × steps·KPACK] · panel`, `a` with row stride `lda`.
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set; `a` must point at MR readable
    /// rows of `steps·KPACK` elements, `b` at a `steps × NR` panel, and `tile` must be
    /// valid as in [`Tile::write_from`].
    unsafe fn tile(steps: usize, a: *const Self::A, lda: usize, b: *const Self::B, tile: &Tile);
}

/// Runs the blocked strategy with micro-kernel `K` on the global rayon pool.
///
/// # Safety
/// The CPU must support `K`'s instruction set.
pub(crate) unsafe fn run<K: Microkernel>(p: &Problem<'_>, out: OutPtr) {
    let a = K::prepare_a(p);
    let threads = rayon::current_num_threads();
    let nc = p.n.div_ceil(threads * TASKS_PER_THREAD).next_multiple_of(K::NR).min(NC_MAX.max(K::NR));
    let blocks = p.n.div_ceil(nc);
    let task = |buf: &mut Vec<K::B>, block: usize| {
        let rows = block * nc..((block + 1) * nc).min(p.n);
        // SAFETY: CPU support is the caller's guarantee; `rows` is this task's own set
        // of Y columns.
        unsafe { run_block::<K>(p, &a, rows, buf, out) }
    };
    if blocks == 1 {
        task(&mut Vec::new(), 0);
    } else {
        (0..blocks).into_par_iter().for_each_init(Vec::new, task);
    }
}

/// All of `Y[:, rows]`: pack each k-block of these W rows, then sweep X over it.
unsafe fn run_block<K: Microkernel>(
    p: &Problem<'_>,
    a: &AOperand<'_, K::A>,
    rows: Range<usize>,
    buf: &mut Vec<K::B>,
    out: OutPtr,
) {
    let panels = rows.len().div_ceil(K::NR);
    let mc = (MC / K::MR).max(1) * K::MR;
    // Panels start on 64-byte boundaries so no vector load straddles a cache line.
    let capacity = panels * KC.div_ceil(K::KPACK) * K::NR;
    let lanes_per_line = 64 / size_of::<K::B>();
    buf.resize(capacity + lanes_per_line, K::B::default());
    let offset = buf.as_ptr().align_offset(64).min(lanes_per_line);
    let packed = &mut buf[offset..offset + capacity];
    for k0 in (0..p.k).step_by(KC) {
        let ks = k0..(k0 + KC).min(p.k);
        let steps = ks.len().div_ceil(K::KPACK);
        K::pack(p.w, p.k, rows.clone(), ks, packed);
        for i0 in (0..p.m).step_by(mc) {
            let i_end = (i0 + mc).min(p.m);
            for panel in 0..panels {
                let b = packed[panel * steps * K::NR..].as_ptr();
                let j = rows.start + panel * K::NR;
                let cols = K::NR.min(rows.end - j);
                for i in (i0..i_end).step_by(K::MR) {
                    let tile = Tile {
                        ptr: out.at(i, j),
                        ldc: out.stride(),
                        rows: K::MR.min(p.m - i),
                        cols,
                        accumulate: k0 > 0,
                    };
                    K::tile(steps, a.ptr(i, k0), a.lda, b, &tile);
                }
            }
        }
    }
}

/// Converts a run of weights to f32; one per instruction set.
pub(crate) type ConvertFn = unsafe fn(WeightSlice<'_>, &mut [f32]);

/// [`Microkernel::pack`] for f32 kernels: converts each W row segment with `convert`
/// (vectorised), then scatters it into its panel column.
///
/// # Safety
/// The CPU must support `convert`'s instruction set.
pub(crate) unsafe fn pack_f32(
    w: WeightSlice<'_>,
    k: usize,
    rows: Range<usize>,
    ks: Range<usize>,
    nr: usize,
    dst: &mut [f32],
    convert: ConvertFn,
) {
    let kc = ks.len();
    let mut row = [0.0f32; KC];
    for (index, r) in rows.clone().enumerate() {
        let (panel, jj) = (index / nr, index % nr);
        convert(w.slice(r * k + ks.start..r * k + ks.end), &mut row[..kc]);
        let panel = &mut dst[panel * kc * nr..(panel + 1) * kc * nr];
        for (line, &v) in panel.chunks_exact_mut(nr).zip(&row[..kc]) {
            line[jj] = v;
        }
    }
    zero_pad(rows.len(), kc, nr, dst);
}

/// [`Microkernel::pack`] for the `Bf16Dot` kernel: W rows stay bf16 and are packed as
/// `u32` pairs `(w[j][2s], w[j][2s+1])`, the operand layout of `vdpbf16ps`; an odd
/// last k is paired with zero.
pub(crate) fn pack_bf16_pairs(
    w: &[half::bf16],
    k: usize,
    rows: Range<usize>,
    ks: Range<usize>,
    nr: usize,
    dst: &mut [u32],
) {
    let steps = ks.len().div_ceil(2);
    for (index, r) in rows.clone().enumerate() {
        let (panel, jj) = (index / nr, index % nr);
        let src = &w[r * k + ks.start..r * k + ks.end];
        let panel = &mut dst[panel * steps * nr..(panel + 1) * steps * nr];
        let (pairs, rest) = src.as_chunks::<2>();
        let mut lines = panel.chunks_exact_mut(nr);
        // `pairs` first: zip stops on it without consuming the line the odd tail needs.
        for (pair, line) in pairs.iter().zip(lines.by_ref()) {
            line[jj] = u32::from(pair[0].to_bits()) | (u32::from(pair[1].to_bits()) << 16);
        }
        if let (Some(line), [last]) = (lines.next(), rest) {
            line[jj] = u32::from(last.to_bits());
        }
    }
    zero_pad(rows.len(), steps, nr, dst);
}

/// Zeroes the padding columns of the last panel when `rows` is not a multiple of `nr`.
fn zero_pad<T: Copy + Default>(rows: usize, steps: usize, nr: usize, dst: &mut [T]) {
    let used = rows % nr;
    if used == 0 {
        return;
    }
    let last = rows / nr;
    for line in dst[last * steps * nr..(last + 1) * steps * nr].chunks_exact_mut(nr) {
        line[used..].fill(T::default());
    }
}

/// `X` rounded to bf16 for the `Bf16Dot` kernel, with row stride `k` rounded up to
/// even (zero-padded) so every k-pair the kernel broadcasts is one `u32` inside its
/// row; rows are converted in parallel by `convert_row`.
pub(crate) fn bf16_rows(p: &Problem<'_>, convert_row: impl Fn(&[f32], &mut [half::bf16]) + Sync) -> (Vec<half::bf16>, usize) {
    let lda = p.k.next_multiple_of(2);
    let mut v = vec![half::bf16::ZERO; p.m * lda];
    v.par_chunks_mut(lda)
        .zip(p.x.par_chunks(p.k))
        .with_min_len(16)
        .for_each(|(dst, src)| convert_row(src, &mut dst[..p.k]));
    (v, lda)
}
