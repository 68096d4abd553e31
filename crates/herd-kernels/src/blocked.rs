//! The blocked (prefill) strategy: `m` is large, so the product is compute-bound and
//! each weight should be fetched and converted once, then used for every row of `X`.
//!
//! ```text
//! pack X → MR-row blocks, k-major                (once per call, in parallel)
//! for each block of NC rows of W                 (parallel: one rayon task per block)
//!   pack W[block, :] → per k-block of KC, NC/NR panels of KC × NR, k-major, f32
//!   for each k-block of KC
//!     for each MC rows of X                      (A block: MC × KC, lives in L2)
//!       for each panel                           (B micro-panel: KC × NR, L1/L2)
//!         for each MR rows of X                  (A micro-panel: MR × KC, streamed)
//!           micro-kernel: C[MR × NR] (+)= A · panel   (accumulators in registers)
//! ```
//!
//! The micro-kernel is an outer product: per k it loads NR packed weights as vectors,
//! broadcasts MR activations, and does MR·NR/lanes FMAs, so loads stay well below the
//! FMA count. Both operands are packed k-major so that every load of the kernel is at
//! a constant offset from one moving pointer: W because it is stored `n × k` and the
//! kernel wants NR weights of one k side by side, X because MR row pointers with a
//! run-time stride cost more integer instructions than the FMAs can hide.
//!
//! Packing W reads each row once from start to end (long sequential streams the
//! prefetchers follow; short per-k-block segments of many rows were latency-bound)
//! and converts every weight exactly once per call.
//!
//! Tails: packed X is zero-padded to a multiple of MR rows, the last panel of W to NR
//! rows, and the kernel writes only the valid part of a partial tile, so the
//! micro-kernel itself never branches on shape.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use crate::problem::{OutPtr, Problem};
use crate::WeightSlice;

/// k-block length. A B micro-panel (KC × 32 f32 = 64 KiB) then streams from L2, which
/// keeps up with one 128-byte line pair per 16 FMAs; 512 measured ~5% faster than 256
/// (an L1-sized panel) because each tile's accumulators are loaded and stored half as
/// often. Even, so bf16 pairs never straddle k-blocks.
pub(crate) const KC: usize = 512;

/// Rows of `X` per A block (rounded down to a multiple of MR): MC × KC f32 is 256 KiB,
/// which stays in L2 while the panels sweep over it.
const MC: usize = 256;

/// Largest block of W rows per task: its packed copy, NC × k f32, is 1 MiB for
/// k = 2048 (L2) and 4 MiB for k = 8192 (L3; each micro-panel is then fetched once
/// into L1 and reused by every row of X).
const NC_MAX: usize = 128;

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

/// Element types of packed operands: plain 4-byte values for which every bit pattern
/// is valid, so packing scratch memory can be reused as any of them.
///
/// # Safety
/// Implementors must be 4 bytes, at most 4-aligned, and valid for any bit pattern.
pub(crate) unsafe trait Plain: Copy + Default + Send + Sync {}
// SAFETY: f32 and u32 are 4-byte plain values valid for every bit pattern.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}

/// One instruction set's register-blocked micro-kernel and the packing it needs.
pub(crate) trait Microkernel {
    /// Element of packed X the kernel broadcasts (f32, or a `u32` holding a bf16 pair).
    type A: Plain;
    /// Element of a packed weight panel (f32, or a `u32` holding a bf16 pair).
    type B: Plain;
    /// Rows of `X` per tile.
    const MR: usize;
    /// Rows of `W` (columns of `Y`) per tile.
    const NR: usize;
    /// k indices covered by one packed element (1, or 2 for bf16 pairs).
    const KPACK: usize;

    /// The packed X element for k-step `s` of `row`.
    fn a_element(row: &[f32], s: usize) -> Self::A;

    /// Packs `W[rows, :]` as [`packed_len`] describes: for each k-block of KC (at
    /// element offset `k0 / KPACK · panels · NR`), `panels = rows.len().div_ceil(NR)`
    /// panels of `kc.div_ceil(KPACK) × NR` elements, the last one zero-padded.
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set; `dst` must hold
    /// [`packed_len`] elements.
    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [Self::B]);

    /// `tile (+)= A · panel` over `steps` k-steps: `a` points at an MR-row block of
    /// packed X (`steps × MR`), `b` at a panel (`steps × NR`).
    ///
    /// # Safety
    /// The CPU must support the kernel's instruction set; `a` and `b` must be readable
    /// for `steps` k-steps, and `tile` must be valid as in [`Tile::write_from`].
    unsafe fn tile(steps: usize, a: *const Self::A, b: *const Self::B, tile: &Tile);
}

