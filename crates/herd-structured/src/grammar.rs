//! The compiled form of a schema: a graph of [`Node`]s that the automaton
//! walks, plus byte tries for property names and `enum`/`const` values.
//!
//! `schema.rs` builds the graph; [`Grammar::finish`] then makes it safe to
//! decode with: it drops every alternative, optional property or array item
//! that no value satisfies (so the automaton never enters a dead end), builds
//! the tries, and computes each node's possible first bytes.

use serde_json::Value;

use crate::error::{SchemaProblem, StructuredError};
use crate::string::{Bounds, StrState, StrStep};

/// Index of a node in [`Grammar::nodes`].
pub(crate) type NodeId = u32;

/// The value `{}` / `true` accepts: any JSON value.
pub(crate) const ANY: NodeId = 0;
/// Any JSON object (`json_object` mode).
pub(crate) const ANY_OBJECT: NodeId = 1;
/// Any JSON array.
pub(crate) const ANY_ARRAY: NodeId = 2;
/// Any string.
pub(crate) const ANY_STRING: NodeId = 3;
/// Any number.
pub(crate) const ANY_NUMBER: NodeId = 4;
/// `true`, `false` or `null`.
pub(crate) const ANY_LITERAL: NodeId = 5;

/// Property index of a key that is not a declared property.
pub(crate) const ADDITIONAL: u8 = 64;

/// One kind of value the schema allows at some place.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A value of any of these nodes (`anyOf`, `oneOf`, type lists).
    AnyOf(Vec<NodeId>),
    /// An object.
    Object(ObjectNode),
    /// An array.
    Array {
        /// Schema of every item.
        items: NodeId,
        /// `minItems`.
        min: u32,
        /// `maxItems`.
        max: Option<u32>,
    },
    /// A string with length bounds.
    String(Bounds),
    /// A number; `integer`: no fraction or exponent.
    Number {
        /// `type: integer`.
        integer: bool,
    },
    /// One of these exact values (`enum`, `const`, `boolean`, `null`),
    /// matched as their compact serialization.
    Literal {
        /// The values.
        values: Vec<Value>,
        /// Root of their byte trie (set by [`Grammar::finish`]).
        trie: u32,
    },
    /// A `$ref` target still being compiled.
    Pending,
}

/// An object's declared properties and what else it allows.
#[derive(Debug, Clone)]
pub(crate) struct ObjectNode {
    /// Declared properties, in schema order.
    pub props: Vec<Property>,
    /// Bit `i`: property `i` is required.
    pub required: u64,
    /// Schema of undeclared properties, `None` if they are not generated.
    pub additional: Option<NodeId>,
    /// Root of the trie over the property names (set by [`Grammar::finish`]).
    pub key_trie: u32,
}

impl ObjectNode {
    /// Bits of all declared properties.
    pub fn all(&self) -> u64 {
        low_bits(self.props.len())
    }
}

/// A declared property.
#[derive(Debug, Clone)]
pub(crate) struct Property {
    /// The name as written between the quotes (JSON-escaped).
    pub key: Vec<u8>,
    /// Its schema.
    pub node: NodeId,
}

/// A node of a byte trie.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrieNode {
    /// Next byte → child node.
    pub children: Vec<(u8, u32)>,
    /// The literal or property that ends here.
    pub terminal: Option<u8>,
    /// Bits of the properties in this subtree (key tries only).
    pub below: u64,
    /// String state after the key prefix this node spells (key tries only),
    /// where an undeclared key that leaves the trie continues.
    pub string: StrState,
}

/// The compiled schema.
#[derive(Debug, Clone)]
pub(crate) struct Grammar {
    /// All nodes; the builtins come first.
    pub nodes: Vec<Node>,
    /// The schema location of each node, for errors.
    pub paths: Vec<String>,
    /// All trie nodes of all tries.
    pub tries: Vec<TrieNode>,
    /// Bytes that can start a value of each node (a 256-bit set).
    pub first: Vec<[u64; 4]>,
    /// The document's node.
    pub root: NodeId,
}

