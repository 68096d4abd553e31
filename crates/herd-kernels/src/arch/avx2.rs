//! AVX2 + FMA + F16C kernels: 8 f32 lanes, 16 vector registers.
//!
//! bf16 widens by zero-extending 16-bit lanes to 32 bits and shifting left 16; f16
//! uses F16C `vcvtph2ps`. Both conversions are exact.

use std::arch::x86_64::*;
use std::ops::Range;

use half::{bf16, f16};

use crate::blocked::{f32_element, pack_f32, Microkernel, Tile};
use crate::problem::{OutPtr, Problem};
use crate::stream::{row_groups, RowKernel};
use crate::WeightSlice;

/// f32 lanes per vector.
const LANES: usize = 8;

/// A stored weight type loaded as 8 f32 lanes.
trait Lanes: Copy + Default {
    /// Loads 8 consecutive weights (unaligned).
    unsafe fn load(p: *const Self) -> __m256;
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m256 {
        _mm256_loadu_ps(p)
    }
}

impl Lanes for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m256 {
        let h = _mm_loadu_si128(p.cast());
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
}

impl Lanes for f16 {
    #[inline(always)]
    unsafe fn load(p: *const Self) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
}

/// Loads the `len < 8` weights at `p`, zero-filling the other lanes, without reading
/// past the slice.
#[inline(always)]
unsafe fn load_partial<T: Lanes>(p: *const T, len: usize) -> __m256 {
    let mut buf = [T::default(); LANES];
    std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
    T::load(buf.as_ptr())
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Rows of `X` per streaming block: 2 × 4 accumulators plus 4 weight vectors and one
/// activation vector fit the 16 registers.
const STREAM_MR: usize = 2;
/// Rows of `W` per streaming block.
const STREAM_NR: usize = 4;
/// How far ahead of the current line each W row is prefetched (see the AVX-512
/// kernel for why).
const PREFETCH_BYTES: usize = 1024;

/// The AVX2 streaming (decode) kernel.
pub(crate) struct Stream;

impl RowKernel for Stream {
    type Shared = ();

    unsafe fn prepare(_: &Problem<'_>) {}

    unsafe fn rows(p: &Problem<'_>, _: &(), rows: Range<usize>, out: OutPtr) {
        stream_rows(p, rows, out);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn stream_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
    match p.w {
        WeightSlice::F32(w) => rows_of(p, w.as_ptr(), rows, out),
        WeightSlice::Bf16(w) => rows_of(p, w.as_ptr(), rows, out),
        WeightSlice::F16(w) => rows_of(p, w.as_ptr(), rows, out),
        WeightSlice::Quant(..) => unreachable!("quantized weights take the qmatmul kernels"),
    }
}

#[inline(always)]
unsafe fn rows_of<T: Lanes>(p: &Problem<'_>, w: *const T, rows: Range<usize>, out: OutPtr) {
    for group in row_groups(rows, p.k, size_of::<T>(), STREAM_NR) {
        let mut i = 0;
        while i < p.m {
            let pair = p.m - i >= STREAM_MR;
            let mut j = group.start;
            while j < group.end {
                let full = group.end - j >= STREAM_NR;
                match (pair, full) {
                    (true, true) => block::<T, STREAM_MR, STREAM_NR>(p, w, i, j, out),
                    (false, true) => block::<T, 1, STREAM_NR>(p, w, i, j, out),
                    (true, false) => block::<T, STREAM_MR, 1>(p, w, i, j, out),
                    (false, false) => block::<T, 1, 1>(p, w, i, j, out),
                }
                j += if full { STREAM_NR } else { 1 };
            }
            i += if pair { STREAM_MR } else { 1 };
        }
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
    let mut acc = [[_mm256_setzero_ps(); R]; M];
    // Main loop: one cache line of each W row per iteration, prefetched ahead as in
    // the AVX-512 kernel (prefetches past the end of W never fault).
    let line = 64 / size_of::<T>();
    let lines = k / line * line;
    let mut kk = 0;
    while kk < lines {
        for r in 0..R {
            _mm_prefetch::<_MM_HINT_T0>(w.add(r * k + kk).wrapping_byte_add(PREFETCH_BYTES).cast());
        }
        for sub in (0..line).step_by(LANES) {
            step::<T, M, R>(&mut acc, x.add(kk + sub), w.add(kk + sub), k);
        }
        kk += line;
    }
    while kk + LANES <= k {
        step::<T, M, R>(&mut acc, x.add(kk), w.add(kk), k);
        kk += LANES;
    }
    if kk < k {
        let len = k - kk;
        let mut wv = [_mm256_setzero_ps(); R];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = load_partial(w.add(r * k + kk), len);
        }
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let xv = load_partial(x.add(i * k + kk), len);
            for (a, &wr) in acc_row.iter_mut().zip(&wv) {
                *a = _mm256_fmadd_ps(xv, wr, *a);
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate() {
        for (r, &a) in acc_row.iter().enumerate() {
            *out.at(i0 + i, j0 + r) = hsum(a);
        }
    }
}

/// One 8-lane step: `acc[i][r] += x_i[0..8] · w_r[0..8]`; X and W have row stride `k`.
#[inline(always)]
unsafe fn step<T: Lanes, const M: usize, const R: usize>(
    acc: &mut [[__m256; R]; M],
    x: *const f32,
    w: *const T,
    k: usize,
) {
    let mut wv = [_mm256_setzero_ps(); R];
    for (r, v) in wv.iter_mut().enumerate() {
        *v = T::load(w.add(r * k));
    }
    for (i, acc_row) in acc.iter_mut().enumerate() {
        let xv = _mm256_loadu_ps(x.add(i * k));
        for (a, &wr) in acc_row.iter_mut().zip(&wv) {
            *a = _mm256_fmadd_ps(xv, wr, *a);
        }
    }
}

/// Converts weights to f32 for packing.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn convert(src: WeightSlice<'_>, dst: &mut [f32]) {
    #[inline(always)]
    unsafe fn convert_from<T: Lanes>(src: &[T], dst: &mut [f32]) {
        let (chunks, tail) = src.as_chunks::<LANES>();
        for (c, d) in chunks.iter().zip(dst.chunks_exact_mut(LANES)) {
            _mm256_storeu_ps(d.as_mut_ptr(), T::load(c.as_ptr()));
        }
        let done = chunks.len() * LANES;
        if !tail.is_empty() {
            let mut buf = [0.0f32; LANES];
            _mm256_storeu_ps(buf.as_mut_ptr(), load_partial(tail.as_ptr(), tail.len()));
            dst[done..].copy_from_slice(&buf[..tail.len()]);
        }
    }
    match src {
        WeightSlice::F32(w) => dst.copy_from_slice(w),
        WeightSlice::Bf16(w) => convert_from(w, dst),
        WeightSlice::F16(w) => convert_from(w, dst),
        WeightSlice::Quant(..) => unreachable!("quantized weights take the qmatmul kernels"),
    }
}

/// The AVX2 blocked micro-kernel: 6 rows of `X` × 16 rows of `W`, 12 accumulators.
pub(crate) struct Exact;

impl Microkernel for Exact {
    type A = f32;
    type B = f32;
    const MR: usize = 6;
    const NR: usize = 16;
    const KPACK: usize = 1;

    fn a_element(row: &[f32], s: usize) -> f32 {
        f32_element(row, s)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [f32]) {
        pack_f32(w, k, rows, Self::NR, dst, convert);
    }

    unsafe fn tile(steps: usize, a: *const f32, b: *const f32, tile: &Tile) {
        tile_6x16(steps, a, b, tile);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_6x16(steps: usize, a: *const f32, b: *const f32, tile: &Tile) {
    const MR: usize = Exact::MR;
    const NR: usize = Exact::NR;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for kk in 0..steps {
        let b0 = _mm256_loadu_ps(b.add(kk * NR));
        let b1 = _mm256_loadu_ps(b.add(kk * NR + LANES));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(kk * MR + i));
            acc_row[0] = _mm256_fmadd_ps(av, b0, acc_row[0]);
            acc_row[1] = _mm256_fmadd_ps(av, b1, acc_row[1]);
        }
    }
    if tile.rows == MR && tile.cols == NR {
        for (i, acc_row) in acc.iter().enumerate() {
            for (h, &v) in acc_row.iter().enumerate() {
                let c = tile.ptr.add(i * tile.ldc + h * LANES);
                let v = if tile.accumulate {
                    _mm256_add_ps(_mm256_loadu_ps(c), v)
                } else {
                    v
                };
                _mm256_storeu_ps(c, v);
            }
        }
    } else {
        let mut buf = [0.0f32; MR * NR];
        for (i, acc_row) in acc.iter().enumerate() {
            for (h, &v) in acc_row.iter().enumerate() {
                _mm256_storeu_ps(buf.as_mut_ptr().add(i * NR + h * LANES), v);
            }
        }
        tile.write_from(&buf, NR);
    }
}