/// X packed for the micro-kernel: block `i / MR` holds rows `i..i + MR` k-major,
/// `data[(block · steps + s) · MR + r]`, with rows past `m` zero.
struct PackedA<T> {
    data: Vec<T>,
    steps: usize,
    mr: usize,
    kpack: usize,
}

impl<T: Plain> PackedA<T> {
    fn new<K: Microkernel<A = T>>(p: &Problem<'_>) -> Self {
        let (mr, kpack) = (K::MR, K::KPACK);
        let steps = p.k.div_ceil(kpack);
        let mut data = vec![T::default(); p.m.div_ceil(mr) * steps * mr];
        data.par_chunks_mut(steps * mr)
            .enumerate()
            .for_each(|(block, dst)| {
                for (r, row) in p.x.chunks_exact(p.k).skip(block * mr).take(mr).enumerate() {
                    for (s, line) in dst.chunks_exact_mut(mr).enumerate() {
                        line[r] = K::a_element(row, s);
                    }
                }
            });
        PackedA {
            data,
            steps,
            mr,
            kpack,
        }
    }

    /// The block holding row `i` (a multiple of MR), from column `k0` (a multiple of KC).
    fn ptr(&self, i: usize, k0: usize) -> *const T {
        self.data[(i / self.mr * self.steps + k0 / self.kpack) * self.mr..].as_ptr()
    }
}

/// Runs the blocked strategy with micro-kernel `K` on the global rayon pool.
///
/// # Safety
/// The CPU must support `K`'s instruction set.
pub(crate) unsafe fn run<K: Microkernel>(p: &Problem<'_>, out: OutPtr) {
    let a = PackedA::new::<K>(p);
    let threads = rayon::current_num_threads();
    let nc =
        p.n.div_ceil(threads * TASKS_PER_THREAD)
            .next_multiple_of(K::NR)
            .min(NC_MAX.max(K::NR));
    let blocks = p.n.div_ceil(nc);
    let task = |block: usize| {
        let rows = block * nc..((block + 1) * nc).min(p.n);
        with_scratch(packed_len(rows.len(), p.k, K::NR, K::KPACK), |packed| {
            // SAFETY: CPU support is the caller's guarantee; `rows` is this task's
            // own set of Y columns.
            unsafe { run_block::<K>(p, &a, rows, packed, out) }
        });
    };
    if blocks == 1 {
        task(0);
    } else {
        (0..blocks).into_par_iter().for_each(task);
    }
}

/// Elements of a packed copy of `rows` rows of W (see [`Microkernel::pack`]).
fn packed_len(rows: usize, k: usize, nr: usize, kpack: usize) -> usize {
    let full = k / KC * KC;
    rows.div_ceil(nr) * nr * (full / kpack + (k - full).div_ceil(kpack))
}

/// A cache line of packing scratch; the alignment makes every panel start on a line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

thread_local! {
    /// Per-thread packing scratch, kept across calls: a packed W block is up to
    /// `NC_MAX × k` f32 (4 MiB at k = 8192), and reallocating and zeroing it per task
    /// cost more than packing it for small batches.
    static SCRATCH: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of this thread's packing scratch (stale contents).
fn with_scratch<T: Plain>(len: usize, f: impl FnOnce(&mut [T])) {
    SCRATCH.with_borrow_mut(|lines| {
        let needed = (len * size_of::<T>()).div_ceil(size_of::<Line>());
        if lines.len() < needed {
            lines.resize(needed, Line([0; 16]));
        }
        // SAFETY: the lines are initialised, 64-aligned and hold at least `len` `T`s,
        // and `T: Plain` is valid for any bit pattern; the borrow of `lines` keeps the
        // memory exclusively ours while `f` runs.
        let scratch =
            unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<T>(), len) };
        f(scratch);
    });
}

/// All of `Y[:, rows]`: pack these W rows, then sweep X over them k-block by k-block.
unsafe fn run_block<K: Microkernel>(
    p: &Problem<'_>,
    a: &PackedA<K::A>,
    rows: Range<usize>,
    packed: &mut [K::B],
    out: OutPtr,
) {
    let panels = rows.len().div_ceil(K::NR);
    let mc = (MC / K::MR).max(1) * K::MR;
    K::pack(p.w, p.k, rows.clone(), packed);
    for k0 in (0..p.k).step_by(KC) {
        let steps = KC.min(p.k - k0).div_ceil(K::KPACK);
        let block = &packed[k0 / K::KPACK * panels * K::NR..];
        for i0 in (0..p.m).step_by(mc) {
            let i_end = (i0 + mc).min(p.m);
            for panel in 0..panels {
                let b = block[panel * steps * K::NR..].as_ptr();
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
                    K::tile(steps, a.ptr(i, k0), b, &tile);
                }
            }
        }
    }
}

