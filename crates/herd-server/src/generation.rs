//! Running the choices of a request through the engine, for both
//! endpoints: one task per choice turns engine [`Event`]s into
//! [`Update`]s (detokenized, cut at stop strings, tool calls parsed), and
//! the endpoint either collects them into one response or forwards them as
//! server-sent events.
//!
//! Ownership does the cancelling: a client that goes away drops the SSE
//! body, which drops the receiver of updates; each choice task's next send
//! fails, the task returns and drops its [`RequestStream`], and the engine
//! frees the request's KV blocks. A stop string ends a choice the same way.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use herd_engine::{Event, FinishReason, Request, RequestStream, TokenLogprob};
use herd_tokenizer::StreamDecoder;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Result, ServerError};
use crate::output::{FunctionCall, OutputText};
use crate::AppState;

/// Why a choice ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or stop string.
    Stop,
    /// The token budget or the context ran out.
    Length,
    /// The output was tool calls.
    ToolCalls,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// Progress of one choice.
#[derive(Debug)]
pub enum Update {
    /// Log-probabilities of the prompt's tokens 1.. (legacy `echo`).
    Prompt {
        /// Choice index.
        index: usize,
        /// One per prompt token after the first.
        logprobs: Vec<TokenLogprob>,
    },
    /// New content.
    Delta {
        /// Choice index.
        index: usize,
        /// The text.
        text: String,
        /// Log-probabilities of the tokens it covers (when requested).
        logprobs: Vec<TokenLogprob>,
    },
    /// The last content, the calls and the reason.
    Done {
        /// Choice index.
        index: usize,
        /// Content not yet sent.
        text: String,
        /// Log-probabilities not yet sent.
        logprobs: Vec<TokenLogprob>,
        /// Tool calls.
        calls: Vec<FunctionCall>,
        /// Why it ended.
        finish: Finish,
        /// Tokens generated.
        completion_tokens: usize,
    },
    /// The engine failed on this choice.
    Failed {
        /// What happened.
        message: String,
    },
}

impl Update {
    /// The choice index, text and log-probabilities that a `Delta` or a
    /// `Done` carries (both formats stream them the same way).
    pub fn content(&self) -> Option<(usize, &str, &[TokenLogprob])> {
        match self {
            Update::Delta {
                index,
                text,
                logprobs,
            }
            | Update::Done {
                index,
                text,
                logprobs,
                ..
            } => Some((*index, text, logprobs)),
            Update::Prompt { .. } | Update::Failed { .. } => None,
        }
    }
}

/// One choice ready to run.
pub struct Choice {
    /// Its index in the response.
    pub index: usize,
    /// What the engine computes.
    pub request: Request,
    /// Its text state (stop strings, tool parsing, forced prefix).
    pub output: OutputText,
}

/// Submits every choice (so that a refusal fails the whole request before
/// anything is sent) and starts one task per choice.
pub fn start(
    state: &Arc<AppState>,
    choices: Vec<Choice>,
    arrived: Instant,
) -> Result<mpsc::Receiver<Update>> {
    let mut running = Vec::with_capacity(choices.len());
    for choice in choices {
        let stream = state.engine.submit(choice.request)?;
        running.push((choice.index, stream, choice.output));
    }
    let (tx, rx) = mpsc::channel(256);
    for (index, stream, output) in running {
        let task = ChoiceTask {
            state: state.clone(),
            index,
            arrived,
            tx: tx.clone(),
        };
        tokio::spawn(task.run(stream, output));
    }
    Ok(rx)
}

/// The task that follows one choice.
struct ChoiceTask {
    state: Arc<AppState>,
    index: usize,
    arrived: Instant,
    tx: mpsc::Sender<Update>,
}

impl ChoiceTask {
    async fn run(self, mut stream: RequestStream, mut output: OutputText) {
        let mut decoder = StreamDecoder::new(true);
        let mut tokens = 0;
        let mut last_token: Option<Instant> = None;
        let finish = loop {
            let Some(event) = stream.recv().await else {
                let message = "the engine stopped".to_owned();
                let _ = self.tx.send(Update::Failed { message }).await;
                return;
            };
            let (update, stopped) = match event {
                Event::PromptLogprobs(logprobs) => {
                    let index = self.index;
                    (Some(Update::Prompt { index, logprobs }), false)
                }
                Event::Token { id, logprob } => {
                    tokens += 1;
                    self.observe(&mut last_token);
                    self.token(id, logprob, &mut decoder, &mut output)
                }
                Event::Finished(done) => {
                    break match done.finish {
                        FinishReason::Stop(_) | FinishReason::Cancelled => Finish::Stop,
                        FinishReason::Length | FinishReason::ContextFull => Finish::Length,
                    }
                }
                Event::Failed(message) => {
                    let _ = self.tx.send(Update::Failed { message }).await;
                    return;
                }
            };
            if let Some(update) = update {
                if self.tx.send(update).await.is_err() {
                    return;
                }
            }
            if stopped {
                break Finish::Stop;
            }
        };
        // Ends the engine request now if a stop string ended the choice.
        drop(stream);
        self.end(decoder, output, finish, tokens).await;
    }

