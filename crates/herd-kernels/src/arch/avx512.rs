//! AVX-512 kernels: 16 f32 lanes, 32 vector registers, masked loads for k tails.
//!
//! bf16 widens exactly by putting its 16 bits in the top half of an f32: zero-extend
//! and shift for 16 weights, or, in the streaming kernel's main loop, a shift and a
//! mask that split a whole 64-byte line into its 16 even and 16 odd weights. f16 uses
//! `vcvtph2ps` (exact). The `Bf16Dot` micro-kernel additionally needs AVX512_BF16 for
//! `vdpbf16ps`.

use std::arch::x86_64::*;
use std::ops::Range;

use half::{bf16, f16};

use crate::blocked::{bf16_pair_element, f32_element, pack_bf16_pairs, Microkernel, Tile, KC};
use crate::problem::{OutPtr, Problem};
use crate::stream::{row_groups, RowKernel};
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
    /// Weights per 64-byte cache line: the unit of the streaming kernel's main loop.
    const LINE: usize;

    /// Loads 16 consecutive weights (unaligned).
    unsafe fn load(p: *const Self) -> __m512;

    /// Loads the first `len < 16` weights at `p`, zeroing the other lanes; masked-off
    /// lanes are not read, so this never touches memory past the slice.
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512;

    /// `acc[i][r] += x_i · w_r` over one line (`LINE` weights) of R rows of W (row
    /// stride `k`) and M rows of X (row stride `ldx`), with X in the layout
    /// [`Stream::prepare`] made for this dtype.
    #[inline(always)]
    unsafe fn line<const M: usize, const R: usize>(
        acc: &mut [[__m512; R]; M],
        x: *const f32,
        ldx: usize,
        w: *const Self,
        k: usize,
    ) {
        for sub in (0..Self::LINE).step_by(LANES) {
            step::<Self, M, R>(acc, x.add(sub), ldx, w.add(sub), k);
        }
    }
}

impl Lanes for f32 {
    const LINE: usize = 16;

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
    const LINE: usize = 32;

    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m512 {
        widen_bf16(_mm256_loadu_si256(p.cast()))
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512 {
        widen_bf16(_mm256_maskz_loadu_epi16(mask(len), p.cast()))
    }

    /// A line of 32 bf16 read as 16 `u32` lanes holds an even weight in the low half
    /// and an odd one in the high half of each lane, so `<< 16` gives the even weights
    /// and `& 0xFFFF0000` the odd ones as exact f32: two cheap ALU ops per 32 weights
    /// instead of a zero-extend shuffle and a shift per 16. X was de-interleaved to
    /// match (16 even columns, then 16 odd ones, per 32).
    #[inline(always)]
    unsafe fn line<const M: usize, const R: usize>(
        acc: &mut [[__m512; R]; M],
        x: *const f32,
        ldx: usize,
        w: *const Self,
        k: usize,
    ) {
        let high = _mm512_set1_epi32(0xFFFF_0000_u32 as i32);
        let mut even = [_mm512_setzero_ps(); R];
        let mut odd = [_mm512_setzero_ps(); R];
        for r in 0..R {
            let v = _mm512_loadu_si512(w.add(r * k).cast());
            even[r] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
            odd[r] = _mm512_castsi512_ps(_mm512_and_si512(v, high));
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let xe = _mm512_loadu_ps(x.add(i * ldx));
            let xo = _mm512_loadu_ps(x.add(i * ldx + LANES));
            for r in 0..R {
                acc_row[r] = _mm512_fmadd_ps(xe, even[r], acc_row[r]);
                acc_row[r] = _mm512_fmadd_ps(xo, odd[r], acc_row[r]);
            }
        }
    }
}

impl Lanes for f16 {
    const LINE: usize = 32;

    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }

    #[inline(always)]
    unsafe fn load_partial(p: *const Self, len: usize) -> __m512 {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(len), p.cast()))
    }
}

