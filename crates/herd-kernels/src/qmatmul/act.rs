//! Activations quantized for the integer kernels ([`crate::Precision::Int8Dot`]).
//!
//! Each row of `X` becomes `i8` values in blocks of 32 (every ggml format's blocks are
//! whole multiples of 32), rounded to nearest (ties to even), with a step per block
//! chosen one of two ways:
//!
//! * **Per block** (Q8_0, Q4_0 weights): `d = amax / 127`, ggml's `Q8_0` activation
//!   format with `d` kept in f32. These weights carry a float scale per 32 anyway, so
//!   the kernel scales each block's integer dot in f32.
//! * **Per super-block** (k-quant weights): a unit `u = amax₂₅₆ / 2032` per 256 values
//!   and a multiplier `k ∈ 1..=16` per block of 32, the smallest with
//!   `k·u·127 ≥ amax₃₂`; the block's step is `k·u`. The kernel can then fold `k` into
//!   the weights' integer group scales (`sc·k` still fits 16 bits) and sum a whole
//!   super-block in integers (`vpmaddubsw` + `vpdpwssd`) before one f32 scaling, as
//!   ggml does with its `Q8_K` format (one step per 256). The step is at most
//!   `amax₃₂/127 + amax₂₅₆/2032`: within 1/16 of a super-block's range of the best
//!   per-block step, where `Q8_K` uses `amax₂₅₆/127` for every block.
//!
//! Alongside, whatever the weight format's kernel needs to fold constant terms out of
//! its inner loop:
//!
//! * `sum`: the f32 sum of each block's original values, for the `- dmin · m` terms of
//!   Q4_K / Q5_K (`Σ (d·sc·q - mn)·x = d·sc·Σ q·x - mn·Σ x`).
//! * `corr`: `-offset · (q₀ + q₁ + q₂ + q₃)` for every 4 consecutive values, the
//!   starting value of each 32-bit lane of a `vpdpbusd` dot. Weight formats that store
//!   `q + offset` unsigned (Q4_0: 8, and Q8_0 shifted by 128 for `vpdpbusd`) then need
//!   no correction after the integer dot: `Σ (u - offset)·x = corr + Σ u·x` per lane.
//! * `xs16`: the sum of each 16 quantized values, for Q6_K's offset of 32.

use rayon::prelude::*;

/// Values per activation block.
pub(crate) const XBLOCK: usize = 32;

/// Values per super-block (k-quants).
pub(crate) const XSUPER: usize = 256;

/// Largest per-block multiplier of the super-block unit.
const KMAX: f32 = 16.0;

/// Below this many elements `X` is quantized on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// How the steps of a row are chosen, and which extras are filled.
#[derive(Clone, Copy)]
pub(crate) struct XLayout {
    /// Per super-block steps (k-quant weights) instead of per block.
    pub super_blocks: bool,
    /// `corr` offset; 0 leaves `corr` empty.
    pub offset: i32,
    /// Fill `sum`.
    pub sums: bool,
    /// Fill `xs16`.
    pub sums16: bool,
}

/// One row of `X`, quantized.
pub(crate) struct QRow {
    /// The quantized values, `k`.
    pub q: Vec<i8>,
    /// Step of each block, `k / 32` (in super-block layout, `unit · kmul`).
    pub d: Vec<f32>,
    /// Super-block layout: the unit of each super-block, `k / 256`.
    pub unit: Vec<f32>,
    /// Super-block layout: each super-block's 8 multipliers as 16-bit lanes, twice
    /// (`[k₀..k₈, k₀..k₈]`), `k / 16`.
    pub kmul: Vec<i16>,
    /// Super-block layout: each multiplier twice in a row (`[k₀, k₀, k₁, k₁, ..]`), the
    /// multiplier of each 16 values, `k / 16`.
    pub kmul16: Vec<i16>,
    /// Sum of each block's original values, `k / 32`; empty unless asked for.
    pub sum: Vec<f32>,
    /// Sum of each 16 quantized values, `k / 16`; empty unless asked for.
    pub xs16: Vec<i16>,
    /// Starting value of each 4-value dot lane, `k / 4`; empty for offset 0.
    pub corr: Vec<i32>,
}

/// All rows of `X`, quantized once per call and shared by every task.
pub(crate) struct QuantizedX {
    pub rows: Vec<QRow>,
}

