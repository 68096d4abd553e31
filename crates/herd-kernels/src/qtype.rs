//! ggml's block-quantized weight formats (the tensor types of llama.cpp's GGUF files)
//! and their exact decoding.
//!
//! Every format stores a row as whole blocks, each block a scale (or a few) followed
//! by small integers. Decoding is defined here once, as [`IntBlock`]: every element is
//! `scale[g] · q - min[g]` for a small signed integer `q` and a per-group `scale` and
//! `min` (groups of 16 or 32 elements). [`dequantize`], the portable kernels and the
//! tests all go through it, and the SIMD kernels are tested against it, so the
//! bit-level layout lives in one file.
//!
//! Layouts (little-endian, `f16` = IEEE half), from ggml's `ggml-common.h`:
//!
//! ```text
//! Q8_0   32 elems,  34 B: d: f16, qs: [i8; 32]                      x = d·q
//! Q4_0   32 elems,  18 B: d: f16, qs: [u8; 16]                      x = d·(q - 8)
//!                          low nibbles are elements 0..16, high nibbles 16..32
//! Q4_K  256 elems, 144 B: d, dmin: f16, scales: [u8; 12], qs: [u8; 128]
//!                          8 groups of 32: x = d·sc[g]·q - dmin·m[g], q 4-bit
//! Q5_K  256 elems, 176 B: d, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]
//!                          as Q4_K with a fifth bit per element from qh
//! Q6_K  256 elems, 210 B: ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16
//!                          16 groups of 16: x = d·sc[g]·(q - 32), q 6-bit
//! ```
//!
//! Arithmetic follows ggml's reference `dequantize_row_*` operation by operation (the
//! scale products are rounded to f32 first, then multiplied by `q`), without fused
//! multiply-adds, so results are bit-identical to an unfused build of ggml.

use std::fmt;

use half::f16;

use crate::KernelError;

/// Elements in a k-quant super-block (`QK_K` in ggml).
const QK_K: usize = 256;

/// A ggml block-quantized weight format.
///
/// Variant names are ggml's (`GGML_TYPE_Q4_K` → `Q4_K`), as in `herd-gguf`'s
/// `GgmlType`, so one name can be grepped across the loader and the kernels.
#[allow(non_camel_case_types)] // ggml's names
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// 8-bit, blocks of 32 with one f16 scale (8.5 bits per weight).
    Q8_0,
    /// 4-bit, blocks of 32 with one f16 scale (4.5 bits per weight).
    Q4_0,
    /// 4-bit k-quant, super-blocks of 256 with 6-bit scales and mins per 32
    /// (4.5 bits per weight); most of a `Q4_K_M` file.
    Q4_K,
    /// 5-bit k-quant, super-blocks of 256 with 6-bit scales and mins per 32
    /// (5.5 bits per weight).
    Q5_K,
    /// 6-bit k-quant, super-blocks of 256 with 8-bit scales per 16
    /// (6.5625 bits per weight); `Q4_K_M` files use it for some tensors.
    Q6_K,
}

impl QuantType {
    /// Every format, in ggml type-id order.
    pub const ALL: [QuantType; 5] = [
        QuantType::Q4_0,
        QuantType::Q8_0,
        QuantType::Q4_K,
        QuantType::Q5_K,
        QuantType::Q6_K,
    ];

    /// Elements per block.
    pub const fn block_elems(self) -> usize {
        match self {
            QuantType::Q8_0 | QuantType::Q4_0 => 32,
            QuantType::Q4_K | QuantType::Q5_K | QuantType::Q6_K => QK_K,
        }
    }

