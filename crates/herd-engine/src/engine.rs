//! The serving engine: one thread owns the model's mutable state (KV caches,
//! queues) and serves any number of clients through channels.
//!
//! Clients hold an [`EngineHandle`] (cheap to clone, `Send + Sync`) and get a
//! [`RequestStream`] per request. Dropping the stream cancels the request;
//! the engine notices at its next step and frees the request's KV.
//!
//! This first engine computes one request at a time (FIFO) with a
//! contiguous KV cache; the API is the one the continuous-batching
//! scheduler keeps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use herd_model::{logits_row, Llama, Logits};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::{EngineError, Result};
use crate::generate::FinishReason;
use crate::request::{Completion, EngineConfig, EngineMetrics, Event, Request};
use crate::sampler::{token_logprob, Sampler};

/// A request on its way into the engine, with its reply channel.
struct Submission {
    request: Request,
    events: UnboundedSender<Event>,
    cancelled: Arc<AtomicBool>,
}

/// A client's handle on a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    submissions: Sender<Submission>,
    metrics: Arc<Mutex<EngineMetrics>>,
    max_context: usize,
    vocab_size: usize,
}

/// The events of one request. Dropping it cancels the request.
pub struct RequestStream {
    events: UnboundedReceiver<Event>,
    cancelled: Arc<AtomicBool>,
}

