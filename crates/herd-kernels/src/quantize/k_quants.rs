//! The 256-element super-block formats: Q4_K, Q5_K (affine, 8 sub-blocks of 32
//! with 6-bit scales and mins) and Q6_K (symmetric, 16 sub-blocks of 16 with 8-bit
//! scales), following ggml's `quantize_row_q{4,5,6}_K_ref`.
//!
//! Each format is two-level: a search fits a float scale (and min) per sub-block,
//! those are quantized against one f16 super-scale, and finally every element is
//! re-quantized against the *rounded* sub-block scale it will be decoded with:
//!
//! ```text
//!   x (256) ──fit per sub-block──▶ scale_j, min_j (f32)
//!           ──6/8-bit vs d, dmin──▶ sc_j, m_j, d, dmin (what is stored)
//!           ──re-quantize x──────▶ levels against d·sc_j, dmin·m_j
//! ```

use super::fit::{fit_affine, fit_symmetric, nearest_int, ScaleSearch, GROUP_MAX_EPS};
use super::{f16_bits, f16_value};

/// Elements per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;
/// Sub-blocks of 32 in a Q4_K / Q5_K super-block.
const SUB: usize = 32;

/// A Q4_K / Q5_K super-block with everything decided except the bit packing of the
/// levels, which is where the two formats differ.
struct AffineBlock {
    /// f16 bits of the super-scale for the sub-block scales.
    d: u16,
    /// f16 bits of the super-scale for the sub-block mins.
    dmin: u16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as ggml's `get_scale_min_k4`
    /// reads them.
    scales: [u8; 12],
    /// One level per element, `0..=nmax`.
    levels: [u8; QK_K],
}

impl AffineBlock {
    /// Fits one super-block with levels `0..=nmax`, decoded as
    /// `d·sc_j·l − dmin·m_j`.
    fn fit(x: &[f32], nmax: i32, search: ScaleSearch) -> AffineBlock {
        let mut levels = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / SUB];
        let mut mins = [0.0f32; QK_K / SUB];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        let subs = x.chunks_exact(SUB).zip(levels.chunks_exact_mut(SUB));
        for (j, (xs, ls)) in subs.enumerate() {
            // Weight each element by the sub-block's RMS plus its own magnitude, so
            // large weights are fitted more closely without ignoring small ones.
            let sum_x2 = xs.iter().fold(0.0f32, |s, &v| s + v * v);
            let av_x = (sum_x2 / SUB as f32).sqrt();
            let mut weights = [0.0f32; SUB];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (scale, min) = fit_affine(xs, &weights, nmax, search, ls);
            scales[j] = scale;
            mins[j] = min;
            if scale > max_scale {
                max_scale = scale;
            }
            if min > max_min {
                max_min = min;
            }
        }

        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let mut packed = [0u8; 12];
        for j in 0..QK_K / SUB {
            // `as u8` wraps a (never expected) negative like C's conversion does.
            let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
            pack_scale_min(&mut packed, j, ls, lm);
        }
        let d = f16_bits(max_scale / 63.0);
        let dmin = f16_bits(max_min / 63.0);

        // Re-quantize against the scales as stored. A sub-block whose stored scale
        // is 0 keeps the levels of its fit (they decode to −min either way).
        let (d_f, dmin_f) = (f16_value(d), f16_value(dmin));
        let subs = x.chunks_exact(SUB).zip(levels.chunks_exact_mut(SUB));
        for (j, (xs, ls)) in subs.enumerate() {
            let (sc, m) = unpack_scale_min(&packed, j);
            let dj = d_f * f32::from(sc);
            if dj == 0.0 {
                continue;
            }
            let mj = dmin_f * f32::from(m);
            for (l, &v) in ls.iter_mut().zip(xs) {
                *l = nearest_int((v + mj) / dj).clamp(0, nmax) as u8;
            }
        }
        AffineBlock {
            d,
            dmin,
            scales: packed,
            levels,
        }
    }

    /// Writes `d`, `dmin` and the packed scales: the first 16 bytes of both formats.
    fn write_header(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
    }
}

/// Stores 6-bit scale `ls` and min `lm` of sub-block `j`: sub-blocks 0–3 use the low
/// 6 bits of bytes `j` and `j + 4`; sub-blocks 4–7 put their low nibbles in byte
/// `j + 4` and their top 2 bits in the spare high bits of bytes `j − 4` and `j`.
fn pack_scale_min(packed: &mut [u8; 12], j: usize, ls: u8, lm: u8) {
    if j < 4 {
        packed[j] = ls;
        packed[j + 4] = lm;
    } else {
        packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
        packed[j - 4] |= (ls >> 4) << 6;
        packed[j] |= (lm >> 4) << 6;
    }
}

