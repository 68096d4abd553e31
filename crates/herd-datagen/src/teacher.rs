//! The two kinds of teacher behind one trait: a model in this process
//! (the serving engine, continuous batching) and a remote OpenAI-compatible
//! endpoint. Both sample choice `i` of a prompt with seed `seed + i`, as
//! `herd serve` does, so the same teacher gives the same samples either way.

use std::sync::Arc;

use herd_engine::{EngineHandle, Event, FinishReason, Request, SamplingParams};
use herd_remote::{ChatRequest, Finish, RemoteTeacher};
use herd_tokenizer::{parse_tool_output, Tokenizer};
use serde_json::{json, Value};

use crate::error::{DatagenError, Result};
use crate::prompts::Prompt;

/// What each prompt asks of the teacher.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// Samples per prompt.
    pub n: usize,
    /// Generation budget per sample.
    pub max_tokens: usize,
    /// Sampling rule; its seed is the prompt's first sample's.
    pub sampling: SamplingParams,
    /// Whether each sample's mean token log-probability is needed.
    pub logprobs: bool,
}

/// One answer of the teacher.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The assistant message in OpenAI's shape.
    pub message: Value,
    /// The answer ran out of tokens (or context) before it ended.
    pub truncated: bool,
    /// Mean log-probability of the generated tokens, when asked for.
    pub mean_logprob: Option<f32>,
    /// Generated tokens (the stop token not counted).
    pub tokens: usize,
}

/// A teacher: `n` samples for a prompt. Shared by worker threads.
pub trait Teacher: Sync {
    /// The samples of `prompt`, in order; sample `i` uses `spec.sampling.seed + i`.
    fn sample(&self, prompt: &Prompt, spec: &SampleSpec) -> Result<Vec<Sample>>;
}

/// A model in this process, through the serving engine: every sample of
/// every prompt in flight is decoded in the same batch.
pub struct LocalTeacher {
    engine: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    stop_ids: Vec<u32>,
}

impl LocalTeacher {
    /// A teacher over a started engine, its tokenizer and stop tokens.
    pub fn new(engine: EngineHandle, tokenizer: Arc<Tokenizer>, stop_ids: Vec<u32>) -> Self {
        Self {
            engine,
            tokenizer,
            stop_ids,
        }
    }

    /// The longest prompt + answer the engine can hold.
    pub fn max_context(&self) -> usize {
        self.engine.max_context()
    }

    /// Collects one request's tokens.
    fn collect(&self, prompt: &Prompt, mut stream: herd_engine::RequestStream) -> Result<Sample> {
        let (mut ids, mut logprob_sum) = (Vec::new(), 0.0f64);
        let failed = |problem: String| DatagenError::Teacher {
            key: prompt.key.clone(),
            problem,
        };
        loop {
            match stream.blocking_recv() {
                Some(Event::Token { id, logprob }) => {
                    ids.push(id);
                    logprob_sum += logprob.map_or(0.0, |l| l.logprob as f64);
                }
                Some(Event::Finished(done)) => {
                    let truncated = matches!(
                        done.finish,
                        FinishReason::Length | FinishReason::ContextFull
                    );
                    let text = self.tokenizer.decode(&ids, false)?;
                    return Ok(Sample {
                        message: assistant_message(&text, !prompt.tools.is_empty()),
                        truncated,
                        mean_logprob: (!ids.is_empty())
                            .then(|| (logprob_sum / ids.len() as f64) as f32),
                        tokens: ids.len(),
                    });
                }
                Some(Event::Failed(message)) => return Err(failed(message)),
                Some(Event::PromptLogprobs(_)) => {}
                None => return Err(failed("the engine stopped".into())),
            }
        }
    }
}

impl Teacher for LocalTeacher {
    fn sample(&self, prompt: &Prompt, spec: &SampleSpec) -> Result<Vec<Sample>> {
        let ids = prompt.encode(&self.tokenizer)?;
        let streams = (0..spec.n)
            .map(|i| {
                let mut request = Request::new(ids.clone(), spec.max_tokens, self.stop_ids.clone());
                request.sampling = spec.sampling.clone();
                request.sampling.seed = spec.sampling.seed.wrapping_add(i as u64);
                request.logprobs = Some(0);
                self.engine.submit(request)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        streams
            .into_iter()
            .map(|stream| self.collect(prompt, stream))
            .collect()
    }
}

impl Teacher for RemoteTeacher {
    fn sample(&self, prompt: &Prompt, spec: &SampleSpec) -> Result<Vec<Sample>> {
        let choices = self.chat(&ChatRequest {
            messages: &prompt.messages,
            tools: &prompt.tools,
            n: spec.n,
            max_tokens: spec.max_tokens,
            sampling: &spec.sampling,
            top_logprobs: spec.logprobs.then_some(0),
        })?;
        Ok(choices
            .into_iter()
            .map(|choice| {
                let logprobs = choice.logprobs.unwrap_or_default();
                let sum: f64 = logprobs
                    .iter()
                    .map(|t| t.logprob.unwrap_or(0.0) as f64)
                    .sum();
                let message = normalized(&choice.message);
                Sample {
                    message,
                    truncated: choice.finish == Finish::Length,
                    mean_logprob: (!logprobs.is_empty())
                        .then(|| (sum / logprobs.len() as f64) as f32),
                    tokens: logprobs.len(),
                }
            })
            .collect())
    }
}

/// Generated text as an OpenAI assistant message: tool calls (Llama 3.1's
/// formats, parsed as `herd serve` parses them, and only when the prompt
/// offered tools, as there) or plain content.
fn assistant_message(text: &str, tools: bool) -> Value {
    let parsed = parse_tool_output(text);
    if !tools || parsed.calls.is_empty() {
        return openai_message(text, Vec::new());
    }
    let calls = parsed.calls.iter().map(|call| call.to_openai()).collect();
    openai_message(&parsed.content, calls)
}

/// A server's assistant message in the same canonical form as a local
/// one (call ids numbered, no null or extra fields), so that samples
/// compare and de-duplicate equal whichever teacher made them.
fn normalized(message: &Value) -> Value {
    let calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let f = &c["function"];
                    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
                    (text(&f["name"]), text(&f["arguments"]))
                })
                .collect()
        })
        .unwrap_or_default();
    openai_message(message["content"].as_str().unwrap_or(""), calls)
}

/// `{"role": "assistant", "content", "tool_calls"?}` with calls numbered `call_0..`.
fn openai_message(content: &str, calls: Vec<(String, String)>) -> Value {
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = calls
            .into_iter()
            .enumerate()
            .map(|(i, (name, arguments))| {
                json!({"id": format!("call_{i}"), "type": "function",
                       "function": {"name": name, "arguments": arguments}})
            })
            .collect();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_plain_text_become_openai_messages() {
        let call = "{\"name\": \"lookup_order\", \"parameters\": {\"order_id\": 1047}}";
        let m = assistant_message(call, true);
        assert_eq!(m["tool_calls"][0]["function"]["name"], "lookup_order");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"order_id\": 1047}"
        );
        assert_eq!(m["content"], "");
        // Without tools on offer, a call-shaped answer is content, as in herd serve.
        assert_eq!(assistant_message(call, false)["content"], call);
        let m = assistant_message("We open at 9.", true);
        assert_eq!(m, json!({"role": "assistant", "content": "We open at 9."}));
        // A server's message is brought into the same form.
        let served = json!({"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": "call_x7", "type": "function",
                            "function": {"name": "lookup_order", "arguments": "{\"order_id\": 1047}"}}]});
        assert_eq!(normalized(&served), assistant_message(call, true));
    }
}
