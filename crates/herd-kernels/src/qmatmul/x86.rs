//! x86 kernels for quantized weights, in two flavours that share everything but the
//! integer dot product: AVX2 (`vpmaddubsw` + `vpmaddwd`) and AVX-512 VNNI
//! (`vpdpbusd`). Both work on 256-bit registers.
//!
//! # Why 256 bits on AVX-512 too
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
//! # The inner loop (Int8Dot), per group of 32 weights of one W row
//!
//! ```text
//! w   = unpack(block, g)               32 × u8 (or i8 for Q8_0), element order
//! s   = scale lanes of the group       8 × f32 (d, d·sc[g], or Q6_K's two)
//! for each row i of X:
//!   dot = corr_i + Σ₄ w · xq_i         8 × i32, exact (corr folds the format's offset)
//!   acc = fma(f32(dot), s · dx_i, acc)
//! once per block, k-quants with mins:  acc -= (dmin·m) · Σx   (8 groups at once)
//! ```
//!
//! The exact kernels share the unpacking and turn each group into four vectors of 8
//! f32 weights (the same operations as [`crate::dequantize`], so bit-identical to it)
//! and do f32 FMAs with X.

use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::ops::Range;

mod kquant;

use kquant::kq_block;

use super::act::{quantize_row, QRow, QuantizedX, XLayout, XBLOCK};
use super::{has_mins, quant_weights, RowDequant};
use crate::problem::{OutPtr, Problem};
use crate::qtype::k_scales_u64;
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

/// One ggml block format as the SIMD kernels see it: a per-block header (scales),
/// then `GROUPS` groups of 32 weights each unpacked into one register.
trait Format {
    const QTYPE: QuantType;
    const BYTES: usize = Self::QTYPE.block_bytes();
    const ELEMS: usize = Self::QTYPE.block_elems();
    const GROUPS: usize = Self::ELEMS / 32;
    /// Subtracted from the unpacked unsigned integers (Q4_0: 8, Q6_K: 32).
    const OFFSET: i8 = 0;
    /// Whether the unpacked integers are signed (Q8_0).
    const SIGNED: bool = false;
    /// Whether the format has `- dmin·m` terms (one per group; 8 groups).
    const MINS: bool = false;
    /// Whether all 8 scale lanes of a group are equal (all but Q6_K).
    const UNIFORM: bool = true;

    /// Scales decoded once per block.
    type Head: Copy;

    /// Decodes the header of the block at `b`.
    unsafe fn head(b: *const u8) -> Self::Head;

    /// Group `g`'s 32 integers in element order.
    unsafe fn weights(b: *const u8, g: usize) -> __m256i;

    /// The scale of each 4-element lane of group `g`.
    unsafe fn lanes(h: &Self::Head, g: usize) -> __m256;

    /// `dmin · m` of the 8 groups (formats with `MINS`).
    #[inline(always)]
    unsafe fn mins(_: &Self::Head) -> __m256 {
        _mm256_setzero_ps()
    }
}

#[inline(always)]
unsafe fn loadu(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// The little-endian f16 at `p`, widened exactly and broadcast.
#[inline(always)]
unsafe fn bcast_f16(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(p.cast::<i16>().read_unaligned()))
}

/// Eight unsigned bytes (little-endian in `v`) as f32 lanes.
#[inline(always)]
unsafe fn u8_lanes(v: u64) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)))
}

/// The low 8 signed bytes of `v` as f32 lanes.
#[inline(always)]
unsafe fn i8_lanes(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

/// The low (`high = false`) or high nibbles of 32 bytes.
#[inline(always)]
unsafe fn nibbles(v: __m256i, high: bool) -> __m256i {
    let v = if high { _mm256_srli_epi16::<4>(v) } else { v };
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// Bits `shift..shift + width` of each byte moved to bits `4..4 + width` (`mask` is
/// those bits, e.g. 0x10): 16-bit shifts move bits across byte borders, but the bits
/// that land in the masked positions all come from the same byte.
#[inline(always)]
unsafe fn high_bits(v: __m256i, shift: usize, mask: i8) -> __m256i {
    let down = _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift as i32));
    _mm256_and_si256(_mm256_slli_epi16::<4>(down), _mm256_set1_epi8(mask))
}

/// Lane `l` of `v` in every lane.
#[inline(always)]
unsafe fn lane(v: __m256, l: usize) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(l as i32))
}

/// Q8_0: `d: f16, qs: [i8; 32]`.
#[allow(non_camel_case_types)]
struct Q8_0;

impl Format for Q8_0 {
    const QTYPE: QuantType = QuantType::Q8_0;
    const SIGNED: bool = true;
    type Head = __m256;

    #[inline(always)]
    unsafe fn head(b: *const u8) -> __m256 {
        bcast_f16(b)
    }

    #[inline(always)]
    unsafe fn weights(b: *const u8, _: usize) -> __m256i {
        loadu(b.add(2))
    }

    #[inline(always)]
    unsafe fn lanes(d: &__m256, _: usize) -> __m256 {
        *d
    }
}

/// Q4_0: `d: f16, qs: [u8; 16]`, elements 0..16 in the low nibbles.
#[allow(non_camel_case_types)]
struct Q4_0;

impl Format for Q4_0 {
    const QTYPE: QuantType = QuantType::Q4_0;
    const OFFSET: i8 = 8;
    type Head = __m256;

