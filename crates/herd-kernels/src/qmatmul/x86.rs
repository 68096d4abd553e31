//! x86 kernels for quantized weights, in two flavours that share everything but the
//! integer dot product: AVX2 (`vpmaddubsw` + `vpmaddwd`) and AVX-512 VNNI
//! (`vpdpbusd`). Both stream on 256-bit registers; only the VNNI prefill GEMM, whose
//! lanes are W rows rather than weights of one group, uses 512 bits.
//!
//! # Why 256 bits for streaming, on AVX-512 too
//!
//! Every ggml format is built from groups of 32 weights that share one scale, and 32
//! weights as bytes are exactly one 256-bit register: a group unpacks into one
//! register, meets the matching 32 quantized activations in one dot instruction, and
//! gives 8 lanes of 4 products that all take the same scale (Q6_K: two scales, one
//! per half). Wider registers would straddle two groups and need a shuffle per group
//! to build their scale lanes. AMD Zen 4 splits 512-bit instructions into 256-bit
//! halves anyway, so the per-weight throughput is the same; what AVX-512 does add is
//! VNNI and 32 registers (EVEX encodes ymm16-31), which allow 4 rows of X × 4 rows
//! of W in registers instead of AVX2's 2 × 4.
//!
//! # Kernels
//!
//! Int8Dot streaming (decode), Q8_0 and Q4_0, per block of 32 weights of a W row:
//!
//! ```text
//! w   = unpack(block)                  32 × u8 (or i8 for Q8_0), element order
//! for each row i of X:
//!   dot = corr_i + Σ₄ w · xq_i         8 × i32, exact (corr folds the format's offset)
//!   acc = fma(f32(dot), d · dx_i, acc)
//! ```
//!
//! k-quants sum a whole super-block in integers instead ([`kquant`]); prefill runs
//! an integer GEMM ([`gemm`]). The exact kernels share the unpacking ([`formats`])
//! and turn each group into four vectors of 8 f32 weights (the same operations as
//! [`crate::dequantize`], so bit-identical to it) and do f32 FMAs with X.

use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::ops::Range;

mod formats;
mod gemm;
mod kquant;

use formats::{i8_lanes, lane, loadu, Format, Q4_0, Q4_K, Q5_K, Q6_K, Q8_0};
pub(crate) use gemm::run as gemm;
use kquant::kq_block;

use super::act::{quantize_row, QRow, QuantizedX, XLayout, XBLOCK};
use super::{has_mins, quant_weights, RowDequant};
use crate::problem::{OutPtr, Problem};
use crate::stream::{row_groups, RowKernel};
use crate::QuantType;

/// Rows of W per kernel block.
const NR: usize = 4;

/// The integer dot product of one instruction-set flavour, and that flavour's entry
/// points (each compiled with its target features).
pub(crate) trait Dot: 'static {
    /// Added to signed (Q8_0) weights so [`Dot::dot_i8`] can multiply them unsigned;
    /// X's `corr` lanes then subtract `I8_OFFSET · Σx` back.
    const I8_OFFSET: i32;
    /// Rows of X per kernel block (registers: `MR · NR` accumulators).
    const MR: usize;
    /// Rows of X per k-quant kernel block (which also keeps `MR · NR` integer
    /// accumulators and scale vectors).
    const KMR: usize;

    /// `acc + Σ₄ w·x` per 32-bit lane, `w` unsigned bytes up to 63 (so AVX2's 16-bit
    /// pair sums cannot saturate), `x` signed bytes in -127..=127.
    unsafe fn dot_u8(acc: __m256i, w: __m256i, x: __m256i) -> __m256i;

    /// As [`Dot::dot_u8`] for signed weights (any `i8`), with `acc` holding
    /// `-I8_OFFSET · Σ₄ x` per lane.
    unsafe fn dot_i8(acc: __m256i, w: __m256i, x: __m256i) -> __m256i;

    /// `acc + p₀·s₀ + p₁·s₁` per 32-bit lane of 16-bit pairs.
    unsafe fn dot_i16(acc: __m256i, p: __m256i, s: __m256i) -> __m256i;

    /// [`Dot::dot_i16`] with `s` the 32 bits at `s` in every lane.
    unsafe fn dot_i16_bcast(acc: __m256i, p: __m256i, s: &i32) -> __m256i;

    /// [`quantize_row`] compiled for this flavour.
    unsafe fn quantize(x: &[f32], layout: XLayout) -> QRow;

    /// The Int8Dot streaming kernel over W rows `rows`.
    unsafe fn int8_rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr);

    /// The exact streaming kernel over W rows `rows`.
    unsafe fn exact_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr);
}

