//! The teacher's API: connect (preflight), sample chat answers, score text,
//! verify the tokenizer.

use herd_engine::{Sampling, SamplingParams};
use herd_tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

use crate::client::{RemoteConfig, Traffic, Transport};
use crate::error::{RemoteError, Result};
use crate::vocab::{compare_tokenization, RawToken, TokenMap, TokenTopK};

/// A probe for [`RemoteTeacher::verify_tokenizer`]: words, digits, German,
/// JSON and whitespace runs, where tokenizers tend to differ.
pub const TOKENIZER_PROBE: &str = "Hello! Where is my order 1047? Wo ist meine Bestellung — \
    Größe M, 19,99 €.\n{\"name\": \"lookup_order\", \"parameters\": {\"order_id\": 1047}}\n\n  \
    The quick brown fox jumps over the lazy dog.";

/// A chat request to the teacher: OpenAI-shaped messages and tools.
#[derive(Debug, Clone)]
pub struct ChatRequest<'a> {
    /// OpenAI `messages` objects.
    pub messages: &'a [Value],
    /// OpenAI `tools` objects (may be empty).
    pub tools: &'a [Value],
    /// Choices to sample.
    pub n: usize,
    /// Generation budget per choice.
    pub max_tokens: usize,
    /// Sampling rule and seed (choice `i` uses `seed + i` on herd and vLLM).
    pub sampling: &'a SamplingParams,
    /// `Some(k)`: each generated token's log-probability and `k` alternatives.
    pub top_logprobs: Option<usize>,
}

/// Why a choice ended, as OpenAI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or string.
    Stop,
    /// `max_tokens` ran out.
    Length,
    /// The answer is a tool call.
    ToolCalls,
    /// Anything else the server said.
    Other(String),
}

/// One sampled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatChoice {
    /// The assistant message in OpenAI's shape (`content`, `tool_calls`).
    pub message: Value,
    /// Why it ended.
    pub finish: Finish,
    /// Per generated token, when asked for.
    pub logprobs: Option<Vec<RawToken>>,
}

/// A scored token sequence: positions `1..len`, each predicted from the
/// tokens before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Most alternatives the server returned at any position (its grant,
    /// which may be below the `k` asked for).
    pub k_granted: usize,
    /// One entry per token after the first.
    pub positions: Vec<TokenTopK>,
}

/// A connected OpenAI-compatible teacher. `Send + Sync`: share it between
/// worker threads; requests in flight are bounded by
/// [`RemoteConfig::concurrency`].
pub struct RemoteTeacher {
    transport: Transport,
    model: String,
}

impl RemoteTeacher {
    /// Checks the URL, the API key and the model with `GET /v1/models`
    /// before any work: a wrong key fails here.
    pub fn connect(config: &RemoteConfig) -> Result<Self> {
        let transport = Transport::new(config)?;
        let listing = transport
            .get("/models")
            .map_err(|e| unauthorized(&transport, e))?;
        let available: Vec<String> = listing["data"]
            .as_array()
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let model = match &config.model {
            Some(wanted) if available.contains(wanted) => wanted.clone(),
            Some(wanted) => {
                return Err(RemoteError::UnknownModel {
                    url: transport.base().to_owned(),
                    wanted: wanted.clone(),
                    available: available.join(", "),
                })
            }
            None if available.len() == 1 => available[0].clone(),
            None => {
                return Err(RemoteError::AmbiguousModel {
                    url: transport.base().to_owned(),
                    available,
                })
            }
        };
        Ok(Self { transport, model })
    }

    /// The model id requests name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// What was sent and received so far.
    pub fn traffic(&self) -> Traffic {
        self.transport.traffic()
    }