/// `n` low bits set (n ≤ 64).
pub(crate) fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

fn has_byte(set: &[u64; 4], b: u8) -> bool {
    set[usize::from(b >> 6)] & (1 << (b & 63)) != 0
}

impl Grammar {
    /// A grammar holding only the builtin nodes.
    pub fn new() -> Grammar {
        let nodes = vec![
            Node::AnyOf(vec![
                ANY_OBJECT,
                ANY_ARRAY,
                ANY_STRING,
                ANY_NUMBER,
                ANY_LITERAL,
            ]),
            Node::Object(ObjectNode {
                props: Vec::new(),
                required: 0,
                additional: Some(ANY),
                key_trie: 0,
            }),
            Node::Array {
                items: ANY,
                min: 0,
                max: None,
            },
            Node::String(Bounds::default()),
            Node::Number { integer: false },
            Node::Literal {
                values: vec![Value::Bool(true), Value::Bool(false), Value::Null],
                trie: 0,
            },
        ];
        Grammar {
            paths: vec!["#".into(); nodes.len()],
            nodes,
            tries: Vec::new(),
            first: Vec::new(),
            root: ANY,
        }
    }

    /// Adds a node compiled from the subschema at `path`, returning its id.
    pub fn push(&mut self, node: Node, path: &str) -> NodeId {
        self.nodes.push(node);
        self.paths.push(path.to_owned());
        (self.nodes.len() - 1) as NodeId
    }

    /// The child of trie node `t` for byte `b`.
    pub fn child(&self, t: u32, b: u8) -> Option<u32> {
        let children = &self.tries[t as usize].children;
        children.iter().find(|(c, _)| *c == b).map(|&(_, n)| n)
    }

    /// Whether a value of `node` can start with byte `b`.
    pub fn can_start(&self, node: NodeId, b: u8) -> bool {
        has_byte(&self.first[node as usize], b)
    }

    /// Prunes what no value satisfies, builds the tries and first-byte sets.
    /// Fails if the root accepts nothing or alternatives loop on themselves.
    pub fn finish(&mut self) -> Result<(), StructuredError> {
        let sat = self.satisfiable();
        if !sat[self.root as usize] {
            return Err(StructuredError::Schema {
                path: "#".into(),
                problem: SchemaProblem::Unsatisfiable,
            });
        }
        self.prune(&sat);
        for id in 0..self.nodes.len() {
            self.build_tries(id);
        }
        self.first = vec![[0; 4]; self.nodes.len()];
        let mut state = vec![Visit::New; self.nodes.len()];
        for id in 0..self.nodes.len() as NodeId {
            self.first_bytes(id, &mut state)?;
        }
        Ok(())
    }

    /// Least fixpoint of "some finite value satisfies this node".
    fn satisfiable(&self) -> Vec<bool> {
        let mut sat = vec![false; self.nodes.len()];
        loop {
            let mut changed = false;
            for (id, node) in self.nodes.iter().enumerate() {
                let now = match node {
                    Node::AnyOf(branches) => branches.iter().any(|&b| sat[b as usize]),
                    Node::Object(o) => o
                        .props
                        .iter()
                        .enumerate()
                        .all(|(i, p)| o.required & (1 << i) == 0 || sat[p.node as usize]),
                    Node::Array { items, min, .. } => *min == 0 || sat[*items as usize],
                    Node::String(_) | Node::Number { .. } => true,
                    Node::Literal { values, .. } => !values.is_empty(),
                    Node::Pending => false,
                };
                if now && !sat[id] {
                    sat[id] = true;
                    changed = true;
                }
            }
            if !changed {
                return sat;
            }
        }
    }