/// AVX2 flavour: `vpmaddubsw` makes 16-bit sums of product pairs, `vpmaddwd` adds
/// pairs of those into 32-bit lanes. Signed Q8_0 weights use the sign trick
/// (`|w| · sign(x, w)`), which keeps pair sums within 16 bits.
pub(crate) struct Avx2;

/// AVX-512 VNNI flavour: `vpdpbusd` does 4 products and the 32-bit accumulation in
/// one instruction. Signed Q8_0 weights are made unsigned with `w ^ 0x80 = w + 128`.
pub(crate) struct Vnni;

impl Dot for Avx2 {
    const I8_OFFSET: i32 = 0;
    const MR: usize = 2;
    const KMR: usize = 1;

    #[inline(always)]
    unsafe fn dot_u8(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(w, x);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    #[inline(always)]
    unsafe fn dot_i8(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        Avx2::dot_u8(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(x, w))
    }

    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
    }

    #[inline(always)]
    unsafe fn dot_i16_bcast(acc: __m256i, p: __m256i, s: &i32) -> __m256i {
        Avx2::dot_i16(acc, p, _mm256_set1_epi32(*s))
    }

    unsafe fn quantize(x: &[f32], layout: XLayout) -> QRow {
        avx2_quantize(x, layout)
    }

    unsafe fn int8_rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
        avx2_int8_rows(p, xq, rows, out);
    }

    unsafe fn exact_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
        avx2_exact_rows(p, rows, out);
    }
}

impl Dot for Vnni {
    const I8_OFFSET: i32 = 128;
    const MR: usize = 4;
    const KMR: usize = 2;

    #[inline(always)]
    unsafe fn dot_u8(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, w, x)
    }

    #[inline(always)]
    unsafe fn dot_i8(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, _mm256_xor_si256(w, _mm256_set1_epi8(-128)), x)
    }

    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, p, s)
    }

    #[inline(always)]
    unsafe fn dot_i16_bcast(acc: __m256i, p: __m256i, s: &i32) -> __m256i {
        vpdpwssd_bcast(acc, p, s)
    }

    unsafe fn quantize(x: &[f32], layout: XLayout) -> QRow {
        vnni_quantize(x, layout)
    }

    unsafe fn int8_rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
        vnni_int8_rows(p, xq, rows, out);
    }

    unsafe fn exact_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
        vnni_exact_rows(p, rows, out);
    }
}

/// `vpdpwssd acc, p, [s]{1to8}`, written as assembly so the broadcast stays a memory
/// operand: from intrinsics, LLVM builds the broadcast with two shuffles and splits
/// the `vpdpwssd` into `vpmaddwd` + `vpaddd`, three more instructions per group.
#[target_feature(enable = "avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn vpdpwssd_bcast(acc: __m256i, p: __m256i, s: &i32) -> __m256i {
    let mut acc = acc;
    std::arch::asm!(
        "vpdpwssd {acc:y}, {p:y}, dword ptr [{s}]{{1to8}}",
        acc = inout(zmm_reg) acc,
        p = in(zmm_reg) p,
        s = in(reg) s,
        options(pure, readonly, nostack, preserves_flags),
    );
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_quantize(x: &[f32], layout: XLayout) -> QRow {
    quantize_row(x, layout)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_int8_rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
    int8_rows::<Avx2>(p, xq, rows, out);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_exact_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
    exact_rows::<Avx2>(p, rows, out);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]) {
    dequant(qtype, bytes, out);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn vnni_quantize(x: &[f32], layout: XLayout) -> QRow {
    quantize_row(x, layout)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn vnni_int8_rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
    int8_rows::<Vnni>(p, xq, rows, out);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn vnni_exact_rows(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
    exact_rows::<Vnni>(p, rows, out);
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn vnni_dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]) {
    dequant(qtype, bytes, out);
}

/// The Int8Dot streaming kernel of flavour `D`.
pub(crate) struct Int8Stream<D>(PhantomData<D>);

impl<D: Dot> RowKernel for Int8Stream<D> {
    type Shared = QuantizedX;

    unsafe fn prepare(p: &Problem<'_>) -> QuantizedX {
        let Some((qtype, _)) = quant_weights(p) else {
            return QuantizedX { rows: Vec::new() };
        };
        let layout = x_layout::<D>(qtype);
        // SAFETY: the caller of `prepare` guarantees the CPU supports flavour `D`.
        QuantizedX::new(p.x, p.k, |row: &[f32]| unsafe { D::quantize(row, layout) })
    }

    unsafe fn rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
        D::int8_rows(p, xq, rows, out);
    }
}