    /// One generated token: its text through the decoder and the output
    /// state; returns what to send and whether a stop string ended it.
    fn token(
        &self,
        id: u32,
        logprob: Option<TokenLogprob>,
        decoder: &mut StreamDecoder,
        output: &mut OutputText,
    ) -> (Option<Update>, bool) {
        if Some(id) == self.state.python_tag {
            output.python_tag();
        }
        // An id past the tokenizer (embedding padding) has no text.
        let piece = decoder
            .step(&self.state.tokenizer, id)
            .ok()
            .flatten()
            .unwrap_or_default();
        let release = output.push(&piece, logprob);
        let stopped = release.stopped;
        let update = if release.text.is_empty() && release.logprobs.is_empty() {
            None
        } else {
            Some(Update::Delta {
                index: self.index,
                text: release.text,
                logprobs: release.logprobs,
            })
        };
        (update, stopped)
    }

    /// Sends the choice's last text, its calls and why it ended.
    async fn end(self, decoder: StreamDecoder, output: OutputText, finish: Finish, tokens: usize) {
        let tail = decoder.finish(&self.state.tokenizer).unwrap_or_default();
        let ending = output.finish(&tail);
        let finish = if ending.calls.is_empty() {
            finish
        } else {
            Finish::ToolCalls
        };
        let _ = self
            .tx
            .send(Update::Done {
                index: self.index,
                text: ending.text,
                logprobs: ending.logprobs,
                calls: ending.calls,
                finish,
                completion_tokens: tokens,
            })
            .await;
    }

    fn observe(&self, last: &mut Option<Instant>) {
        let now = Instant::now();
        match last {
            None => self.state.metrics.time_to_first_token(now - self.arrived),
            Some(t) => self.state.metrics.inter_token(now - *t),
        }
        *last = Some(now);
    }
}

/// Everything one choice produced.
#[derive(Debug)]
pub struct ChoiceResult {
    /// Its index.
    pub index: usize,
    /// Content.
    pub text: String,
    /// Per generated token, when requested.
    pub logprobs: Vec<TokenLogprob>,
    /// Per prompt token after the first, when requested.
    pub prompt_logprobs: Option<Vec<TokenLogprob>>,
    /// Tool calls.
    pub calls: Vec<FunctionCall>,
    /// Why it ended.
    pub finish: Finish,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// Waits for all `n` choices and returns them by index.
pub async fn collect(mut rx: mpsc::Receiver<Update>, n: usize) -> Result<Vec<ChoiceResult>> {
    let mut parts: Vec<(String, Vec<TokenLogprob>, Option<Vec<TokenLogprob>>)> =
        (0..n).map(|_| Default::default()).collect();
    let mut results = Vec::with_capacity(n);
    while results.len() < n {
        let Some(update) = rx.recv().await else {
            return Err(ServerError::Generation(
                "a choice ended without a result".into(),
            ));
        };
        match update {
            Update::Prompt { index, logprobs } => parts[index].2 = Some(logprobs),
            Update::Delta {
                index,
                text,
                logprobs,
            } => {
                parts[index].0.push_str(&text);
                parts[index].1.extend(logprobs);
            }
            Update::Done {
                index,
                text,
                logprobs,
                calls,
                finish,
                completion_tokens,
            } => {
                let (mut all_text, mut all_logprobs, prompt_logprobs) =
                    std::mem::take(&mut parts[index]);
                all_text.push_str(&text);
                all_logprobs.extend(logprobs);
                results.push(ChoiceResult {
                    index,
                    text: all_text,
                    logprobs: all_logprobs,
                    prompt_logprobs,
                    calls,
                    finish,
                    completion_tokens,
                });
            }
            Update::Failed { message } => return Err(ServerError::Generation(message)),
        }
    }
    results.sort_by_key(|r| r.index);
    Ok(results)
}

/// How an endpoint writes its stream chunks.
pub trait ChunkFormat: Send + 'static {
    /// The chunks (JSON objects) for one update.
    fn chunks(&mut self, update: &Update) -> Vec<Value>;
    /// Chunks after the last choice ended (usage).
    fn finish(&mut self) -> Vec<Value>;
}

/// A server-sent-event response forwarding `n` choices' updates, ending
/// with `data: [DONE]`. A failed choice sends an OpenAI error object and
/// ends the stream.
pub fn sse(mut rx: mpsc::Receiver<Update>, n: usize, mut format: impl ChunkFormat) -> Response {
    let (tx, events) = mpsc::channel::<std::result::Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let send = |value: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(SseEvent::default().data(value))).await.is_ok() }
        };
        let mut done = 0;
        while done < n {
            let Some(update) = rx.recv().await else { break };
            if let Update::Failed { message } = &update {
                send(ServerError::Generation(message.clone()).body().to_string()).await;
                return;
            }
            done += matches!(update, Update::Done { .. }) as usize;
            for chunk in format.chunks(&update) {
                if !send(chunk.to_string()).await {
                    return;
                }
            }
        }
        for chunk in format.finish() {
            if !send(chunk.to_string()).await {
                return;
            }
        }
        send("[DONE]".to_owned()).await;
    });
    Sse::new(ReceiverStream::new(events))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A response id unique within this process: `prefix-<counter>`.
pub fn response_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