    /// Samples `n` answers to a conversation (`/v1/chat/completions`).
    pub fn chat(&self, request: &ChatRequest) -> Result<Vec<ChatChoice>> {
        let mut body = json!({
            "model": self.model,
            "messages": request.messages,
            "n": request.n,
            "max_tokens": request.max_tokens,
        });
        if !request.tools.is_empty() {
            body["tools"] = request.tools.into();
        }
        sampling_fields(request.sampling, &mut body);
        if let Some(k) = request.top_logprobs {
            body["logprobs"] = true.into();
            body["top_logprobs"] = k.into();
        }
        let endpoint = "/chat/completions";
        let response = self.transport.post(endpoint, &body)?;
        let mut choices = response["choices"]
            .as_array()
            .ok_or_else(|| bad(endpoint, "no `choices` array"))?
            .clone();
        choices.sort_by_key(|c| c["index"].as_u64().unwrap_or(0));
        if choices.len() != request.n {
            return Err(bad(
                endpoint,
                &format!("asked for {} choices, got {}", request.n, choices.len()),
            ));
        }
        choices
            .iter()
            .map(|c| chat_choice(c, request.top_logprobs.is_some(), endpoint))
            .collect()
    }

    /// Scores `ids` with `/v1/completions`, `echo` and `logprobs = k`: each
    /// token after the first gets its log-probability and the teacher's top
    /// `k`, mapped to local ids by `map`. The ids are sent as they are, so
    /// the positions line up with the local tokenization by construction.
    pub fn score(&self, ids: &[u32], k: usize, map: &TokenMap) -> Result<Scored> {
        let endpoint = "/completions";
        let body = json!({
            "model": self.model,
            "prompt": ids,
            "max_tokens": 1,
            "temperature": 0,
            "echo": true,
            "logprobs": k,
        });
        let response = self.transport.post(endpoint, &body)?;
        let raw = legacy_logprobs(&response, endpoint)?;
        if raw.len() < ids.len() {
            return Err(bad(
                endpoint,
                &format!("echoed {} tokens for a prompt of {}", raw.len(), ids.len()),
            ));
        }
        let mut positions = Vec::with_capacity(ids.len().saturating_sub(1));
        for (i, token) in raw.iter().enumerate().take(ids.len()).skip(1) {
            if map.id(&token.text).is_some_and(|id| id != ids[i]) {
                return Err(RemoteError::TokenizerMismatch {
                    detail: format!(
                        "the teacher echoed token {i} as {:?}, which is not local id {}",
                        token.text, ids[i]
                    ),
                });
            }
            positions.push(map.to_top_k(token, Some(ids[i]))?);
        }
        let k_granted = raw.iter().map(|t| t.top.len()).max().unwrap_or(0).min(k);
        Ok(Scored {
            k_granted,
            positions,
        })
    }

    /// Refuses a teacher whose tokenizer differs from `tokenizer`: the
    /// teacher tokenizes [`TOKENIZER_PROBE`] (echoed by `/v1/completions`)
    /// and every token text must equal the local tokenization's. Servers
    /// without the legacy endpoint are checked on a chat answer instead:
    /// every token and alternative must be a local token.
    pub fn verify_tokenizer(&self, tokenizer: &Tokenizer, map: &TokenMap) -> Result<()> {
        let mut local_ids: Vec<u32> = tokenizer.bos_id().into_iter().collect();
        local_ids.extend(tokenizer.encode(TOKENIZER_PROBE)?);
        let local: Vec<String> = local_ids
            .iter()
            .map(|&id| tokenizer.decode(&[id], false))
            .collect::<std::result::Result<_, _>>()?;
        let bos = match tokenizer.bos_id() {
            Some(id) => Some(tokenizer.decode(&[id], false)?),
            None => None,
        };
        let endpoint = "/completions";
        let body = json!({
            "model": self.model, "prompt": TOKENIZER_PROBE, "max_tokens": 1,
            "temperature": 0, "echo": true, "logprobs": 0,
        });
        let response = match self.transport.post(endpoint, &body) {
            Err(RemoteError::Http { status: 404, .. }) => return self.verify_by_chat(map),
            other => other?,
        };
        let prompt_tokens = response["usage"]["prompt_tokens"]
            .as_u64()
            .ok_or_else(|| bad(endpoint, "no usage.prompt_tokens"))?
            as usize;
        let raw = legacy_logprobs(&response, endpoint)?;
        let remote: Vec<String> = raw
            .into_iter()
            .take(prompt_tokens)
            .map(|t| t.text)
            .collect();
        compare_tokenization(&local, &remote, bos.as_deref())
    }

