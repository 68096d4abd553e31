//! JSON Schema → [`Grammar`]: the supported subset, and a clear error for
//! everything else.
//!
//! Where a schema allows more than one shape, the grammar generates the
//! narrower one (every document still validates against the schema): an
//! object that declares `properties` but says nothing about
//! `additionalProperties` gets only its declared properties, a schema without
//! `type` but with object (array, string) keywords is generated as an object
//! (array, string), and `enum`/`const` values are written in their compact
//! serialization.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::check::{accepts, check_one_of};
use crate::error::{SchemaProblem, StructuredError};
use crate::grammar::{Grammar, Node, NodeId, ObjectNode, Property, ANY, ANY_OBJECT};
use crate::string::Bounds;
use crate::JsonSpec;

/// Keywords that only describe and never constrain; ignored.
const ANNOTATIONS: [&str; 12] = [
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

/// The constraining keywords herd enforces.
const SUPPORTED: [&str; 14] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "items",
    "anyOf",
    "oneOf",
    "$ref",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
];

/// Compiles a spec into a finished grammar.
pub(crate) fn compile(spec: &JsonSpec) -> Result<Grammar, StructuredError> {
    let mut grammar = Grammar::new();
    let mut one_ofs = Vec::new();
    match spec {
        JsonSpec::AnyObject => grammar.root = ANY_OBJECT,
        JsonSpec::Schema(schema) => {
            let mut compiler = Compiler {
                root: schema,
                grammar,
                refs: HashMap::new(),
                one_ofs: Vec::new(),
            };
            compiler.grammar.root = compiler.resolve("#")?;
            grammar = compiler.grammar;
            one_ofs = compiler.one_ofs;
        }
    }
    grammar.finish()?;
    for id in one_ofs {
        check_one_of(&grammar, id)?;
    }
    Ok(grammar)
}

/// Compilation state: the schema document (for `$ref`) and the nodes so far.
struct Compiler<'a> {
    root: &'a Value,
    grammar: Grammar,
    /// `$ref` string → its node, so recursive schemas become cycles.
    refs: HashMap<String, NodeId>,
    /// `oneOf` nodes, checked for overlapping branches once finished.
    one_ofs: Vec<NodeId>,
}

fn err(path: &str, problem: SchemaProblem) -> StructuredError {
    StructuredError::Schema {
        path: path.to_owned(),
        problem,
    }
}

fn bad(path: &str, keyword: &'static str, expected: &'static str) -> StructuredError {
    err(path, SchemaProblem::BadValue { keyword, expected })
}