/// Rows of `X` per streaming block: 4 × 4 accumulators, 8 weight vectors and two
/// activation vectors use 26 of the 32 registers.
const STREAM_MR: usize = 4;
/// Rows of `W` per streaming block.
const STREAM_NR: usize = 4;

/// The AVX-512 streaming (decode) kernel.
pub(crate) struct Stream;

impl RowKernel for Stream {
    /// For bf16 weights, X with each 32 columns de-interleaved (even, then odd), as
    /// [`Lanes::line`] for bf16 wants it, row stride `k / 32 * 32`; empty otherwise.
    type Shared = Vec<f32>;

    unsafe fn prepare(p: &Problem<'_>) -> Vec<f32> {
        match p.w {
            WeightSlice::Bf16(_) => deinterleave(p.x, p.m, p.k),
            _ => Vec::new(),
        }
    }

    unsafe fn rows(p: &Problem<'_>, shared: &Vec<f32>, rows: Range<usize>, out: OutPtr) {
        stream_rows(p, shared, rows, out);
    }
}

/// X's full 32-column groups with even columns first, then odd ones.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn deinterleave(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let k32 = k / 32 * 32;
    if k32 == 0 {
        return Vec::new();
    }
    let mut out = vec![0.0f32; m * k32];
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (src, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(k32)) {
        for (s, d) in src.chunks_exact(32).zip(dst.chunks_exact_mut(32)) {
            let (lo, hi) = (
                _mm512_loadu_ps(s.as_ptr()),
                _mm512_loadu_ps(s[16..].as_ptr()),
            );
            _mm512_storeu_ps(d.as_mut_ptr(), _mm512_permutex2var_ps(lo, even, hi));
            _mm512_storeu_ps(d[16..].as_mut_ptr(), _mm512_permutex2var_ps(lo, odd, hi));
        }
    }
    out
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn stream_rows(p: &Problem<'_>, xl: &[f32], rows: Range<usize>, out: OutPtr) {
    // Line-loop X: the de-interleaved copy for bf16, X itself otherwise.
    let (xl, ldx) = if xl.is_empty() {
        (p.x, p.k)
    } else {
        (xl, p.k / 32 * 32)
    };
    let xl = Lines {
        x: xl.as_ptr(),
        ldx,
    };
    match p.w {
        WeightSlice::F32(w) => rows_of(p, xl, w.as_ptr(), rows, out),
        WeightSlice::Bf16(w) => rows_of(p, xl, w.as_ptr(), rows, out),
        WeightSlice::F16(w) => rows_of(p, xl, w.as_ptr(), rows, out),
        WeightSlice::Quant(..) => unreachable!("quantized weights take the qmatmul kernels"),
    }
}

/// X as the line loop reads it: base pointer and row stride.
#[derive(Clone, Copy)]
struct Lines {
    x: *const f32,
    ldx: usize,
}

#[inline(always)]
unsafe fn rows_of<T: Lanes>(
    p: &Problem<'_>,
    xl: Lines,
    w: *const T,
    rows: Range<usize>,
    out: OutPtr,
) {
    for group in row_groups(rows, p.k, size_of::<T>(), STREAM_NR) {
        let mut i = 0;
        while i < p.m {
            let mr = (p.m - i).min(STREAM_MR);
            let mut j = group.start;
            while j < group.end {
                let full = group.end - j >= STREAM_NR;
                match (mr, full) {
                    (4, true) => block::<T, 4, STREAM_NR>(p, xl, w, i, j, out),
                    (3, true) => block::<T, 3, STREAM_NR>(p, xl, w, i, j, out),
                    (2, true) => block::<T, 2, STREAM_NR>(p, xl, w, i, j, out),
                    (_, true) => block::<T, 1, STREAM_NR>(p, xl, w, i, j, out),
                    (4, false) => block::<T, 4, 1>(p, xl, w, i, j, out),
                    (3, false) => block::<T, 3, 1>(p, xl, w, i, j, out),
                    (2, false) => block::<T, 2, 1>(p, xl, w, i, j, out),
                    (_, false) => block::<T, 1, 1>(p, xl, w, i, j, out),
                }
                j += if full { STREAM_NR } else { 1 };
            }
            i += mr;
        }
    }
}

