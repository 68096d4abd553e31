//! Matrix products with ggml block-quantized weights ([`WeightSlice::Quant`]).
//!
//! # Two numerics
//!
//! * [`Precision::Int8Dot`] (the default), llama.cpp's method: each row of `X` is
//!   quantized once per call to 8-bit blocks of 32 (see [`act`]), and each group of
//!   32 weights meets its 32 activations in an exact integer dot product
//!   (`vpdpbusd` with AVX-512 VNNI, `vpmaddubsw` with AVX2), scaled in f32 once per
//!   block of 32 (k-quants: once per super-block of 256, their group scales applied
//!   in integers). Decode is then bound by reading the 4.5-8.5 bits per weight, not
//!   by converting them.
//! * [`Precision::Exact`]: weights are dequantized to f32 in registers with
//!   [`crate::dequantize`]'s arithmetic and multiplied with f32 `X`, as the float
//!   kernels do. Decode streams the same bytes with about three times the
//!   instructions; prefill packs dequantized weights into the f32 blocked kernels.
//!
//! # Error of Int8Dot
//!
//! Rounding `x` to the nearest multiple of its block's step `d` moves it by at most
//! `d / 2`, so an output is off the exact product with the same weights by at most
//! `Σ_blocks (d_b / 2)·Σ_b |w|`, plus f32 accumulation. `d` is `amax/127` per block of
//! 32 for Q8_0 / Q4_0, and within `amax₂₅₆/2032` of it for k-quants (see [`act`]).
//! The rounding errors are independent, so typically the error is
//! `~d/√12 · sqrt(Σ w²)` per block, around 1e-3 of the output's scale
//! `sqrt(Σ (x·w)²)`, far below the weights' own quantization error (Q4: ~5-10%). It
//! is the error llama.cpp accepts, smaller for k-quants (ggml uses one step per 256
//! activations there).
//!
//! # Strategies
//!
//! Decode-sized products stream W: each L2-sized group of W rows is unpacked once
//! per few rows of X and read from memory once. Larger ones:
//!
//! * Int8Dot on AVX-512 VNNI, from m = 9 ([`VNNI_STREAM_MAX_M`]), runs an integer
//!   GEMM ([`x86::gemm`]): each task unpacks its block of W rows once into
//!   `vpdpbusd`'s operand layout and every row of X passes over it (measured ~4-5×
//!   the f32 path at m = 512 on Zen 4).
//! * Everything else (Exact, and Int8Dot without VNNI) switches at the float
//!   kernels' threshold (m > 32) to the f32 blocked kernels, each task
//!   dequantizing its block of W rows once into scratch that its packing reads
//!   ([`Dequant`]), so it runs near the FMA peak.

mod act;
mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ops::Range;

use crate::arch;
use crate::blocked::{self, Microkernel, Tile};
use crate::matmul::Strategy;
use crate::problem::{OutPtr, Problem};
use crate::{stream, Isa, Precision, QuantType, WeightSlice};

/// The quantized weights of `p`, if they are quantized.
pub(crate) fn quant_weights<'a>(p: &Problem<'a>) -> Option<(QuantType, &'a [u8])> {
    match p.w {
        WeightSlice::Quant(qtype, bytes) => Some((qtype, bytes)),
        _ => None,
    }
}

/// Whether `qtype` has per-group mins, whose terms need X's block sums.
pub(crate) fn has_mins(qtype: QuantType) -> bool {
    matches!(qtype, QuantType::Q4_K | QuantType::Q5_K)
}

/// Largest `m` the Int8Dot kernels stream on AVX-512 VNNI; larger products run
/// the integer GEMM. Its packing (one pass over W) outweighs the streaming kernel's
/// re-unpacking of W for each 4 rows of X from about m = 10: measured on the Llama
/// 3.2 1B shapes, streaming is ahead up to m = 8 and the GEMM 1.1-2.4x ahead from
/// m = 12.
const VNNI_STREAM_MAX_M: usize = 8;

/// The strategy for `p` when quantized weights choose their own: Int8Dot on
/// AVX-512 VNNI, whose GEMM pays off at a smaller `m` than the float kernels.
pub(crate) fn strategy(isa: Isa, precision: Precision, p: &Problem<'_>) -> Option<Strategy> {
    let int8 = precision != Precision::Exact;
    (int8 && quant_weights(p).is_some() && Flavour::of(isa) == Flavour::Vnni).then_some(
        if p.m <= VNNI_STREAM_MAX_M {
            Strategy::Stream
        } else {
            Strategy::Blocked
        },
    )
}

/// Which kernels serve quantized weights for an instruction set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

