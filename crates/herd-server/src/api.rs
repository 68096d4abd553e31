//! The OpenAI request bodies, as serde mirrors of the wire format. Numbers a
//! user may get wrong (`max_tokens`, `n`, `top_logprobs`) are read as `i64`
//! so that a negative value gets a message naming the field rather than a
//! serde type error; `params.rs` turns these into validated engine types.
//! Fields the server ignores, as OpenAI-compatible servers do, are listed in
//! the README; unknown fields are ignored too.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

/// One string or several (`stop`, legacy `prompt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Sampling and length fields shared by both endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    /// `max_tokens` (deprecated in chat but still sent by most clients).
    pub max_tokens: Option<i64>,
    /// `max_completion_tokens`, chat's newer name.
    pub max_completion_tokens: Option<i64>,
    /// 0 = greedy; default 1.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// vLLM extension: top-k (-1 or 0 = off).
    pub top_k: Option<i64>,
    /// vLLM extension: min-p.
    pub min_p: Option<f32>,
    /// vLLM extension: CTRL repetition penalty.
    pub repetition_penalty: Option<f32>,
    /// Same seed, same output.
    pub seed: Option<i64>,
    /// Choices per prompt.
    pub n: Option<i64>,
    /// Stop strings (up to 4 in OpenAI).
    pub stop: Option<OneOrMany<String>>,
    /// Not supported unless 0.
    pub frequency_penalty: Option<f32>,
    /// Not supported unless 0.
    pub presence_penalty: Option<f32>,
    /// Not supported unless empty.
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a usage chunk to a stream.
    pub stream_options: Option<StreamOptions>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// Must name the served model.
    pub model: String,
    /// The dialog.
    pub messages: Vec<ChatMessage>,
    /// Sampling, length, stop, streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Report per-token log-probabilities.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token (needs `logprobs`).
    pub top_logprobs: Option<i64>,
    /// Functions the model may call.
    pub tools: Option<Vec<ToolSpec>>,
    /// `"none"`, `"auto"`, `"required"` or a named function.
    pub tool_choice: Option<ToolChoice>,
    /// `{"type": "text" | "json_object" | "json_schema", ...}`.
    pub response_format: Option<ResponseFormat>,
}

/// One message of the dialog, by role.
#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    /// The system prompt.
    System {
        /// Text.
        content: Content,
    },
    /// OpenAI's newer name for the system prompt.
    Developer {
        /// Text.
        content: Content,
    },
    /// The person.
    User {
        /// Text.
        content: Content,
    },
    /// The model, possibly with calls.
    Assistant {
        /// Text (may be null when there are calls).
        #[serde(default)]
        content: Option<Content>,
        /// Calls it made.
        #[serde(default)]
        tool_calls: Vec<ToolCallSpec>,
    },
    /// A tool's result; becomes the `ipython` role.
    Tool {
        /// The result.
        content: Content,
    },
}

/// Message content: a string, or a list of parts of which only text is
/// supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": ...}, ...]`.
    Parts(Vec<ContentPart>),
}

/// One part of a content list.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// `"text"` (other kinds are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    pub text: Option<String>,
}

/// A call in an assistant message of the history.
#[derive(Debug, Deserialize)]
pub struct ToolCallSpec {
    /// The function and its JSON-encoded arguments.
    pub function: FunctionCallSpec,
}

/// `{"name": ..., "arguments": "{...}"}`.
#[derive(Debug, Deserialize)]
pub struct FunctionCallSpec {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON string.
    pub arguments: String,
}

/// `{"type": "function", "function": {...}}`.
#[derive(Debug, Deserialize)]
pub struct ToolSpec {
    /// Only `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The definition.
    pub function: FunctionSpec,
}

/// A function definition.
#[derive(Debug, Deserialize)]
pub struct FunctionSpec {
    /// Name the model calls it by.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// JSON schema of the arguments (default: any object).
    pub parameters: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(String),
    /// `{"type": "function", "function": {"name": ...}}`.
    Named {
        /// The function to call.
        function: NamedFunction,
    },
}

/// The function of a named `tool_choice`.
#[derive(Debug, Deserialize)]
pub struct NamedFunction {
    /// Its name.
    pub name: String,
}

/// `response_format`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid under a schema.
    JsonSchema {
        /// `{"name": ..., "schema": {...}, "strict": ...}`.
        json_schema: JsonSchemaSpec,
    },
}

/// The `json_schema` object of `response_format`.
#[derive(Debug, Deserialize)]
pub struct JsonSchemaSpec {
    /// The schema.
    pub schema: Option<Value>,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// Must name the served model.
    pub model: String,
    /// Text, texts, token ids, or lists of token ids.
    pub prompt: PromptSpec,
    /// Sampling, length, stop, streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Return the prompt before the completion (with its logprobs).
    #[serde(default)]
    pub echo: bool,
    /// Log-probabilities with this many alternatives per token.
    pub logprobs: Option<i64>,
    /// Not supported unless empty.
    pub suffix: Option<String>,
    /// Not supported unless 1 or `n`.
    pub best_of: Option<i64>,
}

/// The legacy `prompt` field.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptSpec {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One tokenized prompt.
    Ids(Vec<u32>),
    /// Several tokenized prompts.
    IdLists(Vec<Vec<u32>>),
}
