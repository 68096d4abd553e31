//! f32 → GGML block quantizers for writing GGUF files llama.cpp can load.
//!
//! # Why reproduce llama.cpp bit for bit
//!
//! Each encoder follows ggml's reference quantizer for its type (what `llama-quantize`
//! runs when no importance matrix is given), in the same floating-point operation
//! order, so a file written by `herd quantize` has the same bytes as one written by
//! llama.cpp from the same f32 weights. That makes llama.cpp's output a test oracle
//! (any difference is a bug here, not a judgement call about quality) and lets users
//! compare perplexity numbers across the two tools without asterisks.
//!
//! # Layout
//!
//! * [`legacy`]: Q8_0 and Q4_0, 32-element blocks with one f16 scale.
//! * [`k_quants`]: Q4_K, Q5_K and Q6_K, 256-element super-blocks with quantized
//!   per-sub-block scales.
//! * [`fit`]: the scale searches the k-quants share.
//!
//! Blocks are independent, so [`quantize`] splits the input into runs of blocks and
//! encodes them on the rayon pool; the output does not depend on the thread count.

mod fit;
mod k_quants;
mod legacy;

use rayon::prelude::*;

use crate::{KernelError, QuantType};

/// Blocks one rayon task encodes: large enough to amortise scheduling (a Q4_K block
/// takes a few microseconds), small enough to balance a single 4096-wide row set.
const BLOCKS_PER_TASK: usize = 64;

/// The block encoder for `qtype`: `x` has exactly the block's elements, `out` its
/// bytes.
fn encoder(qtype: QuantType) -> fn(&[f32], &mut [u8]) {
    match qtype {
        QuantType::Q8_0 => legacy::q8_0,
        QuantType::Q4_0 => legacy::q4_0,
        QuantType::Q4_K => k_quants::q4_k,
        QuantType::Q5_K => k_quants::q5_k,
        QuantType::Q6_K => k_quants::q6_k,
    }
}

/// Quantizes `src` to `qtype` blocks and appends them to `dst`, bit-identical to
/// llama.cpp's reference quantizer without an importance matrix.
///
/// `src` is any whole number of blocks (else [`KernelError::BlockAlign`], and `dst`
/// is left unchanged); blocks never straddle rows in GGUF, so a tensor whose row
/// length is a multiple of the block size can be passed in one call. The appended
/// length is [`QuantType::row_bytes`] of `src.len()`.
pub fn quantize(qtype: QuantType, src: &[f32], dst: &mut Vec<u8>) -> Result<(), KernelError> {
    let size = qtype.row_bytes(src.len())?;
    let (block, bytes, encode) = (qtype.block_elems(), qtype.block_bytes(), encoder(qtype));
    let start = dst.len();
    dst.resize(start + size, 0);
    let tasks = src
        .par_chunks(block * BLOCKS_PER_TASK)
        .zip(dst[start..].par_chunks_mut(bytes * BLOCKS_PER_TASK));
    tasks.for_each(|(x, y)| {
        for (xb, yb) in x.chunks_exact(block).zip(y.chunks_exact_mut(bytes)) {
            encode(xb, yb);
        }
    });
    Ok(())
}

/// f16 bits of `v`, rounded to nearest even (ggml's `GGML_FP32_TO_FP16`).
fn f16_bits(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}

/// The f32 value of f16 bits (exact).
fn f16_value(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}
