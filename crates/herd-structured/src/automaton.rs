//! The pushdown automaton that reads a JSON document byte by byte against a
//! [`Grammar`].
//!
//! A [`Config`] is one parse: a stack of [`Frame`]s, innermost last. Where
//! the schema offers alternatives (`anyOf`) that a byte cannot yet tell apart,
//! the parse splits, so a [`State`] holds every live parse; a byte that no
//! parse accepts kills the state. Every frame is a small `Copy` value, so
//! cloning a state (which the token search does once per vocabulary-trie
//! node) copies a few dozen bytes.
//!
//! ```text
//!   {"tags": ["a", "b     ← bytes so far
//!   stack: Object{seen: tags, phase: AfterValue}
//!          Array{count: 2, phase: AfterValue}
//!          String{len: 1}                            ← top
//! ```
//!
//! Liveness: the grammar is pruned of unsatisfiable parts, and every choice
//! below refuses a byte after which the value could not be finished (a `,`
//! with no property left to write, a `]` before `minItems`, a key prefix
//! that only names properties already written), so any state reached can be
//! completed with single-byte tokens.

use crate::grammar::{Grammar, Node, NodeId, ADDITIONAL};
use crate::string::{Bounds, StrState, StrStep};

/// Spaces or tabs allowed after the newline of a gap (llama.cpp's JSON
/// grammars use the same bound).
const MAX_INDENT: u8 = 20;
/// Deepest nesting of frames; objects and arrays do not open beyond it.
pub(crate) const MAX_DEPTH: usize = 48;
/// Digits allowed before the decimal point, after it, and in the exponent
/// (f64 holds ~16 significant digits; the bounds keep numbers finite and
/// generation bounded).
const MAX_INT_DIGITS: u8 = 16;
const MAX_FRAC_DIGITS: u8 = 16;
const MAX_EXP_DIGITS: u8 = 2;

/// Where an object is between its braces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjPhase {
    /// After `{`.
    Open,
    /// A key is being read (a [`Frame::Key`] is on top).
    Key,
    /// After the key of property `p` ([`ADDITIONAL`] for an undeclared one).
    AfterKey(u8),
    /// After a member's value.
    AfterValue,
    /// After `,`.
    Comma,
}

/// How much of a key has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyAt {
    /// Still spelling a prefix of declared names: this trie node.
    Trie(u32),
    /// An undeclared name (only where additional properties are allowed).
    Free(StrState),
}

/// Where an array is between its brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ArrPhase {
    /// After `[`.
    Open,
    /// After an item.
    AfterValue,
    /// After `,`.
    Comma,
}

/// Position inside a number (JSON's number grammar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NumPhase {
    /// Nothing read yet.
    Start,
    /// After `-`.
    Minus,
    /// After a leading `0`.
    Zero,
    /// In the integer digits.
    Int,
    /// After `.`.
    Dot,
    /// In the fraction digits.
    Frac,
    /// After `e`/`E`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent digits.
    ExpDigits,
}

impl NumPhase {
    /// Whether a number may end here.
    fn can_end(self) -> bool {
        matches!(
            self,
            NumPhase::Zero | NumPhase::Int | NumPhase::Frac | NumPhase::ExpDigits
        )
    }
}

/// One level of the parse stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Frame {
    /// A value of this node is expected (leading whitespace allowed).
    Value(NodeId),
    /// Inside an object; `seen`: bits of the declared properties written.
    Object {
        node: NodeId,
        seen: u64,
        phase: ObjPhase,
    },
    /// Inside a key of the object below.
    Key { node: NodeId, at: KeyAt },
    /// Inside an array; `count`: items started (saturated without `maxItems`).
    Array {
        node: NodeId,
        count: u32,
        phase: ArrPhase,
    },
    /// Inside a string of this node.
    String { node: NodeId, state: StrState },
    /// Inside a number.
    Number {
        integer: bool,
        phase: NumPhase,
        digits: u8,
    },
    /// Inside a literal: this node of its trie.
    Literal(u32),
}

/// One parse: the frame stack and where it is in a gap of whitespace.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Config {
    stack: Vec<Frame>,
    /// 0: no whitespace yet; 1: after the one space of a gap; 2 + k: after
    /// the newline of a gap and `k` spaces or tabs.
    whitespace: u8,
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Config {
            stack: self.stack.clone(),
            whitespace: self.whitespace,
        }
    }

    /// Reuses the stack's allocation (the token search clones constantly).
    fn clone_from(&mut self, source: &Self) {
        self.stack.clone_from(&source.stack);
        self.whitespace = source.whitespace;
    }
}

/// Every live parse of the bytes so far.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    configs: Vec<Config>,
}

