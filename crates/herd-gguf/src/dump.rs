//! A human-readable summary of a GGUF file, for `herd info`.

use std::fmt::Write;

use crate::value::{MetadataArray, MetadataValue};
use crate::GgufFile;

/// Longest string value shown before it is cut.
const MAX_STRING: usize = 60;
/// Array elements shown before "...".
const MAX_ELEMENTS: usize = 4;

/// The header, every metadata key with a short value, and the tensor table.
/// Long strings (chat templates) and arrays (vocabularies) are abbreviated so
/// the output of a real model fits on a screen or two.
pub fn dump(file: &GgufFile) -> String {
    let mut out = String::new();
    let data_bytes = file.bytes().len() as u64 - file.data_offset().min(file.bytes().len() as u64);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "GGUF v{}: {} metadata entries, {} tensors, alignment {}, data at byte {} ({})",
        file.version(),
        file.metadata().len(),
        file.tensor_infos().len(),
        file.alignment(),
        file.data_offset(),
        human_bytes(data_bytes),
    );
    let _ = writeln!(out, "metadata:");
    let key_width = file
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (key, value) in file.metadata().iter() {
        let _ = writeln!(out, "  {key:key_width$}  {}", short(value));
    }
    let _ = writeln!(out, "tensors:");
    let name_width = file
        .tensor_infos()
        .iter()
        .map(|t| t.name().len())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        out,
        "  {:name_width$}  {:7}  {:24}  {:>12}  {:>10}",
        "name", "type", "dims", "offset", "size"
    );
    for t in file.tensor_infos() {
        let dims = t
            .dims()
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" x ");
        let _ = writeln!(
            out,
            "  {:name_width$}  {:7}  {:24}  {:>12}  {:>10}",
            t.name(),
            t.ggml_type().name(),
            dims,
            t.offset(),
            human_bytes(t.n_bytes() as u64)
        );
    }
    out
}

/// `string "llama"`, `u32 32`, `[string; 128256] ["!", "\"", ...]`.
fn short(value: &MetadataValue) -> String {
    let shown = match value {
        MetadataValue::U8(v) => v.to_string(),
        MetadataValue::I8(v) => v.to_string(),
        MetadataValue::U16(v) => v.to_string(),
        MetadataValue::I16(v) => v.to_string(),
        MetadataValue::U32(v) => v.to_string(),
        MetadataValue::I32(v) => v.to_string(),
        MetadataValue::U64(v) => v.to_string(),
        MetadataValue::I64(v) => v.to_string(),
        // Debug prints the shortest exact form (1e-5, -2.25e300), Display expands it.
        MetadataValue::F32(v) => format!("{v:?}"),
        MetadataValue::F64(v) => format!("{v:?}"),
        MetadataValue::Bool(v) => v.to_string(),
        MetadataValue::String(s) => short_str(s),
        MetadataValue::Array(a) => return short_array(a),
    };
    format!("{} {shown}", value.value_type())
}

/// Debug-quoted (so control characters and newlines stay on one line), cut at
/// [`MAX_STRING`] characters.
fn short_str(s: &str) -> String {
    if s.chars().count() <= MAX_STRING {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX_STRING).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

fn short_array(array: &MetadataArray) -> String {
    fn list<T>(v: &[T], show: impl Fn(&T) -> String) -> String {
        let mut items: Vec<String> = v.iter().take(MAX_ELEMENTS).map(show).collect();
        if v.len() > MAX_ELEMENTS {
            items.push("...".to_string());
        }
        format!("[{}]", items.join(", "))
    }
    let items = match array {
        MetadataArray::U8(v) => list(v, u8::to_string),
        MetadataArray::I8(v) => list(v, i8::to_string),
        MetadataArray::U16(v) => list(v, u16::to_string),
        MetadataArray::I16(v) => list(v, i16::to_string),
        MetadataArray::U32(v) => list(v, u32::to_string),
        MetadataArray::I32(v) => list(v, i32::to_string),
        MetadataArray::U64(v) => list(v, u64::to_string),
        MetadataArray::I64(v) => list(v, i64::to_string),
        MetadataArray::F32(v) => list(v, |x| format!("{x:?}")),
        MetadataArray::F64(v) => list(v, |x| format!("{x:?}")),
        MetadataArray::Bool(v) => list(v, bool::to_string),
        MetadataArray::String(v) => list(v, |s| short_str(s)),
        MetadataArray::Array(v) => list(v, short_array),
    };
    format!("[{}; {}] {items}", array.element_type(), array.len())
}

/// `512 B`, `1.5 KiB`, `4.21 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}
