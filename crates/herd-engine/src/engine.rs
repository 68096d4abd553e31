//! The serving engine: one thread owns the model's mutable state (the KV
//! pool, the scheduler's queues) and serves any number of clients through
//! channels.
//!
//! Clients hold an [`EngineHandle`] (cheap to clone, `Send + Sync`) and get a
//! [`RequestStream`] per request. Dropping the stream cancels the request;
//! the engine notices at its next step and returns the request's KV blocks.
//!
//! The engine thread loops over one step of three verbs, over plain data:
//!
//! ```text
//! accept   new submissions → waiting queue; dropped streams → blocks freed
//! schedule Scheduler::schedule → [Work { running index, tokens }]   (scheduler.rs)
//! execute  one Llama::forward_paged over the packed batch, KV in the pool
//! update   computed += tokens; full blocks → prefix cache; sequences that
//!          caught up sample a token (Client) and stream it, or finish
//! ```
//!
//! Every sequence in a step shares one pass of the weights, so decoding N
//! requests together costs little more than one (CPU decode is bound by
//! reading the weights). The pool's size is fixed at start from
//! [`EngineConfig::kv_cache_bytes`]; a request may use up to the whole pool,
//! so [`EngineHandle::max_context`] is the smaller of the model's context and
//! the pool's capacity, and a sequence that reaches it finishes with
//! [`FinishReason::ContextFull`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use candle_core::Tensor;
use herd_model::{logits_row, Config, KvPool, Llama, Logits, PagedSeq};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::blocks::BlockManager;
use crate::client::{Client, Next};
use crate::error::{EngineError, Result};
use crate::generate::FinishReason;
use crate::request::{EngineConfig, EngineMetrics, Event, Request};
use crate::sampler::Sampler;
use crate::scheduler::{Limits, Scheduler, Sequence, Work};
use crate::speculative::{verify, DraftConfig, EngineDraft};

/// What the serving engine needs from a model: the whole model in this
/// process, or rank 0 of a tensor/pipeline-parallel job, which mirrors the
/// pool and every step onto the other ranks (herd-parallel). The engine's
/// scheduling, block tables and sampling stay in one place either way.
pub trait PagedModel: Send {
    /// The model's configuration (context length, vocabulary).
    fn config(&self) -> &Config;
    /// Bytes one KV block of `block_size` positions takes in this process.
    fn pool_bytes_per_block(&self, block_size: usize) -> u64;
    /// The KV pool the engine's block tables index.
    fn new_pool(&self, block_size: usize, num_blocks: usize) -> herd_model::Result<KvPool>;
    /// Per-sequence logits of one packed batch, as [`Llama::forward_paged`].
    fn forward_paged(
        &self,
        pool: &mut KvPool,
        batch: &[PagedSeq<'_>],
    ) -> herd_model::Result<Vec<Tensor>>;
    /// How long the engine may sit idle before calling [`PagedModel::idle`]
    /// (`None`: never), e.g. to tell waiting ranks that the leader is alive.
    fn idle_interval(&self) -> Option<Duration> {
        None
    }
    /// Called after every [`PagedModel::idle_interval`] without requests.
    /// A model that cannot go on must end the process itself (a parallel
    /// job aborts every rank), as the engine has no one to report to.
    fn idle(&self) {}
}

impl PagedModel for Arc<Llama> {
    fn config(&self) -> &Config {
        Llama::config(self)
    }

    fn pool_bytes_per_block(&self, block_size: usize) -> u64 {
        Llama::pool_bytes_per_block(self, block_size)
    }

    fn new_pool(&self, block_size: usize, num_blocks: usize) -> herd_model::Result<KvPool> {
        Llama::new_pool(self, block_size, num_blocks)
    }

    fn forward_paged(
        &self,
        pool: &mut KvPool,
        batch: &[PagedSeq<'_>],
    ) -> herd_model::Result<Vec<Tensor>> {
        Llama::forward_paged(self, pool, batch)
    }
}

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
    /// Starts the engine thread for `model`, with a KV pool of
    /// `config.kv_cache_bytes` (rounded down to whole blocks).
    pub fn start(model: Arc<Llama>, config: EngineConfig) -> Result<EngineHandle> {
        Self::launch(Box::new(model), config, None)
    }

    /// [`EngineHandle::start`] for any [`PagedModel`] (e.g. the leader of a
    /// tensor/pipeline-parallel job).
    pub fn start_paged(model: Box<dyn PagedModel>, config: EngineConfig) -> Result<EngineHandle> {
        Self::launch(model, config, None)
    }