impl Clone for State {
    fn clone(&self) -> Self {
        State {
            configs: self.configs.clone(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        self.configs.clone_from(&source.configs);
    }
}

/// What a frame did with a byte.
enum Step {
    /// The byte is taken.
    Consumed,
    /// The byte cannot come next.
    Dead,
    /// The top frame changed without taking the byte; feed it again.
    Again,
}

impl State {
    /// The state before the first byte of a document of `root`.
    pub fn new(root: NodeId) -> State {
        State {
            configs: vec![Config {
                stack: vec![Frame::Value(root)],
                whitespace: 0,
            }],
        }
    }

    /// Feeds one byte; false (and an empty state) if no parse accepts it.
    pub fn advance(&mut self, g: &Grammar, b: u8) -> bool {
        let mut extra = Vec::new();
        let mut kept = 0;
        for i in 0..self.configs.len() {
            if feed(g, &mut self.configs[i], b, &mut extra) {
                self.configs.swap(kept, i);
                kept += 1;
            }
        }
        self.configs.truncate(kept);
        if !extra.is_empty() {
            self.configs.append(&mut extra);
            self.dedup();
        }
        !self.configs.is_empty()
    }

    fn dedup(&mut self) {
        let mut i = 1;
        while i < self.configs.len() {
            if self.configs[..i].contains(&self.configs[i]) {
                self.configs.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Whether the bytes so far are a whole document (that may still go on,
    /// as a number may take more digits).
    pub fn complete(&self, g: &Grammar) -> bool {
        self.configs.iter().any(|c| match c.stack.as_slice() {
            [] => true,
            [Frame::Number { phase, .. }] => phase.can_end(),
            [Frame::Literal(t)] => g.tries[*t as usize].terminal.is_some(),
            _ => false,
        })
    }

    /// If every parse is inside a string between two characters: how many
    /// more characters fit in the roomiest of them (`u32::MAX` without a
    /// `maxLength`). A token of plain string content is then allowed exactly
    /// when its characters fit, and leaves each parse inside its string.
    pub fn string_room(&self, g: &Grammar) -> Option<u32> {
        let mut room = None;
        for c in &self.configs {
            let here = match c.stack.last()? {
                Frame::String { node, state } if !state.mid_char() => {
                    let Node::String(bounds) = g.nodes[*node as usize] else {
                        return None;
                    };
                    bounds
                        .max
                        .map_or(u32::MAX, |max| max.saturating_sub(state.len))
                }
                Frame::Key {
                    at: KeyAt::Free(state),
                    ..
                } if !state.mid_char() => u32::MAX,
                _ => return None,
            };
            room = room.max(Some(here));
        }
        room
    }

    /// Whether every parse is inside a multi-byte UTF-8 character (so only
    /// continuation bytes can follow).
    pub fn mid_utf8(&self) -> bool {
        self.configs.iter().all(|c| match c.stack.last() {
            Some(Frame::String { state, .. })
            | Some(Frame::Key {
                at: KeyAt::Free(state),
                ..
            }) => state.utf8_left > 0,
            _ => false,
        })
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Feeds `b` to one parse. Alternatives it opens are fed too and pushed to
/// `extra`; `cfg` itself stays the first of them.
fn feed(g: &Grammar, cfg: &mut Config, b: u8, extra: &mut Vec<Config>) -> bool {
    if !is_space(b) {
        cfg.whitespace = 0;
    }
    loop {
        let Some(&top) = cfg.stack.last() else {
            return false;
        };
        let step = match top {
            Frame::Value(node) => value(g, cfg, node, b, extra),
            Frame::Object { node, seen, phase } => object(g, cfg, node, seen, phase, b),
            Frame::Key { node, at } => key(g, cfg, node, at, b),
            Frame::Array { node, count, phase } => array(g, cfg, node, count, phase, b),
            Frame::String { node, state } => string(g, cfg, node, state, b),
            Frame::Number {
                integer,
                phase,
                digits,
            } => number(cfg, integer, phase, digits, b),
            Frame::Literal(t) => literal(g, cfg, t, b),
        };
        match step {
            Step::Consumed => return true,
            Step::Dead => return false,
            Step::Again => {}
        }
    }
}

/// Whitespace between tokens of the document. A gap is nothing, one space,
/// or a newline and up to [`MAX_INDENT`] spaces or tabs: enough for compact
/// and pretty-printed JSON, too little for a model to spend its budget on
/// blanks.
fn space(cfg: &mut Config, b: u8) -> Step {
    cfg.whitespace = match (cfg.whitespace, b) {
        (0, b' ') => 1,
        (0, b'\n') => 2,
        (n @ 2.., b' ' | b'\t') if n < 2 + MAX_INDENT => n + 1,
        _ => return Step::Dead,
    };
    Step::Consumed
}

fn set_top(cfg: &mut Config, frame: Frame) {
    if let Some(top) = cfg.stack.last_mut() {
        *top = frame;
    }
}

fn value(g: &Grammar, cfg: &mut Config, node: NodeId, b: u8, extra: &mut Vec<Config>) -> Step {
    if is_space(b) {
        return space(cfg, b);
    }
    if !g.can_start(node, b) {
        return Step::Dead;
    }
    let opens = cfg.stack.len() < MAX_DEPTH;
    let frame = match &g.nodes[node as usize] {
        Node::AnyOf(branches) => {
            let mut starting = branches.iter().filter(|&&c| g.can_start(c, b));
            let Some(&first) = starting.next() else {
                return Step::Dead;
            };
            for &other in starting {
                let mut split = cfg.clone();
                set_top(&mut split, Frame::Value(other));
                if feed(g, &mut split, b, extra) {
                    extra.push(split);
                }
            }
            set_top(cfg, Frame::Value(first));
            return Step::Again;
        }
        Node::Object(_) if opens => Frame::Object {
            node,
            seen: 0,
            phase: ObjPhase::Open,
        },
        Node::Array { .. } if opens => Frame::Array {
            node,
            count: 0,
            phase: ArrPhase::Open,
        },
        Node::String(_) => Frame::String {
            node,
            state: StrState::default(),
        },
        Node::Number { integer } => {
            set_top(
                cfg,
                Frame::Number {
                    integer: *integer,
                    phase: NumPhase::Start,
                    digits: 0,
                },
            );
            return Step::Again;
        }
        Node::Literal { trie, .. } => {
            set_top(cfg, Frame::Literal(*trie));
            return Step::Again;
        }
        Node::Object(_) | Node::Array { .. } | Node::Pending => return Step::Dead,
    };
    set_top(cfg, frame);
    Step::Consumed
}

fn object(g: &Grammar, cfg: &mut Config, node: NodeId, seen: u64, phase: ObjPhase, b: u8) -> Step {
    let Node::Object(o) = &g.nodes[node as usize] else {
        return Step::Dead;
    };
    let key_possible = o.all() & !seen != 0 || o.additional.is_some();
    let can_close = o.required & !seen == 0;
    let set = |cfg: &mut Config, phase| set_top(cfg, Frame::Object { node, seen, phase });
    match (phase, b) {
        (_, b) if is_space(b) => space(cfg, b),
        (ObjPhase::Open | ObjPhase::Comma, b'"') if key_possible => {
            set(cfg, ObjPhase::Key);
            let at = if o.props.is_empty() {
                KeyAt::Free(StrState::default())
            } else {
                KeyAt::Trie(o.key_trie)
            };
            cfg.stack.push(Frame::Key { node, at });
            Step::Consumed
        }
        (ObjPhase::Open | ObjPhase::AfterValue, b'}') if can_close => {
            cfg.stack.pop();
            Step::Consumed
        }
        (ObjPhase::AfterKey(p), b':') => {
            let value = match o.props.get(usize::from(p)) {
                Some(prop) => prop.node,
                None => match o.additional {
                    Some(a) => a,
                    None => return Step::Dead,
                },
            };
            set(cfg, ObjPhase::AfterValue);
            cfg.stack.push(Frame::Value(value));
            Step::Consumed
        }
        (ObjPhase::AfterValue, b',') if key_possible => {
            set(cfg, ObjPhase::Comma);
            Step::Consumed
        }
        _ => Step::Dead,
    }
}

fn key(g: &Grammar, cfg: &mut Config, node: NodeId, at: KeyAt, b: u8) -> Step {
    let Node::Object(o) = &g.nodes[node as usize] else {
        return Step::Dead;
    };
    let seen = match cfg.stack.len().checked_sub(2).map(|i| cfg.stack[i]) {
        Some(Frame::Object { seen, .. }) => seen,
        _ => return Step::Dead,
    };
    // Undeclared keys only once every required property is written, so a
    // model cannot wander through made-up keys and never reach them.
    let free = o.additional.is_some() && o.required & !seen == 0;
    match at {
        KeyAt::Trie(t) => {
            let here = &g.tries[t as usize];
            if let Some(c) = g.child(t, b) {
                if !free && g.tries[c as usize].below & !seen == 0 {
                    return Step::Dead;
                }
                set_top(
                    cfg,
                    Frame::Key {
                        node,
                        at: KeyAt::Trie(c),
                    },
                );
                return Step::Consumed;
            }
            if b == b'"' && !here.string.mid_char() {
                return match here.terminal {
                    Some(p) if seen & (1 << p) == 0 => close_key(cfg, p),
                    None if free => close_key(cfg, ADDITIONAL),
                    _ => Step::Dead,
                };
            }
            if !free {
                return Step::Dead;
            }
            let at = KeyAt::Free(here.string);
            set_top(cfg, Frame::Key { node, at });
            Step::Again
        }
        KeyAt::Free(mut state) => match state.step(b, Bounds::default()) {
            StrStep::Consumed => {
                let at = KeyAt::Free(state);
                set_top(cfg, Frame::Key { node, at });
                Step::Consumed
            }
            StrStep::Closed => close_key(cfg, ADDITIONAL),
            StrStep::Dead => Step::Dead,
        },
    }
}

/// Ends a key naming property `p` (or an undeclared one).
fn close_key(cfg: &mut Config, p: u8) -> Step {
    cfg.stack.pop();
    if let Some(Frame::Object { seen, phase, .. }) = cfg.stack.last_mut() {
        if p != ADDITIONAL {
            *seen |= 1 << p;
        }
        *phase = ObjPhase::AfterKey(p);
    }
    Step::Consumed
}

fn array(g: &Grammar, cfg: &mut Config, node: NodeId, count: u32, phase: ArrPhase, b: u8) -> Step {
    let Node::Array { items, min, max } = g.nodes[node as usize] else {
        return Step::Dead;
    };
    let room = max.is_none_or(|max| count < max);
    let set = |cfg: &mut Config, count, phase| set_top(cfg, Frame::Array { node, count, phase });
    let next_item = |cfg: &mut Config| {
        let count = match max {
            Some(_) => count + 1,
            None => (count + 1).min(min),
        };
        set(cfg, count, ArrPhase::AfterValue);
        cfg.stack.push(Frame::Value(items));
        Step::Again
    };
    match (phase, b) {
        (ArrPhase::Open | ArrPhase::AfterValue, b) if is_space(b) => space(cfg, b),
        (ArrPhase::Open | ArrPhase::AfterValue, b']') if count >= min => {
            cfg.stack.pop();
            Step::Consumed
        }
        (ArrPhase::Open, _) | (ArrPhase::Comma, _) if room => next_item(cfg),
        (ArrPhase::AfterValue, b',') if room => {
            set(cfg, count, ArrPhase::Comma);
            Step::Consumed
        }
        _ => Step::Dead,
    }
}

fn string(g: &Grammar, cfg: &mut Config, node: NodeId, mut state: StrState, b: u8) -> Step {
    let Node::String(bounds) = g.nodes[node as usize] else {
        return Step::Dead;
    };
    match state.step(b, bounds) {
        StrStep::Consumed => {
            set_top(cfg, Frame::String { node, state });
            Step::Consumed
        }
        StrStep::Closed => {
            cfg.stack.pop();
            Step::Consumed
        }
        StrStep::Dead => Step::Dead,
    }
}

fn number(cfg: &mut Config, integer: bool, phase: NumPhase, digits: u8, b: u8) -> Step {
    use NumPhase::*;
    let digit = b.is_ascii_digit();
    let next = match (phase, b) {
        (Start, b'-') => Some((Minus, 0)),
        (Start | Minus, b'0') => Some((Zero, 1)),
        (Start | Minus, b'1'..=b'9') => Some((Int, 1)),
        (Int, _) if digit && digits < MAX_INT_DIGITS => Some((Int, digits + 1)),
        (Zero | Int, b'.') if !integer => Some((Dot, 0)),
        (Zero | Int | Frac, b'e' | b'E') if !integer => Some((Exp, 0)),
        (Dot, _) if digit => Some((Frac, 1)),
        (Frac, _) if digit && digits < MAX_FRAC_DIGITS => Some((Frac, digits + 1)),
        (Exp, b'+' | b'-') => Some((ExpSign, 0)),
        (Exp | ExpSign, _) if digit => Some((ExpDigits, 1)),
        (ExpDigits, _) if digit && digits < MAX_EXP_DIGITS => Some((ExpDigits, digits + 1)),
        _ => None,
    };
    match next {
        Some((phase, digits)) => {
            set_top(
                cfg,
                Frame::Number {
                    integer,
                    phase,
                    digits,
                },
            );
            Step::Consumed
        }
        None if phase.can_end() => {
            cfg.stack.pop();
            Step::Again
        }
        None => Step::Dead,
    }
}

fn literal(g: &Grammar, cfg: &mut Config, t: u32, b: u8) -> Step {
    if let Some(c) = g.child(t, b) {
        set_top(cfg, Frame::Literal(c));
        Step::Consumed
    } else if g.tries[t as usize].terminal.is_some() {
        cfg.stack.pop();
        Step::Again
    } else {
        Step::Dead
    }
}