/// The exact streaming kernel of flavour `D`.
pub(crate) struct ExactStream<D>(PhantomData<D>);

impl<D: Dot> RowKernel for ExactStream<D> {
    type Shared = ();

    unsafe fn prepare(_: &Problem<'_>) {}

    unsafe fn rows(p: &Problem<'_>, _: &(), rows: Range<usize>, out: OutPtr) {
        D::exact_rows(p, rows, out);
    }
}

impl RowDequant for Avx2 {
    unsafe fn dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]) {
        avx2_dequant(qtype, bytes, out);
    }
}

impl RowDequant for Vnni {
    unsafe fn dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]) {
        vnni_dequant(qtype, bytes, out);
    }
}

/// The activation layout `qtype`'s Int8Dot kernel in flavour `D` reads.
fn x_layout<D: Dot>(qtype: QuantType) -> XLayout {
    /// Q8_0 and Q4_0: per-block steps, `corr` for the weights' unsigned offset.
    fn blocks<D: Dot, F: Format>() -> XLayout {
        let offset = if F::SIGNED {
            D::I8_OFFSET
        } else {
            i32::from(F::OFFSET)
        };
        XLayout {
            super_blocks: false,
            offset,
            sums: false,
            sums16: false,
        }
    }
    match qtype {
        QuantType::Q8_0 => blocks::<D, Q8_0>(),
        QuantType::Q4_0 => blocks::<D, Q4_0>(),
        QuantType::Q4_K | QuantType::Q5_K | QuantType::Q6_K => XLayout {
            super_blocks: true,
            offset: 0,
            sums: has_mins(qtype),
            sums16: qtype == QuantType::Q6_K,
        },
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Prefetches, one per cache line, bytes `next..end` of the next block's rows (the R
/// rows after `rows`, `R · row_bytes` further on), advancing `next` to `end`.
///
/// A block's rows are contiguous, so this stays one block ahead of the loads. Rows
/// are short (a Q4_K row of k = 2048 is 1152 bytes), too short for the hardware
/// prefetchers to ramp up on each of the R interleaved streams, and prefetching
/// within the current rows (as the float kernels do) leaves the start of every
/// block waiting on memory; one block ahead measured 5-20% faster at k = 2048 and
/// no slower at k = 8192 than either that or two blocks ahead. Prefetches past the
/// end of W never fault.
#[inline(always)]
unsafe fn prefetch<const R: usize>(
    rows: &[*const u8; R],
    next: &mut usize,
    end: usize,
    row_bytes: usize,
) {
    let ahead = R * row_bytes;
    while *next < end {
        for &r in rows {
            _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(ahead + *next).cast());
        }
        *next += 64;
    }
}

/// Walks `rows` of W in L2-sized groups, each against all rows of X in blocks of up
/// to `D::MR` X rows × `NR` W rows, calling `block::<M, R>` by shape.
macro_rules! walk_rows {
    ($p:expr, $rows:expr, $mr:expr, |$i:ident, $j:ident| $block:ident::<$($t:ty),*>($($arg:expr),*)) => {
        for group in row_groups($rows, $p.k, 1, NR) {
            let mut $i = 0;
            while $i < $p.m {
                let mr = ($p.m - $i).min($mr);
                let mut $j = group.start;
                while $j < group.end {
                    let full = group.end - $j >= NR;
                    match (mr, full) {
                        (4, true) => $block::<$($t,)* 4, NR>($($arg),*),
                        (3, true) => $block::<$($t,)* 3, NR>($($arg),*),
                        (2, true) => $block::<$($t,)* 2, NR>($($arg),*),
                        (_, true) => $block::<$($t,)* 1, NR>($($arg),*),
                        (4, false) => $block::<$($t,)* 4, 1>($($arg),*),
                        (3, false) => $block::<$($t,)* 3, 1>($($arg),*),
                        (2, false) => $block::<$($t,)* 2, 1>($($arg),*),
                        (_, false) => $block::<$($t,)* 1, 1>($($arg),*),
                    }
                    $j += if full { NR } else { 1 };
                }
                $i += mr;
            }
        }
    };
}

#[inline(always)]
unsafe fn int8_rows<D: Dot>(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
    #[inline(always)]
    unsafe fn blocks<D: Dot, F: Format>(
        p: &Problem<'_>,
        xq: &QuantizedX,
        rows: Range<usize>,
        out: OutPtr,
    ) {
        let Some((_, w)) = quant_weights(p) else {
            return;
        };
        walk_rows!(p, rows, D::MR, |i, j| int8_block::<D, F>(
            p, w, xq, i, j, out
        ));
    }
    #[inline(always)]
    unsafe fn supers<D: Dot, F: kquant::KFormat>(
        p: &Problem<'_>,
        xq: &QuantizedX,
        rows: Range<usize>,
        out: OutPtr,
    ) {
        let Some((_, w)) = quant_weights(p) else {
            return;
        };
        walk_rows!(p, rows, D::KMR, |i, j| kq_block::<D, F>(
            p, w, xq, i, j, out
        ));
    }
    match quant_weights(p).map(|(q, _)| q) {
        Some(QuantType::Q8_0) => blocks::<D, Q8_0>(p, xq, rows, out),
        Some(QuantType::Q4_0) => blocks::<D, Q4_0>(p, xq, rows, out),
        Some(QuantType::Q4_K) => supers::<D, Q4_K>(p, xq, rows, out),
        Some(QuantType::Q5_K) => supers::<D, Q5_K>(p, xq, rows, out),
        Some(QuantType::Q6_K) => supers::<D, Q6_K>(p, xq, rows, out),
        None => {}
    }
}

/// `Y[i0..i0+M][j0..j0+R]` for a format of one group per block (Q8_0, Q4_0): M
/// quantized X rows × R W rows, each block's integer dot scaled in f32.
#[inline(always)]
unsafe fn int8_block<D: Dot, F: Format, const M: usize, const R: usize>(
    p: &Problem<'_>,
    w: &[u8],
    xq: &QuantizedX,
    i0: usize,
    j0: usize,
    out: OutPtr,
) {
    let blocks = p.k / F::ELEMS;
    let row_bytes = blocks * F::BYTES;
    let mut rows = [w.as_ptr(); R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = w.as_ptr().add((j0 + r) * row_bytes);
    }
    let mut x = [&xq.rows[i0]; M];
    for (i, x) in x.iter_mut().enumerate() {
        *x = &xq.rows[i0 + i];
    }
    let corr = if F::SIGNED {
        D::I8_OFFSET != 0
    } else {
        F::OFFSET != 0
    };
    let mut acc = [[_mm256_setzero_ps(); R]; M];
    let mut next = 0;
    for b in 0..blocks {
        let at = b * F::BYTES;
        prefetch(&rows, &mut next, at + F::BYTES, row_bytes);
        for (r, &row) in rows.iter().enumerate() {
            let d = F::lanes(&F::head(row.add(at)), 0);
            let wv = F::weights(row.add(at), 0);
            for (acc_i, x) in acc.iter_mut().zip(&x) {
                let init = if corr {
                    _mm256_loadu_si256(x.corr.as_ptr().add(b * 8).cast())
                } else {
                    _mm256_setzero_si256()
                };
                let xv = loadu(x.q.as_ptr().add(b * XBLOCK).cast());
                let dot = if F::SIGNED {
                    D::dot_i8(init, wv, xv)
                } else {
                    D::dot_u8(init, wv, xv)
                };
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(*x.d.get_unchecked(b)));
                acc_i[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc_i[r]);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (r, &a) in acc_i.iter().enumerate() {
            *out.at(i0 + i, j0 + r) = hsum(a);
        }
    }
}

/// Group `g`'s 32 weights as four vectors of 8 f32: `scale · q - min` with the offset
/// subtracted in integers first, the operations of [`crate::dequantize`].
#[inline(always)]
unsafe fn group_f32<F: Format>(b: *const u8, h: &F::Head, g: usize) -> [__m256; 4] {
    let (w, s) = (F::weights(b, g), F::lanes(h, g));
    let w = if F::OFFSET != 0 {
        _mm256_sub_epi8(w, _mm256_set1_epi8(F::OFFSET))
    } else {
        w
    };
    let min = if F::MINS {
        lane(F::mins(h), g)
    } else {
        _mm256_setzero_ps()
    };
    let lo = _mm256_castsi256_si128(w);
    let hi = _mm256_extracti128_si256::<1>(w);
    let parts = [
        lo,
        _mm_unpackhi_epi64(lo, lo),
        hi,
        _mm_unpackhi_epi64(hi, hi),
    ];
    let mut out = [_mm256_setzero_ps(); 4];
    for (c, (o, &part)) in out.iter_mut().zip(&parts).enumerate() {
        // Lanes 2c and 2c+1 of `s` cover these 8 elements.
        let scale = if F::UNIFORM { s } else { lane(s, 2 * c) };
        let wf = _mm256_mul_ps(i8_lanes(part), scale);
        *o = if F::MINS { _mm256_sub_ps(wf, min) } else { wf };
    }
    out
}

/// The headers of the block at byte `at` of each row. (A loop, not a closure: closures
/// are compiled without the caller's target features, so the intrinsics in them would
/// not be inlined.)
#[inline(always)]
unsafe fn heads<F: Format, const R: usize>(rows: &[*const u8; R], at: usize) -> [F::Head; R] {
    let mut heads = [F::head(rows[0].add(at)); R];
    for (h, &row) in heads.iter_mut().zip(rows).skip(1) {
        *h = F::head(row.add(at));
    }
    heads
}

#[inline(always)]
unsafe fn exact_rows<D: Dot>(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
    #[inline(always)]
    unsafe fn of<D: Dot, F: Format>(p: &Problem<'_>, rows: Range<usize>, out: OutPtr) {
        let Some((_, w)) = quant_weights(p) else {
            return;
        };
        walk_rows!(p, rows, D::MR, |i, j| exact_block::<F>(p, w, i, j, out));
    }
    match quant_weights(p).map(|(q, _)| q) {
        Some(QuantType::Q8_0) => of::<D, Q8_0>(p, rows, out),
        Some(QuantType::Q4_0) => of::<D, Q4_0>(p, rows, out),
        Some(QuantType::Q4_K) => of::<D, Q4_K>(p, rows, out),
        Some(QuantType::Q5_K) => of::<D, Q5_K>(p, rows, out),
        Some(QuantType::Q6_K) => of::<D, Q6_K>(p, rows, out),
        None => {}
    }
}

/// `Y[i0..i0+M][j0..j0+R]` exactly: weights dequantized in registers, f32 FMAs.
#[inline(always)]
unsafe fn exact_block<F: Format, const M: usize, const R: usize>(
    p: &Problem<'_>,
    w: &[u8],
    i0: usize,
    j0: usize,
    out: OutPtr,
) {
    let k = p.k;
    let blocks = k / F::ELEMS;
    let row_bytes = blocks * F::BYTES;
    let mut rows = [w.as_ptr(); R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = w.as_ptr().add((j0 + r) * row_bytes);
    }
    let x = p.x.as_ptr().add(i0 * k);
    let mut acc = [[_mm256_setzero_ps(); R]; M];
    let mut next = 0;
    for b in 0..blocks {
        let at = b * F::BYTES;
        prefetch(&rows, &mut next, at + F::BYTES, row_bytes);
        let heads = heads::<F, R>(&rows, at);
        for g in 0..F::GROUPS {
            let e = b * F::ELEMS + g * 32;
            for r in 0..R {
                let wf = group_f32::<F>(rows[r].add(at), &heads[r], g);
                for (c, &wc) in wf.iter().enumerate() {
                    for (i, acc_i) in acc.iter_mut().enumerate() {
                        let xv = _mm256_loadu_ps(x.add(i * k + e + 8 * c));
                        acc_i[r] = _mm256_fmadd_ps(xv, wc, acc_i[r]);
                    }
                }
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (r, &a) in acc_i.iter().enumerate() {
            *out.at(i0 + i, j0 + r) = hsum(a);
        }
    }
}

/// Whole rows of `qtype` to f32 with the exact kernels' unpacking.
#[inline(always)]
unsafe fn dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]) {
    #[inline(always)]
    unsafe fn of<F: Format>(bytes: &[u8], out: &mut [f32]) {
        for (block, out) in bytes
            .chunks_exact(F::BYTES)
            .zip(out.chunks_exact_mut(F::ELEMS))
        {
            let b = block.as_ptr();
            let head = F::head(b);
            for (g, out) in out.chunks_exact_mut(32).enumerate() {
                for (c, v) in group_f32::<F>(b, &head, g).into_iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), v);
                }
            }
        }
    }
    match qtype {
        QuantType::Q8_0 => of::<Q8_0>(bytes, out),
        QuantType::Q4_0 => of::<Q4_0>(bytes, out),
        QuantType::Q4_K => of::<Q4_K>(bytes, out),
        QuantType::Q5_K => of::<Q5_K>(bytes, out),
        QuantType::Q6_K => of::<Q6_K>(bytes, out),
    }
}
