//! Judging values against compiled nodes: JSON equality, acceptance (to
//! filter `enum` values by the keywords beside them) and the disjointness
//! that `oneOf` needs.
//!
//! `oneOf` demands that exactly one branch matches. The automaton cannot
//! take back a value once written, so herd accepts `oneOf` only where no
//! value can match two branches, and otherwise asks for `anyOf`.

use serde_json::Value;

use crate::error::{SchemaProblem, StructuredError};
use crate::grammar::{Grammar, Node, NodeId};
use crate::schema::key_bytes;

/// Equality as JSON Schema defines it: `1` equals `1.0`.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn is_integral(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// Whether the automaton's node would accept `value` (as a set of values,
/// ignoring how it is spelled).
pub(crate) fn accepts(g: &Grammar, node: NodeId, value: &Value) -> bool {
    match (&g.nodes[node as usize], value) {
        (Node::AnyOf(branches), _) => branches.iter().any(|&b| accepts(g, b, value)),
        (Node::Object(o), Value::Object(members)) => {
            let mut seen = 0u64;
            for (name, member) in members {
                let key = key_bytes(name);
                let ok = match o.props.iter().position(|p| p.key == key) {
                    Some(i) => {
                        seen |= 1 << i;
                        accepts(g, o.props[i].node, member)
                    }
                    None => o.additional.is_some_and(|a| accepts(g, a, member)),
                };
                if !ok {
                    return false;
                }
            }
            o.required & !seen == 0
        }
        (Node::Array { items, min, max }, Value::Array(values)) => {
            let n = values.len();
            n >= *min as usize
                && max.is_none_or(|max| n <= max as usize)
                && values.iter().all(|v| accepts(g, *items, v))
        }
        (Node::String(bounds), Value::String(s)) => {
            let n = s.chars().count();
            n >= bounds.min as usize && bounds.max.is_none_or(|max| n <= max as usize)
        }
        (Node::Number { integer }, Value::Number(n)) => !integer || is_integral(n),
        (Node::Literal { values, .. }, _) => values.iter().any(|v| json_eq(v, value)),
        _ => false,
    }
}

/// Kinds of JSON value, as bits, with numbers split into integral ones and
/// others (an integer schema's values are also numbers).
const OBJECT: u8 = 1;
const ARRAY: u8 = 2;
const STRING: u8 = 4;
const INTEGRAL: u8 = 8;
const FRACTIONAL: u8 = 16;
const BOOLEAN: u8 = 32;
const NULL: u8 = 64;

fn kind_of(value: &Value) -> u8 {
    match value {
        Value::Object(_) => OBJECT,
        Value::Array(_) => ARRAY,
        Value::String(_) => STRING,
        Value::Number(n) if is_integral(n) => INTEGRAL,
        Value::Number(_) => FRACTIONAL,
        Value::Bool(_) => BOOLEAN,
        Value::Null => NULL,
    }
}

/// The kinds of value a node can produce. Alternatives never contain
/// themselves without an object or array between (checked by
/// `Grammar::finish`), so the recursion ends.
fn kinds(g: &Grammar, node: NodeId) -> u8 {
    match &g.nodes[node as usize] {
        Node::AnyOf(branches) => branches.iter().fold(0, |k, &b| k | kinds(g, b)),
        Node::Object(_) => OBJECT,
        Node::Array { .. } => ARRAY,
        Node::String(_) => STRING,
        Node::Number { integer: true } => INTEGRAL,
        Node::Number { integer: false } => INTEGRAL | FRACTIONAL,
        Node::Literal { values, .. } => values.iter().fold(0, |k, v| k | kind_of(v)),
        Node::Pending => 0,
    }
}

/// No value of `a` is a value of `b` (as far as this simple check can tell).
fn disjoint(g: &Grammar, a: NodeId, b: NodeId) -> bool {
    if kinds(g, a) & kinds(g, b) == 0 {
        return true;
    }
    let literal_outside = |x: NodeId, y: NodeId| match &g.nodes[x as usize] {
        Node::Literal { values, .. } => values.iter().all(|v| !accepts(g, y, v)),
        _ => false,
    };
    if literal_outside(a, b) || literal_outside(b, a) {
        return true;
    }
    // Objects told apart by a property both require with disjoint values.
    let (Node::Object(x), Node::Object(y)) = (&g.nodes[a as usize], &g.nodes[b as usize]) else {
        return false;
    };
    x.props.iter().enumerate().any(|(i, p)| {
        x.required & (1 << i) != 0
            && y.props.iter().enumerate().any(|(j, q)| {
                y.required & (1 << j) != 0
                    && p.key == q.key
                    && (literal_outside(p.node, q.node) || literal_outside(q.node, p.node))
            })
    })
}

/// Refuses a `oneOf` node with two branches that may match one value.
pub(crate) fn check_one_of(g: &Grammar, id: NodeId) -> Result<(), StructuredError> {
    let Node::AnyOf(branches) = &g.nodes[id as usize] else {
        return Ok(());
    };
    for (i, &a) in branches.iter().enumerate() {
        for (j, &b) in branches.iter().enumerate().skip(i + 1) {
            if !disjoint(g, a, b) {
                return Err(StructuredError::Schema {
                    path: g.paths[id as usize].clone(),
                    problem: SchemaProblem::OverlappingOneOf(i, j),
                });
            }
        }
    }
    Ok(())
}
