//! AVX-512 kernels: 16 f32 lanes, 32 vector registers, masked loads for k tails.
//!
//! bf16 widens by zero-extending 16-bit lanes to 32 bits and shifting left 16 (what
//! `vcvtpbh2ps`-style conversions do); f16 uses `vcvtph2ps`. Both are exact. The
//! `Bf16Dot` micro-kernel additionally needs AVX512_BF16 for `vdpbf16ps`.

use std::arch::x86_64::*;
use std::borrow::Cow;
use std::ops::Range;

use half::{bf16, f16};

use crate::blocked::{bf16_rows, pack_bf16_pairs, pack_f32, AOperand, Microkernel, Tile};
use crate::problem::{OutPtr, Problem};
use crate::WeightSlice;

/// f32 lanes per vector.
const LANES: usize = 16;

/// Mask with the low `len` of 16 lanes set.
#[inline(always)]
fn mask(len: usize) -> __mmask16 {
    debug_assert!(len <= LANES);
    ((1u32 << len) - 1) as __mmask16
}

/// A stored weight type loaded as 16 f32 lanes.
trait Lanes: Copy {
    /// Loads 16 consecutive weights (unaligned).
    unsafe fn load(p: *const Self) -> __m512;
    /// Loads the first `len < 16` weights at `p`, zeroing the other lanes; masked-off
    /// lanes are not read, so this never touches memory past the slice.
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512;
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m512 {
        _mm512_loadu_ps(p)
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512 {
        _mm512_maskz_loadu_ps(mask(len), p)
    }
}

#[inline(always)]
unsafe fn widen_bf16(h: __m256i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

impl Lanes for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m512 {
        widen_bf16(_mm256_loadu_si256(p.cast()))
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512 {
        widen_bf16(_mm256_maskz_loadu_epi16(mask(len), p.cast()))
    }
}

impl Lanes for f16 {
    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512 {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(len), p.cast()))
    }
}

/// Rows of `X` per streaming block: 4 × 4 accumulators, 4 weight vectors and one
/// activation vector use 21 of the 32 registers.
const STREAM_MR: usize = 4;
/// Rows of `W` per streaming block.
const STREAM_NR: usize = 4;

/// Streaming kernel: `Y[i][j]` for all `i` and every `j` in `rows`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL; `rows` must lie in `0..n`, and the caller
/// must own those columns of `Y`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn stream_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
    match p.w {
        WeightSlice::F32(w) => rows_of(p, w.as_ptr(), rows, out),
        WeightSlice::Bf16(w) => rows_of(p, w.as_ptr(), rows, out),
        WeightSlice::F16(w) => rows_of(p, w.as_ptr(), rows, out),
    }
}

#[inline(always)]
unsafe fn rows_of<T: Lanes>(p: &Problem<'_>, w: *const T, rows: Range<usize>, out: OutPtr) {
    let mut j = rows.start;
    while j < rows.end {
        let full = rows.end - j >= STREAM_NR;
        let mut i = 0;
        while i < p.m {
            let mr = (p.m - i).min(STREAM_MR);
            match (mr, full) {
                (4, true) => block::<T, 4, STREAM_NR>(p, w, i, j, out),
                (3, true) => block::<T, 3, STREAM_NR>(p, w, i, j, out),
                (2, true) => block::<T, 2, STREAM_NR>(p, w, i, j, out),
                (_, true) => block::<T, 1, STREAM_NR>(p, w, i, j, out),
                (4, false) => block::<T, 4, 1>(p, w, i, j, out),
                (3, false) => block::<T, 3, 1>(p, w, i, j, out),
                (2, false) => block::<T, 2, 1>(p, w, i, j, out),
                (_, false) => block::<T, 1, 1>(p, w, i, j, out),
            }
            i += mr;
        }
        j += if full { STREAM_NR } else { 1 };
    }
}

/// `Y[i0..i0+M][j0..j0+R]`: M rows of `X` against R rows of `W`, M·R accumulators.
#[inline(always)]
unsafe fn block<T: Lanes, const M: usize, const R: usize>(
    p: &Problem<'_>,
    w: *const T,
    i0: usize,
    j0: usize,
    out: OutPtr,
) {
    let k = p.k;
    let x = p.x.as_ptr().add(i0 * k);
    let w = w.add(j0 * k);
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    let mut kk = 0;
    while kk + LANES <= k {
        let mut wv = [_mm512_setzero_ps(); R];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = T::load(w.add(r * k + kk));
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let xv = _mm512_loadu_ps(x.add(i * k + kk));
            for (a, &wr) in acc_row.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(xv, wr, *a);
            }
        }
        kk += LANES;
    }
    if kk < k {
        let len = k - kk;
        let mut wv = [_mm512_setzero_ps(); R];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = T::load_partial(w.add(r * k + kk), len);
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let xv = f32::load_partial(x.add(i * k + kk), len);
            for (a, &wr) in acc_row.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(xv, wr, *a);
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate() {
        for (r, &a) in acc_row.iter().enumerate() {
            *out.at(i0 + i, j0 + r) = _mm512_reduce_add_ps(a);
        }
    }
}

