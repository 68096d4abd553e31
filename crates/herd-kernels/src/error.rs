//! The one error type of this crate. Every kernel failure is a caller mistake (slice
//! lengths that disagree with the shape) or a request the CPU cannot honour, so each
//! variant carries the full shape or the instruction set involved.

use std::fmt;

use crate::{Isa, Precision, QuantType};

/// Which operand of `Y = X · Wᵀ` a shape error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// The activations `X`, `m × k`.
    X,
    /// The weights `W`, `n × k`.
    W,
    /// The output `Y`, `m × n`.
    Y,
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operand::X => "x (m × k)",
            Operand::W => "w (n × k)",
            Operand::Y => "y (m × n)",
        })
    }
}

/// Everything that can go wrong in a matrix product.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A slice's length disagrees with the shape.
    #[error(
        "matmul_wt: {operand} has {actual} elements, but m={m}, k={k}, n={n} needs {expected}"
    )]
    Shape {
        /// The slice that has the wrong length.
        operand: Operand,
        /// The length the shape implies.
        expected: usize,
        /// The slice's length.
        actual: usize,
        /// Rows of X and Y.
        m: usize,
        /// Inner dimension.
        k: usize,
        /// Rows of W, columns of Y.
        n: usize,
    },
    /// `m·k`, `n·k` or `m·n` does not fit in `usize`.
    #[error("matmul_wt: shape m={m}, k={k}, n={n} overflows usize")]
    Overflow {
        /// Rows of X and Y.
        m: usize,
        /// Inner dimension.
        k: usize,
        /// Rows of W, columns of Y.
        n: usize,
    },
    /// A quantized row length is not a whole number of the format's blocks.
    #[error("{qtype}: row length {k} is not a multiple of its {} elements per block", qtype.block_elems())]
    BlockAlign {
        /// The quantized format.
        qtype: QuantType,
        /// The row length (`k` of a product, or a dequantized output's length).
        k: usize,
    },
    /// Quantized data is not exactly the blocks its shape needs.
    #[error("{qtype}: data is {actual} bytes, but the shape needs {expected}")]
    QuantBytes {
        /// The quantized format.
        qtype: QuantType,
        /// Bytes the shape implies.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A forced instruction set or precision is not available on this CPU.
    #[error("{precision:?} kernels for {isa} are not supported by this CPU ({features})")]
    Unsupported {
        /// The instruction set asked for.
        isa: Isa,
        /// The precision asked for.
        precision: Precision,
        /// What the CPU does support, from [`crate::cpu_features`].
        features: String,
    },
}
