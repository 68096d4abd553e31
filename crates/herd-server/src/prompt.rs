//! A chat request's messages and tools as prompt tokens, and tool calls
//! between OpenAI's shape (`{"name", "arguments": "<json>"}`) and herd's
//! [`ToolCall`].
//!
//! Tools follow Llama 3.1's format: definitions rendered by [`ToolPrompt`],
//! `tool` messages as the `ipython` role, assistant `tool_calls` encoded
//! back into the assistant turn (built-in tools end with `<|eom_id|>`).
//! `tool_choice: "none"` leaves the tools out of the prompt; `"required"`
//! and a named function constrain the answer (by `herd-structured`) to the
//! JSON schema of a call `{"name": <one of the tools>, "parameters": <its
//! schema>}`, so the answer is always a call with valid arguments.

use herd_tokenizer::{
    ChatFormat, Message, MessageEnd, Role, Tokenizer, ToolCall, ToolDefinition, ToolPrompt,
    ToolValue,
};
use serde_json::{json, Value};

use crate::api::{ChatMessage, ChatRequest, Content, ToolCallSpec, ToolChoice};
use crate::error::{Result, ServerError};
use crate::output::ToolParsing;

/// The prompt of a chat request.
#[derive(Debug)]
pub struct ChatPrompt {
    /// Token ids, ending in the open assistant header.
    pub ids: Vec<u32>,
    /// How tool calls are looked for in the output.
    pub tools: ToolParsing,
    /// For a required call: JSON schemas of the call, strictest first (the
    /// tools' own parameter schemas, then any-object parameters for tools
    /// whose schemas use keywords constrained decoding lacks).
    pub call_schemas: Vec<Value>,
}

/// What the model may do with the tools.
#[derive(Debug, PartialEq)]
enum ToolMode {
    None,
    Auto,
    Required,
    Named(String),
}

/// Builds the prompt: tools rendered, messages encoded.
pub fn build(request: &ChatRequest, tokenizer: &Tokenizer) -> Result<ChatPrompt> {
    let definitions = tool_definitions(request)?;
    let mode = tool_mode(request, &definitions)?;
    let mut messages = request
        .messages
        .iter()
        .map(|m| message(m, &definitions))
        .collect::<Result<Vec<_>>>()?;
    if messages.is_empty() {
        return Err(ServerError::param("messages", "messages must not be empty"));
    }
    if mode != ToolMode::None {
        messages = ToolPrompt::new(definitions.clone()).apply(&messages);
    }
    let ids = ChatFormat::new(tokenizer)?.encode_dialog_prompt(&messages)?;
    let called: Vec<&ToolDefinition> = match &mode {
        ToolMode::Named(name) => definitions.iter().filter(|t| &t.name == name).collect(),
        ToolMode::Required => definitions.iter().collect(),
        ToolMode::None | ToolMode::Auto => Vec::new(),
    };
    let call_schemas = if called.is_empty() {
        Vec::new()
    } else {
        vec![
            call_schema(&called, |t| t.parameters.clone()),
            call_schema(&called, |_| json!({"type": "object"})),
        ]
    };
    let tools = match mode {
        ToolMode::None => ToolParsing::Off,
        ToolMode::Auto => ToolParsing::Detect,
        ToolMode::Required | ToolMode::Named(_) => ToolParsing::Hold,
    };
    Ok(ChatPrompt {
        ids,
        tools,
        call_schemas,
    })
}

/// `{"name": <const>, "parameters": <schema>}` for each tool, as one schema.
fn call_schema(tools: &[&ToolDefinition], parameters: impl Fn(&ToolDefinition) -> Value) -> Value {
    let branches: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "parameters": parameters(t)},
                "required": ["name", "parameters"],
                "additionalProperties": false,
            })
        })
        .collect();
    match <[Value; 1]>::try_from(branches) {
        Ok([one]) => one,
        Err(branches) => json!({"anyOf": branches}),
    }
}