impl Flavour {
    /// AVX-512 without VNNI (Skylake-SP, Cascade Lake has it) falls back to the AVX2
    /// kernels, which every AVX-512 CPU also runs.
    fn of(isa: Isa) -> Flavour {
        match isa {
            Isa::Scalar => Flavour::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Flavour::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if crate::isa::avx512_vnni() => Flavour::Vnni,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if Isa::Avx2.is_supported() => Flavour::Avx2,
            _ => Flavour::Scalar,
        }
    }
}

/// `Y = X · Wᵀ` for quantized `W`, with `isa`'s kernels at `precision`.
///
/// # Safety
/// The CPU must support `isa`; `p` must hold quantized weights.
pub(crate) unsafe fn run(
    isa: Isa,
    precision: Precision,
    p: &Problem<'_>,
    out: OutPtr,
    strategy: Strategy,
) {
    let flavour = Flavour::of(isa);
    #[cfg(target_arch = "x86_64")]
    if precision != Precision::Exact && strategy == Strategy::Blocked && flavour == Flavour::Vnni {
        x86::gemm(p, out);
        return;
    }
    if precision != Precision::Exact && strategy == Strategy::Stream {
        match flavour {
            Flavour::Scalar => stream::run::<scalar::Int8>(p, out),
            #[cfg(target_arch = "x86_64")]
            Flavour::Avx2 => stream::run::<x86::Int8Stream<x86::Avx2>>(p, out),
            #[cfg(target_arch = "x86_64")]
            Flavour::Vnni => stream::run::<x86::Int8Stream<x86::Vnni>>(p, out),
        }
        return;
    }
    match (strategy, flavour) {
        (Strategy::Stream, Flavour::Scalar) => stream::run::<scalar::Exact>(p, out),
        #[cfg(target_arch = "x86_64")]
        (Strategy::Stream, Flavour::Avx2) => stream::run::<x86::ExactStream<x86::Avx2>>(p, out),
        #[cfg(target_arch = "x86_64")]
        (Strategy::Stream, Flavour::Vnni) => stream::run::<x86::ExactStream<x86::Vnni>>(p, out),
        (Strategy::Blocked, _) => match (isa, flavour) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Flavour::Vnni) => {
                blocked::run::<Dequant<arch::avx512::Exact, x86::Vnni>>(p, out)
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Flavour::Avx2) => {
                blocked::run::<Dequant<arch::avx512::Exact, x86::Avx2>>(p, out)
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, _) => blocked::run::<Dequant<arch::avx2::Exact, x86::Avx2>>(p, out),
            _ => blocked::run::<Dequant<arch::scalar::Exact, scalar::Portable>>(p, out),
        },
    }
}

/// Whole rows of a quantized format to f32, one implementation per instruction set.
pub(crate) trait RowDequant {
    /// Dequantizes `bytes`, whole rows, into `out`.
    ///
    /// # Safety
    /// The CPU must support the implementation's instruction set.
    unsafe fn dequant(qtype: QuantType, bytes: &[u8], out: &mut [f32]);
}

thread_local! {
    /// Per-thread f32 copy of the W rows a blocked task is packing, kept across calls
    /// like the packing scratch itself (up to `NC_MAX × k` f32, 4 MiB at k = 8192).
    static DEQUANTIZED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The f32 blocked micro-kernel `K` fed with quantized weights: each task's W rows are
/// dequantized with `D` into per-thread scratch, and `K` packs them from there. Only
/// packing changes, so the prefill kernels are the float ones, and each weight is
/// dequantized once per call.
pub(crate) struct Dequant<K, D>(PhantomData<(K, D)>);

impl<K, D> Microkernel for Dequant<K, D>
where
    K: Microkernel<A = f32, B = f32>,
    D: RowDequant,
{
    type A = f32;
    type B = f32;
    const MR: usize = K::MR;
    const NR: usize = K::NR;
    const KPACK: usize = 1;

    fn a_element(row: &[f32], s: usize) -> f32 {
        K::a_element(row, s)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [f32]) {
        let WeightSlice::Quant(qtype, bytes) = w else {
            return K::pack(w, k, rows, dst);
        };
        let row_bytes = k / qtype.block_elems() * qtype.block_bytes();
        let src = &bytes[rows.start * row_bytes..rows.end * row_bytes];
        let len = rows.len() * k;
        DEQUANTIZED.with_borrow_mut(|scratch| {
            if scratch.len() < len {
                scratch.resize(len, 0.0);
            }
            let rows_f32 = &mut scratch[..len];
            D::dequant(qtype, src, rows_f32);
            K::pack(WeightSlice::F32(rows_f32), k, 0..rows.len(), dst);
        });
    }

    unsafe fn tile(steps: usize, a: *const f32, b: *const f32, tile: &Tile) {
        K::tile(steps, a, b, tile);
    }
}
