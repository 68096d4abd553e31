//! Shared by the integration tests: an independent JSON Schema validator for
//! the subset herd supports (written from the specification, sharing no code
//! with the crate), the schemas the tests generate for, and a random walk
//! through a processor's masks.
#![allow(dead_code)] // each test binary uses a different part

use herd_engine::LogitsProcessor;
use herd_structured::{JsonProcessor, TokenVocab};
use serde_json::{json, Value};

/// Checks `value` against `schema` (`root` resolves `$ref`s); the error says
/// where and why it fails.
pub fn validate(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why}"));
    let map = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail("false schema".into()),
        Value::Object(map) => map,
        _ => return fail("not a schema".into()),
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        let target = root
            .pointer(reference.trim_start_matches('#'))
            .ok_or(format!("unresolved {reference}"))?;
        validate(root, target, value, at)?;
    }
    if let Some(Value::Array(branches)) = map.get("anyOf") {
        if !branches
            .iter()
            .any(|b| validate(root, b, value, at).is_ok())
        {
            return fail("no anyOf branch matches".into());
        }
    }
    if let Some(Value::Array(branches)) = map.get("oneOf") {
        let matching = branches
            .iter()
            .filter(|b| validate(root, b, value, at).is_ok())
            .count();
        if matching != 1 {
            return fail(format!("{matching} oneOf branches match"));
        }
    }
    if let Some(Value::Array(options)) = map.get("enum") {
        if !options.iter().any(|o| same(o, value)) {
            return fail(format!("{value} not in enum"));
        }
    }
    if let Some(c) = map.get("const") {
        if !same(c, value) {
            return fail(format!("{value} is not const {c}"));
        }
    }
    if let Some(t) = map.get("type") {
        let names: Vec<&str> = match t {
            Value::String(s) => vec![s],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => return fail("bad type".into()),
        };
        if !names.iter().any(|n| has_type(n, value)) {
            return fail(format!("{value} is not of type {t}"));
        }
    }
    match value {
        Value::Object(members) => validate_object(root, map, members, at),
        Value::Array(items) => validate_array(root, map, items, at),
        Value::String(s) => {
            let n = s.chars().count() as u64;
            let min = map.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let max = map
                .get("maxLength")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if n < min || n > max {
                return fail(format!("length {n} outside {min}..={max}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn validate_object(
    root: &Value,
    map: &serde_json::Map<String, Value>,
    members: &serde_json::Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    let empty = serde_json::Map::new();
    let props = map
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for name in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap_or_default();
        if !members.contains_key(name) {
            return Err(format!("{at}: required {name} missing"));
        }
    }
    for (name, member) in members {
        let here = format!("{at}/{name}");
        match props.get(name) {
            Some(sub) => validate(root, sub, member, &here)?,
            None => match map.get("additionalProperties") {
                None => {}
                Some(extra) => validate(root, extra, member, &here)?,
            },
        }
    }
    Ok(())
}

fn validate_array(
    root: &Value,
    map: &serde_json::Map<String, Value>,
    items: &[Value],
    at: &str,
) -> Result<(), String> {
    let n = items.len() as u64;
    let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    let max = map
        .get("maxItems")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if n < min || n > max {
        return Err(format!("{at}: {n} items outside {min}..={max}"));
    }
    if let Some(item) = map.get("items") {
        for (i, v) in items.iter().enumerate() {
            validate(root, item, v, &format!("{at}/{i}"))?;
        }
    }
    Ok(())
}

fn has_type(name: &str, value: &Value) -> bool {
    match (name, value) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("number", Value::Number(_))
        | ("boolean", Value::Bool(_))
        | ("null", Value::Null) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// JSON equality (numbers by value).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Schemas whose documents are bounded in size (every string and array has
/// an upper bound, no recursion), so any generation finishes within a
/// known budget, plus one recursive schema.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "person",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 12},
                    "age": {"type": "integer"},
                    "email": {"type": ["string", "null"], "maxLength": 20},
                    "tags": {"type": "array", "items": {"enum": ["red", "green", 3, null]}, "maxItems": 3},
                },
                "required": ["name", "age", "tags"],
                "additionalProperties": false,
            }),
        ),
        (
            "shapes",
            json!({
                "$defs": {
                    "point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]},
                },
                "type": "object",
                "properties": {
                    "shapes": {
                        "type": "array", "minItems": 1, "maxItems": 3,
                        "items": {"oneOf": [
                            {"type": "object", "properties": {"kind": {"const": "circle"}, "center": {"$ref": "#/$defs/point"}, "r": {"type": "number"}}, "required": ["kind", "center", "r"]},
                            {"type": "object", "properties": {"kind": {"const": "line"}, "from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}}, "required": ["kind", "from", "to"]},
                        ]},
                    },
                    "ok": {"type": "boolean"},
                },
                "required": ["shapes", "ok"],
            }),
        ),
        (
            "answer",
            json!({
                "anyOf": [
                    {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 16}, "confidence": {"type": "number"}}, "required": ["answer"]},
                    {"type": "object", "properties": {"error": {"enum": ["unknown", "refused"]}}, "required": ["error"]},
                ],
            }),
        ),
        (
            "extra-strings",
            json!({
                "type": "object",
                "properties": {"id": {"type": "integer"}},
                "required": ["id"],
                "additionalProperties": {"type": "string", "maxLength": 6},
            }),
        ),
    ]
}