/// The inverse of [`pack_scale_min`] (ggml's `get_scale_min_k4`).
fn unpack_scale_min(packed: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// One Q4_K block. Levels are stored per 64 elements: byte `l` of each 32-byte
/// group holds element `l` in its low nibble and element `l + 32` in its high one.
pub(super) fn q4_k(x: &[f32], out: &mut [u8]) {
    let search = ScaleSearch {
        rmin: -1.0,
        rdelta: 0.1,
        steps: 20,
    };
    let block = AffineBlock::fit(x, 15, search);
    block.write_header(out);
    let qs = out[16..].chunks_exact_mut(SUB);
    for (q, ls) in qs.zip(block.levels.chunks_exact(2 * SUB)) {
        let (lo, hi) = ls.split_at(SUB);
        for ((q, &a), &b) in q.iter_mut().zip(lo).zip(hi) {
            *q = a | (b << 4);
        }
    }
}

/// One Q5_K block: the Q4_K nibble layout for the low 4 bits, and in `qh` bit
/// `2i` / `2i + 1` of byte `l` the fifth bit of elements `64i + l` / `64i + l + 32`.
pub(super) fn q5_k(x: &[f32], out: &mut [u8]) {
    let search = ScaleSearch {
        rmin: -0.5,
        rdelta: 0.1,
        steps: 15,
    };
    let block = AffineBlock::fit(x, 31, search);
    block.write_header(out);
    let (qh, qs) = out[16..].split_at_mut(QK_K / 8);
    qh.fill(0);
    let groups = qs
        .chunks_exact_mut(SUB)
        .zip(block.levels.chunks_exact(2 * SUB));
    for (i, (q, ls)) in groups.enumerate() {
        let (lo, hi) = ls.split_at(SUB);
        for (l, ((q, &a), &b)) in q.iter_mut().zip(lo).zip(hi).enumerate() {
            qh[l] |= ((a >> 4) << (2 * i)) | ((b >> 4) << (2 * i + 1));
            *q = (a & 0xF) | ((b & 0xF) << 4);
        }
    }
}

/// One Q6_K block: `x ≈ d·sc_j·(l − 32)` with `l ∈ 0..64` and signed 8-bit `sc_j`
/// per 16 elements. Per 128 elements, `ql` has 64 bytes whose nibbles hold the low
/// 4 bits of elements `l` / `l + 64` (bytes 0–31) and `l + 32` / `l + 96` (bytes
/// 32–63), and `qh` has 32 bytes with the top 2 bits of `l`, `l+32`, `l+64`, `l+96`.
pub(super) fn q6_k(x: &[f32], out: &mut [u8]) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for (j, (xs, ls)) in x
        .chunks_exact(16)
        .zip(levels.chunks_exact_mut(16))
        .enumerate()
    {
        let scale = fit_symmetric(xs, 32, ls);
        scales[j] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        // An all-zero block is all-zero bytes (d = +0 as f16).
        out.fill(0);
        return;
    }

    // The largest sub-block scale maps to −128, like the largest element in each
    // sub-block maps to −32.
    let iscale = -128.0 / max_scale;
    let d = f16_bits(1.0 / iscale);
    let mut sc = [0i8; QK_K / 16];
    for (s, &scale) in sc.iter_mut().zip(&scales) {
        // `as i8` wraps like C's int → int8_t conversion; values stay in −128..=127.
        *s = nearest_int(iscale * scale).min(127) as i8;
    }
    let d_f = f16_value(d);
    for ((xs, ls), &s) in x.chunks_exact(16).zip(levels.chunks_exact_mut(16)).zip(&sc) {
        let dj = d_f * f32::from(s);
        if dj == 0.0 {
            continue;
        }
        for (l, &v) in ls.iter_mut().zip(xs) {
            *l = (nearest_int(v / dj).clamp(-32, 31) + 32) as u8;
        }
    }

    let (ql, rest) = out.split_at_mut(QK_K / 2);
    let (qh, rest) = rest.split_at_mut(QK_K / 4);
    let (sc_out, d_out) = rest.split_at_mut(QK_K / 16);
    let halves = ql.chunks_exact_mut(64).zip(qh.chunks_exact_mut(32));
    for ((ql, qh), ls) in halves.zip(levels.chunks_exact(128)) {
        for l in 0..32 {
            let [a, b, c, e] = [ls[l], ls[l + 32], ls[l + 64], ls[l + 96]];
            ql[l] = (a & 0xF) | ((c & 0xF) << 4);
            ql[l + 32] = (b & 0xF) | ((e & 0xF) << 4);
            qh[l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
        }
    }
    for (o, &s) in sc_out.iter_mut().zip(&sc) {
        *o = s as u8;
    }
    d_out.copy_from_slice(&d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuantType;

    #[test]
    fn scale_min_packing_round_trips_all_6_bit_values() {
        for j in 0..8 {
            for (ls, lm) in [(0, 63), (63, 0), (37, 22), (63, 63), (16, 48)] {
                let mut packed = [0u8; 12];
                // Fill the other sub-blocks too, so cross-talk would show.
                for k in 0..8 {
                    let (a, b) = if k == j {
                        (ls, lm)
                    } else {
                        (k as u8 * 7, 63 - k as u8)
                    };
                    pack_scale_min(&mut packed, k, a, b);
                }
                assert_eq!(unpack_scale_min(&packed, j), (ls, lm), "j={j}");
            }
        }
    }

    #[test]
    fn q6_k_of_zeros_is_zero_bytes() {
        let mut out = [0xAAu8; QuantType::Q6_K.block_bytes()];
        q6_k(&[0.0; QK_K], &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }
}
