//! OpenAI chat records — `{"tools": [...], "messages": [...]}`, the shape of
//! chat datasets and of `/v1/chat/completions` requests — as herd dialogs.
//!
//! The mapping is the one the Llama 3.1 JSON tool template implies:
//!
//! | OpenAI | herd |
//! |---|---|
//! | `system`, `user` | [`Role::System`], [`Role::User`] |
//! | `assistant` with `tool_calls` | [`Role::Assistant`] with [`ToolCall::Custom`] calls, ending in `<\|eom_id\|>` (waiting for the result) |
//! | `tool` (or `ipython`) | [`Role::Ipython`], the result text verbatim |
//! | `tools` | [`ToolDefinition`]s, rendered by [`ToolPrompt`] |
//!
//! Tool-call arguments arrive as a JSON *string*; they are parsed keeping
//! their key order, because the call is written back as text in that order.
//! Fields herd does not use (`name`, `id`, `tool_call_id`, extra keys such as
//! an evaluation's `expected`) are ignored.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::chat::{Message, MessageEnd, Role, ToolCall, ToolValue};
use crate::error::{RecordProblem, TokenizerError};
use crate::tools::{ToolDefinition, ToolPrompt};

/// One chat record: the tools on offer and the messages, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRecord {
    /// The custom tools the record declares (may be empty).
    pub tools: Vec<ToolDefinition>,
    /// The messages, without the tool prompt applied.
    pub messages: Vec<Message>,
}

impl ChatRecord {
    /// Parses one JSON line.
    pub fn from_json(line: &str) -> Result<Self, TokenizerError> {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| record_error(RecordProblem::Json(e.to_string())))?;
        Self::from_value(&value)
    }

    /// Reads a parsed record.
    pub fn from_value(value: &Value) -> Result<Self, TokenizerError> {
        parse_record(value).map_err(record_error)
    }

    /// The dialog to encode: the messages with the tool prompt applied
    /// ([`ToolPrompt::apply`] with the default placement and date).
    pub fn dialog(&self) -> Vec<Message> {
        ToolPrompt::new(self.tools.clone()).apply(&self.messages)
    }
}

fn record_error(problem: RecordProblem) -> TokenizerError {
    TokenizerError::InvalidRecord { problem }
}

fn parse_record(value: &Value) -> Result<ChatRecord, RecordProblem> {
    let object = value
        .as_object()
        .ok_or_else(|| shape("record", "an object"))?;
    let tools = match object.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, tool)| parse_tool(tool, &format!("tools[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(shape("tools", "an array")),
    };
    let messages = object
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("messages", "an array of messages"))?;
    if messages.is_empty() {
        return Err(RecordProblem::NoMessages);
    }
    let messages = messages
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(m, &format!("messages[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(ChatRecord { tools, messages })
}

/// An OpenAI tool object `{"type": "function", "function": {...}}`.
fn parse_tool(value: &Value, path: &str) -> Result<ToolDefinition, RecordProblem> {
    let function = value.get("function").ok_or_else(|| {
        shape(
            path,
            "a {\"type\": \"function\", \"function\": {...}} object",
        )
    })?;
    let name = str_field(function, "name", &format!("{path}.function"))?;
    let description = match function.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(shape(&format!("{path}.function.description"), "a string")),
    };
    let parameters = function
        .get("parameters")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
    Ok(ToolDefinition {
        name: name.to_owned(),
        description,
        parameters,
    })
}

fn parse_message(value: &Value, path: &str) -> Result<Message, RecordProblem> {
    let role_name = str_field(value, "role", path)?;
    let role = match role_name {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "ipython" => Role::Ipython,
        other => {
            return Err(RecordProblem::UnknownRole {
                path: path.to_owned(),
                role: other.to_owned(),
            })
        }
    };
    let content = match value.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(shape(&format!("{path}.content"), "a string")),
    };
    let mut message = Message::new(role, content);
    match value.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) if role == Role::Assistant => {
            message.tool_calls = calls
                .iter()
                .enumerate()
                .map(|(i, call)| parse_tool_call(call, &format!("{path}.tool_calls[{i}]")))
                .collect::<Result<_, _>>()?;
            if !message.tool_calls.is_empty() {
                message.end = MessageEnd::EndOfMessage;
            }
        }
        Some(Value::Array(_)) => {
            return Err(shape(
                &format!("{path}.tool_calls"),
                "absent outside assistant messages",
            ))
        }
        Some(_) => return Err(shape(&format!("{path}.tool_calls"), "an array")),
    }
    Ok(message)
}

