//! Meta's chat-format reference (tests/fixtures/tokenizer/dialogs.json, made
//! by tools/make_tokenizer_fixtures.py with llama-models' `ChatFormat`),
//! shared by every tokenizer path that must reproduce it.

use herd_tokenizer::{
    ChatFormat, Message, MessageEnd, Role, Tokenizer, ToolCall, ToolPromptFormat, ToolValue,
};
use serde::Deserialize;

use super::read_json;

#[derive(Deserialize)]
struct Fixture {
    dialogs: Vec<Dialog>,
}

#[derive(Deserialize)]
struct Dialog {
    name: String,
    tool_prompt_format: String,
    messages: Vec<RawMessage>,
    ids: Vec<u32>,
}

/// Meta's `RawMessage` fields, as the fixture stores them.
#[derive(Deserialize)]
struct RawMessage {
    role: String,
    content: String,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    tool_calls: Vec<RawToolCall>,
}

#[derive(Deserialize)]
struct RawToolCall {
    tool_name: String,
    arguments: Vec<(String, serde_json::Value)>,
}

/// A fixture value; dicts are `{"map": [[key, value], ...]}` to keep order.
fn tool_value(value: &serde_json::Value) -> ToolValue {
    use serde_json::Value;
    match value {
        Value::Null => ToolValue::Null,
        Value::Bool(b) => ToolValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ToolValue::Int(i),
            None => ToolValue::Float(n.as_f64().expect("finite number")),
        },
        Value::String(s) => ToolValue::Str(s.clone()),
        Value::Array(items) => ToolValue::List(items.iter().map(tool_value).collect()),
        Value::Object(object) => {
            let pairs = object["map"].as_array().expect("{\"map\": pairs}");
            ToolValue::Map(
                pairs
                    .iter()
                    .map(|pair| {
                        (
                            pair[0].as_str().expect("key").to_owned(),
                            tool_value(&pair[1]),
                        )
                    })
                    .collect(),
            )
        }
    }
}

fn tool_call(raw: &RawToolCall) -> ToolCall {
    let string_arg = |key: &str| -> String {
        let (_, value) = raw
            .arguments
            .iter()
            .find(|(k, _)| k == key)
            .expect("argument");
        value.as_str().expect("string argument").to_owned()
    };
    match raw.tool_name.as_str() {
        "code_interpreter" => ToolCall::CodeInterpreter {
            code: string_arg("code"),
        },
        "brave_search" => ToolCall::BraveSearch {
            query: string_arg("query"),
        },
        "wolfram_alpha" => ToolCall::WolframAlpha {
            query: string_arg("query"),
        },
        "photogen" => ToolCall::Photogen {
            query: string_arg("query"),
        },
        name => ToolCall::Custom {
            name: name.to_owned(),
            arguments: raw
                .arguments
                .iter()
                .map(|(k, v)| (k.clone(), tool_value(v)))
                .collect(),
        },
    }
}

fn message(raw: &RawMessage) -> Message {
    let role = match raw.role.as_str() {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Ipython,
        other => panic!("unknown role {other}"),
    };
    Message {
        role,
        content: raw.content.clone(),
        context: raw.context.clone(),
        tool_calls: raw.tool_calls.iter().map(tool_call).collect(),
        end: match raw.stop_reason.as_deref() {
            Some("end_of_message") => MessageEnd::EndOfMessage,
            Some("end_of_turn") | None => MessageEnd::EndOfTurn,
            Some(other) => panic!("unexpected stop reason {other}"),
        },
    }
}

fn tool_prompt_format(name: &str) -> ToolPromptFormat {
    match name {
        "json" => ToolPromptFormat::Json,
        "function_tag" => ToolPromptFormat::FunctionTag,
        "python_list" => ToolPromptFormat::PythonList,
        other => panic!("unknown tool prompt format {other}"),
    }
}

/// Encodes every dialog of the fixture with `tok` and compares with Meta's ids.
pub fn assert_dialogs_match_meta(tok: &Tokenizer) {
    let fixture: Fixture = read_json("tokenizer/dialogs.json");
    assert!(fixture.dialogs.len() >= 10);
    for dialog in &fixture.dialogs {
        let format = ChatFormat::new(tok)
            .expect("format")
            .with_tool_prompt_format(tool_prompt_format(&dialog.tool_prompt_format));
        let messages: Vec<Message> = dialog.messages.iter().map(message).collect();
        let ids = format.encode_dialog_prompt(&messages).expect("encode");
        assert_eq!(
            ids,
            dialog.ids,
            "dialog {}:\nherd: {:?}\nMeta: {:?}",
            dialog.name,
            tok.decode(&ids, false),
            tok.decode(&dialog.ids, false)
        );
    }
}
