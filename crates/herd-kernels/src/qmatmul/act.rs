//! Activations quantized for the integer kernels ([`crate::Precision::Int8Dot`]).
//!
//! Each row of `X` is cut into blocks of 32 (every ggml format's blocks are whole
//! multiples of 32) and each block becomes 32 `i8` and one f32 step `d = amax / 127`,
//! rounded to nearest (ties to even): ggml's `Q8_0` activation format, except that `d`
//! stays f32 instead of being rounded to f16. ggml quantizes activations for k-quant
//! weights with one scale per 256 (`Q8_K`); per 32 is never less accurate.
//!
//! Alongside, per block, whatever the weight format's kernel needs to fold constant
//! terms out of its inner loop:
//!
//! * `sum`: the f32 sum of the block's original values, for the `- dmin · m` terms of
//!   Q4_K / Q5_K (`Σ (d·sc·q - mn)·x = d·sc·Σ q·x - mn·Σ x`).
//! * `corr`: `-offset · (q₀ + q₁ + q₂ + q₃)` for every 4 consecutive values, the
//!   starting value of each 32-bit lane of the SIMD dot product. Weight formats that
//!   store `q + offset` unsigned (Q4_0: 8, Q6_K: 32, and Q8_0 shifted by 128 for
//!   `vpdpbusd`) then need no correction after the integer dot:
//!   `Σ (u - offset)·x = corr + Σ u·x` per lane, exactly.

use rayon::prelude::*;

/// Values per activation block.
pub(crate) const XBLOCK: usize = 32;

/// Below this many elements `X` is quantized on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// One row of `X`, quantized.
pub(crate) struct QRow {
    /// The quantized values, `k`.
    pub q: Vec<i8>,
    /// Step of each block, `k / 32`.
    pub d: Vec<f32>,
    /// Sum of each block's original values, `k / 32`; empty unless asked for.
    pub sum: Vec<f32>,
    /// Starting value of each 4-value dot lane, `k / 4`; empty for offset 0.
    pub corr: Vec<i32>,
}

/// All rows of `X`, quantized once per call and shared by every task.
pub(crate) struct QuantizedX {
    pub rows: Vec<QRow>,
}

impl QuantizedX {
    /// Quantizes the `m` rows of `x` (row length `k`, a multiple of 32) with
    /// `quantize`, a [`quantize_row`] compiled for the caller's instruction set, in
    /// parallel when `X` is large.
    pub fn new(x: &[f32], k: usize, quantize: impl Fn(&[f32]) -> QRow + Sync) -> Self {
        let rows = if x.len() >= PARALLEL_MIN_ELEMS {
            x.par_chunks_exact(k).map(&quantize).collect()
        } else {
            x.chunks_exact(k).map(&quantize).collect()
        };
        QuantizedX { rows }
    }
}

/// Rounds to the nearest integer, ties to even, for `|v| < 2²²`: adding 1.5·2²³
/// leaves no fraction bits, so the FPU's default rounding does the work. Unlike
/// `round_ties_even`, this is plain arithmetic on baseline x86-64 (no libm call).
#[inline(always)]
fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Quantizes one row (length a multiple of 32); `offset` sets `corr` (0: none) and
/// `sums` whether to fill `sum`. Written to auto-vectorise; callers compile it for
/// their instruction set.
///
/// A NaN or infinity in a block makes its step NaN or infinite and its values 0, so
/// every output that reads the block becomes NaN rather than silently finite.
#[inline(always)]
pub(crate) fn quantize_row(x: &[f32], offset: i32, sums: bool) -> QRow {
    let blocks = x.len() / XBLOCK;
    let mut row = QRow {
        q: vec![0; x.len()],
        d: vec![0.0; blocks],
        sum: if sums { vec![0.0; blocks] } else { Vec::new() },
        corr: if offset != 0 {
            vec![0; x.len() / 4]
        } else {
            Vec::new()
        },
    };
    for (b, (xb, qb)) in x
        .chunks_exact(XBLOCK)
        .zip(row.q.chunks_exact_mut(XBLOCK))
        .enumerate()
    {
        let mut amax = 0.0f32;
        for &v in xb {
            let a = v.abs();
            // Written so a NaN sticks once seen.
            if a > amax || a.is_nan() {
                amax = a;
            }
        }
        let d = amax / 127.0;
        let inv = if d > 0.0 && d.is_finite() {
            1.0 / d
        } else {
            0.0
        };
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = round_even(v * inv).clamp(-127.0, 127.0) as i8;
        }
        row.d[b] = d;
        if sums {
            row.sum[b] = xb.iter().sum();
        }
        if offset != 0 {
            for (c, q4) in row.corr[b * 8..b * 8 + 8]
                .iter_mut()
                .zip(qb.chunks_exact(4))
            {
                *c = -offset * q4.iter().map(|&q| i32::from(q)).sum::<i32>();
            }
        }
    }
    row
}