/// How far ahead of the current line each W row is prefetched. A core keeps too few
/// demand misses in flight to saturate DRAM on its own (the out-of-order window fills
/// with the conversion and FMA uops first), so the streaming loop asks for 16 lines
/// per row ahead; shorter distances measured slower, longer ones no faster.
const PREFETCH_BYTES: usize = 1024;

/// `Y[i0..i0+M][j0..j0+R]`: M rows of `X` against R rows of `W`, M·R accumulators.
#[inline(always)]
unsafe fn block<T: Lanes, const M: usize, const R: usize>(
    p: &Problem<'_>,
    xl: Lines,
    w: *const T,
    i0: usize,
    j0: usize,
    out: OutPtr,
) {
    let k = p.k;
    let x = p.x.as_ptr().add(i0 * k);
    let (xl, ldx) = (xl.x.add(i0 * xl.ldx), xl.ldx);
    let w = w.add(j0 * k);
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    // Main loop: one cache line of each W row per iteration, prefetching ahead. The
    // prefetch address may run past the end of W; prefetches never fault.
    let lines = k / T::LINE * T::LINE;
    let mut kk = 0;
    while kk < lines {
        for r in 0..R {
            _mm_prefetch::<_MM_HINT_T0>(w.add(r * k + kk).wrapping_byte_add(PREFETCH_BYTES).cast());
        }
        T::line::<M, R>(&mut acc, xl.add(kk), ldx, w.add(kk), k);
        kk += T::LINE;
    }
    while kk + LANES <= k {
        step::<T, M, R>(&mut acc, x.add(kk), k, w.add(kk), k);
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

/// One 16-lane step: `acc[i][r] += x_i[0..16] · w_r[0..16]`, X row stride `ldx`, W
/// row stride `k`.
#[inline(always)]
unsafe fn step<T: Lanes, const M: usize, const R: usize>(
    acc: &mut [[__m512; R]; M],
    x: *const f32,
    ldx: usize,
    w: *const T,
    k: usize,
) {
    let mut wv = [_mm512_setzero_ps(); R];
    for (r, v) in wv.iter_mut().enumerate() {
        *v = T::load(w.add(r * k));
    }
    for (i, acc_row) in acc.iter_mut().enumerate() {
        let xv = _mm512_loadu_ps(x.add(i * ldx));
        for (a, &wr) in acc_row.iter_mut().zip(&wv) {
            *a = _mm512_fmadd_ps(xv, wr, *a);
        }
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
                let v = if tile.accumulate {
                    _mm512_add_ps(_mm512_loadu_ps(c), v)
                } else {
                    v
                };
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

    fn a_element(row: &[f32], s: usize) -> f32 {
        f32_element(row, s)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [f32]) {
        pack_transposed(w, k, rows, dst);
    }

    unsafe fn tile(steps: usize, a: *const f32, b: *const f32, tile: &Tile) {
        tile_f32(steps, a, b, tile);
    }
}

/// [`Microkernel::pack`] for [`Exact`]: converts 16 rows × 16 columns of W at a time
/// and transposes them in registers, so each weight costs a quarter of a shuffle
/// instead of a scalar store; the 16 rows are read as 16 sequential streams.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pack_transposed(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [f32]) {
    match w {
        WeightSlice::F32(w) => pack_rows(w, k, rows, dst),
        WeightSlice::Bf16(w) => pack_rows(w, k, rows, dst),
        WeightSlice::F16(w) => pack_rows(w, k, rows, dst),
        WeightSlice::Quant(..) => unreachable!("quantized weights take the qmatmul kernels"),
    }
}

#[inline(always)]
unsafe fn pack_rows<T: Lanes>(w: &[T], k: usize, rows: Range<usize>, dst: &mut [f32]) {
    let panels = rows.len().div_ceil(NR);
    assert!(dst.len() >= panels * NR * k, "packed buffer too small");
    // Each panel is two groups of 16 rows; rows past the end pack as zeros.
    for group in 0..panels * 2 {
        let r0 = rows.start + group * LANES;
        let valid = rows.end.saturating_sub(r0).min(LANES);
        let (panel, half) = (group / 2, group % 2);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let out = dst
                .as_mut_ptr()
                .add(k0 * panels * NR + panel * kc * NR + half * LANES);
            for kk in (0..kc).step_by(LANES) {
                let len = LANES.min(kc - kk);
                let mut v = [_mm512_setzero_ps(); LANES];
                for (r, v) in v.iter_mut().enumerate().take(valid) {
                    let src = w.as_ptr().add((r0 + r) * k + k0 + kk);
                    *v = if len == LANES {
                        T::load(src)
                    } else {
                        T::load_partial(src, len)
                    };
                }
                transpose16(&mut v);
                for (t, &v) in v.iter().enumerate().take(len) {
                    _mm512_storeu_ps(out.add((kk + t) * NR), v);
                }
            }
        }
    }
}

/// Transposes a 16 × 16 f32 block held as 16 row vectors: 4 shuffle stages, 64 shuffles.
#[inline(always)]
unsafe fn transpose16(v: &mut [__m512; 16]) {
    // Stage 1: interleave the 32-bit elements of row pairs.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // Stage 2: interleave 64-bit pairs; u[4g + j] now holds, in 128-bit lane L,
    // rows 4g..4g+4 of column 4L + j.
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a0, a1, b0, b1) = (
            pd(t[4 * g]),
            pd(t[4 * g + 1]),
            pd(t[4 * g + 2]),
            pd(t[4 * g + 3]),
        );
        u[4 * g] = ps(_mm512_unpacklo_pd(a0, b0));
        u[4 * g + 1] = ps(_mm512_unpackhi_pd(a0, b0));
        u[4 * g + 2] = ps(_mm512_unpacklo_pd(a1, b1));
        u[4 * g + 3] = ps(_mm512_unpackhi_pd(a1, b1));
    }
    // Stages 3-4: a 4 × 4 transpose of 128-bit lanes across u[j], u[4+j], u[8+j],
    // u[12+j]; lane L of the result is column 4L + j.
    for j in 0..4 {
        let s0 = _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j]);
        let s1 = _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j]);
        let s2 = _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j]);
        let s3 = _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j]);
        v[j] = _mm512_shuffle_f32x4::<0x88>(s0, s2);
        v[4 + j] = _mm512_shuffle_f32x4::<0xDD>(s0, s2);
        v[8 + j] = _mm512_shuffle_f32x4::<0x88>(s1, s3);
        v[12 + j] = _mm512_shuffle_f32x4::<0xDD>(s1, s3);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn tile_f32(steps: usize, a: *const f32, b: *const f32, tile: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..steps {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + LANES));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(kk * MR + i));
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
    type A = u32;
    type B = u32;
    const MR: usize = MR;
    const NR: usize = NR;
    const KPACK: usize = 2;

    fn a_element(row: &[f32], s: usize) -> u32 {
        bf16_pair_element(row, s)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [u32]) {
        match w {
            WeightSlice::Bf16(w) => pack_bf16_pairs(w, k, rows, NR, dst),
            _ => unreachable!("Bf16Dot is only dispatched for bf16 weights"),
        }
    }

    unsafe fn tile(steps: usize, a: *const u32, b: *const u32, tile: &Tile) {
        tile_bf16(steps, a, b, tile);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn tile_bf16(steps: usize, a: *const u32, b: *const u32, tile: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for s in 0..steps {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * NR).cast()));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(s * NR + LANES).cast()));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(s * MR + i) as i32));
            acc_row[0] = _mm512_dpbf16_ps(acc_row[0], av, b0);
            acc_row[1] = _mm512_dpbf16_ps(acc_row[1], av, b1);
        }
    }
    store_tile(&acc, tile);
}