fn tool_definitions(request: &ChatRequest) -> Result<Vec<ToolDefinition>> {
    let specs = request.tools.as_deref().unwrap_or_default();
    specs
        .iter()
        .map(|spec| {
            if spec.kind != "function" {
                return Err(ServerError::param(
                    "tools",
                    format!(
                        "tool type `{}` is not supported; use \"function\"",
                        spec.kind
                    ),
                ));
            }
            if spec.function.name.is_empty() {
                return Err(ServerError::param("tools", "a function needs a name"));
            }
            Ok(ToolDefinition {
                name: spec.function.name.clone(),
                description: spec.function.description.clone(),
                parameters: spec
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn tool_mode(request: &ChatRequest, tools: &[ToolDefinition]) -> Result<ToolMode> {
    let mode = match &request.tool_choice {
        None if tools.is_empty() => ToolMode::None,
        None => ToolMode::Auto,
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "none" => ToolMode::None,
            "auto" => ToolMode::Auto,
            "required" => ToolMode::Required,
            other => {
                return Err(ServerError::param(
                    "tool_choice",
                    format!(
                        "tool_choice must be none, auto, required or a function, got `{other}`"
                    ),
                ))
            }
        },
        Some(ToolChoice::Named { function }) => ToolMode::Named(function.name.clone()),
    };
    let known = |name: &str| tools.iter().any(|t| t.name == name);
    match &mode {
        ToolMode::Auto if tools.is_empty() => Ok(ToolMode::None),
        ToolMode::Required if tools.is_empty() => Err(ServerError::param(
            "tool_choice",
            "tool_choice \"required\" needs a non-empty `tools` list",
        )),
        ToolMode::Named(name) if !known(name) => Err(ServerError::param(
            "tool_choice",
            format!("tool_choice names `{name}`, which is not in `tools`"),
        )),
        _ => Ok(mode),
    }
}

fn text(content: &Content) -> Result<String> {
    match content {
        Content::Text(s) => Ok(s.clone()),
        Content::Parts(parts) => parts
            .iter()
            .map(|p| match (p.kind.as_str(), &p.text) {
                ("text", Some(t)) => Ok(t.as_str()),
                (kind, _) => Err(ServerError::param(
                    "messages",
                    format!("content part `{kind}` is not supported; only text parts are"),
                )),
            })
            .collect(),
    }
}

fn message(m: &ChatMessage, tools: &[ToolDefinition]) -> Result<Message> {
    Ok(match m {
        ChatMessage::System { content } | ChatMessage::Developer { content } => {
            Message::system(text(content)?)
        }
        ChatMessage::User { content } => Message::user(text(content)?),
        ChatMessage::Tool { content } => Message::ipython(text(content)?),
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            let calls = tool_calls
                .iter()
                .map(|c| history_call(c, tools))
                .collect::<Result<Vec<_>>>()?;
            let builtin = calls.iter().any(|c| !matches!(c, ToolCall::Custom { .. }));
            Message {
                role: Role::Assistant,
                content: content.as_ref().map(text).transpose()?.unwrap_or_default(),
                context: None,
                tool_calls: calls,
                end: if builtin {
                    MessageEnd::EndOfMessage
                } else {
                    MessageEnd::EndOfTurn
                },
            }
        }
    })
}

/// An OpenAI call from the history as herd's [`ToolCall`]. The names herd
/// gives built-in calls ([`openai_call`]) map back to them unless the
/// request defines a function of that name.
fn history_call(spec: &ToolCallSpec, tools: &[ToolDefinition]) -> Result<ToolCall> {
    let name = spec.function.name.clone();
    let bad = || {
        ServerError::param(
            "messages",
            format!("the arguments of tool call `{name}` must be a JSON object"),
        )
    };
    let ToolValue::Map(arguments) =
        serde_json::from_str::<ToolValue>(&spec.function.arguments).map_err(|_| bad())?
    else {
        return Err(bad());
    };
    if tools.iter().any(|t| t.name == name) {
        return Ok(ToolCall::Custom { name, arguments });
    }
    let single = match arguments.as_slice() {
        [(key, ToolValue::Str(value))] => Some((key.as_str(), value.clone())),
        _ => None,
    };
    Ok(match (name.as_str(), single) {
        ("brave_search", Some(("query", query))) => ToolCall::BraveSearch { query },
        ("wolfram_alpha", Some(("query", query))) => ToolCall::WolframAlpha { query },
        ("photogen", Some(("query", query))) => ToolCall::Photogen { query },
        ("code_interpreter", Some(("code", code))) => ToolCall::CodeInterpreter { code },
        _ => ToolCall::Custom { name, arguments },
    })
}

/// A parsed call in OpenAI's shape: the function name and its arguments
/// as a JSON string.
pub fn openai_call(call: &ToolCall) -> (String, String) {
    call.to_openai()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FunctionCallSpec;

    fn spec(name: &str, arguments: &str) -> ToolCallSpec {
        ToolCallSpec {
            function: FunctionCallSpec {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }

    #[test]
    fn calls_round_trip_between_openai_and_herd() {
        let calls = [
            ToolCall::BraveSearch { query: "q".into() },
            ToolCall::CodeInterpreter {
                code: "print(1)".into(),
            },
            ToolCall::Custom {
                name: "get_weather".into(),
                arguments: vec![
                    ("z".into(), ToolValue::Int(1)),
                    ("a".into(), ToolValue::Str("é".into())),
                ],
            },
        ];
        for call in calls {
            let (name, arguments) = openai_call(&call);
            assert_eq!(history_call(&spec(&name, &arguments), &[]).unwrap(), call);
        }
    }

    #[test]
    fn defined_function_named_like_a_builtin_stays_custom() {
        let tool = ToolDefinition {
            name: "brave_search".into(),
            description: String::new(),
            parameters: json!({}),
        };
        let call = history_call(&spec("brave_search", r#"{"query": "q"}"#), &[tool]).unwrap();
        assert!(matches!(call, ToolCall::Custom { .. }));
    }

    #[test]
    fn arguments_must_be_an_object() {
        for args in ["[1]", "not json", "\"s\""] {
            assert!(matches!(
                history_call(&spec("f", args), &[]),
                Err(ServerError::InvalidParam {
                    param: "messages",
                    ..
                })
            ));
        }
    }
}
