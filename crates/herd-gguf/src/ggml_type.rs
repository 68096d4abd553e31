//! ggml tensor types: on-disk ids and block layout facts.
//!
//! The ids are ggml's `enum ggml_type` (llama.cpp `ggml/include/ggml.h`, mirrored
//! by `gguf-py`'s `GGMLQuantizationType`); the sizes are `sizeof(block_*)` from
//! `ggml/src/ggml-common.h`. Gaps in the ids are types that ggml removed (4, 5:
//! Q4_2/Q4_3; 31–33 and 36–38: repacked Q4_0/IQ4_NL variants that are never
//! stored in files). Every quantized type stores a row as whole blocks, so a
//! row length (`ne[0]`) must be a multiple of [`GgmlType::block_size`].

use std::fmt;
use std::str::FromStr;

use crate::GgufError;

/// Elements in one k-quant super-block (`QK_K` in ggml).
const QK_K: usize = 256;

/// A ggml tensor element type, as stored in a GGUF tensor info.
///
/// Block layouts (in file order, little-endian; `f16` = IEEE half) are given on
/// each variant for the types herd reads or writes, so a kernel crate can check
/// its structs against one place.
#[allow(non_camel_case_types)] // the names are ggml's, so they can be grepped across projects
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// `{ d: f16, qs: [u8; 16] }`: 32 4-bit quants, `x = d * (q - 8)`.
    Q4_0,
    /// `{ d: f16, m: f16, qs: [u8; 16] }`: 32 4-bit quants, `x = d * q + m`.
    Q4_1,
    /// `{ d: f16, qh: [u8; 4], qs: [u8; 16] }`: 32 5-bit quants, `x = d * (q - 16)`.
    Q5_0,
    /// `{ d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }`: 32 5-bit quants, `x = d * q + m`.
    Q5_1,
    /// `{ d: f16, qs: [i8; 32] }`: `x = d * q`.
    Q8_0,
    /// `{ d: f16, s: f16, qs: [i8; 32] }` where `s = d * sum(qs)`; an activation
    /// format for dot products, not normally stored in files.
    Q8_1,
    /// `{ scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16 }`: 256 2-bit quants in 16 groups of 16.
    Q2_K,
    /// `{ hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16 }`: 256 3-bit quants.
    Q3_K,
    /// `{ d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] }`: 256 4-bit quants in 8 groups of 32
    /// with 6-bit packed scales and mins.
    Q4_K,
    /// `{ d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }`: 256 5-bit quants.
    Q5_K,
    /// `{ ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 }`: 256 6-bit quants in 16 groups of 16.
    Q6_K,
    /// `{ d: f32, qs: [i8; 256], bsums: [i16; 16] }`; an activation format for k-quant dot products.
    Q8_K,
    /// i-quant, 2.06 bits per weight.
    IQ2_XXS,
    /// i-quant, 2.31 bits per weight.
    IQ2_XS,
    /// i-quant, 3.06 bits per weight.
    IQ3_XXS,
    /// i-quant, 1.56 bits per weight.
    IQ1_S,
    /// Non-linear 4-bit quant in blocks of 32.
    IQ4_NL,
    /// i-quant, 3.44 bits per weight.
    IQ3_S,
    /// i-quant, 2.56 bits per weight.
    IQ2_S,
    /// Non-linear 4-bit quant in super-blocks of 256.
    IQ4_XS,
    /// 8-bit signed integer.
    I8,
    /// 16-bit signed integer.
    I16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit IEEE float.
    F64,
    /// i-quant, 1.75 bits per weight.
    IQ1_M,
    /// bfloat16: the top 16 bits of an f32.
    BF16,
    /// Ternary quant, 1.69 bits per weight.
    TQ1_0,
    /// Ternary quant, 2.06 bits per weight.
    TQ2_0,
    /// `{ e: u8 (E8M0 scale), qs: [u8; 16] }`: 32 FP4 (E2M1) values.
    MXFP4,
    /// `{ d: [u8; 4] (UE4M3 scales per 16), qs: [u8; 32] }`: 64 FP4 (E2M1) values.
    NVFP4,
    /// `{ d: f16, qs: [u8; 16] }`: 128 1-bit quants.
    Q1_0,
}