/// `path/segment` with JSON-pointer escaping.
fn join(path: &str, segment: &str) -> String {
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

/// A property name as it appears between the quotes of a key.
pub(crate) fn key_bytes(name: &str) -> Vec<u8> {
    // Serializing a string cannot fail; the result is always quoted.
    let quoted = serde_json::to_vec(&Value::from(name)).unwrap_or_else(|_| b"\"\"".to_vec());
    quoted[1..quoted.len() - 1].to_vec()
}

impl Compiler<'_> {
    /// The node of a local reference such as `#/$defs/item`, compiling it
    /// on first use.
    fn resolve(&mut self, reference: &str) -> Result<NodeId, StructuredError> {
        if let Some(&id) = self.refs.get(reference) {
            return Ok(id);
        }
        let unresolved = || {
            err(
                reference,
                SchemaProblem::UnresolvedRef(reference.to_owned()),
            )
        };
        let pointer = reference.strip_prefix('#').ok_or_else(unresolved)?;
        let target = self.root.pointer(pointer).ok_or_else(unresolved)?;
        let slot = self.grammar.push(Node::Pending, reference);
        self.refs.insert(reference.to_owned(), slot);
        let id = self.node(target, reference)?;
        let node = self.grammar.nodes[id as usize].clone();
        if matches!(node, Node::Pending) {
            return Err(err(
                reference,
                SchemaProblem::CircularRef(reference.to_owned()),
            ));
        }
        self.grammar.nodes[slot as usize] = node;
        Ok(slot)
    }

    /// Compiles the (sub)schema at `path`.
    fn node(&mut self, schema: &Value, path: &str) -> Result<NodeId, StructuredError> {
        let map = match schema {
            Value::Bool(true) => return Ok(ANY),
            Value::Bool(false) => return Ok(self.grammar.push(Node::AnyOf(Vec::new()), path)),
            Value::Object(map) => map,
            _ => return Err(bad(path, "schema", "an object or a boolean")),
        };
        let mut constraints = Vec::new();
        for keyword in map.keys() {
            if SUPPORTED.contains(&keyword.as_str()) {
                constraints.push(keyword.as_str());
            } else if !ANNOTATIONS.contains(&keyword.as_str()) {
                return Err(err(
                    path,
                    SchemaProblem::UnsupportedKeyword(keyword.clone()),
                ));
            }
        }
        for keyword in ["$ref", "anyOf", "oneOf"] {
            if map.contains_key(keyword) && constraints.len() > 1 {
                return Err(err(path, SchemaProblem::CombinedKeyword(keyword)));
            }
        }
        if let Some(reference) = map.get("$ref") {
            let reference = reference
                .as_str()
                .ok_or_else(|| bad(path, "$ref", "a string"))?;
            return self.resolve(reference);
        }
        if let Some((keyword, branches)) = map.get_key_value("anyOf").or(map.get_key_value("oneOf"))
        {
            return self.alternatives(keyword == "oneOf", branches, path);
        }
        if map.contains_key("enum") || map.contains_key("const") {
            return self.literal(map, &constraints, path);
        }
        self.typed(map, path)
    }

    fn alternatives(
        &mut self,
        one_of: bool,
        branches: &Value,
        path: &str,
    ) -> Result<NodeId, StructuredError> {
        let keyword = if one_of { "oneOf" } else { "anyOf" };
        let branches = match branches {
            Value::Array(b) if !b.is_empty() => b,
            _ => return Err(bad(path, keyword, "a non-empty array of schemas")),
        };
        let mut ids = Vec::with_capacity(branches.len());
        for (i, branch) in branches.iter().enumerate() {
            ids.push(self.node(branch, &join(&join(path, keyword), &i.to_string()))?);
        }
        let id = self.grammar.push(Node::AnyOf(ids), path);
        if one_of {
            self.one_ofs.push(id);
        }
        Ok(id)
    }

    /// `enum` and/or `const`, keeping the values the other keywords accept.
    fn literal(
        &mut self,
        map: &Map<String, Value>,
        constraints: &[&str],
        path: &str,
    ) -> Result<NodeId, StructuredError> {
        let mut values = match map.get("enum") {
            Some(Value::Array(values)) => values.clone(),
            Some(_) => return Err(bad(path, "enum", "an array")),
            None => Vec::new(),
        };
        if let Some(c) = map.get("const") {
            if map.contains_key("enum") {
                values.retain(|v| crate::check::json_eq(v, c));
            } else {
                values.push(c.clone());
            }
        }
        let mut unique: Vec<Value> = Vec::with_capacity(values.len());
        for v in values {
            if !unique.iter().any(|u| crate::check::json_eq(u, &v)) {
                unique.push(v);
            }
        }
        if constraints.iter().any(|k| *k != "enum" && *k != "const") {
            let rest = self.typed(map, path)?;
            unique.retain(|v| accepts(&self.grammar, rest, v));
        }
        Ok(self.grammar.push(
            Node::Literal {
                values: unique,
                trie: 0,
            },
            path,
        ))
    }

    /// A schema described by `type` (or, without it, by its keywords).
    fn typed(&mut self, map: &Map<String, Value>, path: &str) -> Result<NodeId, StructuredError> {
        let mut types: Vec<&str> = match map.get("type") {
            None => match infer_type(map, path)? {
                Some(t) => vec![t],
                None => return Ok(ANY),
            },
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| bad(path, "type", "a type name or an array of them"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad(path, "type", "a type name or an array of them")),
        };
        types.dedup();
        let mut ids = Vec::with_capacity(types.len());
        for t in types {
            ids.push(self.one_type(t, map, path)?);
        }
        Ok(match ids.as_slice() {
            [only] => *only,
            _ => self.grammar.push(Node::AnyOf(ids), path),
        })
    }

    fn one_type(
        &mut self,
        name: &str,
        map: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, StructuredError> {
        let node = match name {
            "object" => return self.object(map, path),
            "array" => {
                let items = match map.get("items") {
                    None => ANY,
                    Some(Value::Array(_)) => {
                        return Err(err(
                            path,
                            SchemaProblem::UnsupportedKeyword("items (array form)".into()),
                        ))
                    }
                    Some(items) => self.node(items, &join(path, "items"))?,
                };
                let (min, max) = range(map, "minItems", "maxItems", path)?;
                Node::Array { items, min, max }
            }
            "string" => {
                let (min, max) = range(map, "minLength", "maxLength", path)?;
                Node::String(Bounds { min, max })
            }
            "number" | "integer" => Node::Number {
                integer: name == "integer",
            },
            "boolean" => Node::Literal {
                values: vec![Value::Bool(true), Value::Bool(false)],
                trie: 0,
            },
            "null" => Node::Literal {
                values: vec![Value::Null],
                trie: 0,
            },
            other => return Err(err(path, SchemaProblem::UnknownType(other.to_owned()))),
        };
        Ok(self.grammar.push(node, path))
    }

    fn object(&mut self, map: &Map<String, Value>, path: &str) -> Result<NodeId, StructuredError> {
        let declared = match map.get("properties") {
            None => Map::new(),
            Some(Value::Object(props)) => props.clone(),
            Some(_) => return Err(bad(path, "properties", "an object of schemas")),
        };
        let additional = match map.get("additionalProperties") {
            None if declared.is_empty() => Some(ANY),
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(ANY),
            Some(schema @ Value::Object(_)) => {
                Some(self.node(schema, &join(path, "additionalProperties"))?)
            }
            Some(_) => return Err(bad(path, "additionalProperties", "a boolean or a schema")),
        };
        let mut props = Vec::with_capacity(declared.len());
        for (name, schema) in &declared {
            let node = self.node(schema, &join(&join(path, "properties"), name))?;
            props.push(Property {
                key: key_bytes(name),
                node,
            });
        }
        let mut required = 0u64;
        for name in required_names(map, path)? {
            let key = key_bytes(name);
            let index = match props.iter().position(|p| p.key == key) {
                Some(i) => i,
                None => {
                    let node = additional.ok_or_else(|| {
                        err(path, SchemaProblem::RequiredNotAllowed(name.to_owned()))
                    })?;
                    props.push(Property { key, node });
                    props.len() - 1
                }
            };
            if index < 64 {
                required |= 1 << index;
            }
        }
        if props.len() > 64 {
            return Err(err(path, SchemaProblem::TooManyProperties(props.len())));
        }
        Ok(self.grammar.push(
            Node::Object(ObjectNode {
                props,
                required,
                additional,
                key_trie: 0,
            }),
            path,
        ))
    }
}

fn required_names<'m>(
    map: &'m Map<String, Value>,
    path: &str,
) -> Result<Vec<&'m str>, StructuredError> {
    let expected = || bad(path, "required", "an array of property names");
    match map.get("required") {
        None => Ok(Vec::new()),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().ok_or_else(expected))
            .collect(),
        Some(_) => Err(expected()),
    }
}

