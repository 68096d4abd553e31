//! Python's text forms of tool-call arguments, byte for byte.
//!
//! Meta's formatter writes custom tool calls with Python's `json.dumps`
//! (default separators `", "` and `": "`, `ensure_ascii=True`, floats by
//! `repr`) or with `str()` of each value. Token ids of a formatted dialog
//! only match Meta's if these strings match exactly, so they are rebuilt
//! here rather than produced by `serde_json`, which writes `1e16` and raw
//! UTF-8 where Python writes `1e+16` and `\u00e9`.

use std::fmt::Write as _;

use crate::chat::ToolValue;

/// `json.dumps(value)` with Python's defaults.
pub(crate) fn json_dumps(value: &ToolValue, out: &mut String) {
    match value {
        ToolValue::Null => out.push_str("null"),
        ToolValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ToolValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ToolValue::Float(x) => out.push_str(&float_text(*x, "NaN", "Infinity")),
        ToolValue::Str(s) => json_string(s, out),
        ToolValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_dumps(item, out);
            }
            out.push(']');
        }
        ToolValue::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_string(key, out);
                out.push_str(": ");
                json_dumps(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal with `ensure_ascii=True`: everything outside
/// printable ASCII is `\uXXXX` (lowercase hex, surrogate pairs above the BMP).
pub(crate) fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `str(value)` as Meta's `python_list` tool format applies it:
/// strings are quoted without escaping, dicts are written `{k=v, ...}`.
pub(crate) fn python_value(value: &ToolValue, out: &mut String) {
    match value {
        ToolValue::Null => out.push_str("None"),
        ToolValue::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        ToolValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ToolValue::Float(x) => out.push_str(&float_text(*x, "nan", "inf")),
        ToolValue::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        ToolValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_value(item, out);
            }
            out.push(']');
        }
        ToolValue::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push('=');
                python_value(item, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(float)`, with the given spellings of NaN and infinity
/// (JSON writes `NaN`/`Infinity`, `str()` writes `nan`/`inf`).
fn float_text(x: f64, nan: &str, inf: &str) -> String {
    if x.is_nan() {
        return nan.to_owned();
    }
    if x.is_infinite() {
        return if x < 0.0 {
            format!("-{inf}")
        } else {
            inf.to_owned()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Python's
    // repr does: "-1.2345e-7", "1e16", "1.5e0".
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let (first, rest) = digits.split_at(1);
    if !(-4..16).contains(&exponent) {
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}e{exp_sign}{:02}", exponent.abs())
    } else if exponent >= 0 {
        let int_len = exponent as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        let zeros = "0".repeat((-exponent - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        float_text(x, "nan", "inf")
    }

    #[test]
    fn floats_match_python_repr() {
        assert_eq!(repr(1.5), "1.5");
        assert_eq!(repr(2.0), "2.0");
        assert_eq!(repr(-0.0), "-0.0");
        assert_eq!(repr(0.0001), "0.0001");
        assert_eq!(repr(0.00001), "1e-05");
        assert_eq!(repr(1e16), "1e+16");
        assert_eq!(repr(1234567890123456.0), "1234567890123456.0");
        assert_eq!(repr(1.25e-7), "1.25e-07");
        assert_eq!(repr(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(repr(-123.456), "-123.456");
        assert_eq!(repr(1e300), "1e+300");
        assert_eq!(repr(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn json_strings_are_ascii_escaped() {
        let mut out = String::new();
        json_string("é\"\\\n\u{7f}😀", &mut out);
        assert_eq!(out, r#""\u00e9\"\\\n\u007f\ud83d\ude00""#);
    }
}
