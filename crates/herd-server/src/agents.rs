//! Agents on the OpenAI API: each agent is a model (`"model": "<agent
//! name>"`, listed by `/v1/models` with `"agent": true`). The server runs
//! the agent loop and answers with the agent's reply plus two extra fields:
//!
//! ```json
//! {"choices": [{"message": {"role": "assistant", "content": "..."}, ...}],
//!  "conversation_id": "c-...", "agent_steps": [{"tool", "arguments", "outcome", "result"}]}
//! ```
//!
//! The conversation lives on the server: a request sends only the new user
//! message (the last `user` message of `messages` is taken; earlier ones
//! are ignored) and `conversation_id` to continue a conversation, which the
//! OpenAI clients pass as an extra body field. Without it a new one starts.
//! With `"stream": true` the reply comes as one content chunk and a final
//! chunk carrying `finish_reason`, `conversation_id` and `agent_steps`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_agent::{Agent, Finish, Reply};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Result, ServerError};
use crate::generation::{response_id, unix_now};
use crate::parse_body;

/// The fields of a chat request an agent reads.
#[derive(Deserialize)]
struct AgentRequest {
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    stream: bool,
}

/// The agent named by the body's `model`, if any.
pub(crate) fn find(agents: &[Arc<Agent>], body: &Bytes) -> Option<Arc<Agent>> {
    #[derive(Deserialize)]
    struct Model {
        model: String,
    }
    let model: Model = serde_json::from_slice(body).ok()?;
    agents.iter().find(|a| a.name() == model.model).cloned()
}

/// `/v1/models` entries for the agents.
pub(crate) fn model_entries(agents: &[Arc<Agent>], max_context: usize) -> Vec<Value> {
    agents
        .iter()
        .map(|a| {
            json!({"id": a.name(), "object": "model", "created": 0, "owned_by": "herd",
                   "max_model_len": max_context, "agent": true,
                   "tools": a.tools().names()})
        })
        .collect()
}

/// Runs one user message through `agent`.
pub(crate) async fn completion(agent: Arc<Agent>, body: Bytes) -> Result<Response> {
    let request: AgentRequest = parse_body(&body)?;
    let user = request
        .messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| text_of(&m["content"]))
        .ok_or_else(|| ServerError::param("messages", "an agent needs a user message with text"))?;
    let conversation = request.conversation_id.clone();
    let runner = agent.clone();
    let reply = tokio::task::spawn_blocking(move || runner.reply(conversation.as_deref(), &user))
        .await
        .map_err(|e| ServerError::Generation(format!("the agent task failed: {e}")))??;
    let id = response_id("chatcmpl");
    let created = unix_now();
    let steps = serde_json::to_value(&reply.steps).unwrap_or_default();
    let finish = finish_reason(&reply);
    if !request.stream {
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.answer},
                         "logprobs": null, "finish_reason": finish}],
            "usage": {"prompt_tokens": reply.usage.prompt_tokens,
                      "completion_tokens": reply.usage.completion_tokens,
                      "total_tokens": reply.usage.prompt_tokens + reply.usage.completion_tokens},
            "conversation_id": reply.conversation_id,
            "agent_steps": steps,
            "agent_finish": reply.finish,
        }))
        .into_response());
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": request.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let first = chunk(
        json!({"role": "assistant", "content": reply.answer}),
        Value::Null,
    );
    let mut last = chunk(json!({}), json!(finish));
    last["conversation_id"] = json!(reply.conversation_id);
    last["agent_steps"] = steps;
    last["agent_finish"] = json!(reply.finish);
    let text = format!("data: {first}\n\ndata: {last}\n\ndata: [DONE]\n\n");
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from(text),
    )
        .into_response())
}

/// OpenAI's finish reason: `stop` for an answer (also a guard refusal),
/// `length` when the step limit or the model's context cut the loop.
fn finish_reason(reply: &Reply) -> &'static str {
    match reply.finish {
        Finish::Answered | Finish::Blocked => "stop",
        Finish::StepLimit | Finish::ContextFull => "length",
    }
}

/// A message's text: a string, or the text parts of a list.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
    .filter(|t| !t.trim().is_empty())
}
