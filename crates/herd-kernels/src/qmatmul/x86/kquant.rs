//! The Int8Dot kernel for k-quants (Q4_K, Q5_K, Q6_K): a super-block of 256 weights
//! is summed entirely in integers, then scaled once in f32.
//!
//! ```text
//! per W row and super-block:  sc[g] (6- or 8-bit group scales), d, dmin·m[g]
//! per X row and super-block:  k[g] (4-bit multipliers), unit       (see `act`)
//!   sck   = sc · k                          16-bit lanes, one per group (Q6_K: per 16)
//!   acc32 = 0   (Q6_K: -32 · Σ sck · Σ₁₆x, its offset)
//!   per group g of 32:
//!     p     = vpmaddubsw(w, x)              16-bit sums of 2 products (≤ 16002)
//!     acc32 = vpdpwssd(acc32, p, sck[g])    (AVX2: vpmaddwd + vpaddd)
//!   acc  += f32(acc32) · (d · unit)
//!   acc  -= dmin·m · Σx                     (Q4_K, Q5_K; f32 sums of the exact x)
//! ```
//!
//! Per group that is the weight unpacking plus three instructions (four on AVX2) and
//! one shuffle to broadcast `sck[g]`, against the five or six of scaling each group in
//! f32. Bounds: `|sck| ≤ 128·16`, so each `vpdpwssd` adds at most 2·16002·2048 per
//! lane, and a super-block's 8 groups and offset stay below 2³⁰.

use std::arch::x86_64::*;

use super::super::act::{QRow, QuantizedX, XBLOCK, XSUPER};
use super::{hsum, loadu, prefetch, Dot, Format, Q4_K, Q5_K, Q6_K};
use crate::problem::{OutPtr, Problem};

/// A row's super-block scales as the integer kernel wants them.
#[derive(Clone, Copy)]
pub(super) struct KScales {
    /// The super-block scale `d`.
    d: f32,
    /// Group scales as 16-bit lanes: Q4_K / Q5_K `[sc₀..sc₈, sc₀..sc₈]`, Q6_K the 16
    /// signed scales.
    sc: __m256i,
    /// `dmin · m[g]` (Q4_K / Q5_K).
    min: __m256,
}

/// A k-quant format's integer-kernel specifics.
pub(super) trait KFormat: Format {
    /// Decodes the block's scales.
    unsafe fn scales(b: *const u8) -> KScales;

    /// X's multipliers laid out like [`KScales::sc`].
    fn kmul(x: &QRow) -> &[i16];

    /// `sc · k` arranged for [`KFormat::group_scales`]; plain data (valid when zeroed).
    type Sck: Copy;

    /// The starting value of the super-block's integer accumulator (Q6_K's offset).
    unsafe fn init(sck: __m256i, x: &QRow, sb: usize) -> __m256i;

    /// Arranges `sc · k` (lanes as [`KScales::sc`]) for [`KFormat::group_dot`].
    unsafe fn arrange(sck: __m256i) -> Self::Sck;

    /// `acc` plus group `g`'s product pairs (from `vpmaddubsw`) times its `sc · k`.
    unsafe fn group_dot<D: Dot>(acc: __m256i, pairs: __m256i, sck: &Self::Sck, g: usize)
        -> __m256i;
}

/// Q4_K / Q5_K: `d, dmin: f16` then the 12 packed bytes of 6-bit scales and mins,
/// unpacked with two byte shuffles (see [`crate::qtype::k_scales_u64`] for the layout):
/// scales 0..4 and mins 0..4 are the low 6 bits of bytes 0..4 and 4..8; scales and
/// mins 4..8 take their low 4 bits from the nibbles of bytes 8..12 and their top 2
/// from bits 6..8 of bytes 0..4 and 4..8.
#[inline(always)]
unsafe fn k45_scales(b: *const u8) -> KScales {
    let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(b.cast::<i32>().read_unaligned()));
    let v = _mm_loadu_si128(b.add(4).cast());
    // [s0..4, s8..12, s4..8, s8..12] and the top-2-bit sources [0, s0..4, 0, s4..8].
    let a = _mm_shuffle_epi8(
        v,
        _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11),
    );
    let top = _mm_shuffle_epi8(
        v,
        _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7),
    );
    let low = _mm_and_si128(
        a,
        _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0),
    );
    let high_nibble = _mm_and_si128(
        a,
        _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -16, -16, -16, -16),
    );
    // 16-bit shifts: the bits they move across a byte border are masked to zero.
    let top = _mm_srli_epi16::<2>(_mm_and_si128(top, _mm_set1_epi8(-64)));
    let scales_mins = _mm_or_si128(_mm_or_si128(low, _mm_srli_epi16::<4>(high_nibble)), top);
    let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(scales_mins)));
    KScales {
        d: _mm_cvtss_f32(d_dmin),
        sc: _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales_mins)),
        min: _mm256_mul_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin)), mins),
    }
}

