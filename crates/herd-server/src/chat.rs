//! `POST /v1/chat/completions`: whole responses and SSE chunks.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_engine::{Request, TokenLogprob};
use herd_tokenizer::Tokenizer;
use serde_json::{json, Value};

use crate::api::ChatRequest;
use crate::error::{Result, ServerError};
use crate::generation::{self, response_id, unix_now, Choice, ChoiceResult, ChunkFormat, Update};
use crate::output::{FunctionCall, OutputText};
use crate::params::{budget, resolve};
use crate::prompt;
use crate::{parse_body, AppState};

/// The handler.
pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response> {
    let arrived = Instant::now();
    if let Some(agent) = crate::agents::find(&state.agents, &body) {
        return crate::agents::completion(agent, body).await;
    }
    let request: ChatRequest = parse_body(&body)?;
    state.check_model(&request.model)?;
    let params = resolve(&request.sampling, 1, state.config.max_n)?;
    let top_logprobs = top_logprobs(&request, state.config.max_logprobs)?;
    let prompt = prompt::build(&request, &state.tokenizer)?;
    let constraint = state
        .structured
        .constraint(request.response_format.as_ref(), &prompt.call_schemas)?;
    let max_tokens = budget(
        prompt.ids.len(),
        params.max_tokens,
        None,
        state.engine.max_context(),
    )?;
    let mut choices = Vec::with_capacity(params.n);
    for index in 0..params.n {
        choices.push(Choice {
            index,
            request: Request {
                prompt: prompt.ids.clone(),
                sampling: params.for_choice(index),
                max_tokens,
                stop_ids: state.stop_ids.clone(),
                logprobs: top_logprobs,
                prompt_logprobs: None,
                processor: constraint.processor()?,
            },
            output: OutputText::new(params.stop.clone(), prompt.tools),
        });
    }
    let rx = generation::start(&state, choices, arrived)?;
    let head = Head {
        id: response_id("chatcmpl"),
        created: unix_now(),
        model: state.config.model_name.clone(),
    };
    let prompt_tokens = prompt.ids.len();
    if params.stream {
        let format = ChatChunks {
            head,
            state: state.clone(),
            logprobs: top_logprobs.is_some(),
            started: vec![false; params.n],
            include_usage: params.include_usage,
            prompt_tokens,
            completion_tokens: 0,
        };
        return Ok(generation::sse(rx, params.n, format));
    }
    let results = generation::collect(rx, params.n).await?;
    let tokenizer = &state.tokenizer;
    let choices: Vec<Value> = results
        .iter()
        .map(|r| choice_json(r, tokenizer, top_logprobs.is_some()))
        .collect();
    let completion_tokens: usize = results.iter().map(|r| r.completion_tokens).sum();
    Ok(Json(json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }))
    .into_response())
}

/// `top_logprobs` as the engine's `logprobs`, checked against the limit.
fn top_logprobs(request: &ChatRequest, max: usize) -> Result<Option<usize>> {
    match (request.logprobs, request.top_logprobs) {
        (false, Some(_)) => Err(ServerError::param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        )),
        (false, None) => Ok(None),
        (true, k) => {
            let k = k.unwrap_or(0);
            if k < 0 || k > max as i64 {
                return Err(ServerError::param(
                    "top_logprobs",
                    format!("top_logprobs must be between 0 and {max}, got {k}"),
                ));
            }
            Ok(Some(k as usize))
        }
    }
}

/// `id`, `created`, `model` of every chunk.
struct Head {
    id: String,
    created: u64,
    model: String,
}

/// `{"prompt_tokens", "completion_tokens", "total_tokens"}`.
pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// A token's text (lossy for a partial UTF-8 character) and its bytes.
pub fn token_text(tokenizer: &Tokenizer, id: u32) -> String {
    tokenizer.decode(&[id], false).unwrap_or_default()
}

/// Chat's `logprobs.content` entries.
fn logprob_entries(tokenizer: &Tokenizer, logprobs: &[TokenLogprob]) -> Vec<Value> {
    let entry = |id: u32, logprob: f32| {
        let token = token_text(tokenizer, id);
        json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
    };
    logprobs
        .iter()
        .map(|lp| {
            let mut e = entry(lp.id, lp.logprob);
            e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
            e
        })
        .collect()
}

/// OpenAI `tool_calls` entries (with fresh ids).
fn tool_calls_json(calls: &[FunctionCall]) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            json!({
                "index": i,
                "id": response_id("call"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })
        })
        .collect()
}

fn choice_json(r: &ChoiceResult, tokenizer: &Tokenizer, logprobs: bool) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if r.text.is_empty() && !r.calls.is_empty() { Value::Null } else { json!(r.text) },
    });
    if !r.calls.is_empty() {
        message["tool_calls"] = tool_calls_json(&r.calls).into();
    }
    json!({
        "index": r.index,
        "message": message,
        "logprobs": if logprobs { json!({"content": logprob_entries(tokenizer, &r.logprobs)}) } else { Value::Null },
        "finish_reason": r.finish.as_str(),
    })
}

/// Chat's SSE chunks.
struct ChatChunks {
    head: Head,
    state: Arc<AppState>,
    logprobs: bool,
    started: Vec<bool>,
    include_usage: bool,
    prompt_tokens: usize,
    completion_tokens: usize,
}

impl ChatChunks {
    fn chunk(
        &self,
        index: usize,
        delta: Value,
        logprobs: &[TokenLogprob],
        finish: Option<&str>,
    ) -> Value {
        let logprobs = if self.logprobs && !logprobs.is_empty() {
            json!({"content": logprob_entries(&self.state.tokenizer, logprobs)})
        } else {
            Value::Null
        };
        json!({
            "id": self.head.id,
            "object": "chat.completion.chunk",
            "created": self.head.created,
            "model": self.head.model,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        })
    }
}

impl ChunkFormat for ChatChunks {
    fn chunks(&mut self, update: &Update) -> Vec<Value> {
        let mut out = Vec::new();
        let Some((index, text, logprobs)) = update.content() else {
            return out;
        };
        if !std::mem::replace(&mut self.started[index], true) {
            out.push(self.chunk(
                index,
                json!({"role": "assistant", "content": ""}),
                &[],
                None,
            ));
        }
        if !text.is_empty() || !logprobs.is_empty() {
            out.push(self.chunk(index, json!({"content": text}), logprobs, None));
        }
        if let Update::Done {
            calls,
            finish,
            completion_tokens,
            ..
        } = update
        {
            self.completion_tokens += completion_tokens;
            if !calls.is_empty() {
                let delta = json!({"tool_calls": tool_calls_json(calls)});
                out.push(self.chunk(index, delta, &[], None));
            }
            out.push(self.chunk(index, json!({}), &[], Some(finish.as_str())));
        }
        out
    }

    fn finish(&mut self) -> Vec<Value> {
        if !self.include_usage {
            return Vec::new();
        }
        vec![json!({
            "id": self.head.id,
            "object": "chat.completion.chunk",
            "created": self.head.created,
            "model": self.head.model,
            "choices": [],
            "usage": usage(self.prompt_tokens, self.completion_tokens),
        })]
    }
}