    /// Bytes per block (`sizeof(block_*)` in ggml).
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantType::Q8_0 => 2 + 32,
            QuantType::Q4_0 => 2 + 16,
            QuantType::Q4_K => 2 + 2 + 12 + QK_K / 2,
            QuantType::Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            QuantType::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// ggml's name for the type (`ggml_type_name`): `"q8_0"`, `"q4_K"`.
    pub const fn name(self) -> &'static str {
        match self {
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4_K => "q4_K",
            QuantType::Q5_K => "q5_K",
            QuantType::Q6_K => "q6_K",
        }
    }

    /// Bytes of one row of `k` elements, or an error if `k` is not a whole number of
    /// blocks (ggml cannot store such a row).
    pub fn row_bytes(self, k: usize) -> Result<usize, KernelError> {
        if !k.is_multiple_of(self.block_elems()) {
            return Err(KernelError::BlockAlign { qtype: self, k });
        }
        Ok(k / self.block_elems() * self.block_bytes())
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes whole blocks of `qtype` from `bytes` into `out`, one f32 per element, with
/// ggml's `dequantize_row_*` arithmetic (bit-identical to an unfused ggml build).
///
/// `out.len()` must be a whole number of blocks and `bytes` exactly those blocks; any
/// byte pattern is a valid block (f16 scales may decode to infinities or NaN, which
/// then propagate). Used for embedding lookups and as the tests' reference.
pub fn dequantize(qtype: QuantType, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let expected = qtype.row_bytes(out.len())?;
    if bytes.len() != expected {
        return Err(KernelError::QuantBytes {
            qtype,
            expected,
            actual: bytes.len(),
        });
    }
    let mut decoded = IntBlock::default();
    for (block, out) in bytes
        .chunks_exact(qtype.block_bytes())
        .zip(out.chunks_exact_mut(qtype.block_elems()))
    {
        decoded.decode(qtype, block);
        decoded.write_f32(out);
    }
    Ok(())
}

/// One block decoded to `scale[g] · q[e] - min[g]` form, `g = e / group`: small signed
/// integers plus f32 scales and mins per group of 16 or 32 elements. Every format's
/// integers fit `i8` once its offset is subtracted (Q5_K: 0..=31, Q6_K: -32..=31).
pub(crate) struct IntBlock {
    /// The integer of every element, offset already subtracted.
    pub q: [i8; QK_K],
    /// Per-group scale, the f32 product ggml computes (`d` or `d · sc`).
    pub scale: [f32; 16],
    /// Per-group offset subtracted after scaling (`dmin · m`; zero for formats
    /// without mins).
    pub min: [f32; 16],
    /// Elements in the block.
    pub len: usize,
    /// Elements per group.
    pub group: usize,
}

impl Default for IntBlock {
    fn default() -> Self {
        IntBlock {
            q: [0; QK_K],
            scale: [0.0; 16],
            min: [0.0; 16],
            len: 0,
            group: 32,
        }
    }
}

impl IntBlock {
    /// Decodes one block of `qtype`; `block` must be exactly `qtype.block_bytes()` long.
    pub fn decode(&mut self, qtype: QuantType, block: &[u8]) {
        debug_assert_eq!(block.len(), qtype.block_bytes());
        self.len = qtype.block_elems();
        self.group = block_scales(qtype, block, &mut self.scale, &mut self.min);
        match qtype {
            QuantType::Q8_0 => {
                for (q, &b) in self.q.iter_mut().zip(&block[2..34]) {
                    *q = b as i8;
                }
            }
            QuantType::Q4_0 => {
                for (l, &b) in block[2..18].iter().enumerate() {
                    self.q[l] = (b & 0x0F) as i8 - 8;
                    self.q[l + 16] = (b >> 4) as i8 - 8;
                }
            }
            QuantType::Q4_K | QuantType::Q5_K => self.decode_k45(qtype, block),
            QuantType::Q6_K => self.decode_q6_k(block),
        }
    }

    /// Q4_K and Q5_K: each 32 bytes of `qs` hold two groups, low nibbles the first
    /// (elements 64j..64j+32) and high nibbles the second; Q5_K's `qh` byte `l` holds
    /// the fifth bit of element `l` of group `g` in bit `g`.
    fn decode_k45(&mut self, qtype: QuantType, block: &[u8]) {
        let (qh, qs): (&[u8], &[u8]) = match qtype {
            QuantType::Q5_K => (&block[16..48], &block[48..176]),
            _ => (&[0; 32], &block[16..144]),
        };
        for (j, chunk) in qs.chunks_exact(32).enumerate() {
            for (l, (&b, &h)) in chunk.iter().zip(qh).enumerate() {
                let (g0, g1) = (2 * j, 2 * j + 1);
                let hi0 = ((h >> g0) & 1) << 4;
                let hi1 = ((h >> g1) & 1) << 4;
                self.q[32 * g0 + l] = ((b & 0x0F) | hi0) as i8;
                self.q[32 * g1 + l] = ((b >> 4) | hi1) as i8;
            }
        }
    }

    /// Q6_K: each half of 128 elements takes 64 bytes of `ql` and 32 of `qh`; element
    /// `l + 32·j` of the half (`l < 32`, `j < 4`) has its low 4 bits in
    /// `ql[l + 32·(j % 2)]` (low nibble for j < 2, high for j ≥ 2) and its top 2
    /// bits in bits `2j..2j+2` of `qh[l]`. Scales are signed, one per 16 elements.
    fn decode_q6_k(&mut self, block: &[u8]) {
        for half in 0..2 {
            let ql = &block[64 * half..64 * half + 64];
            let qh = &block[128 + 32 * half..128 + 32 * half + 32];
            for l in 0..32 {
                for j in 0..4 {
                    let low = ql[l + 32 * (j % 2)] >> (4 * (j / 2)) & 0x0F;
                    let high = (qh[l] >> (2 * j)) & 3;
                    self.q[128 * half + 32 * j + l] = (low | high << 4) as i8 - 32;
                }
            }
        }
    }

    /// The elements as f32, ggml's `scale · q - min` (no fused multiply-add).
    pub fn write_f32(&self, out: &mut [f32]) {
        for ((out, q), (&scale, &min)) in out[..self.len]
            .chunks_exact_mut(self.group)
            .zip(self.q.chunks_exact(self.group))
            .zip(self.scale.iter().zip(&self.min))
        {
            for (o, &q) in out.iter_mut().zip(q) {
                *o = scale * f32::from(q) - min;
            }
        }
    }
}

/// Decodes a block's per-group scales (`d`, or `d · sc[g]` rounded to f32 as ggml
/// does) into `scale` and its per-group mins (`dmin · m[g]`, zero for formats
/// without mins) into `min`, and returns the group length (32, or 16 for Q6_K).
pub(crate) fn block_scales(
    qtype: QuantType,
    block: &[u8],
    scale: &mut [f32; 16],
    min: &mut [f32; 16],
) -> usize {
    *min = [0.0; 16];
    match qtype {
        QuantType::Q8_0 | QuantType::Q4_0 => {
            scale[0] = f16_at(block, 0);
            32
        }
        QuantType::Q4_K | QuantType::Q5_K => {
            let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
            let (sc, m) = k_scales(scales12(block));
            for g in 0..8 {
                scale[g] = d * f32::from(sc[g]);
                min[g] = dmin * f32::from(m[g]);
            }
            32
        }
        QuantType::Q6_K => {
            let d = f16_at(block, 208);
            for (s, &sc) in scale.iter_mut().zip(&block[192..208]) {
                *s = d * f32::from(sc as i8);
            }
            16
        }
    }
}

/// The little-endian f16 at `offset`, widened to f32 (exactly).
#[inline(always)]
pub(crate) fn f16_at(block: &[u8], offset: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([block[offset], block[offset + 1]])).to_f32()
}

