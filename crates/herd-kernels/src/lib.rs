//! CPU matrix products for LLM linear layers: `Y = X · Wᵀ`, with f32 activations
//! and bf16, f16 or f32 weights borrowed straight from a memory-mapped checkpoint.
//!
//! # Why this crate exists
//!
//! candle's bf16 matrix-vector product is about ten times slower than its f32 one on
//! x86, so a bf16 checkpoint either decodes slowly or has to be upcast to f32 at load
//! time (twice the memory, twice the bytes streamed per token). These kernels read the
//! stored weights as they are and convert them to f32 in registers, so bf16 decode runs
//! at memory bandwidth on half the bytes.
//!
//! The API is plain slices, with no candle types, so the model crate can hand over
//! `&[bf16]` views of the mmap and its own activation buffers.
//!
//! # Two regimes, two strategies
//!
//! ```text
//!             X (m × k, f32)      W (n × k, bf16/f16/f32, nn.Linear layout)
//! decode      m ≤ 32              streamed once: memory-bound (m = 1), or too few
//!                                 rows of X to pay for repacking W
//! prefill     m > 32              reused m times: compute-bound
//! ```
//!
//! * **Streaming** (decode): the n rows of W are split into contiguous chunks over the
//!   global rayon pool so every core streams its own part of the matrix, with software
//!   prefetch so each core keeps enough cache misses in flight. Each chunk is walked 4
//!   W rows at a time against up to 4 rows of X (16 independent accumulators), reading
//!   the weights in their stored layout and widening them to f32 in registers.
//! * **Blocked** (prefill): a block of W rows is converted to f32 once and repacked into
//!   k-major panels, then a register-blocked outer-product micro-kernel (8 rows of X ×
//!   32 rows of W on AVX-512) runs every row of X over it, so each weight is fetched and
//!   converted once per call instead of once per row of X.
//!
//! # Numerics
//!
//! Float weights get [`Precision::Exact`] by default: every weight is
//! converted to f32 exactly and products accumulate in f32, so results match a
//! reference that upcasts the weights to f32 up to f32 summation-order differences
//! (~1e-6 relative for well-conditioned sums).
//! [`Precision::Bf16Dot`] is an explicit opt-in that also rounds X to bf16 so the
//! AVX512_BF16 `vdpbf16ps` instruction can do two multiply-adds per lane; see its docs.
//!
//! # Quantized weights
//!
//! [`WeightSlice::Quant`] takes ggml's block-quantized formats ([`QuantType`]: Q8_0,
//! Q4_0, Q4_K, Q5_K, Q6_K) as the raw bytes of a GGUF tensor, so a GGUF model runs
//! without converting its weights. By default ([`Precision::Int8Dot`]) the products
//! are llama.cpp's: each call quantizes X to 8 bits (one step per 32 values) and the
//! weights meet it in exact integer dot products (AVX-512 VNNI `vpdpbusd`, AVX2
//! `vpmaddubsw`), so decode stays bound by reading 4.5-8.5 bits per weight rather than
//! by converting them, and prefill on AVX-512 VNNI runs an integer GEMM at several
//! times the f32 kernels' rate; the error this adds is bounded and documented on the
//! variant. [`Precision::Exact`] dequantizes in registers and uses f32 FMAs instead.
//! [`dequantize`] decodes whole rows (embedding lookups).
//!
//! # Instruction sets
//!
//! The best available [`Isa`] is detected once per process (AVX-512, AVX2+FMA+F16C, or
//! portable Rust). [`Matmul::with_isa`] forces a specific one, which is how the tests
//! run every path on one machine and how the benchmark compares them.

#![deny(missing_docs)]

mod arch;
mod blocked;
mod error;
mod isa;
mod matmul;
mod problem;
mod qmatmul;
mod qtype;
mod quantize;
mod stream;
#[cfg(test)]
mod tests;

pub use error::{KernelError, Operand};
pub use isa::{cpu_features, Isa};
pub use matmul::{matmul_wt, Matmul, Precision};
pub use problem::WeightSlice;
pub use qtype::{dequantize, QuantType};
pub use quantize::quantize;