    fn verify_by_chat(&self, map: &TokenMap) -> Result<()> {
        let messages = [json!({"role": "user", "content": TOKENIZER_PROBE})];
        let greedy = SamplingParams::default();
        let choices = self.chat(&ChatRequest {
            messages: &messages,
            tools: &[],
            n: 1,
            max_tokens: 16,
            sampling: &greedy,
            top_logprobs: Some(5),
        })?;
        for token in choices.iter().flat_map(|c| c.logprobs.iter().flatten()) {
            map.to_top_k(token, None)?;
        }
        Ok(())
    }
}

/// A 401/403 from the preflight as the clear error it is.
fn unauthorized(transport: &Transport, error: RemoteError) -> RemoteError {
    match error {
        RemoteError::Http {
            status: status @ (401 | 403),
            message,
            ..
        } => RemoteError::Unauthorized {
            url: transport.base().to_owned(),
            status,
            key_given: transport.key_given(),
            message,
        },
        other => other,
    }
}

fn bad(endpoint: &str, problem: &str) -> RemoteError {
    RemoteError::BadResponse {
        endpoint: endpoint.to_owned(),
        problem: problem.to_owned(),
    }
}

/// OpenAI's sampling fields (and vLLM's `top_k`, `min_p`,
/// `repetition_penalty`) for herd's sampling parameters.
fn sampling_fields(params: &SamplingParams, body: &mut Value) {
    body["seed"] = params.seed.into();
    match &params.sampling {
        Sampling::Greedy => body["temperature"] = 0.into(),
        Sampling::Random {
            temperature,
            top_k,
            top_p,
            min_p,
        } => {
            body["temperature"] = (*temperature).into();
            if let Some(k) = top_k {
                body["top_k"] = (*k).into();
            }
            if let Some(p) = top_p {
                body["top_p"] = (*p).into();
            }
            if let Some(p) = min_p {
                body["min_p"] = (*p).into();
            }
        }
    }
    if params.repetition_penalty != 1.0 {
        body["repetition_penalty"] = params.repetition_penalty.into();
    }
}

/// One chat choice.
fn chat_choice(choice: &Value, want_logprobs: bool, endpoint: &str) -> Result<ChatChoice> {
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| bad(endpoint, "a choice without `message`"))?
        .clone();
    let finish = match choice["finish_reason"].as_str().unwrap_or("") {
        "stop" => Finish::Stop,
        "length" => Finish::Length,
        "tool_calls" => Finish::ToolCalls,
        other => Finish::Other(other.to_owned()),
    };
    let logprobs = if want_logprobs {
        let content = choice["logprobs"]["content"].as_array().ok_or_else(|| {
            bad(
                endpoint,
                "logprobs asked for but `logprobs.content` missing",
            )
        })?;
        Some(content.iter().map(chat_token).collect())
    } else {
        None
    };
    Ok(ChatChoice {
        message,
        finish,
        logprobs,
    })
}

fn chat_token(entry: &Value) -> RawToken {
    let text = |e: &Value| e["token"].as_str().unwrap_or("").to_owned();
    RawToken {
        text: text(entry),
        logprob: entry["logprob"].as_f64().map(|l| l as f32),
        top: entry["top_logprobs"]
            .as_array()
            .map(|tops| {
                tops.iter()
                    .filter_map(|t| Some((text(t), t["logprob"].as_f64()? as f32)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The legacy `logprobs` object of the first choice, per token.
fn legacy_logprobs(response: &Value, endpoint: &str) -> Result<Vec<RawToken>> {
    let logprobs = &response["choices"][0]["logprobs"];
    let tokens = logprobs["tokens"].as_array().ok_or_else(|| {
        bad(
            endpoint,
            "no `logprobs.tokens` (does the server support echo?)",
        )
    })?;
    let empty = Map::new();
    Ok(tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut top: Vec<(String, f32)> = logprobs["top_logprobs"][i]
                .as_object()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()? as f32)))
                .collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            RawToken {
                text: t.as_str().unwrap_or("").to_owned(),
                logprob: logprobs["token_logprobs"][i].as_f64().map(|l| l as f32),
                top,
            }
        })
        .collect())
}
