//! The public entry points: choose an instruction set and precision once
//! ([`Matmul`]), then pick the strategy per call from the shape.

use crate::arch;
use crate::problem::{OutPtr, Problem};
use crate::{blocked, qmatmul, stream, Isa, KernelError, WeightSlice};

/// How products are rounded and accumulated.
///
/// Each variant only changes the weight types it names; the others are computed as
/// under `Exact`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Every weight is converted to f32 exactly and every product is accumulated in
    /// f32 with FMA: the result equals upcasting `W` to f32 and doing an f32 matmul, up
    /// to summation order (relative error ~1e-6 of `Σ|x·w|`). For quantized weights
    /// "upcasting" is [`crate::dequantize`] (bit-identical).
    Exact,
    /// The default, and what llama.cpp does: for quantized weights
    /// ([`WeightSlice::Quant`]) each row of `X` is rounded to 8-bit integers with an
    /// f32 step per block of 32 values, and products are exact integer dot products
    /// (AVX-512 VNNI `vpdpbusd`/`vpdpwssd`, AVX2 `vpmaddubsw`) scaled in f32. Float
    /// weights are computed as under `Exact`.
    ///
    /// Steps: `d = amax₃₂ / 127` for Q8_0 and Q4_0; for k-quants a multiple `k ≤ 16`
    /// of a unit `amax₂₅₆ / 2032` per 256 values (so a whole super-block sums in
    /// integers), `d ≤ amax₃₂ / 127 + amax₂₅₆ / 2032`. ggml uses `amax₂₅₆ / 127` there.
    ///
    /// Error: rounding moves each `x` by at most `d / 2`, so an output differs from
    /// `Exact` by at most `Σ_blocks (d/2)·Σ|w|` over the blocks of 32 (about 0.4% of
    /// `Σ|x|·|w|` at worst); typically ~1e-3 of `sqrt(Σ(x·w)²)`, small next to the
    /// weights' own quantization error. NaN or infinite `x` gives NaN outputs.
    ///
    /// Prefill-sized calls use it only on AVX-512 VNNI (an integer GEMM from m = 9,
    /// with per-block steps `amax₃₂ / 127` for every format); elsewhere calls with
    /// m > 32 are faster through the f32 blocked kernels and computed as under
    /// `Exact`.
    #[default]
    Int8Dot,
    /// Opt-in prefill for bf16 weights that trades accuracy for `vdpbf16ps`
    /// (AVX512_BF16): `X` is also rounded to bf16 (round to nearest even) so one
    /// instruction does two multiply-adds per f32 lane; the bf16 × bf16 products are
    /// exact and accumulated in f32.
    ///
    /// Error: bf16 keeps 8 significant bits, so rounding `X` costs up to 2⁻⁸ (0.4%)
    /// relative per element and each output is off by at most 2⁻⁸·`Σ|x·w|` (plus f32
    /// accumulation error); with independent rounding errors it is typically
    /// ~2⁻⁸·`sqrt(Σ(x·w)²)`, i.e. ~1e-3 relative or less. The instruction also flushes
    /// bf16 subnormals (below ~1e-38) to zero.
    ///
    /// Speed depends on the CPU: it pays where `vdpbf16ps` issues as fast as an FMA
    /// (AMD Zen 4), doubling the multiply-adds per instruction; on Intel Sapphire /
    /// Emerald Rapids it issues at half the FMA rate and measured ~40% *slower* than
    /// `Exact` (`examples/kernel_bench.rs` prints both).
    ///
    /// Only the blocked (prefill) kernel for bf16 weights changes: streaming-sized
    /// calls (m ≤ 32) stay exact, as do f16 and f32 weights. Quantized weights are
    /// computed as under `Int8Dot`.
    Bf16Dot,
}

/// Largest `m` that uses the streaming strategy; larger batches use the blocked
/// kernels. Packing W costs about as much as a pass of ~30 rows of X through the
/// streaming kernel, so blocking only pays off beyond that: measured with
/// `examples/kernel_bench.rs` (section `batch`), streaming is ahead up to m = 32 on
/// the Llama 3.2 1B shapes and the blocked kernels from about m = 48-64.
const STREAM_MAX_M: usize = 32;

/// The per-call strategy, chosen from `m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Memory-bound: stream each weight once against all rows of `X`.
    Stream,
    /// Compute-bound: pack weight panels and run a register-blocked micro-kernel.
    Blocked,
}

impl Strategy {
    fn for_rows(m: usize) -> Self {
        if m <= STREAM_MAX_M {
            Strategy::Stream
        } else {
            Strategy::Blocked
        }
    }
}

/// A configured matrix-product kernel: an instruction set and a precision, checked
/// against the CPU when built, so every [`Matmul::run`] can dispatch without checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matmul {
    isa: Isa,
    precision: Precision,
}