    /// [`EngineHandle::start`] with a draft model for speculative decoding.
    /// The engine speculates whenever exactly one request is decoding and
    /// nothing waits (requests with a logits processor excepted); with more,
    /// it batches as usual. Fails if the draft's vocabulary differs.
    pub fn start_speculative(
        model: Arc<Llama>,
        config: EngineConfig,
        draft: DraftConfig,
    ) -> Result<EngineHandle> {
        let draft = EngineDraft::new(&model, draft)?;
        Self::launch(Box::new(model), config, Some(draft))
    }

    fn launch(
        model: Box<dyn PagedModel>,
        config: EngineConfig,
        draft: Option<EngineDraft>,
    ) -> Result<EngineHandle> {
        if config.max_num_seqs == 0 || config.block_size == 0 || config.max_batch_tokens == 0 {
            return Err(EngineError::InvalidRequest(
                "engine limits (sequences, block size, batch tokens) must be at least 1".into(),
            ));
        }
        let cfg = model.config();
        let block_bytes = model.pool_bytes_per_block(config.block_size);
        let kv_blocks_total = (config.kv_cache_bytes / block_bytes).min(u32::MAX as u64) as usize;
        if kv_blocks_total == 0 {
            return Err(EngineError::InvalidRequest(format!(
                "KV cache of {} bytes holds no block of {block_bytes} bytes",
                config.kv_cache_bytes
            )));
        }
        let pool = model.new_pool(config.block_size, kv_blocks_total)?;
        let max_context = cfg
            .max_position_embeddings
            .min(kv_blocks_total * config.block_size);
        let metrics = Arc::new(Mutex::new(EngineMetrics {
            kv_blocks_total,
            ..EngineMetrics::default()
        }));
        let (tx, rx) = mpsc::channel();
        let handle = EngineHandle {
            submissions: tx,
            metrics: metrics.clone(),
            max_context,
            vocab_size: cfg.vocab_size,
        };
        let limits = Limits {
            max_num_seqs: config.max_num_seqs,
            max_batch_tokens: config.max_batch_tokens,
            block_size: config.block_size,
        };
        let blocks = BlockManager::new(kv_blocks_total, config.prefix_caching);
        let worker = Worker {
            model,
            pool,
            scheduler: Scheduler::new(limits, blocks),
            clients: HashMap::new(),
            metrics,
            max_context,
            next_id: 0,
            totals: EngineMetrics::default(),
            draft,
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

    /// Longest sequence (prompt + output) one request may reach: the model's
    /// context, or the KV pool's capacity if that is smaller.
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
                "prompt of {} tokens leaves no room in the context of {} tokens \
                 (the model's context or the KV cache's capacity, whichever is smaller)",
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

/// Rows of raw logits, one per position.
type LogitRows = Vec<Vec<f32>>;

/// Why a sequence that just grew to `len` tokens must end, if it must.
fn limit_reached(client: &Client, len: usize, max_context: usize) -> Option<FinishReason> {
    if client.budget_spent() {
        Some(FinishReason::Length)
    } else if len >= max_context {
        Some(FinishReason::ContextFull)
    } else {
        None
    }
}

/// The engine thread's state.
struct Worker {
    model: Box<dyn PagedModel>,
    pool: KvPool,
    scheduler: Scheduler,
    /// Client side of every waiting or running sequence, by sequence id.
    clients: HashMap<u64, Client>,
    metrics: Arc<Mutex<EngineMetrics>>,
    max_context: usize,
    next_id: u64,
    /// Counters since start (the gauges are read off the scheduler).
    totals: EngineMetrics,
    /// The draft model, when speculative decoding is on.
    draft: Option<EngineDraft>,
}

impl Worker {
    /// Serves until every handle is dropped and no request is left.
    fn run(mut self, rx: Receiver<Submission>) {
        loop {
            if self.scheduler.running.is_empty() && self.scheduler.waiting.is_empty() {
                match self.wait(&rx) {
                    Some(s) => self.accept(s),
                    None => return,
                }
            }
            while let Ok(s) = rx.try_recv() {
                self.accept(s);
            }
            self.drop_cancelled();
            self.step();
            self.publish();
        }
    }

    /// The next submission while nothing runs, calling the model's idle hook
    /// meanwhile; `None` when every handle is gone.
    fn wait(&self, rx: &Receiver<Submission>) -> Option<Submission> {
        let Some(interval) = self.model.idle_interval() else {
            return rx.recv().ok();
        };
        loop {
            match rx.recv_timeout(interval) {
                Ok(s) => return Some(s),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => self.model.idle(),
            }
        }
    }

    /// Queues a submission.
    fn accept(&mut self, sub: Submission) {
        let reuse_prefix = sub.request.prompt_logprobs.is_none();
        self.totals.prompt_tokens_total += sub.request.prompt.len() as u64;
        let sampler = match Sampler::new(sub.request.sampling.clone()) {
            Ok(s) => s,
            Err(e) => {
                let _ = sub.events.send(Event::Failed(e.to_string()));
                return;
            }
        };
        let (client, prompt) = Client::new(sub.request, sampler, sub.events, sub.cancelled);
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(id, client);
        self.scheduler
            .waiting
            .push_back(Sequence::new(id, prompt, reuse_prefix));
    }

    /// Forgets requests whose stream was dropped, returning their blocks.
    fn drop_cancelled(&mut self) {
        let cancelled = |clients: &HashMap<u64, Client>, id: u64| {
            clients.get(&id).is_none_or(Client::is_cancelled)
        };
        for i in (0..self.scheduler.running.len()).rev() {
            let id = self.scheduler.running[i].id;
            if cancelled(&self.clients, id) {
                self.scheduler.remove_running(i);
                self.clients.remove(&id);
            }
        }
        let clients = &mut self.clients;
        self.scheduler.waiting.retain(|s| {
            let keep = !cancelled(clients, s.id);
            if !keep {
                clients.remove(&s.id);
            }
            keep
        });
    }

    /// One engine step: schedule, execute, update.
    fn step(&mut self) {
        if self.speculate() {
            return;
        }
        let work = self.scheduler.schedule();
        if work.is_empty() {
            return;
        }
        match self.execute(&work) {
            Ok(logits) => self.update(&work, &logits),
            Err(e) => self.fail(&work, &e),
        }
    }

    /// A speculative step (see `speculative.rs`) for the only running
    /// sequence, when it is decoding, nothing waits and the draft may guess
    /// its tokens. False when none of this applies: the normal step runs.
    fn speculate(&mut self) -> bool {
        let Some(draft) = self.draft.as_ref() else {
            return false;
        };
        let s = &mut self.scheduler;
        if s.running.len() != 1 || !s.waiting.is_empty() || s.running[0].behind() != 1 {
            return false;
        }
        let Some(client) = self.clients.get(&s.running[0].id) else {
            return false;
        };
        let n = draft
            .draft_tokens()
            .min(client.remaining().saturating_sub(1))
            .min(self.max_context - s.running[0].tokens.len());
        if !client.can_speculate() || n == 0 || !s.grow(0, n + 1) {
            return false;
        }
        match self.speculative_round(n) {
            Ok((emitted, raw)) => self.take_speculated(&emitted, raw.as_deref()),
            Err(e) => self.fail(
                &[Work {
                    index: 0,
                    tokens: 1,
                }],
                &e,
            ),
        }
        true
    }

    /// Drafts up to `n` guesses for the only running sequence, scores them in
    /// one target pass and applies the acceptance rule. Returns the emitted
    /// tokens, and the target's raw rows when the request wants logprobs.
    fn speculative_round(&mut self, n: usize) -> Result<(Vec<u32>, Option<LogitRows>)> {
        let seq = &self.scheduler.running[0];
        let (Some(draft), Some(client)) = (self.draft.as_mut(), self.clients.get_mut(&seq.id))
        else {
            return Err(EngineError::InvalidRequest("no draft or client".into()));
        };
        let params = client.sampler().params().clone();
        let proposals = draft.propose(seq.id, &params, &seq.tokens, n, client.stop_ids())?;
        let mut batch = vec![seq.tokens[seq.tokens.len() - 1]];
        batch.extend(proposals.iter().map(|p| p.token));
        let paged = PagedSeq {
            tokens: &batch,
            past: seq.computed,
            blocks: &seq.blocks,
            logits: Logits::All,
        };
        let logits = self.model.forward_paged(&mut self.pool, &[paged])?;
        let mut rows = (0..batch.len())
            .map(|r| logits_row(&logits[0], r))
            .collect::<herd_model::Result<Vec<_>>>()?;
        let raw = client.wants_logprobs().then(|| rows.clone());
        let emitted = verify(client.sampler(), &seq.tokens, &proposals, &mut rows)?;
        self.totals.speculative_drafted_total += proposals.len() as u64;
        self.totals.speculative_accepted_total += emitted.len() as u64 - 1;
        Ok((emitted, raw))
    }

    /// Streams the tokens of a speculative round and records which positions
    /// now hold valid keys and values: the leading token and the accepted
    /// guesses that were kept (the rest is overwritten by later steps).
    fn take_speculated(&mut self, emitted: &[u32], raw: Option<&[Vec<f32>]>) {
        let seq = &mut self.scheduler.running[0];
        let Some(client) = self.clients.get_mut(&seq.id) else {
            return;
        };
        let mut outcome = None;
        let mut kept = 0;
        for (j, &token) in emitted.iter().enumerate() {
            match client.take(token, raw.map(|r| r[j].as_slice())) {
                Next::Finish(reason) => outcome = Some(reason),
                Next::Token(token) => {
                    seq.tokens.push(token);
                    kept += 1;
                    self.totals.generated_tokens_total += 1;
                    outcome = limit_reached(client, seq.tokens.len(), self.max_context);
                }
            }
            if outcome.is_some() {
                break;
            }
        }
        let accepted = emitted.len() - 1;
        self.scheduler.computed(0, 1 + accepted.min(kept));
        if let Some(reason) = outcome {
            self.retire(0, Ok(reason));
        }
    }

    /// Runs the model over the step's packed batch.
    fn execute(&mut self, work: &[Work]) -> Result<Vec<Tensor>> {
        let running = &self.scheduler.running;
        let batch: Vec<PagedSeq<'_>> = work
            .iter()
            .map(|w| {
                let seq = &running[w.index];
                let wants_all = self.clients[&seq.id].wants_prompt_rows(seq.computed);
                PagedSeq {
                    tokens: &seq.tokens[seq.computed..seq.computed + w.tokens],
                    past: seq.computed,
                    blocks: &seq.blocks,
                    logits: if wants_all { Logits::All } else { Logits::Last },
                }
            })
            .collect();
        Ok(self.model.forward_paged(&mut self.pool, &batch)?)
    }

    /// Advances every sequence of the step, samples those that caught up,
    /// and retires the finished ones.
    fn update(&mut self, work: &[Work], logits: &[Tensor]) {
        let mut finished: Vec<(usize, std::result::Result<FinishReason, String>)> = Vec::new();
        for (w, logits) in work.iter().zip(logits) {
            if let Some(outcome) = self.advance(w, logits) {
                finished.push((w.index, outcome));
            }
        }
        finished.sort_by_key(|&(i, _)| std::cmp::Reverse(i));
        for (i, outcome) in finished {
            self.retire(i, outcome);
        }
    }

    /// Removes finished running sequence `i` and tells its client how it ended.
    fn retire(&mut self, i: usize, outcome: std::result::Result<FinishReason, String>) {
        let seq = self.scheduler.remove_running(i);
        let Some(client) = self.clients.remove(&seq.id) else {
            return;
        };
        match outcome {
            Ok(reason) => client.finish(reason, seq.cached_prompt_tokens.unwrap_or(0)),
            Err(message) => client.fail(message),
        }
    }

    /// Applies one sequence's results; `Some` when it is finished.
    fn advance(
        &mut self,
        w: &Work,
        logits: &Tensor,
    ) -> Option<std::result::Result<FinishReason, String>> {
        let seq = &self.scheduler.running[w.index];
        let (id, start) = (seq.id, seq.computed);
        let client = self.clients.get_mut(&id)?;
        let rows = match (0..logits.dims()[0])
            .map(|r| logits_row(logits, r))
            .collect::<herd_model::Result<Vec<_>>>()
        {
            Ok(rows) => rows,
            Err(e) => return Some(Err(e.to_string())),
        };
        if client.wants_prompt_rows(start) {
            client.score_prompt(&seq.tokens, start, &rows);
        }
        self.scheduler.computed(w.index, w.tokens);
        let seq = &mut self.scheduler.running[w.index];
        if seq.behind() > 0 {
            return None; // more of the prompt to go
        }
        if client.prompt_logprobs_pending() {
            client.send_prompt_logprobs();
            seq.reuse_prefix = true;
        }
        let row = rows.last()?.clone();
        match client.next(row, &seq.tokens) {
            Err(e) => Some(Err(e.to_string())),
            Ok(Next::Finish(reason)) => Some(Ok(reason)),
            Ok(Next::Token(token)) => {
                seq.tokens.push(token);
                self.totals.generated_tokens_total += 1;
                limit_reached(client, seq.tokens.len(), self.max_context).map(Ok)
            }
        }
    }

    /// Fails every request of a step whose forward pass failed.
    fn fail(&mut self, work: &[Work], error: &EngineError) {
        let mut indices: Vec<usize> = work.iter().map(|w| w.index).collect();
        indices.sort_unstable_by(|a, b| b.cmp(a));
        for i in indices {
            let seq = self.scheduler.remove_running(i);
            if let Some(client) = self.clients.remove(&seq.id) {
                client.fail(error.to_string());
            }
        }
    }

    /// Publishes the gauges and counters.
    fn publish(&self) {
        let s = &self.scheduler;
        let snapshot = EngineMetrics {
            running: s.running.len(),
            waiting: s.waiting.len(),
            kv_blocks_total: self.pool.num_blocks(),
            kv_blocks_used: s.blocks.held(),
            prefix_cache_hit_tokens: s.prefix_hit_tokens,
            preemptions_total: s.preemptions,
            ..self.totals.clone()
        };
        if let Ok(mut m) = self.metrics.lock() {
            *m = snapshot;
        }
    }
}
