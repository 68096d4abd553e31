//! Reading Llama 3.1 tool calls back out of generated text: the inverse of
//! the encoding in `chat.rs`, plus the looser forms models write in practice.
//!
//! Accepted, after optional leading text that ends at `<|python_tag|>`:
//!
//! ```text
//! <|python_tag|>{"name": "f", "parameters": {...}}      JSON call(s), also `"arguments"`
//! {"name": "f", "parameters": {...}}; {"name": ...}       without the tag, `;`/`,`/space separated, or a JSON list
//! <function=f>{...}</function>                            the function-tag form, repeatable
//! <|python_tag|>brave_search.call(query="...")            built-in tools (also wolfram_alpha, photogen)
//! <|python_tag|>print(1 + 1)                              anything else after the tag: code interpreter
//! ... <|eom_id|> / <|eot_id|>                             trailing end tokens are dropped
//! ```
//!
//! The whole remainder must be calls; text that merely contains a `{` stays
//! content, so a model that answers in JSON is not mistaken for a call.
//! Arguments keep the order the model wrote them in ([`ToolValue::Map`]),
//! so `parse(encode(call)) == call`.

use crate::chat::{ToolCall, ToolValue};
use crate::tokenizer::SpecialToken;

/// Generated text split into what the user reads and the tool calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToolOutput {
    /// Text that is not a call (the whole text when there are no calls).
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ToolCall>,
}

/// Prefixes that announce a call when the text starts with them (after
/// whitespace); a streaming server holds text back while it may still
/// become one of these.
const CALL_STARTS: [&str; 6] = [
    "<|python_tag|>",
    "{",
    "[{",
    "<function=",
    "brave_search.call(",
    "wolfram_alpha.call(",
];

/// The built-in tools written as `name.call(query="...")`.
const BUILTIN_CALLS: [&str; 3] = ["brave_search", "wolfram_alpha", "photogen"];

/// Whether `text` (the output so far) starts like a tool call, or is still
/// too short to tell. `false` means it can be streamed as content.
pub fn may_start_tool_call(text: &str) -> bool {
    let t = text.trim_start();
    CALL_STARTS
        .iter()
        .any(|start| t.starts_with(start) || start.starts_with(t))
}

/// Splits generated text into content and tool calls. Text that is not
/// wholly calls (after an optional `<|python_tag|>` preamble) comes back as
/// content with no calls.
pub fn parse_tool_output(text: &str) -> ParsedToolOutput {
    let mut body = text.trim_end();
    for end in [SpecialToken::EndOfMessage, SpecialToken::EndOfTurn] {
        body = body.strip_suffix(end.name()).unwrap_or(body).trim_end();
    }
    let tag = SpecialToken::PythonTag.name();
    let (content, calls) = match body.find(tag) {
        Some(at) => {
            let code = body[at + tag.len()..].trim();
            let calls = parse_calls(code).unwrap_or_else(|| {
                vec![ToolCall::CodeInterpreter {
                    code: code.to_owned(),
                }]
            });
            (body[..at].trim_end().to_owned(), calls)
        }
        None => match parse_calls(body.trim()) {
            Some(calls) => (String::new(), calls),
            None => (text.to_owned(), Vec::new()),
        },
    };
    ParsedToolOutput { content, calls }
}

/// The whole of `text` as one or more calls, or `None`.
fn parse_calls(text: &str) -> Option<Vec<ToolCall>> {
    if text.is_empty() {
        return None;
    }
    if let Some(call) = builtin_call(text) {
        return Some(vec![call]);
    }
    if text.starts_with("<function=") {
        return function_tags(text);
    }
    if text.starts_with('[') {
        let ToolValue::List(items) = serde_json::from_str::<ToolValue>(text).ok()? else {
            return None;
        };
        return items.into_iter().map(json_call).collect();
    }
    json_calls(text)
}

/// `{...}` objects separated by whitespace, `;` or `,`.
fn json_calls(text: &str) -> Option<Vec<ToolCall>> {
    let mut calls = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';' || c == ',');
        if rest.is_empty() {
            break;
        }
        if !rest.starts_with('{') {
            return None;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<ToolValue>();
        let value = stream.next()?.ok()?;
        rest = &rest[stream.byte_offset()..];
        calls.push(json_call(value)?);
    }
    (!calls.is_empty()).then_some(calls)
}

/// `{"name": ..., "parameters"|"arguments": {...}}`, optionally with
/// `"type": "function"`. Arguments given as a JSON string are decoded.
fn json_call(value: ToolValue) -> Option<ToolCall> {
    let ToolValue::Map(entries) = value else {
        return None;
    };
    let mut name = None;
    let mut arguments = None;
    for (key, value) in entries {
        match (key.as_str(), value) {
            ("name", ToolValue::Str(n)) => name = Some(n),
            ("parameters" | "arguments", ToolValue::Map(args)) => arguments = Some(args),
            ("parameters" | "arguments", ToolValue::Str(s)) => {
                let ToolValue::Map(args) = serde_json::from_str(&s).ok()? else {
                    return None;
                };
                arguments = Some(args);
            }
            ("type", ToolValue::Str(t)) if t == "function" => {}
            _ => return None,
        }
    }
    Some(ToolCall::Custom {
        name: name?,
        arguments: arguments?,
    })
}

