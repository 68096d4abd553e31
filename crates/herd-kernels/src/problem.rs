//! The validated shape of one product and the raw output handle the parallel kernels
//! share. Validation happens once here, so the kernels below can index with raw
//! pointers without re-checking lengths.

use half::{bf16, f16};

use crate::{KernelError, Operand, QuantType};

/// The weight matrix `W` (`n × k`, row-major, the PyTorch `nn.Linear` layout) in its
/// stored dtype, typically a view straight into a memory-mapped safetensors file.
///
/// The slice start only needs the alignment of its element type: the kernels use
/// unaligned loads, because tensors inside a safetensors file are not aligned to
/// vector width (and ggml blocks of 18, 34, 144, 176 or 210 bytes are not aligned to
/// anything).
#[derive(Clone, Copy, Debug)]
pub enum WeightSlice<'a> {
    /// f32 weights.
    F32(&'a [f32]),
    /// bfloat16 weights (most Llama 3.x checkpoints).
    Bf16(&'a [bf16]),
    /// IEEE half-precision weights.
    F16(&'a [f16]),
    /// ggml block-quantized weights (a GGUF tensor's data): each row of `W` is
    /// `k / block_elems` whole blocks, rows back to back, `n · row_bytes(k)` bytes.
    Quant(QuantType, &'a [u8]),
}

impl<'a> WeightSlice<'a> {
    /// Number of weights (whole blocks only, for quantized weights).
    pub fn len(&self) -> usize {
        match self {
            WeightSlice::F32(w) => w.len(),
            WeightSlice::Bf16(w) => w.len(),
            WeightSlice::F16(w) => w.len(),
            WeightSlice::Quant(q, b) => b.len() / q.block_bytes() * q.block_elems(),
        }
    }

    /// Bytes of weight data, the number a decode step has to stream.
    pub fn byte_len(&self) -> usize {
        match self {
            WeightSlice::Quant(_, b) => b.len(),
            _ => self.len() * self.element_size(),
        }
    }

    /// Whether there are no weights.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per weight, for bandwidth accounting; quantized formats have fractional
    /// sizes and report 1 (use [`WeightSlice::byte_len`] for exact accounting).
    pub fn element_size(&self) -> usize {
        match self {
            WeightSlice::F32(_) => 4,
            WeightSlice::Bf16(_) | WeightSlice::F16(_) => 2,
            WeightSlice::Quant(..) => 1,
        }
    }

    /// The weights at `range`, same dtype; for quantized weights `range` must start
    /// and end on block boundaries.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> WeightSlice<'a> {
        match *self {
            WeightSlice::F32(w) => WeightSlice::F32(&w[range]),
            WeightSlice::Bf16(w) => WeightSlice::Bf16(&w[range]),
            WeightSlice::F16(w) => WeightSlice::F16(&w[range]),
            WeightSlice::Quant(q, b) => {
                let byte = |e: usize| e / q.block_elems() * q.block_bytes();
                WeightSlice::Quant(q, &b[byte(range.start)..byte(range.end)])
            }
        }
    }
}

/// `Y (m × n) = X (m × k) · Wᵀ` with every length checked against the shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem<'a> {
    /// Activations, `m × k` row-major.
    pub x: &'a [f32],
    /// Weights, `n × k` row-major.
    pub w: WeightSlice<'a>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl<'a> Problem<'a> {
    /// Checks that `x`, `w` and a `y_len`-long output agree with `m`, `k`, `n`.
    pub fn new(
        x: &'a [f32],
        m: usize,
        k: usize,
        w: WeightSlice<'a>,
        n: usize,
        y_len: usize,
    ) -> Result<Self, KernelError> {
        let overflow = KernelError::Overflow { m, k, n };
        let x_len = m.checked_mul(k).ok_or_else(|| overflow.clone())?;
        let w_len = n.checked_mul(k).ok_or_else(|| overflow.clone())?;
        let out_len = m.checked_mul(n).ok_or_else(|| overflow.clone())?;
        if let WeightSlice::Quant(qtype, bytes) = w {
            let expected = qtype.row_bytes(k)?.checked_mul(n).ok_or(overflow)?;
            if bytes.len() != expected {
                return Err(KernelError::QuantBytes {
                    qtype,
                    expected,
                    actual: bytes.len(),
                });
            }
        }
        for (operand, expected, actual) in [
            (Operand::X, x_len, x.len()),
            (Operand::W, w_len, w.len()),
            (Operand::Y, out_len, y_len),
        ] {
            if expected != actual {
                return Err(KernelError::Shape {
                    operand,
                    expected,
                    actual,
                    m,
                    k,
                    n,
                });
            }
        }
        Ok(Problem { x, w, m, k, n })
    }
}

/// The output `Y` as a raw pointer, so parallel tasks can write disjoint parts of it.
///
/// Tasks own disjoint column ranges of `Y`, which are not contiguous in memory when
/// `m > 1` (`Y` is row-major), so they cannot be handed out as `&mut` sub-slices.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr {
    ptr: *mut f32,
    /// Row stride of `Y`.
    n: usize,
}

// SAFETY: `OutPtr` is only used to write cells of `Y` that exactly one task owns (see
// the drivers in `stream` and `blocked`), and `Y` outlives every task.
unsafe impl Send for OutPtr {}
// SAFETY: as above; shared `OutPtr`s never write the same cell.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Wraps `y`, an `m × n` row-major output.
    pub fn new(y: &mut [f32], n: usize) -> Self {
        OutPtr {
            ptr: y.as_mut_ptr(),
            n,
        }
    }

    /// Row stride of `Y`.
    pub fn stride(self) -> usize {
        self.n
    }

    /// Pointer to `Y[i][j]`.
    ///
    /// # Safety
    /// `(i, j)` must lie inside `Y`, and no other task may access that cell.
    #[inline(always)]
    pub unsafe fn at(self, i: usize, j: usize) -> *mut f32 {
        self.ptr.add(i * self.n + j)
    }
}
