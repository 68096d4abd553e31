//! The test split's schema: what the model must do at one turn, and how a
//! reply is checked.
//!
//! A test case is a chat record cut just before an assistant turn, plus:
//!
//! ```json
//! {"tools": [...], "messages": [... up to the turn ...],
//!  "expected": {"tool_call": {"name": "lookup_order", "arguments": {"order_id": 1047}}},
//!  "reference": {"role": "assistant", ...the gold message...},
//!  "meta": {"id": "test-00012-0", "language": "en", "intent": "order_status", "turn": 0,
//!           "template": "en/order_status/13", "held_out_template": true, "held_out_order": true}}
//! ```
//!
//! or `"expected": {"answer_contains": ["1047", "shipped", "DHL0123456789"]}`. A reply
//! passes when it is exactly that call (same function, arguments equal as
//! JSON values), or when it is a plain answer — no tool call — containing
//! every listed string verbatim (case-sensitive). An empty list accepts any
//! plain answer: the point of such cases (greetings, thanks) is that the
//! model does not call a tool.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the model must produce at a test turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expected {
    /// Exactly this tool call.
    ToolCall {
        /// The function name.
        name: String,
        /// The arguments object.
        arguments: Value,
    },
    /// A plain answer containing each of these strings.
    AnswerContains(Vec<String>),
}

/// What a model replied at a turn, as an evaluator parsed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply<'a> {
    /// A tool call.
    ToolCall {
        /// The function name.
        name: &'a str,
        /// The arguments object.
        arguments: &'a Value,
    },
    /// Plain text.
    Answer(&'a str),
}

impl Expected {
    /// Whether `reply` passes (see the module docs).
    pub fn accepts(&self, reply: Reply<'_>) -> bool {
        match (self, reply) {
            (
                Expected::ToolCall { name, arguments },
                Reply::ToolCall {
                    name: got_name,
                    arguments: got_arguments,
                },
            ) => name == got_name && arguments == got_arguments,
            (Expected::AnswerContains(parts), Reply::Answer(text)) => {
                parts.iter().all(|part| text.contains(part.as_str()))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_round_trips_and_checks_replies() {
        let call: Expected = serde_json::from_value(
            json!({"tool_call": {"name": "lookup_order", "arguments": {"order_id": 1042}}}),
        )
        .expect("parse");
        let args = json!({"order_id": 1042});
        assert!(call.accepts(Reply::ToolCall {
            name: "lookup_order",
            arguments: &args
        }));
        let wrong = json!({"order_id": 1043});
        assert!(!call.accepts(Reply::ToolCall {
            name: "lookup_order",
            arguments: &wrong
        }));
        assert!(!call.accepts(Reply::Answer("lookup_order 1042")));

        let answer = Expected::AnswerContains(vec!["1042".into(), "shipped".into()]);
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"answer_contains": ["1042", "shipped"]})
        );
        assert!(answer.accepts(Reply::Answer("Order 1042 has shipped.")));
        assert!(!answer.accepts(Reply::Answer("Order 1042 has Shipped.")));
        assert!(!answer.accepts(Reply::ToolCall {
            name: "lookup_order",
            arguments: &args
        }));
        assert!(serde_json::from_value::<Expected>(json!({"answer": []})).is_err());
    }
}