impl Default for Matmul {
    /// The fastest kernels for this CPU at the default precision
    /// ([`Precision::Int8Dot`]: exact for float weights).
    fn default() -> Self {
        Matmul::new(Precision::default())
    }
}

impl Matmul {
    /// The fastest kernels for this CPU. `Precision::Bf16Dot` is a permission, not a
    /// demand: where the CPU lacks AVX512_BF16 it falls back to `Exact`
    /// ([`Matmul::precision`] tells which one runs).
    pub fn new(precision: Precision) -> Self {
        let isa = Isa::best();
        let precision = if isa.supports(precision) {
            precision
        } else {
            Precision::Exact
        };
        Matmul { isa, precision }
    }

    /// Exactly `isa` with exactly `precision`, or an error if this CPU cannot run them.
    /// For tests and benchmarks that compare paths.
    pub fn with_isa(isa: Isa, precision: Precision) -> Result<Self, KernelError> {
        if isa.supports(precision) {
            Ok(Matmul { isa, precision })
        } else {
            Err(KernelError::Unsupported {
                isa,
                precision,
                features: crate::cpu_features(),
            })
        }
    }

    /// The instruction set these kernels use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The precision these kernels use.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `y[i][j] = Σ_k x[i][k] · w[j][k]`: `Y (m × n) = X (m × k) · Wᵀ` where `W` is
    /// `n × k` row-major. Runs on the global rayon pool. `y` is overwritten, not
    /// accumulated into.
    ///
    /// Errors if a slice length disagrees with `m`, `k`, `n`, or, for quantized
    /// weights, if `k` is not a whole number of blocks or the data is not exactly
    /// `n` rows of them. Zero-sized shapes are valid (`k = 0` gives `y = 0`).
    pub fn run(
        &self,
        x: &[f32],
        m: usize,
        k: usize,
        w: WeightSlice<'_>,
        n: usize,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        let problem = Problem::new(x, m, k, w, n, y.len())?;
        let strategy = qmatmul::strategy(self.isa, self.precision, &problem)
            .unwrap_or_else(|| Strategy::for_rows(m));
        self.run_with(&problem, y, strategy);
        Ok(())
    }

    /// Runs a validated problem with a given strategy; tests force both strategies.
    pub(crate) fn run_with(&self, p: &Problem<'_>, y: &mut [f32], strategy: Strategy) {
        if p.m == 0 || p.n == 0 {
            return;
        }
        if p.k == 0 {
            y.fill(0.0);
            return;
        }
        let out = OutPtr::new(y, p.n);
        if let WeightSlice::Quant(..) = p.w {
            // SAFETY: as below; `p.w` is quantized.
            unsafe { qmatmul::run(self.isa, self.precision, p, out, strategy) };
            return;
        }
        // SAFETY (all arms): `Matmul` is only built for an `isa`/`precision` the CPU
        // supports, which is what the `arch` kernels' target features require.
        unsafe {
            match (strategy, self.isa) {
                (Strategy::Stream, Isa::Scalar) => stream::run::<arch::scalar::Stream>(p, out),
                #[cfg(target_arch = "x86_64")]
                (Strategy::Stream, Isa::Avx2) => stream::run::<arch::avx2::Stream>(p, out),
                #[cfg(target_arch = "x86_64")]
                (Strategy::Stream, Isa::Avx512) => stream::run::<arch::avx512::Stream>(p, out),
                (Strategy::Blocked, Isa::Scalar) => blocked::run::<arch::scalar::Exact>(p, out),
                #[cfg(target_arch = "x86_64")]
                (Strategy::Blocked, Isa::Avx2) => blocked::run::<arch::avx2::Exact>(p, out),
                #[cfg(target_arch = "x86_64")]
                (Strategy::Blocked, Isa::Avx512) => match (self.precision, p.w) {
                    (Precision::Bf16Dot, WeightSlice::Bf16(_)) => {
                        blocked::run::<arch::avx512::Bf16Dot>(p, out)
                    }
                    _ => blocked::run::<arch::avx512::Exact>(p, out),
                },
                #[cfg(not(target_arch = "x86_64"))]
                (_, Isa::Avx2 | Isa::Avx512) => {
                    unreachable!("x86 kernels are never supported off x86_64")
                }
            }
        }
    }
}

/// `y[i][j] = Σ_k x[i][k] · w[j][k]` with the fastest kernels for this CPU at the
/// default precision (exact for float weights, [`Precision::Int8Dot`] for quantized
/// ones): the `nn.Linear` forward `Y = X · Wᵀ` for `X` `m × k`, `W` `n × k`, `Y`
/// `m × n`, all row-major. See [`Matmul::run`].
pub fn matmul_wt(
    x: &[f32],
    m: usize,
    k: usize,
    w: WeightSlice<'_>,
    n: usize,
    y: &mut [f32],
) -> Result<(), KernelError> {
    Matmul::default().run(x, m, k, w, n, y)
}