impl RequestStream {
    /// The next event, or `None` after the last one.
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event, blocking the thread (for non-async callers).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.events.blocking_recv()
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl EngineHandle {
    /// Starts the engine thread for `model`.
    pub fn start(model: Arc<Llama>, config: EngineConfig) -> Result<EngineHandle> {
        if config.max_num_seqs == 0 || config.block_size == 0 || config.max_batch_tokens == 0 {
            return Err(EngineError::InvalidRequest(
                "engine limits (sequences, block size, batch tokens) must be at least 1".into(),
            ));
        }
        let cfg = model.config();
        let block_bytes = kv_bytes_per_token(cfg) * config.block_size as u64;
        let kv_blocks_total = (config.kv_cache_bytes / block_bytes) as usize;
        if kv_blocks_total == 0 {
            return Err(EngineError::InvalidRequest(format!(
                "KV cache of {} bytes holds no block of {block_bytes} bytes",
                config.kv_cache_bytes
            )));
        }
        let metrics = Arc::new(Mutex::new(EngineMetrics {
            kv_blocks_total,
            ..EngineMetrics::default()
        }));
        let (tx, rx) = mpsc::channel();
        let handle = EngineHandle {
            submissions: tx,
            metrics: metrics.clone(),
            max_context: cfg.max_position_embeddings,
            vocab_size: cfg.vocab_size,
        };
        let worker = Worker {
            model,
            config,
            metrics,
            queue: VecDeque::new(),
        };
        thread::Builder::new()
            .name("herd-engine".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| EngineError::InvalidRequest(format!("cannot start engine thread: {e}")))?;
        Ok(handle)
    }

    /// Queues a request. Fails at once on requests that can never be served.
    pub fn submit(&self, request: Request) -> Result<RequestStream> {
        self.check(&request)?;
        let (events, rx) = unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.submissions
            .send(Submission {
                request,
                events,
                cancelled: cancelled.clone(),
            })
            .map_err(|_| EngineError::InvalidRequest("the engine has stopped".into()))?;
        Ok(RequestStream {
            events: rx,
            cancelled,
        })
    }

    /// The current gauges and counters.
    pub fn metrics(&self) -> EngineMetrics {
        self.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Longest sequence (prompt + output) the model takes.
    pub fn max_context(&self) -> usize {
        self.max_context
    }

    fn check(&self, request: &Request) -> Result<()> {
        request.sampling.validate()?;
        if request.prompt.is_empty() {
            return Err(EngineError::InvalidRequest("empty prompt".into()));
        }
        if request.prompt.len() >= self.max_context {
            return Err(EngineError::InvalidRequest(format!(
                "prompt of {} tokens leaves no room in the context of {} tokens",
                request.prompt.len(),
                self.max_context
            )));
        }
        if let Some(&id) = request
            .prompt
            .iter()
            .find(|&&t| t as usize >= self.vocab_size)
        {
            return Err(EngineError::InvalidRequest(format!(
                "token id {id} is outside the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        Ok(())
    }
}

/// Bytes of keys and values one position takes across all layers (f32).
fn kv_bytes_per_token(cfg: &herd_model::Config) -> u64 {
    (2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4) as u64
}

/// The engine thread's state.
struct Worker {
    model: Arc<Llama>,
    config: EngineConfig,
    metrics: Arc<Mutex<EngineMetrics>>,
    queue: VecDeque<Submission>,
}

impl Worker {
    /// Serves until every handle is dropped and the queue is empty.
    fn run(mut self, rx: Receiver<Submission>) {
        loop {
            if self.queue.is_empty() {
                match rx.recv() {
                    Ok(s) => self.queue.push_back(s),
                    Err(_) => return,
                }
            }
            self.drain(&rx);
            if let Some(sub) = self.queue.pop_front() {
                self.update(|m| {
                    m.running = 1;
                    m.prompt_tokens_total += sub.request.prompt.len() as u64;
                });
                let events = sub.events.clone();
                if let Err(e) = self.serve(sub, &rx) {
                    let _ = events.send(Event::Failed(e.to_string()));
                }
                self.update(|m| {
                    m.running = 0;
                    m.kv_blocks_used = 0;
                });
            }
        }
    }

    /// Moves newly submitted requests into the queue without blocking.
    fn drain(&mut self, rx: &Receiver<Submission>) {
        while let Ok(s) = rx.try_recv() {
            self.queue.push_back(s);
        }
        let waiting = self.queue.len();
        self.update(|m| m.waiting = waiting);
    }

    fn update(&self, f: impl FnOnce(&mut EngineMetrics)) {
        if let Ok(mut m) = self.metrics.lock() {
            f(&mut m);
        }
    }

    /// Prefills and decodes one request to its end, streaming events.
    fn serve(&mut self, sub: Submission, rx: &Receiver<Submission>) -> Result<()> {
        let Submission {
            mut request,
            events,
            cancelled,
        } = sub;
        let model = self.model.clone();
        let mut sampler = Sampler::new(request.sampling.clone())?;
        let mut cache = model.new_cache();
        let which = if request.prompt_logprobs.is_some() {
            Logits::All
        } else {
            Logits::Last
        };
        let logits = model.forward_one(&request.prompt, &mut cache, which)?;
        let rows = logits.dims()[0];
        if let Some(k) = request.prompt_logprobs {
            let mut scored = Vec::with_capacity(rows.saturating_sub(1));
            for (i, &id) in request.prompt.iter().enumerate().skip(1) {
                scored.push(token_logprob(&logits_row(&logits, i - 1)?, id, k));
            }
            let _ = events.send(Event::PromptLogprobs(scored));
        }
        let mut row = logits_row(&logits, rows - 1)?;
        let mut context = request.prompt.clone();
        let mut generated = 0;
        let finish = loop {
            if cancelled.load(Ordering::Relaxed) {
                break FinishReason::Cancelled;
            }
            if generated >= request.max_tokens {
                break FinishReason::Length;
            }
            let raw = request.logprobs.map(|_| row.clone());
            if let Some(p) = request.processor.as_mut() {
                p.process(&mut row);
            }
            let token = sampler.sample(&mut row, &context)?;
            if let Some(p) = request.processor.as_mut() {
                p.accept(token);
            }
            if request.stop_ids.contains(&token) {
                break FinishReason::Stop(token);
            }
            let logprob = raw.map(|r| token_logprob(&r, token, request.logprobs.unwrap_or(0)));
            generated += 1;
            context.push(token);
            self.update(|m| {
                m.generated_tokens_total += 1;
                m.kv_blocks_used = context.len().div_ceil(self.config.block_size);
            });
            if events.send(Event::Token { id: token, logprob }).is_err() {
                break FinishReason::Cancelled;
            }
            if context.len() >= self.model.config().max_position_embeddings {
                break FinishReason::ContextFull;
            }
            if generated < request.max_tokens {
                let logits = model.forward_one(&[token], &mut cache, Logits::Last)?;
                row = logits_row(&logits, 0)?;
            }
            self.drain(rx);
        };
        let _ = events.send(Event::Finished(Completion {
            finish,
            prompt_tokens: request.prompt.len(),
            completion_tokens: generated,
            cached_prompt_tokens: 0,
        }));
        Ok(())
    }
}
