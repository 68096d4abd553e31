//! The ggml block formats as the x86 kernels see them: a per-block header of
//! scales, then groups of 32 weights, each unpacked into one 256-bit register of
//! bytes in element order (see [`crate::qtype`] for the layouts).

use std::arch::x86_64::*;

use crate::qtype::k_scales_u64;
use crate::QuantType;

/// One ggml block format as the SIMD kernels see it: a per-block header (scales),
/// then `GROUPS` groups of 32 weights each unpacked into one register.
pub(super) trait Format {
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
pub(super) unsafe fn loadu(p: *const u8) -> __m256i {
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
pub(super) unsafe fn i8_lanes(v: __m128i) -> __m256 {
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
pub(super) unsafe fn lane(v: __m256, l: usize) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(l as i32))
}

/// Q8_0: `d: f16, qs: [i8; 32]`.
#[allow(non_camel_case_types)]
pub(super) struct Q8_0;

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
pub(super) struct Q4_0;

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
pub(super) struct KHead {
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
pub(super) struct Q4_K;

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
pub(super) struct Q5_K;

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
pub(super) struct Q6Head {
    lo: __m256,
    hi: __m256,
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Group g = 4h + j
/// (half h, j < 4) has its low nibbles in `ql[64h + 32(j % 2)..]` (low nibbles for
/// j < 2, high for j ≥ 2), its top two bits in bits 2j, 2j+1 of `qh[32h..]`, and
/// scales 2g (elements 0..16) and 2g+1.
#[allow(non_camel_case_types)]
pub(super) struct Q6_K;

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