/// `[sck₀..sck₈]` (held in both 128-bit halves) as 8 words of two copies each, so a
/// group's scale vector is a 32-bit broadcast from memory, which folds into the
/// `vpdpwssd` as an operand instead of costing a shuffle per group.
#[inline(always)]
unsafe fn k45_arrange(sck: __m256i) -> [i32; 8] {
    let lo = _mm256_unpacklo_epi16(sck, sck);
    let hi = _mm256_unpackhi_epi16(sck, sck);
    let mut pairs = [0i32; 8];
    _mm256_storeu_si256(
        pairs.as_mut_ptr().cast(),
        _mm256_blend_epi32::<0xF0>(lo, hi),
    );
    pairs
}

impl KFormat for Q4_K {
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> KScales {
        k45_scales(b)
    }

    fn kmul(x: &QRow) -> &[i16] {
        &x.kmul
    }

    type Sck = [i32; 8];

    #[inline(always)]
    unsafe fn init(_: __m256i, _: &QRow, _: usize) -> __m256i {
        _mm256_setzero_si256()
    }

    #[inline(always)]
    unsafe fn arrange(sck: __m256i) -> [i32; 8] {
        k45_arrange(sck)
    }

    #[inline(always)]
    unsafe fn group_dot<D: Dot>(acc: __m256i, pairs: __m256i, sck: &[i32; 8], g: usize) -> __m256i {
        D::dot_i16_bcast(acc, pairs, &sck[g])
    }
}

impl KFormat for Q5_K {
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> KScales {
        k45_scales(b)
    }

    fn kmul(x: &QRow) -> &[i16] {
        &x.kmul
    }

    type Sck = [i32; 8];

    #[inline(always)]
    unsafe fn init(_: __m256i, _: &QRow, _: usize) -> __m256i {
        _mm256_setzero_si256()
    }

    #[inline(always)]
    unsafe fn arrange(sck: __m256i) -> [i32; 8] {
        k45_arrange(sck)
    }

    #[inline(always)]
    unsafe fn group_dot<D: Dot>(acc: __m256i, pairs: __m256i, sck: &[i32; 8], g: usize) -> __m256i {
        D::dot_i16_bcast(acc, pairs, &sck[g])
    }
}

impl KFormat for Q6_K {
    #[inline(always)]
    unsafe fn scales(b: *const u8) -> KScales {
        KScales {
            d: _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
                b.add(208).cast::<i16>().read_unaligned(),
            )))),
            sc: _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192).cast())),
            min: _mm256_setzero_ps(),
        }
    }

    fn kmul(x: &QRow) -> &[i16] {
        &x.kmul16
    }

    /// Each 128-bit half copied to both halves.
    type Sck = [__m256i; 2];

    /// `-32 · Σ_s sck[s] · Σ₁₆ x` over the 16 scale groups: the stored integers are
    /// `q + 32`.
    #[inline(always)]
    unsafe fn init(sck: __m256i, x: &QRow, sb: usize) -> __m256i {
        let sums = _mm256_loadu_si256(x.xs16.as_ptr().add(sb * 16).cast());
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sck, sums));
        _mm256_sub_epi32(_mm256_setzero_si256(), offset)
    }

    #[inline(always)]
    unsafe fn arrange(sck: __m256i) -> [__m256i; 2] {
        [
            _mm256_permute4x64_epi64::<0b01_00_01_00>(sck),
            _mm256_permute4x64_epi64::<0b11_10_11_10>(sck),
        ]
    }

    /// Lanes 0..8 (elements 0..16 of the group) take scale 2g, lanes 8..16 scale
    /// 2g+1: from the 128-bit half holding both, copied to both halves, each half
    /// picks its lane.
    #[inline(always)]
    unsafe fn group_dot<D: Dot>(
        acc: __m256i,
        pairs: __m256i,
        sck: &[__m256i; 2],
        g: usize,
    ) -> __m256i {
        let s = 2 * (g % 4);
        let lo = (((2 * s + 1) << 8) | (2 * s)) as i16;
        let hi = (((2 * s + 3) << 8) | (2 * s + 2)) as i16;
        let idx = _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
        D::dot_i16(acc, pairs, _mm256_shuffle_epi8(sck[g / 4], idx))
    }
}