/// `<function=NAME>{...}</function>` repeated, whitespace between.
fn function_tags(text: &str) -> Option<Vec<ToolCall>> {
    let mut calls = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let after = rest.strip_prefix("<function=")?;
        let (name, after) = after.split_once('>')?;
        let (args, after) = after.split_once("</function>")?;
        let args = args.trim();
        let arguments = if args.is_empty() {
            Vec::new()
        } else {
            match serde_json::from_str::<ToolValue>(args).ok()? {
                ToolValue::Map(entries) => entries,
                _ => return None,
            }
        };
        calls.push(ToolCall::Custom {
            name: name.trim().to_owned(),
            arguments,
        });
        rest = after.trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// `brave_search.call(query="...")` and its siblings. The query is taken
/// verbatim between the first `query="` and the final `")`, as Meta writes
/// it without escaping.
fn builtin_call(text: &str) -> Option<ToolCall> {
    let (tool, args) = text.split_once(".call(")?;
    if !BUILTIN_CALLS.contains(&tool) {
        return None;
    }
    let query = args
        .strip_suffix(')')?
        .trim()
        .strip_prefix("query=")?
        .strip_prefix('"')?
        .strip_suffix('"')?
        .to_owned();
    Some(match tool {
        "brave_search" => ToolCall::BraveSearch { query },
        "wolfram_alpha" => ToolCall::WolframAlpha { query },
        _ => ToolCall::Photogen { query },
    })
}

impl ToolValue {
    /// The value as JSON text, written as Python's `json.dumps` writes it
    /// (the form used inside prompts).
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        crate::pyfmt::json_dumps(self, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ToolPromptFormat;

    fn weather(city: &str) -> ToolCall {
        ToolCall::Custom {
            name: "get_weather".into(),
            arguments: vec![
                ("city".into(), ToolValue::Str(city.into())),
                ("days".into(), ToolValue::Int(3)),
            ],
        }
    }

    fn calls(text: &str) -> Vec<ToolCall> {
        parse_tool_output(text).calls
    }

    #[test]
    fn encoded_calls_parse_back_in_every_format() {
        for format in [ToolPromptFormat::Json, ToolPromptFormat::FunctionTag] {
            let call = weather("Oslo");
            let text = call.text(format);
            assert_eq!(calls(&text), vec![call.clone()], "{format:?}: {text}");
            let tagged = format!("<|python_tag|>{text}<|eom_id|>");
            assert_eq!(calls(&tagged), vec![call], "{format:?}: {tagged}");
        }
        for call in [
            ToolCall::BraveSearch {
                query: "rust \"axum\" sse".into(),
            },
            ToolCall::WolframAlpha {
                query: "2+2".into(),
            },
        ] {
            let text = format!(
                "<|python_tag|>{}<|eom_id|>",
                call.text(ToolPromptFormat::Json)
            );
            assert_eq!(calls(&text), vec![call]);
        }
    }

    #[test]
    fn bare_json_with_arguments_and_several_calls() {
        let text = r#" {"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}; {"type": "function", "name": "get_weather", "parameters": "{\"city\": \"Rome\", \"days\": 3}"} "#;
        assert_eq!(calls(text), vec![weather("Oslo"), weather("Rome")]);
        let list = r#"[{"name": "get_weather", "parameters": {"city": "Oslo", "days": 3}}]"#;
        assert_eq!(calls(list), vec![weather("Oslo")]);
        let tags = r#"<function=get_weather>{"city": "Oslo", "days": 3}</function>
<function=now></function>"#;
        assert_eq!(
            calls(tags),
            vec![
                weather("Oslo"),
                ToolCall::Custom {
                    name: "now".into(),
                    arguments: vec![]
                }
            ]
        );
    }

    #[test]
    fn code_after_python_tag_and_content_before_it() {
        let out = parse_tool_output("Let me compute.<|python_tag|>print(6 * 7)<|eom_id|>");
        assert_eq!(out.content, "Let me compute.");
        assert_eq!(
            out.calls,
            vec![ToolCall::CodeInterpreter {
                code: "print(6 * 7)".into()
            }]
        );
    }

    #[test]
    fn text_that_is_not_wholly_calls_stays_content() {
        for text in [
            "The weather is fine.",
            r#"{"answer": 42}"#,
            r#"{"name": "f", "parameters": {}} and then some words"#,
            r#"{"name": "f", "parameters": {"#,
            "brave_search.call(q=1)",
            "",
        ] {
            let out = parse_tool_output(text);
            assert!(out.calls.is_empty(), "{text}");
            assert_eq!(out.content, text);
        }
    }

    #[test]
    fn streaming_prefix_check() {
        for text in [
            "",
            "  ",
            "{",
            " {\"na",
            "<fun",
            "<function=f>",
            "<|python",
            "[",
            "brave",
        ] {
            assert!(may_start_tool_call(text), "{text:?}");
        }
        for text in ["Hello", " The", "[1, 2]", "<b>"] {
            assert!(!may_start_tool_call(text), "{text:?}");
        }
    }

    #[test]
    fn arguments_keep_their_order_and_types() {
        let value: ToolValue =
            serde_json::from_str(r#"{"z": 1, "a": [true, null, 2.5, "s"], "m": {"k": -1}}"#)
                .unwrap();
        assert_eq!(
            value,
            ToolValue::Map(vec![
                ("z".into(), ToolValue::Int(1)),
                (
                    "a".into(),
                    ToolValue::List(vec![
                        ToolValue::Bool(true),
                        ToolValue::Null,
                        ToolValue::Float(2.5),
                        ToolValue::Str("s".into())
                    ])
                ),
                (
                    "m".into(),
                    ToolValue::Map(vec![("k".into(), ToolValue::Int(-1))])
                ),
            ])
        );
        assert_eq!(
            value.to_json_string(),
            r#"{"z": 1, "a": [true, null, 2.5, "s"], "m": {"k": -1}}"#
        );
    }
}