/// The type a schema without `type` is generated as.
/// `None`: no type-specific keyword, so any value.
fn infer_type(
    map: &Map<String, Value>,
    path: &str,
) -> Result<Option<&'static str>, StructuredError> {
    let has = |keys: &[&str]| keys.iter().any(|k| map.contains_key(*k));
    let candidates = [
        (
            "object",
            has(&["properties", "required", "additionalProperties"]),
        ),
        ("array", has(&["items", "minItems", "maxItems"])),
        ("string", has(&["minLength", "maxLength"])),
    ];
    let mut found = candidates.iter().filter(|(_, present)| *present);
    match (found.next(), found.next()) {
        (None, _) => Ok(None),
        (Some((name, _)), None) => Ok(Some(name)),
        (Some(_), Some(_)) => Err(err(path, SchemaProblem::MissingType)),
    }
}

/// A `min`/`max` keyword pair of non-negative integers, checked for order.
fn range(
    map: &Map<String, Value>,
    min_key: &'static str,
    max_key: &'static str,
    path: &str,
) -> Result<(u32, Option<u32>), StructuredError> {
    let read = |key: &'static str| -> Result<Option<u32>, StructuredError> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(path, key, "a non-negative integer")),
        }
    };
    let min = read(min_key)?.unwrap_or(0);
    let max = read(max_key)?;
    if max.is_some_and(|max| min > max) {
        return Err(err(
            path,
            SchemaProblem::EmptyRange {
                min: min_key,
                max: max_key,
            },
        ));
    }
    Ok((min, max))
}
