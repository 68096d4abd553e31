//! `POST /v1/completions`, OpenAI's legacy text-completion API. Its `echo`
//! with `logprobs` (and `max_tokens: 0`) scores a prompt: every prompt
//! token after the first gets its log-probability and top alternatives,
//! which is what a remote teacher for distillation needs.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_engine::{Request, TokenLogprob};
use herd_tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

use crate::api::{CompletionRequest, PromptSpec};
use crate::chat::{token_text, usage};
use crate::error::{Result, ServerError};
use crate::generation::{self, response_id, unix_now, Choice, ChoiceResult, ChunkFormat, Update};
use crate::output::{OutputText, ToolParsing};
use crate::params::{budget, resolve};
use crate::{parse_body, AppState};

/// OpenAI's default `max_tokens` for this endpoint.
const DEFAULT_MAX_TOKENS: usize = 16;

/// One prompt: its ids and the text `echo` returns.
struct Prompt {
    ids: Vec<u32>,
    text: String,
}

/// The handler.
pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response> {
    let arrived = Instant::now();
    let request: CompletionRequest = parse_body(&body)?;
    state.check_model(&request.model)?;
    let params = resolve(&request.sampling, 0, state.config.max_n)?;
    let logprobs = check_legacy_fields(&request, params.n, state.config.max_logprobs)?;
    let prompts = prompts(request.prompt, &state.tokenizer)?;
    let mut choices = Vec::new();
    for (p, prompt) in prompts.iter().enumerate() {
        let max_tokens = budget(
            prompt.ids.len(),
            params.max_tokens,
            Some(DEFAULT_MAX_TOKENS),
            state.engine.max_context(),
        )?;
        for j in 0..params.n {
            choices.push(Choice {
                index: p * params.n + j,
                request: Request {
                    prompt: prompt.ids.clone(),
                    sampling: params.for_choice(j),
                    max_tokens,
                    stop_ids: state.stop_ids.clone(),
                    logprobs,
                    prompt_logprobs: logprobs.filter(|_| request.echo),
                    processor: None,
                },
                output: OutputText::new(params.stop.clone(), ToolParsing::Off),
            });
        }
    }
    let total = choices.len();
    let rx = generation::start(&state, choices, arrived)?;
    let format = TextChunks {
        id: response_id("cmpl"),
        created: unix_now(),
        state: state.clone(),
        n: params.n,
        echo: request.echo,
        logprobs: logprobs.is_some(),
        offsets: vec![None; total],
        include_usage: params.include_usage,
        prompt_tokens: prompts.iter().map(|p| p.ids.len()).sum(),
        completion_tokens: 0,
        prompts,
    };
    if params.stream {
        return Ok(generation::sse(rx, total, format));
    }
    let results = generation::collect(rx, total).await?;
    Ok(Json(whole_response(format, &results)).into_response())
}

/// Refuses `suffix` and `best_of`; returns the legacy `logprobs` count.
fn check_legacy_fields(request: &CompletionRequest, n: usize, max: usize) -> Result<Option<usize>> {
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ServerError::param("suffix", "suffix is not supported"));
    }
    if request.best_of.is_some_and(|b| b != 1 && b != n as i64) {
        return Err(ServerError::param(
            "best_of",
            "best_of other than 1 or n is not supported",
        ));
    }
    match request.logprobs {
        None => Ok(None),
        Some(k) if k < 0 || k > max as i64 => Err(ServerError::param(
            "logprobs",
            format!("logprobs must be between 0 and {max}, got {k}"),
        )),
        Some(k) => Ok(Some(k as usize)),
    }
}

/// The non-streamed response: each choice's chunks merged into one.
fn whole_response(mut format: TextChunks, results: &[ChoiceResult]) -> Value {
    let mut choices = Vec::with_capacity(results.len());
    for r in results {
        let mut parts = Vec::new();
        if let Some(prompt_logprobs) = &r.prompt_logprobs {
            parts.extend(format.chunks(&Update::Prompt {
                index: r.index,
                logprobs: prompt_logprobs.clone(),
            }));
        }
        parts.extend(format.chunks(&Update::Done {
            index: r.index,
            text: r.text.clone(),
            logprobs: r.logprobs.clone(),
            calls: Vec::new(),
            finish: r.finish,
            completion_tokens: r.completion_tokens,
        }));
        choices.push(merge_choice(parts));
    }
    json!({
        "id": format.id,
        "object": "text_completion",
        "created": format.created,
        "model": format.state.config.model_name,
        "choices": choices,
        "usage": usage(format.prompt_tokens, format.completion_tokens),
    })
}

/// The prompts of a request, with BOS prepended to texts (token lists are
/// taken as they are).
fn prompts(spec: PromptSpec, tokenizer: &Tokenizer) -> Result<Vec<Prompt>> {
    let from_text = |text: String| -> Result<Prompt> {
        let mut ids: Vec<u32> = tokenizer.bos_id().into_iter().collect();
        ids.extend(tokenizer.encode(&text)?);
        Ok(Prompt { ids, text })
    };
    let from_ids = |ids: Vec<u32>| -> Result<Prompt> {
        let text = tokenizer
            .decode(&ids, true)
            .map_err(|e| ServerError::param("prompt", e.to_string()))?;
        Ok(Prompt { ids, text })
    };
    let prompts = match spec {
        PromptSpec::Text(t) => vec![from_text(t)?],
        PromptSpec::Texts(ts) => ts.into_iter().map(from_text).collect::<Result<_>>()?,
        PromptSpec::Ids(ids) => vec![from_ids(ids)?],
        PromptSpec::IdLists(lists) => lists.into_iter().map(from_ids).collect::<Result<_>>()?,
    };
    if prompts.is_empty() {
        return Err(ServerError::param("prompt", "prompt must not be empty"));
    }
    Ok(prompts)
}

