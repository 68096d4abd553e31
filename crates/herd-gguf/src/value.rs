//! Metadata values: the thirteen GGUF value types, scalars and (nested) arrays.
//!
//! Arrays are stored as typed vectors rather than `Vec<MetadataValue>`, because
//! a Llama 3 vocabulary is 128,256 strings plus 280,147 merges and 128,256 token
//! types: a typed vector keeps that compact and lets the getters hand out plain
//! slices (`&[f32]`, `&[String]`) instead of converting element by element.

use std::fmt;

/// A GGUF value type id (`enum gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `u8`, id 0.
    U8,
    /// `i8`, id 1.
    I8,
    /// `u16`, id 2.
    U16,
    /// `i16`, id 3.
    I16,
    /// `u32`, id 4.
    U32,
    /// `i32`, id 5.
    I32,
    /// `f32`, id 6.
    F32,
    /// `bool` (one byte), id 7.
    Bool,
    /// UTF-8 string with a `u64` byte length, id 8.
    String,
    /// Array: element type, `u64` length, elements; id 9.
    Array,
    /// `u64`, id 10.
    U64,
    /// `i64`, id 11.
    I64,
    /// `f64`, id 12.
    F64,
}

impl ValueType {
    /// The type with on-disk id `id`, if GGUF defines one.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// The fewest bytes one value of this type takes on disk: its size for a
    /// scalar, the length prefix for a string, type + length for an array. The
    /// reader multiplies an array's declared length by this before allocating.
    pub(crate) fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    /// The name used in messages and in [`crate::dump`], as llama.cpp spells it.
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// An array, possibly of arrays.
    Array(MetadataArray),
}

impl MetadataValue {
    /// The GGUF type this value is written as.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetadataValue::U8(_) => ValueType::U8,
            MetadataValue::I8(_) => ValueType::I8,
            MetadataValue::U16(_) => ValueType::U16,
            MetadataValue::I16(_) => ValueType::I16,
            MetadataValue::U32(_) => ValueType::U32,
            MetadataValue::I32(_) => ValueType::I32,
            MetadataValue::U64(_) => ValueType::U64,
            MetadataValue::I64(_) => ValueType::I64,
            MetadataValue::F32(_) => ValueType::F32,
            MetadataValue::F64(_) => ValueType::F64,
            MetadataValue::Bool(_) => ValueType::Bool,
            MetadataValue::String(_) => ValueType::String,
            MetadataValue::Array(_) => ValueType::Array,
        }
    }

    /// The value as an integer wide enough for every GGUF integer type, or
    /// `None` for non-integers. The typed getters narrow from this.
    pub(crate) fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetadataValue::U8(v) => v.into(),
            MetadataValue::I8(v) => v.into(),
            MetadataValue::U16(v) => v.into(),
            MetadataValue::I16(v) => v.into(),
            MetadataValue::U32(v) => v.into(),
            MetadataValue::I32(v) => v.into(),
            MetadataValue::U64(v) => v.into(),
            MetadataValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A description of the type for error messages: `"u32"`, `"array of string"`.
    pub(crate) fn type_description(&self) -> String {
        match self {
            MetadataValue::Array(a) => a.type_description(),
            other => other.value_type().name().to_string(),
        }
    }
}

/// An array value. Every element has the same type; an array of arrays may
/// hold inner arrays of different types and lengths, as the format allows.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataArray {
    /// `u8` elements.
    U8(Vec<u8>),
    /// `i8` elements.
    I8(Vec<i8>),
    /// `u16` elements.
    U16(Vec<u16>),
    /// `i16` elements.
    I16(Vec<i16>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `u64` elements.
    U64(Vec<u64>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// String elements.
    String(Vec<String>),
    /// Array elements (llama.cpp itself refuses to load these; the format allows them).
    Array(Vec<MetadataArray>),
}

impl MetadataArray {
    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            MetadataArray::U8(_) => ValueType::U8,
            MetadataArray::I8(_) => ValueType::I8,
            MetadataArray::U16(_) => ValueType::U16,
            MetadataArray::I16(_) => ValueType::I16,
            MetadataArray::U32(_) => ValueType::U32,
            MetadataArray::I32(_) => ValueType::I32,
            MetadataArray::U64(_) => ValueType::U64,
            MetadataArray::I64(_) => ValueType::I64,
            MetadataArray::F32(_) => ValueType::F32,
            MetadataArray::F64(_) => ValueType::F64,
            MetadataArray::Bool(_) => ValueType::Bool,
            MetadataArray::String(_) => ValueType::String,
            MetadataArray::Array(_) => ValueType::Array,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MetadataArray::U8(v) => v.len(),
            MetadataArray::I8(v) => v.len(),
            MetadataArray::U16(v) => v.len(),
            MetadataArray::I16(v) => v.len(),
            MetadataArray::U32(v) => v.len(),
            MetadataArray::I32(v) => v.len(),
            MetadataArray::U64(v) => v.len(),
            MetadataArray::I64(v) => v.len(),
            MetadataArray::F32(v) => v.len(),
            MetadataArray::F64(v) => v.len(),
            MetadataArray::Bool(v) => v.len(),
            MetadataArray::String(v) => v.len(),
            MetadataArray::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `"array of f32"`, `"array of array"`.
    pub(crate) fn type_description(&self) -> String {
        format!("array of {}", self.element_type())
    }
}

/// `From` conversions so `metadata.set(key, 3u32)` and
/// `metadata.set(key, vec!["a", "b"])` pick the GGUF type from the Rust type.
macro_rules! from_rust {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for MetadataValue {
            fn from(v: $t) -> Self {
                MetadataValue::$variant(v)
            }
        }
        impl From<Vec<$t>> for MetadataArray {
            fn from(v: Vec<$t>) -> Self {
                MetadataArray::$variant(v)
            }
        }
        impl From<Vec<$t>> for MetadataValue {
            fn from(v: Vec<$t>) -> Self {
                MetadataValue::Array(MetadataArray::$variant(v))
            }
        }
    )*};
}

from_rust! {
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String,
}

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        MetadataValue::String(v.to_string())
    }
}

impl From<Vec<&str>> for MetadataValue {
    fn from(v: Vec<&str>) -> Self {
        MetadataValue::Array(MetadataArray::String(
            v.into_iter().map(str::to_string).collect(),
        ))
    }
}

impl From<MetadataArray> for MetadataValue {
    fn from(v: MetadataArray) -> Self {
        MetadataValue::Array(v)
    }
}

impl From<Vec<MetadataArray>> for MetadataValue {
    fn from(v: Vec<MetadataArray>) -> Self {
        MetadataValue::Array(MetadataArray::Array(v))
    }
}