    #[inline(always)]
    unsafe fn head(b: *const u8) -> __m256 {
        bcast_f16(b)
    }

    #[inline(always)]
    unsafe fn weights(b: *const u8, _: usize) -> __m256i {
        let v = _mm_loadu_si128(b.add(2).cast());
        let both = _mm256_set_m128i(_mm_srli_epi16::<4>(v), v);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    #[inline(always)]
    unsafe fn lanes(d: &__m256, _: usize) -> __m256 {
        *d
    }
}

/// Q4_K / Q5_K header: `d · sc[g]` and `dmin · m[g]` for the 8 groups.
#[derive(Clone, Copy)]
struct KHead {
    scale: __m256,
    min: __m256,
}

/// Decodes `d, dmin: f16, scales: [u8; 12]` (see [`k_scales_u64`]).
#[inline(always)]
unsafe fn k_head(b: *const u8) -> KHead {
    let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(b.cast::<i32>().read_unaligned()));
    let d = _mm256_broadcastss_ps(d_dmin);
    let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin));
    let mut packed = [0u8; 12];
    std::ptr::copy_nonoverlapping(b.add(4), packed.as_mut_ptr(), 12);
    let (sc, m) = k_scales_u64(packed);
    KHead {
        scale: _mm256_mul_ps(d, u8_lanes(sc)),
        min: _mm256_mul_ps(dmin, u8_lanes(m)),
    }
}

/// Q4_K: header, then `qs: [u8; 128]`; bytes 32j..32j+32 hold group 2j in their low
/// nibbles and group 2j+1 in their high nibbles.
#[allow(non_camel_case_types)]
struct Q4_K;

impl Format for Q4_K {
    const QTYPE: QuantType = QuantType::Q4_K;
    const MINS: bool = true;
    type Head = KHead;

    #[inline(always)]
    unsafe fn head(b: *const u8) -> KHead {
        k_head(b)
    }

    #[inline(always)]
    unsafe fn weights(b: *const u8, g: usize) -> __m256i {
        nibbles(loadu(b.add(16 + 32 * (g / 2))), g % 2 == 1)
    }

    #[inline(always)]
    unsafe fn lanes(h: &KHead, g: usize) -> __m256 {
        lane(h.scale, g)
    }

    #[inline(always)]
    unsafe fn mins(h: &KHead) -> __m256 {
        h.min
    }
}

/// Q5_K: header, `qh: [u8; 32]` (bit g of byte l: fifth bit of element l of group
/// g), then `qs` as Q4_K.
#[allow(non_camel_case_types)]
struct Q5_K;

impl Format for Q5_K {
    const QTYPE: QuantType = QuantType::Q5_K;
    const MINS: bool = true;
    type Head = KHead;

    #[inline(always)]
    unsafe fn head(b: *const u8) -> KHead {
        k_head(b)
    }

    #[inline(always)]
    unsafe fn weights(b: *const u8, g: usize) -> __m256i {
        let qs = loadu(b.add(48 + 32 * (g / 2)));
        let fifth = high_bits(loadu(b.add(16)), g, 0x10);
        _mm256_or_si256(nibbles(qs, g % 2 == 1), fifth)
    }

    #[inline(always)]
    unsafe fn lanes(h: &KHead, g: usize) -> __m256 {
        lane(h.scale, g)
    }

    #[inline(always)]
    unsafe fn mins(h: &KHead) -> __m256 {
        h.min
    }
}

/// Q6_K header: `d · sc[s]` for the 16 scales, as two vectors of 8.
#[derive(Clone, Copy)]
struct Q6Head {
    lo: __m256,
    hi: __m256,
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Group g = 4h + j
/// (half h, j < 4) has its low nibbles in `ql[64h + 32(j % 2)..]` (low nibbles for
/// j < 2, high for j ≥ 2), its top two bits in bits 2j, 2j+1 of `qh[32h..]`, and
/// scales 2g (elements 0..16) and 2g+1.
#[allow(non_camel_case_types)]
struct Q6_K;

impl Format for Q6_K {
    const QTYPE: QuantType = QuantType::Q6_K;
    const OFFSET: i8 = 32;
    const UNIFORM: bool = false;
    type Head = Q6Head;

    #[inline(always)]
    unsafe fn head(b: *const u8) -> Q6Head {
        let d = bcast_f16(b.add(208));
        let sc = _mm_loadu_si128(b.add(192).cast());
        Q6Head {
            lo: _mm256_mul_ps(d, i8_lanes(sc)),
            hi: _mm256_mul_ps(d, i8_lanes(_mm_srli_si128::<8>(sc))),
        }
    }

    #[inline(always)]
    unsafe fn weights(b: *const u8, g: usize) -> __m256i {
        let (half, j) = (g / 4, g % 4);
        let ql = loadu(b.add(64 * half + 32 * (j % 2)));
        let top = high_bits(loadu(b.add(128 + 32 * half)), 2 * j, 0x30);
        _mm256_or_si256(nibbles(ql, j >= 2), top)
    }

    /// Scales 2g and 2g+1 (a pair within one half of the 16).
    #[inline(always)]
    unsafe fn lanes(h: &Q6Head, g: usize) -> __m256 {
        let (s0, s1) = (2 * (g % 4) as i32, 2 * (g % 4) as i32 + 1);
        let idx = _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1);
        _mm256_permutevar8x32_ps(if g < 4 { h.lo } else { h.hi }, idx)
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
