//! The key/value section of a GGUF file, with typed getters.
//!
//! Keys keep file order (so [`crate::dump`] and a re-written file list them as
//! the converter did) and are also indexed by name. Getters are strict about
//! kind (a string is never parsed as a number) but lenient about width: GGUF
//! writers disagree on whether a count is `u32`, `i32` or `u64`, so
//! [`Metadata::get_u32`] accepts any integer whose value fits.

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::value::{MetadataArray, MetadataValue};

/// The key that sets tensor data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// The key naming the model architecture (`"llama"`), whose value prefixes the
/// model's hyperparameter keys (`llama.block_count`).
pub const ARCHITECTURE_KEY: &str = "general.architecture";

/// Ordered metadata key/values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty set of key/values.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// An empty set with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Metadata {
        Metadata {
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
        }
    }

    /// Sets `key` to `value`: replaces the value in place if the key exists
    /// (keeping its position), appends it otherwise.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<MetadataValue>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// Removes `key`, returning its value. Later entries keep their order.
    pub fn remove(&mut self, key: &str) -> Option<MetadataValue> {
        let i = self.index.remove(key)?;
        let (_, value) = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(value)
    }

    /// Adds a key the caller has checked is new; returns `false` (and changes
    /// nothing) if it is already present.
    pub(crate) fn insert_new(&mut self, key: String, value: MetadataValue) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.set(key, value);
        true
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file (or insertion) order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str(ARCHITECTURE_KEY)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            MetadataValue::String(s) => Ok(s),
            other => Err(wrong_type(key, "string", other)),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            MetadataValue::Bool(b) => Ok(*b),
            other => Err(wrong_type(key, "bool", other)),
        }
    }

    /// Any integer value that fits in a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get_int(key, "u32")
    }

    /// Any integer value that fits in a `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get_int(key, "u64")
    }

    /// Any integer value that fits in an `i32`.
    pub fn get_i32(&self, key: &str) -> Result<i32> {
        self.get_int(key, "i32")
    }

    /// Any integer value that fits in an `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.get_int(key, "i64")
    }

    /// Any integer value that fits in a `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.get_int(key, "usize")
    }

    /// An `f32` value, or an `f64` one rounded to `f32` (some converters write
    /// `rope.freq_base` and norm epsilons as `f64`).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.require(key)? {
            MetadataValue::F32(v) => Ok(*v),
            MetadataValue::F64(v) => Ok(*v as f32),
            other => Err(wrong_type(key, "f32", other)),
        }
    }

    /// An `f64` or `f32` value.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        match self.require(key)? {
            MetadataValue::F64(v) => Ok(*v),
            MetadataValue::F32(v) => Ok(f64::from(*v)),
            other => Err(wrong_type(key, "f64", other)),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&MetadataArray> {
        match self.require(key)? {
            MetadataValue::Array(a) => Ok(a),
            other => Err(wrong_type(key, "array", other)),
        }
    }

    fn require(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, target: &'static str) -> Result<T> {
        let value = self.require(key)?;
        let wide = value
            .as_i128()
            .ok_or_else(|| wrong_type(key, target, value))?;
        T::try_from(wide).map_err(|_| GgufError::OutOfRange {
            key: key.to_string(),
            value: wide,
            target,
        })
    }
}

/// Typed array getters: element types must match exactly, because the result
/// borrows the stored vector.
macro_rules! array_getters {
    ($($name:ident => $variant:ident: $t:ty, $desc:literal;)*) => {
        impl Metadata {
            $(
                #[doc = concat!("An array of `", stringify!($t), "`, borrowed.")]
                pub fn $name(&self, key: &str) -> Result<&[$t]> {
                    match self.require(key)? {
                        MetadataValue::Array(MetadataArray::$variant(v)) => Ok(v),
                        other => Err(wrong_type(key, $desc, other)),
                    }
                }
            )*
        }
    };
}

array_getters! {
    get_array_u8 => U8: u8, "array of u8";
    get_array_i8 => I8: i8, "array of i8";
    get_array_u16 => U16: u16, "array of u16";
    get_array_i16 => I16: i16, "array of i16";
    get_array_u32 => U32: u32, "array of u32";
    get_array_i32 => I32: i32, "array of i32";
    get_array_u64 => U64: u64, "array of u64";
    get_array_i64 => I64: i64, "array of i64";
    get_array_f32 => F32: f32, "array of f32";
    get_array_f64 => F64: f64, "array of f64";
    get_array_bool => Bool: bool, "array of bool";
    get_array_str => String: String, "array of string";
}

fn wrong_type(key: &str, expected: &'static str, found: &MetadataValue) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: found.type_description(),
    }
}

/// Turns "key missing" into `Ok(None)` for keys a loader can default, while
/// keeping every other error: `meta.get_f32("llama.rope.scaling.factor").optional()?`.
pub trait OptionalKey<T> {
    /// `Ok(Some(v))` for a value, `Ok(None)` for [`GgufError::MissingKey`], the
    /// error otherwise.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalKey<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