/// A small deterministic random stream (xorshift64*), so tests need no
/// random-number crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// How a random walk through the masks ended.
pub struct Walk {
    /// The tokens chosen (stop token excluded).
    pub tokens: Vec<u32>,
    /// Whether it ended by choosing a stop token.
    pub stopped: bool,
}

/// Picks among the allowed tokens for at most `steps` steps, panicking if a
/// mask ever allows nothing. Mostly uniform; a stop token, once allowed, is
/// taken with probability 3/4, and as steps go by the walk more and more
/// often heads for the end: it takes the first allowed of `"`, `}`, `]`,
/// `:`, `,`, `0` as a single-byte token, else any allowed token that is not
/// whitespace.
pub fn random_walk(
    processor: &mut JsonProcessor,
    vocab: &TokenVocab,
    stops: &[u32],
    rng: &mut Rng,
    steps: usize,
) -> Walk {
    let len = vocab
        .len()
        .max(stops.iter().max().map_or(0, |&m| m as usize + 1));
    let mut tokens = Vec::new();
    let mut logits = vec![0f32; len];
    for step in 0..steps {
        logits.fill(0.0);
        processor.process(&mut logits);
        let allowed: Vec<u32> = (0..len as u32)
            .filter(|&i| logits[i as usize].is_finite())
            .collect();
        assert!(
            !allowed.is_empty(),
            "dead end at step {step} after {tokens:?}"
        );
        let token = match allowed.iter().find(|id| stops.contains(id)) {
            Some(&stop) if rng.below(4) > 0 => stop,
            _ if rng.below(steps) < step => towards_end(vocab, &allowed, rng),
            _ => allowed[rng.below(allowed.len())],
        };
        processor.accept(token);
        if stops.contains(&token) {
            return Walk {
                tokens,
                stopped: true,
            };
        }
        tokens.push(token);
    }
    Walk {
        tokens,
        stopped: false,
    }
}

/// The token [`random_walk`] takes when heading for the end.
fn towards_end(vocab: &TokenVocab, allowed: &[u32], rng: &mut Rng) -> u32 {
    for b in b"\"}]:,0" {
        if let Some(&id) = allowed
            .iter()
            .find(|&&id| vocab.token_bytes(id) == Some(&[*b][..]))
        {
            return id;
        }
    }
    let solid: Vec<u32> = allowed
        .iter()
        .copied()
        .filter(|&id| {
            vocab
                .token_bytes(id)
                .is_some_and(|b| !b.iter().all(u8::is_ascii_whitespace))
        })
        .collect();
    match solid.is_empty() {
        true => allowed[rng.below(allowed.len())],
        false => solid[rng.below(solid.len())],
    }
}