impl GgmlType {
    /// Every type this crate knows, in id order.
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// The type with on-disk id `id`, or `None` for an id ggml does not define
    /// (or no longer supports).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The on-disk id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        self.facts().0
    }

    /// Elements per block: 1 for plain types, 32 or 256 (or 64, 128) for quants.
    pub fn block_size(self) -> usize {
        self.facts().1
    }

    /// Bytes per block (`sizeof(block_*)` in ggml, or the element size).
    pub fn type_size(self) -> usize {
        self.facts().2
    }

    /// ggml's own name (`ggml_type_name`), as llama.cpp tools print it: `"f32"`,
    /// `"bf16"`, `"q4_K"`.
    pub fn name(self) -> &'static str {
        self.facts().3
    }

    /// Whether elements are stored in multi-element blocks (so a single element
    /// cannot be addressed without decoding its block).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` elements of this type, or `None` if
    /// `n_elements` is not a whole number of blocks or the size overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size() as u64)
    }

    /// `(id, block size, type size, name)` in one table so the four facts of a
    /// type cannot drift apart.
    fn facts(self) -> (u32, usize, usize, &'static str) {
        use GgmlType::*;
        match self {
            F32 => (0, 1, 4, "f32"),
            F16 => (1, 1, 2, "f16"),
            Q4_0 => (2, 32, 2 + 16, "q4_0"),
            Q4_1 => (3, 32, 2 + 2 + 16, "q4_1"),
            Q5_0 => (6, 32, 2 + 4 + 16, "q5_0"),
            Q5_1 => (7, 32, 2 + 2 + 4 + 16, "q5_1"),
            Q8_0 => (8, 32, 2 + 32, "q8_0"),
            // ggml's block_q8_1 holds two f16 (d, s); gguf-py's table still says
            // 4 + 4 + 32 from when they were f32. ggml's size is what llama.cpp
            // validates files against.
            Q8_1 => (9, 32, 2 + 2 + 32, "q8_1"),
            Q2_K => (10, QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, "q2_K"),
            Q3_K => (11, QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, "q3_K"),
            Q4_K => (12, QK_K, 2 + 2 + QK_K / 2 + 12, "q4_K"),
            Q5_K => (13, QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, "q5_K"),
            Q6_K => (14, QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, "q6_K"),
            Q8_K => (15, QK_K, 4 + QK_K + QK_K / 8, "q8_K"),
            IQ2_XXS => (16, QK_K, 2 + QK_K / 4, "iq2_xxs"),
            IQ2_XS => (17, QK_K, 2 + QK_K / 4 + QK_K / 32, "iq2_xs"),
            IQ3_XXS => (18, QK_K, 2 + QK_K / 4 + QK_K / 8, "iq3_xxs"),
            IQ1_S => (19, QK_K, 2 + QK_K / 8 + QK_K / 16, "iq1_s"),
            IQ4_NL => (20, 32, 2 + 16, "iq4_nl"),
            IQ3_S => (21, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, "iq3_s"),
            IQ2_S => (22, QK_K, 2 + QK_K / 4 + QK_K / 16, "iq2_s"),
            IQ4_XS => (23, QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, "iq4_xs"),
            I8 => (24, 1, 1, "i8"),
            I16 => (25, 1, 2, "i16"),
            I32 => (26, 1, 4, "i32"),
            I64 => (27, 1, 8, "i64"),
            F64 => (28, 1, 8, "f64"),
            IQ1_M => (29, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, "iq1_m"),
            BF16 => (30, 1, 2, "bf16"),
            TQ1_0 => (34, QK_K, 2 + 4 * 13, "tq1_0"),
            TQ2_0 => (35, QK_K, 2 + 64, "tq2_0"),
            MXFP4 => (39, 32, 1 + 16, "mxfp4"),
            NVFP4 => (40, 64, 4 + 32, "nvfp4"),
            Q1_0 => (41, 128, 2 + 16, "q1_0"),
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GgmlType {
    type Err = GgufError;

    /// Parses ggml's name case-insensitively (`"q4_k"`, `"Q4_K"`, `"BF16"`), as
    /// a `--type` flag would spell it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GgmlType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| GgufError::UnknownTypeName {
                name: s.to_string(),
            })
    }
}