/// [`Microkernel::a_element`] for f32 kernels.
#[inline(always)]
pub(crate) fn f32_element(row: &[f32], s: usize) -> f32 {
    row[s]
}

/// [`Microkernel::a_element`] for the `Bf16Dot` kernel: columns `2s` and `2s + 1`
/// rounded to bf16 (nearest even) and packed low-then-high into a `u32`, zero past
/// the end of the row.
#[inline(always)]
pub(crate) fn bf16_pair_element(row: &[f32], s: usize) -> u32 {
    let bits = |c: usize| {
        row.get(c)
            .map_or(0, |&v| u32::from(half::bf16::from_f32(v).to_bits()))
    };
    bits(2 * s) | (bits(2 * s + 1) << 16)
}

/// Converts a run of weights to f32; one per instruction set.
pub(crate) type ConvertFn = unsafe fn(WeightSlice<'_>, &mut [f32]);

/// [`Microkernel::pack`] for f32 kernels without a vectorised transpose: converts
/// each W row, one k-block segment at a time, with `convert` (vectorised), then
/// scatters it into its panel column.
///
/// # Safety
/// The CPU must support `convert`'s instruction set.
pub(crate) unsafe fn pack_f32(
    w: WeightSlice<'_>,
    k: usize,
    rows: Range<usize>,
    nr: usize,
    dst: &mut [f32],
    convert: ConvertFn,
) {
    let panels = rows.len().div_ceil(nr);
    let mut segment = [0.0f32; KC];
    for (index, r) in rows.clone().enumerate() {
        let (panel, jj) = (index / nr, index % nr);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            convert(w.slice(r * k + k0..r * k + k0 + kc), &mut segment[..kc]);
            let start = k0 * panels * nr + panel * kc * nr;
            for (line, &v) in dst[start..start + kc * nr]
                .chunks_exact_mut(nr)
                .zip(&segment[..kc])
            {
                line[jj] = v;
            }
        }
    }
    zero_pad(rows.len(), k, nr, 1, dst);
}

/// [`Microkernel::pack`] for the `Bf16Dot` kernel: W rows stay bf16 and are packed as
/// `u32` pairs `(w[j][2s], w[j][2s+1])`, the operand layout of `vdpbf16ps`; an odd
/// last k is paired with zero.
pub(crate) fn pack_bf16_pairs(
    w: &[half::bf16],
    k: usize,
    rows: Range<usize>,
    nr: usize,
    dst: &mut [u32],
) {
    let panels = rows.len().div_ceil(nr);
    for (index, r) in rows.clone().enumerate() {
        let (panel, jj) = (index / nr, index % nr);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let steps = kc.div_ceil(2);
            let src = &w[r * k + k0..r * k + k0 + kc];
            let start = k0 / 2 * panels * nr + panel * steps * nr;
            let mut lines = dst[start..start + steps * nr].chunks_exact_mut(nr);
            let (pairs, rest) = src.as_chunks::<2>();
            // `pairs` first: zip stops on it without consuming the line the odd tail needs.
            for (pair, line) in pairs.iter().zip(lines.by_ref()) {
                line[jj] = u32::from(pair[0].to_bits()) | (u32::from(pair[1].to_bits()) << 16);
            }
            if let (Some(line), [last]) = (lines.next(), rest) {
                line[jj] = u32::from(last.to_bits());
            }
        }
    }
    zero_pad(rows.len(), k, nr, 2, dst);
}

/// Zeroes the padding columns of the last panel of every k-block when `rows` is not
/// a multiple of `nr`.
fn zero_pad<T: Copy + Default>(rows: usize, k: usize, nr: usize, kpack: usize, dst: &mut [T]) {
    let used = rows % nr;
    if used == 0 {
        return;
    }
    let panels = rows.div_ceil(nr);
    for k0 in (0..k).step_by(KC) {
        let steps = KC.min(k - k0).div_ceil(kpack);
        let start = k0 / kpack * panels * nr + (panels - 1) * steps * nr;
        for line in dst[start..start + steps * nr].chunks_exact_mut(nr) {
            line[used..].fill(T::default());
        }
    }
}