impl QuantizedX {
    /// Quantizes the `m` rows of `x` (row length `k`, a multiple of 32, or of 256 for
    /// the super-block layout) with `quantize`, a [`quantize_row`] compiled for the
    /// caller's instruction set, in parallel when `X` is large.
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

/// The largest magnitude in `x`; NaN if any value is NaN. Computed on the bits
/// (sign cleared, a NaN's bits exceed infinity's), an integer maximum that
/// vectorises, unlike a float one with NaN semantics.
#[inline(always)]
fn amax(x: &[f32]) -> f32 {
    f32::from_bits(x.iter().fold(0, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF)))
}

/// The sum of 32 values in 8 interleaved partial sums, so it vectorises (the order
/// of an f32 sum is otherwise fixed, one dependent add after another).
#[inline(always)]
fn sum32(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for c in x.chunks_exact(8) {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

/// Rounds `x` to multiples of `step` into `q`. A zero, NaN or infinite step gives
/// zeros (and the step then makes the outputs zero or NaN, as the inputs deserve).
#[inline(always)]
fn round_block(x: &[f32], step: f32, q: &mut [i8]) {
    let inv = if step > 0.0 && step.is_finite() {
        1.0 / step
    } else {
        0.0
    };
    for (q, &v) in q.iter_mut().zip(x) {
        let t = round_even(v * inv);
        // NaN (an infinite `v` times a zero `inv`) becomes 0; finite values are
        // within ±127 after the clamp. Spelled out, unlike `as i8`, so it vectorises.
        let t = if t.is_nan() {
            0.0
        } else {
            t.clamp(-127.0, 127.0)
        };
        // SAFETY: `t` is finite and within i32's range.
        *q = unsafe { t.to_int_unchecked::<i32>() } as i8;
    }
}

/// Quantizes one row in `layout`. Written to auto-vectorise; callers compile it for
/// their instruction set.
#[inline(always)]
pub(crate) fn quantize_row(x: &[f32], layout: XLayout) -> QRow {
    let blocks = x.len() / XBLOCK;
    let supers = if layout.super_blocks {
        x.len() / XSUPER
    } else {
        0
    };
    let mut row = QRow {
        q: vec![0; x.len()],
        d: vec![0.0; blocks],
        unit: vec![0.0; supers],
        kmul: vec![0; supers * 16],
        kmul16: vec![0; supers * 16],
        sum: if layout.sums {
            vec![0.0; blocks]
        } else {
            Vec::new()
        },
        xs16: if layout.sums16 {
            vec![0; x.len() / 16]
        } else {
            Vec::new()
        },
        corr: if layout.offset != 0 {
            vec![0; x.len() / 4]
        } else {
            Vec::new()
        },
    };
    if layout.super_blocks {
        for (s, xs) in x.chunks_exact(XSUPER).enumerate() {
            let unit = amax(xs) / (127.0 * KMAX);
            row.unit[s] = unit;
            for (g, xb) in xs.chunks_exact(XBLOCK).enumerate() {
                let need = amax(xb) / (127.0 * unit);
                // `need` is NaN when `unit` is 0 or NaN; `max` then picks 1.
                let k = need.ceil().clamp(1.0, KMAX).max(1.0);
                let b = s * 8 + g;
                row.d[b] = unit * k;
                row.kmul[s * 16 + g] = k as i16;
                row.kmul[s * 16 + 8 + g] = k as i16;
                row.kmul16[s * 16 + 2 * g] = k as i16;
                row.kmul16[s * 16 + 2 * g + 1] = k as i16;
            }
        }
    } else {
        for (b, xb) in x.chunks_exact(XBLOCK).enumerate() {
            row.d[b] = amax(xb) / 127.0;
        }
    }
    for (b, (xb, qb)) in x
        .chunks_exact(XBLOCK)
        .zip(row.q.chunks_exact_mut(XBLOCK))
        .enumerate()
    {
        round_block(xb, row.d[b], qb);
        if layout.sums {
            row.sum[b] = sum32(xb);
        }
        if layout.offset != 0 {
            for (c, q4) in row.corr[b * 8..b * 8 + 8]
                .iter_mut()
                .zip(qb.chunks_exact(4))
            {
                *c = -layout.offset * q4.iter().map(|&q| i32::from(q)).sum::<i32>();
            }
        }
    }
    if layout.sums16 {
        for (s, q16) in row.xs16.iter_mut().zip(row.q.chunks_exact(16)) {
            *s = q16.iter().map(|&q| i16::from(q)).sum();
        }
    }
    row
}