/// `Y[i0..i0+M][j0..j0+R]` for a k-quant: M quantized X rows × R W rows.
#[inline(always)]
pub(super) unsafe fn kq_block<D: Dot, F: KFormat, const M: usize, const R: usize>(
    p: &Problem<'_>,
    w: &[u8],
    xq: &QuantizedX,
    i0: usize,
    j0: usize,
    out: OutPtr,
) {
    let blocks = p.k / XSUPER;
    let row_bytes = blocks * F::BYTES;
    let mut rows = [w.as_ptr(); R];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = w.as_ptr().add((j0 + r) * row_bytes);
    }
    let mut x = [&xq.rows[i0]; M];
    for (i, x) in x.iter_mut().enumerate() {
        *x = &xq.rows[i0 + i];
    }
    let mut acc = [[_mm256_setzero_ps(); R]; M];
    let mut next = 0;
    for sb in 0..blocks {
        let at = sb * F::BYTES;
        prefetch(&rows, &mut next, at + F::BYTES, row_bytes);
        // SAFETY (both): plain vectors and floats, for which all-zero bits are valid;
        // every element is overwritten below.
        let mut scales: [KScales; R] = std::mem::zeroed();
        for r in 0..R {
            scales[r] = F::scales(rows[r].add(at));
        }
        let mut sck: [[F::Sck; R]; M] = std::mem::zeroed();
        let mut acc32 = [[_mm256_setzero_si256(); R]; M];
        for i in 0..M {
            let kmul = _mm256_loadu_si256(F::kmul(x[i]).as_ptr().add(sb * 16).cast());
            for r in 0..R {
                let s = _mm256_mullo_epi16(scales[r].sc, kmul);
                sck[i][r] = F::arrange(s);
                acc32[i][r] = F::init(s, x[i], sb);
            }
        }
        // Spelled out per group so every group index is a constant: LLVM does not
        // unroll this loop itself once it holds inline assembly.
        macro_rules! group {
            ($g:expr) => {
                for (r, &row) in rows.iter().enumerate() {
                    let wv = F::weights(row.add(at), $g);
                    for ((acc32_i, sck_i), x) in acc32.iter_mut().zip(&sck).zip(&x) {
                        let xv = loadu(x.q.as_ptr().add(sb * XSUPER + $g * XBLOCK).cast());
                        let pairs = _mm256_maddubs_epi16(wv, xv);
                        acc32_i[r] = F::group_dot::<D>(acc32_i[r], pairs, &sck_i[r], $g);
                    }
                }
            };
        }
        group!(0);
        group!(1);
        group!(2);
        group!(3);
        group!(4);
        group!(5);
        group!(6);
        group!(7);
        for ((acc_i, acc32_i), x) in acc.iter_mut().zip(&acc32).zip(&x) {
            let unit = *x.unit.get_unchecked(sb);
            for ((a, &a32), s) in acc_i.iter_mut().zip(acc32_i).zip(&scales) {
                let scale = _mm256_set1_ps(s.d * unit);
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a32), scale, *a);
                if F::MINS {
                    let sums = _mm256_loadu_ps(x.sum.as_ptr().add(sb * 8));
                    *a = _mm256_fnmadd_ps(s.min, sums, *a);
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
