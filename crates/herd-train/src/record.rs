//! One JSONL record → one tokenized example.
//!
//! Two shapes are accepted, the ones every trainer reads:
//! - `{"messages": [...], "tools": [...]}` — OpenAI's chat shape. Roles
//!   `system`, `user`, `assistant` (with optional `tool_calls`) and `tool`
//!   (written as Llama's `ipython` role). A `tools` list of OpenAI tool
//!   objects is rendered with [`ToolPrompt`], the renderer that serving and
//!   agents use, so the model trains on exactly the text it sees later.
//! - `{"text": "..."}` — plain text, `<|begin_of_text|>` before and
//!   `<|end_of_text|>` after.
//!
//! An assistant message that calls tools ends with `<|eom_id|>` ("waiting for
//! a tool result", as Llama 3.1 marks it); every other message with
//! `<|eot_id|>`. Tool-call arguments keep the order they have in the
//! record's JSON string, because that order is the text the model learns.

use herd_tokenizer::{
    ChatFormat, Message, MessageEnd, Role, SpecialToken, Tokenizer, ToolCall, ToolDefinition,
    ToolPrompt, ToolValue,
};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Which tokens the loss is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossOn {
    /// Only the assistant's replies (content, tool calls, end token): the
    /// model learns to answer, not to imitate users. Plain-text records are
    /// learnt in full.
    #[default]
    Assistant,
    /// Every token after `<|begin_of_text|>`.
    All,
}

/// A tokenized example: ids and, per id, whether predicting it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids, starting with `<|begin_of_text|>`.
    pub ids: Vec<u32>,
    /// `target[i]`: the loss includes predicting `ids[i]` from `ids[..i]`.
    pub target: Vec<bool>,
}

impl Example {
    /// Number of predicted tokens.
    pub fn target_count(&self) -> usize {
        self.target.iter().filter(|&&t| t).count()
    }
}

#[derive(Deserialize)]
struct RawRecord {
    messages: Option<Vec<RawMessage>>,
    text: Option<String>,
    tools: Option<Vec<RawTool>>,
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    content: Option<Value>,
    tool_calls: Option<Vec<RawToolCall>>,
}

#[derive(Deserialize)]
struct RawToolCall {
    function: RawFunction,
}

#[derive(Deserialize)]
struct RawFunction {
    name: String,
    arguments: Value,
}

#[derive(Deserialize)]
struct RawTool {
    #[serde(rename = "type")]
    kind: String,
    function: RawToolFunction,
}

#[derive(Deserialize)]
struct RawToolFunction {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
}

/// Turns one JSONL line into an example; the error is the reason only (the
/// caller adds file and line).
pub(crate) fn parse_record(
    line: &str,
    tokenizer: &Tokenizer,
    format: &ChatFormat<'_>,
    loss_on: LossOn,
) -> std::result::Result<Example, String> {
    let raw: RawRecord =
        serde_json::from_str(line).map_err(|e| format!("not a JSON record: {e}"))?;
    match (raw.messages, raw.text) {
        (Some(_), Some(_)) => Err("a record has either \"messages\" or \"text\", not both".into()),
        (None, None) => Err("a record needs \"messages\" (chat) or \"text\" (plain)".into()),
        (None, Some(text)) => text_example(&text, tokenizer),
        (Some(messages), None) => {
            let messages = messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| convert_message(m).map_err(|e| format!("messages[{i}]: {e}")))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let tools = raw
                .tools
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, t)| convert_tool(t).map_err(|e| format!("tools[{i}]: {e}")))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            chat_example(&ToolPrompt::new(tools).apply(&messages), format, loss_on)
        }
    }
}

fn text_example(text: &str, tokenizer: &Tokenizer) -> std::result::Result<Example, String> {
    let begin = tokenizer
        .require(SpecialToken::BeginOfText)
        .map_err(|e| e.to_string())?;
    let end = tokenizer
        .require(SpecialToken::EndOfText)
        .map_err(|e| e.to_string())?;
    let mut ids = vec![begin];
    ids.extend(tokenizer.encode(text).map_err(|e| e.to_string())?);
    ids.push(end);
    let mut target = vec![true; ids.len()];
    target[0] = false;
    Ok(Example { ids, target })
}

fn chat_example(
    messages: &[Message],
    format: &ChatFormat<'_>,
    loss_on: LossOn,
) -> std::result::Result<Example, String> {
    let encoded = format.encode_dialog(messages).map_err(|e| e.to_string())?;
    let mut target = vec![false; encoded.ids.len()];
    match loss_on {
        LossOn::All => target[1..].iter_mut().for_each(|t| *t = true),
        LossOn::Assistant => {
            for span in encoded.spans.iter().filter(|s| s.role == Role::Assistant) {
                target[span.body.clone()].iter_mut().for_each(|t| *t = true);
            }
        }
    }
    if !target.iter().any(|&t| t) {
        return Err("the dialog has no assistant message to learn from".into());
    }
    Ok(Example {
        ids: encoded.ids,
        target,
    })
}

