//! Portable kernels for quantized weights: the fallback without AVX2, and the plainest
//! statement of what the SIMD kernels compute. Each block is decoded to its integer
//! form ([`IntBlock`]) once per chunk of X rows and then used for every row in it.

use std::ops::Range;

use super::act::{quantize_row, QRow, QuantizedX, XLayout, XBLOCK, XSUPER};
use super::{has_mins, quant_weights, RowDequant};
use crate::problem::{OutPtr, Problem};
use crate::qtype::IntBlock;
use crate::stream::RowKernel;
use crate::{dequantize, QuantType};

/// Rows of X per pass over a W row: the accumulators live on the stack.
const MR: usize = 8;

/// Independent partial sums in the f32 dot product, so it can vectorise.
const LANES: usize = 8;

/// Portable [`crate::Precision::Int8Dot`] streaming kernel.
pub(crate) struct Int8;

impl RowKernel for Int8 {
    type Shared = QuantizedX;

    /// The SIMD kernels' activation steps (per super-block for k-quants), so every
    /// instruction set rounds X alike; the offsets and extra sums are not needed.
    unsafe fn prepare(p: &Problem<'_>) -> QuantizedX {
        let qtype = quant_weights(p).map(|(q, _)| q);
        let layout = XLayout {
            super_blocks: qtype.is_some_and(|q| q.block_elems() == XSUPER),
            offset: 0,
            sums: qtype.is_some_and(has_mins),
            sums16: false,
        };
        QuantizedX::new(p.x, p.k, |row: &[f32]| -> QRow {
            quantize_row(row, layout)
        })
    }

    unsafe fn rows(p: &Problem<'_>, xq: &QuantizedX, rows: Range<usize>, out: OutPtr) {
        let Some((qtype, bytes)) = quant_weights(p) else {
            return;
        };
        let row_bytes = bytes.len() / p.n.max(1);
        let mut blk = IntBlock::default();
        for j in rows {
            let w_row = &bytes[j * row_bytes..(j + 1) * row_bytes];
            for (i0, x_rows) in xq.rows.chunks(MR).enumerate().map(|(c, r)| (c * MR, r)) {
                let mut acc = [0.0f32; MR];
                for (b, block) in w_row.chunks_exact(qtype.block_bytes()).enumerate() {
                    blk.decode(qtype, block);
                    let e0 = b * qtype.block_elems();
                    for (a, x) in acc.iter_mut().zip(x_rows) {
                        *a += block_dot(&blk, x, e0);
                    }
                }
                for (i, &a) in acc.iter().enumerate().take(x_rows.len()) {
                    *out.at(i0 + i, j) = a;
                }
            }
        }
    }
}

/// One decoded block against the quantized X values from element `e0`: per weight
/// group an exact integer dot, scaled by the group's and the X block's steps.
fn block_dot(blk: &IntBlock, x: &QRow, e0: usize) -> f32 {
    let mut acc = 0.0f32;
    for (g, wq) in blk.q[..blk.len].chunks_exact(blk.group).enumerate() {
        let e = e0 + g * blk.group;
        let xq = &x.q[e..e + blk.group];
        let dot: i32 = wq
            .iter()
            .zip(xq)
            .map(|(&w, &v)| i32::from(w) * i32::from(v))
            .sum();
        acc += blk.scale[g] * x.d[e / XBLOCK] * dot as f32;
        if !x.sum.is_empty() {
            acc -= blk.min[g] * x.sum[e / XBLOCK];
        }
    }
    acc
}

/// Portable [`crate::Precision::Exact`] streaming kernel: each block decoded to f32
/// once per W row, then dotted with every row of X.
pub(crate) struct Exact;

impl RowKernel for Exact {
    type Shared = ();

    unsafe fn prepare(_: &Problem<'_>) {}

    unsafe fn rows(p: &Problem<'_>, _: &(), rows: Range<usize>, out: OutPtr) {
        let Some((qtype, bytes)) = quant_weights(p) else {
            return;
        };
        let (k, elems) = (p.k, qtype.block_elems());
        let row_bytes = bytes.len() / p.n.max(1);
        let mut buf = [0.0f32; 256];
        let mut blk = IntBlock::default();
        let x_rows: Vec<&[f32]> = p.x.chunks_exact(k).collect();
        for j in rows {
            let w_row = &bytes[j * row_bytes..(j + 1) * row_bytes];
            for (i0, x_rows) in x_rows.chunks(MR).enumerate() {
                let mut acc = [0.0f32; MR];
                for (b, block) in w_row.chunks_exact(qtype.block_bytes()).enumerate() {
                    blk.decode(qtype, block);
                    blk.write_f32(&mut buf);
                    let e0 = b * elems;
                    for (a, x) in acc.iter_mut().zip(x_rows) {
                        *a += dot(&x[e0..e0 + elems], &buf[..elems]);
                    }
                }
                for (i, &a) in acc.iter().enumerate().take(x_rows.len()) {
                    *out.at(i0 * MR + i, j) = a;
                }
            }
        }
    }
}

fn dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (xs, ws) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += xs[l] * ws[l];
        }
    }
    acc.iter().sum()
}

/// Portable whole-row dequantization for the blocked (prefill) kernels' packing.
pub(crate) struct Portable;

impl RowDequant for Portable {
    unsafe fn dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]) {
        // The caller passes whole rows cut from a validated weight slice.
        if let Err(err) = dequantize(qtype, bytes, out) {
            debug_assert!(false, "validated rows failed to dequantize: {err}");
        }
    }
}