/// The stream chunks of a completion: each carries one choice's text and
/// its legacy logprobs; the whole response merges them per choice.
struct TextChunks {
    id: String,
    created: u64,
    state: Arc<AppState>,
    n: usize,
    echo: bool,
    logprobs: bool,
    /// Per choice: characters sent so far (for `text_offset`), once started.
    offsets: Vec<Option<usize>>,
    include_usage: bool,
    prompts: Vec<Prompt>,
    prompt_tokens: usize,
    completion_tokens: usize,
}

impl TextChunks {
    fn chunk(&self, index: usize, text: &str, logprobs: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.state.config.model_name,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        })
    }

    /// Legacy logprobs of `tokens` (id and, except for a prompt's first
    /// token, its log-probability), offsets counted from `offset`.
    fn legacy(&self, tokens: &[(u32, Option<&TokenLogprob>)], offset: &mut usize) -> Value {
        let tokenizer = &self.state.tokenizer;
        let (mut texts, mut logprobs, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
        for &(id, lp) in tokens {
            texts.push(token_text(tokenizer, id));
            logprobs.push(lp.map(|l| l.logprob));
            tops.push(lp.map(|l| {
                l.top
                    .iter()
                    .map(|&(t, p)| (token_text(tokenizer, t), Value::from(p)))
                    .collect::<Map<String, Value>>()
            }));
            offsets.push(*offset);
            *offset += tokenizer
                .decode(&[id], true)
                .unwrap_or_default()
                .chars()
                .count();
        }
        json!({"tokens": texts, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets})
    }

    /// The echo chunk that starts a choice: the prompt text, and with
    /// logprobs the prompt's scores.
    fn start(&mut self, index: usize, prompt_logprobs: Option<&[TokenLogprob]>) -> Option<Value> {
        if self.offsets[index].is_some() {
            return None;
        }
        let mut offset = 0;
        let chunk = self.echo.then(|| {
            let prompt = &self.prompts[index / self.n];
            let logprobs = match prompt_logprobs {
                Some(lps) if self.logprobs => {
                    let tokens: Vec<_> = prompt
                        .ids
                        .iter()
                        .enumerate()
                        .map(|(i, &id)| (id, i.checked_sub(1).and_then(|j| lps.get(j))))
                        .collect();
                    self.legacy(&tokens, &mut offset)
                }
                _ => {
                    offset = prompt.text.chars().count();
                    Value::Null
                }
            };
            self.chunk(index, &prompt.text, logprobs, None)
        });
        self.offsets[index] = Some(offset);
        chunk
    }
}

impl ChunkFormat for TextChunks {
    fn chunks(&mut self, update: &Update) -> Vec<Value> {
        if let Update::Prompt { index, logprobs } = update {
            return self.start(*index, Some(logprobs)).into_iter().collect();
        }
        let Some((index, text, logprobs)) = update.content() else {
            return Vec::new();
        };
        let mut out: Vec<Value> = self.start(index, None).into_iter().collect();
        let finish = match update {
            Update::Done {
                finish,
                completion_tokens,
                ..
            } => {
                self.completion_tokens += completion_tokens;
                Some(finish.as_str())
            }
            _ => None,
        };
        if text.is_empty() && logprobs.is_empty() && finish.is_none() {
            return out;
        }
        let mut offset = self.offsets[index].unwrap_or(0);
        let legacy = if self.logprobs {
            let tokens: Vec<_> = logprobs.iter().map(|lp| (lp.id, Some(lp))).collect();
            self.legacy(&tokens, &mut offset)
        } else {
            Value::Null
        };
        self.offsets[index] = Some(offset);
        out.push(self.chunk(index, text, legacy, finish));
        out
    }

    fn finish(&mut self) -> Vec<Value> {
        if !self.include_usage {
            return Vec::new();
        }
        vec![json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.state.config.model_name,
            "choices": [],
            "usage": usage(self.prompt_tokens, self.completion_tokens),
        })]
    }
}

/// One whole choice from its chunks: texts concatenated, logprob lists
/// appended, the last finish reason.
fn merge_choice(chunks: Vec<Value>) -> Value {
    let mut merged = json!({"index": 0, "text": "", "logprobs": null, "finish_reason": null});
    let mut text = String::new();
    for chunk in chunks {
        let choice = &chunk["choices"][0];
        merged["index"] = choice["index"].clone();
        text.push_str(choice["text"].as_str().unwrap_or(""));
        if !choice["finish_reason"].is_null() {
            merged["finish_reason"] = choice["finish_reason"].clone();
        }
        if let Value::Object(lp) = &choice["logprobs"] {
            if merged["logprobs"].is_null() {
                merged["logprobs"] = json!({"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []});
            }
            for (key, values) in lp {
                if let (Some(all), Some(new)) =
                    (merged["logprobs"][key].as_array_mut(), values.as_array())
                {
                    all.extend(new.iter().cloned());
                }
            }
        }
    }
    merged["text"] = text.into();
    merged
}