/// The 12 packed scale bytes of a Q4_K / Q5_K block.
#[inline(always)]
pub(crate) fn scales12(block: &[u8]) -> [u8; 12] {
    let mut s = [0; 12];
    s.copy_from_slice(&block[4..16]);
    s
}

/// Unpacks the eight 6-bit scales and eight 6-bit mins of a Q4_K / Q5_K block, each
/// set as 8 bytes of a little-endian `u64` (byte `g` is group `g`).
///
/// The 12 bytes are three 32-bit words `a`, `b`, `c`. Groups 0..4 keep their scale
/// in the low 6 bits of `a`'s bytes and their min in `b`'s; groups 4..8 keep the low
/// 4 bits of scale and min in the nibbles of `c`'s bytes and their top 2 bits in the
/// spare top bits of `a` (scales) and `b` (mins). Word-wide masks unpack all 16
/// values in a dozen integer operations (ggml's `get_scale_min_k4`, done 4 at once).
#[inline(always)]
pub(crate) fn k_scales_u64(s: [u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const TOP2: u32 = 0x0303_0303;
    let sc_lo = a & LOW6;
    let m_lo = b & LOW6;
    let sc_hi = (c & LOW4) | (((a >> 6) & TOP2) << 4);
    let m_hi = ((c >> 4) & LOW4) | (((b >> 6) & TOP2) << 4);
    (
        u64::from(sc_lo) | (u64::from(sc_hi) << 32),
        u64::from(m_lo) | (u64::from(m_hi) << 32),
    )
}

/// [`k_scales_u64`] as byte arrays.
#[inline(always)]
pub(crate) fn k_scales(s: [u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (sc, m) = k_scales_u64(s);
    (sc.to_le_bytes(), m.to_le_bytes())
}