    /// Removes unsatisfiable alternatives, optional properties and items.
    fn prune(&mut self, sat: &[bool]) {
        for node in &mut self.nodes {
            match node {
                Node::AnyOf(branches) => branches.retain(|&b| sat[b as usize]),
                Node::Object(o) => {
                    let mut required = 0;
                    let mut kept = Vec::new();
                    for (i, p) in o.props.drain(..).enumerate() {
                        let is_required = o.required & (1 << i) != 0;
                        if is_required || sat[p.node as usize] {
                            required |= u64::from(is_required) << kept.len();
                            kept.push(p);
                        }
                    }
                    o.props = kept;
                    o.required = required;
                    o.additional = o.additional.filter(|&a| sat[a as usize]);
                }
                Node::Array { items, max, .. } if !sat[*items as usize] => *max = Some(0),
                _ => {}
            }
        }
    }

    /// Builds the key trie of an object node or the value trie of a literal node.
    fn build_tries(&mut self, id: usize) {
        let (words, is_key): (Vec<Vec<u8>>, bool) = match &self.nodes[id] {
            Node::Object(o) => (o.props.iter().map(|p| p.key.clone()).collect(), true),
            Node::Literal { values, .. } => (values.iter().map(compact).collect(), false),
            _ => return,
        };
        let root = self.tries.len() as u32;
        self.tries.push(TrieNode::default());
        for (index, word) in words.iter().enumerate() {
            let mut t = root;
            let mut string = StrState::default();
            self.tries[t as usize].below |= 1 << index;
            for &b in word {
                if is_key {
                    // Keys are valid JSON string content (serde_json escaped them).
                    let step = string.step(b, Bounds::default());
                    debug_assert_eq!(step, StrStep::Consumed);
                }
                t = match self.child(t, b) {
                    Some(next) => next,
                    None => {
                        let next = self.tries.len() as u32;
                        self.tries.push(TrieNode {
                            string,
                            ..TrieNode::default()
                        });
                        self.tries[t as usize].children.push((b, next));
                        next
                    }
                };
                self.tries[t as usize].below |= 1 << index;
            }
            self.tries[t as usize].terminal = Some(index as u8);
        }
        match &mut self.nodes[id] {
            Node::Object(o) => o.key_trie = root,
            Node::Literal { trie, .. } => *trie = root,
            _ => {}
        }
    }

    /// Fills `first[id]`; alternatives that reach themselves without
    /// consuming a byte are refused.
    fn first_bytes(&mut self, id: NodeId, state: &mut [Visit]) -> Result<(), StructuredError> {
        match state[id as usize] {
            Visit::Done => return Ok(()),
            Visit::Active => {
                return Err(StructuredError::Schema {
                    path: self.paths[id as usize].clone(),
                    problem: SchemaProblem::LeftRecursion,
                })
            }
            Visit::New => state[id as usize] = Visit::Active,
        }
        let mut set = [0u64; 4];
        let mut add = |b: u8| set[usize::from(b >> 6)] |= 1 << (b & 63);
        match self.nodes[id as usize].clone() {
            Node::AnyOf(branches) => {
                for b in branches {
                    self.first_bytes(b, state)?;
                    for (word, other) in set.iter_mut().zip(self.first[b as usize]) {
                        *word |= other;
                    }
                }
            }
            Node::Object(_) => add(b'{'),
            Node::Array { .. } => add(b'['),
            Node::String(_) => add(b'"'),
            Node::Number { .. } => b"-0123456789".iter().for_each(|&b| add(b)),
            Node::Literal { trie, .. } => {
                for &(b, _) in &self.tries[trie as usize].children {
                    add(b);
                }
            }
            Node::Pending => {}
        }
        self.first[id as usize] = set;
        state[id as usize] = Visit::Done;
        Ok(())
    }
}

/// Depth-first visit marks for [`Grammar::first_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Active,
    Done,
}

/// A value's compact serialization, as literal nodes match it.
pub(crate) fn compact(value: &Value) -> Vec<u8> {
    // Serializing a `Value` to memory cannot fail (its keys are strings).
    serde_json::to_vec(value).unwrap_or_default()
}