/// Converts weights to f32 for packing.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn convert(src: WeightSlice<'_>, dst: &mut [f32]) {
    #[inline(always)]
    unsafe fn convert_from<T: Lanes>(src: &[T], dst: &mut [f32]) {
        let (chunks, tail) = src.as_chunks::<LANES>();
        for (c, d) in chunks.iter().zip(dst.chunks_exact_mut(LANES)) {
            _mm512_storeu_ps(d.as_mut_ptr(), T::load(c.as_ptr()));
        }
        if !tail.is_empty() {
            let done = chunks.len() * LANES;
            let v = T::load_partial(tail.as_ptr(), tail.len());
            _mm512_mask_storeu_ps(dst[done..].as_mut_ptr(), mask(tail.len()), v);
        }
    }
    match src {
        WeightSlice::F32(w) => dst.copy_from_slice(w),
        WeightSlice::Bf16(w) => convert_from(w, dst),
        WeightSlice::F16(w) => convert_from(w, dst),
    }
}

/// Rows of `X` per blocked tile.
const MR: usize = 8;
/// Rows of `W` per blocked tile: two vectors, so 8 × 2 accumulators + 2 weight
/// vectors + 1 broadcast use 19 of the 32 registers, and each k costs 2 vector loads
/// and 8 broadcasts for 16 FMAs.
const NR: usize = 32;

/// Stores the `MR × 2` accumulators of a tile into `Y`: straight vector
/// read-modify-writes for a full tile, through a buffer for a partial one.
#[inline(always)]
unsafe fn store_tile(acc: &[[__m512; 2]; MR], tile: &Tile) {
    if tile.rows == MR && tile.cols == NR {
        for (i, acc_row) in acc.iter().enumerate() {
            for (h, &v) in acc_row.iter().enumerate() {
                let c = tile.ptr.add(i * tile.ldc + h * LANES);
                let v = if tile.accumulate { _mm512_add_ps(_mm512_loadu_ps(c), v) } else { v };
                _mm512_storeu_ps(c, v);
            }
        }
    } else {
        let mut buf = [0.0f32; MR * NR];
        for (i, acc_row) in acc.iter().enumerate() {
            for (h, &v) in acc_row.iter().enumerate() {
                _mm512_storeu_ps(buf.as_mut_ptr().add(i * NR + h * LANES), v);
            }
        }
        tile.write_from(&buf, NR);
    }
}

/// The exact AVX-512 blocked micro-kernel: 8 rows of `X` × 32 rows of `W` in f32.
pub(crate) struct Exact;

impl Microkernel for Exact {
    type A = f32;
    type B = f32;
    const MR: usize = MR;
    const NR: usize = NR;
    const KPACK: usize = 1;

    unsafe fn prepare_a<'a>(p: &Problem<'a>) -> AOperand<'a, f32> {
        AOperand::new(Cow::Borrowed(p.x), p.m, p.k, MR)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, ks: Range<usize>, dst: &mut [f32]) {
        pack_f32(w, k, rows, ks, NR, dst, convert);
    }

    unsafe fn tile(steps: usize, a: *const f32, lda: usize, b: *const f32, tile: &Tile) {
        tile_f32(steps, a, lda, b, tile);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn tile_f32(steps: usize, a: *const f32, lda: usize, b: *const f32, tile: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..steps {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + LANES));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(i * lda + kk));
            acc_row[0] = _mm512_fmadd_ps(av, b0, acc_row[0]);
            acc_row[1] = _mm512_fmadd_ps(av, b1, acc_row[1]);
        }
    }
    store_tile(&acc, tile);
}

/// The opt-in `Bf16Dot` micro-kernel: `X` rounded to bf16, bf16 weight pairs, and
/// `vdpbf16ps` doing two exact products per lane accumulated in f32.
pub(crate) struct Bf16Dot;

impl Microkernel for Bf16Dot {
    type A = bf16;
    type B = u32;
    const MR: usize = MR;
    const NR: usize = NR;
    const KPACK: usize = 2;

    unsafe fn prepare_a<'a>(p: &Problem<'a>) -> AOperand<'a, bf16> {
        // SAFETY: this kernel is only selected when the CPU has AVX512_BF16.
        let (rows, lda) = bf16_rows(p, |src, dst| unsafe { round_to_bf16(src, dst) });
        AOperand::new(Cow::Owned(rows), p.m, lda, MR)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, ks: Range<usize>, dst: &mut [u32]) {
        match w {
            WeightSlice::Bf16(w) => pack_bf16_pairs(w, k, rows, ks, NR, dst),
            _ => unreachable!("Bf16Dot is only dispatched for bf16 weights"),
        }
    }

    unsafe fn tile(steps: usize, a: *const bf16, lda: usize, b: *const u32, tile: &Tile) {
        tile_bf16(steps, a, lda, b, tile);
    }
}

/// Rounds f32 to bf16, nearest-even (`vcvtneps2bf16`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn round_to_bf16(src: &[f32], dst: &mut [bf16]) {
    let (chunks, tail) = src.as_chunks::<LANES>();
    for (c, d) in chunks.iter().zip(dst.chunks_exact_mut(LANES)) {
        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(c.as_ptr())));
        _mm256_storeu_si256(d.as_mut_ptr().cast(), h);
    }
    if !tail.is_empty() {
        let done = chunks.len() * LANES;
        let m = mask(tail.len());
        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, tail.as_ptr())));
        _mm256_mask_storeu_epi16(dst[done..].as_mut_ptr().cast(), m, h);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn tile_bf16(steps: usize, a: *const bf16, lda: usize, b: *const u32, tile: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for s in 0..steps {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * NR).cast()));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * NR + LANES).cast()));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let pair = a.add(i * lda + 2 * s).cast::<i32>().read_unaligned();
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
            acc_row[0] = _mm512_dpbf16_ps(acc_row[0], av, b0);
            acc_row[1] = _mm512_dpbf16_ps(acc_row[1], av, b1);
        }
    }
    store_tile(&acc, tile);
}