fn convert_message(raw: RawMessage) -> std::result::Result<Message, String> {
    let role = match raw.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "ipython" => Role::Ipython,
        other => return Err(format!("unknown role {other:?}")),
    };
    let mut message = Message::new(role, content_text(raw.content)?);
    let calls = raw.tool_calls.unwrap_or_default();
    if !calls.is_empty() {
        if role != Role::Assistant {
            return Err("only assistant messages can have tool_calls".into());
        }
        message.tool_calls = calls
            .into_iter()
            .map(convert_call)
            .collect::<std::result::Result<_, _>>()?;
        message.end = MessageEnd::EndOfMessage;
    } else if message.content.is_empty() && role == Role::Assistant {
        return Err("an assistant message needs content or tool_calls".into());
    }
    Ok(message)
}

/// A string, null, or a list of `{"type": "text", "text": ...}` parts.
fn content_text(content: Option<Value>) -> std::result::Result<String, String> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match (p.get("type"), p.get("text")) {
                (Some(Value::String(t)), Some(Value::String(text))) if t == "text" => {
                    Ok(text.as_str())
                }
                _ => Err("content parts must be {\"type\": \"text\", \"text\": ...}".to_string()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(|texts| texts.concat()),
        Some(other) => Err(format!(
            "content must be a string or a list of text parts, not {other}"
        )),
    }
}

fn convert_call(raw: RawToolCall) -> std::result::Result<ToolCall, String> {
    let name = raw.function.name;
    let arguments = match raw.function.arguments {
        Value::String(s) => ordered_arguments(&s)
            .map_err(|e| format!("tool call {name:?}: arguments are not a JSON object: {e}"))?,
        Value::Object(_) => ordered_arguments(&raw.function.arguments.to_string())
            .map_err(|e| format!("tool call {name:?}: {e}"))?,
        other => {
            return Err(format!(
                "tool call {name:?}: arguments must be a JSON string or object, not {other}"
            ))
        }
    };
    Ok(ToolCall::Custom { name, arguments })
}

fn convert_tool(raw: RawTool) -> std::result::Result<ToolDefinition, String> {
    if raw.kind != "function" {
        return Err(format!(
            "tool type {:?} is not supported; use \"function\"",
            raw.kind
        ));
    }
    Ok(ToolDefinition {
        name: raw.function.name,
        description: raw.function.description.unwrap_or_default(),
        parameters: raw
            .function
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    })
}

/// Parses a JSON object keeping its keys in order.
fn ordered_arguments(text: &str) -> std::result::Result<Vec<(String, ToolValue)>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Ordered::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    match value.0 {
        ToolValue::Map(entries) => Ok(entries),
        _ => Err("expected an object".into()),
    }
}

/// A [`ToolValue`] read straight from JSON, so object keys keep their order
/// (serde_json's own map sorts them).
struct Ordered(ToolValue);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(OrderedVisitor).map(Ordered)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = ToolValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<ToolValue, E> {
        Ok(ToolValue::Null)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<ToolValue, E> {
        Ok(ToolValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<ToolValue, E> {
        Ok(ToolValue::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<ToolValue, E> {
        i64::try_from(v)
            .map(ToolValue::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<ToolValue, E> {
        Ok(ToolValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<ToolValue, E> {
        Ok(ToolValue::Str(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<ToolValue, A::Error> {
        let mut items = Vec::new();
        while let Some(Ordered(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(ToolValue::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<ToolValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, Ordered(v))) = map.next_entry::<String, Ordered>()? {
            entries.push((k, v));
        }
        Ok(ToolValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_keep_their_order() {
        let args =
            ordered_arguments(r#"{"z": 1, "a": [true, null, 2.5], "m": {"y": "s", "b": -3}}"#)
                .expect("parse");
        let keys: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(
            args[2].1,
            ToolValue::Map(vec![
                ("y".into(), ToolValue::Str("s".into())),
                ("b".into(), ToolValue::Int(-3))
            ])
        );
        assert!(ordered_arguments("[1]").is_err());
        assert!(ordered_arguments("{\"a\": 1} x").is_err());
    }

    #[test]
    fn content_parts_are_concatenated() {
        let parts =
            serde_json::json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(content_text(Some(parts)).expect("parts"), "ab");
        assert!(content_text(Some(serde_json::json!(3))).is_err());
    }
}