/// `{"id": ..., "type": "function", "function": {"name": ..., "arguments": "{...}"}}`.
fn parse_tool_call(value: &Value, path: &str) -> Result<ToolCall, RecordProblem> {
    let function = value
        .get("function")
        .ok_or_else(|| shape(path, "an object with a \"function\" field"))?;
    let function_path = format!("{path}.function");
    let name = str_field(function, "name", &function_path)?;
    let arguments_path = format!("{function_path}.arguments");
    let parsed = match function.get("arguments") {
        Some(Value::String(text)) => serde_json::from_str::<ToolValue>(text),
        // Some datasets store the object itself; its key order is the parser's.
        Some(object @ Value::Object(_)) => serde_json::from_value::<ToolValue>(object.clone()),
        _ => return Err(shape(&arguments_path, "a JSON string holding an object")),
    };
    match parsed {
        Ok(ToolValue::Map(arguments)) => Ok(ToolCall::Custom {
            name: name.to_owned(),
            arguments,
        }),
        Ok(_) => Err(shape(&arguments_path, "a JSON object")),
        Err(e) => Err(RecordProblem::Arguments {
            path: arguments_path,
            reason: e.to_string(),
        }),
    }
}

fn str_field<'v>(value: &'v Value, key: &str, path: &str) -> Result<&'v str, RecordProblem> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| shape(&format!("{path}.{key}"), "a string"))
}

fn shape(path: &str, expected: &'static str) -> RecordProblem {
    RecordProblem::Shape {
        path: path.to_owned(),
        expected,
    }
}

/// Reads JSON into a [`ToolValue`] keeping object keys in document order
/// (a `serde_json::Value` would sort them).
impl<'de> Deserialize<'de> for ToolValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ToolValueVisitor)
    }
}

struct ToolValueVisitor;

impl<'de> Visitor<'de> for ToolValueVisitor {
    type Value = ToolValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<ToolValue, E> {
        Ok(ToolValue::Null)
    }
    fn visit_none<E>(self) -> Result<ToolValue, E> {
        Ok(ToolValue::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<ToolValue, E> {
        Ok(ToolValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<ToolValue, E> {
        Ok(ToolValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<ToolValue, E> {
        // Beyond i64 only a float can hold it, as in Python's json for floats.
        Ok(i64::try_from(v).map_or(ToolValue::Float(v as f64), ToolValue::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<ToolValue, E> {
        Ok(ToolValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<ToolValue, E> {
        Ok(ToolValue::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<ToolValue, E> {
        Ok(ToolValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ToolValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(ToolValue::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ToolValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, ToolValue>()? {
            entries.push((key, value));
        }
        Ok(ToolValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL_DIALOG: &str = r#"{"tools":[{"type":"function","function":{"name":"lookup_order","description":"Find an order","parameters":{"type":"object","properties":{"order_id":{"type":"integer"}},"required":["order_id"]}}}],
      "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Where is 1042?"},
      {"role":"assistant","content":"","tool_calls":[{"id":"call_0","type":"function","function":{"name":"lookup_order","arguments":"{\"zeta\": 1, \"order_id\": 1042}"}}]},
      {"role":"tool","tool_call_id":"call_0","content":"{\"status\":\"shipped\"}"},
      {"role":"assistant","content":"It has shipped."}],"expected":{"ignored":true}}"#;

    #[test]
    fn tool_dialog_maps_to_llama_messages_keeping_argument_order() {
        let record = ChatRecord::from_json(TOOL_DIALOG).expect("parse");
        assert_eq!(record.tools.len(), 1);
        assert_eq!(record.tools[0].name, "lookup_order");
        let call = &record.messages[2];
        assert_eq!(call.end, MessageEnd::EndOfMessage);
        assert_eq!(
            call.tool_calls,
            vec![ToolCall::Custom {
                name: "lookup_order".into(),
                arguments: vec![
                    ("zeta".into(), ToolValue::Int(1)),
                    ("order_id".into(), ToolValue::Int(1042))
                ],
            }]
        );
        assert_eq!(record.messages[3].role, Role::Ipython);
        assert_eq!(record.messages[3].content, "{\"status\":\"shipped\"}");
        assert_eq!(record.messages[4].end, MessageEnd::EndOfTurn);
        let dialog = record.dialog();
        assert!(dialog[0].content.starts_with("Environment: ipython\n"));
        assert!(dialog[1].content.contains("\"lookup_order\""));
        assert!(dialog[1].content.ends_with("Where is 1042?"));
    }

    #[test]
    fn bad_records_name_the_field() {
        let cases = [
            ("[]", "record: expected an object"),
            (r#"{"messages":[]}"#, "no messages"),
            (
                r#"{"messages":[{"role":"bot","content":"x"}]}"#,
                "messages[0]: unknown role \"bot\"",
            ),
            (
                r#"{"messages":[{"role":"user","content":5}]}"#,
                "messages[0].content: expected a string",
            ),
            (
                r#"{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{oops"}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments: ",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x","tool_calls":[]}]}"#,
                "messages[0].tool_calls: expected absent outside assistant messages",
            ),
        ];
        for (line, want) in cases {
            let err = ChatRecord::from_json(line).expect_err(line).to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
