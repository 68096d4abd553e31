//! A request's client side inside the engine: where its events go and how
//! its next token is chosen. The scheduler never sees any of this; it only
//! knows tokens and blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::error::Result;
use crate::generate::FinishReason;
use crate::request::{Completion, Event, LogitsProcessor, Request, TokenLogprob};
use crate::sampler::{token_logprob, Sampler};

/// Per-request policy and output channel.
pub(crate) struct Client {
    events: UnboundedSender<Event>,
    cancelled: Arc<AtomicBool>,
    sampler: Sampler,
    processor: Option<Box<dyn LogitsProcessor>>,
    max_tokens: usize,
    stop_ids: Vec<u32>,
    logprobs: Option<usize>,
    /// `Some(k)` until the prompt's log-probabilities have been sent.
    prompt_logprobs: Option<usize>,
    /// Prompt log-probabilities gathered so far (for tokens `1..=len`).
    scored: Vec<TokenLogprob>,
    pub prompt_tokens: usize,
    pub generated: usize,
}

/// What the client made of one row of logits.
pub(crate) enum Next {
    /// Generation goes on with this token.
    Token(u32),
    /// Generation is over.
    Finish(FinishReason),
}

impl Client {
    /// The client side of `request`; its prompt goes to the scheduler.
    pub(crate) fn new(
        request: Request,
        sampler: Sampler,
        events: UnboundedSender<Event>,
        cancelled: Arc<AtomicBool>,
    ) -> (Client, Vec<u32>) {
        let client = Client {
            events,
            cancelled,
            sampler,
            processor: request.processor,
            max_tokens: request.max_tokens,
            stop_ids: request.stop_ids,
            logprobs: request.logprobs,
            prompt_logprobs: request.prompt_logprobs,
            scored: Vec::new(),
            prompt_tokens: request.prompt.len(),
            generated: 0,
        };
        (client, request.prompt)
    }

    /// Whether the stream was dropped.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Whether rows of logits for prompt positions `start..` are still wanted.
    pub(crate) fn wants_prompt_rows(&self, start: usize) -> bool {
        self.prompt_logprobs.is_some() && start + 1 < self.prompt_tokens
    }

    /// Whether the prompt's log-probabilities are still to be sent.
    pub(crate) fn prompt_logprobs_pending(&self) -> bool {
        self.prompt_logprobs.is_some()
    }

    /// Scores prompt tokens with `rows[r]`, the logits after position `start + r`.
    /// Rows recomputed after a preemption are skipped.
    pub(crate) fn score_prompt(&mut self, tokens: &[u32], start: usize, rows: &[Vec<f32>]) {
        let Some(k) = self.prompt_logprobs else {
            return;
        };
        for (r, row) in rows.iter().enumerate() {
            let target = start + r + 1;
            if target == self.scored.len() + 1 && target < self.prompt_tokens {
                self.scored.push(token_logprob(row, tokens[target], k));
            }
        }
    }

    /// Sends the prompt's log-probabilities (once the prompt is computed).
    pub(crate) fn send_prompt_logprobs(&mut self) {
        if self.prompt_logprobs.take().is_some() {
            let _ = self
                .events
                .send(Event::PromptLogprobs(std::mem::take(&mut self.scored)));
        }
    }

    /// Chooses the token after `context` from its raw logits and streams it.
    pub(crate) fn next(&mut self, mut row: Vec<f32>, context: &[u32]) -> Result<Next> {
        if self.generated >= self.max_tokens {
            return Ok(Next::Finish(FinishReason::Length));
        }
        let raw = self.logprobs.map(|_| row.clone());
        if let Some(p) = self.processor.as_mut() {
            p.process(&mut row);
        }
        let token = self.sampler.sample(&mut row, context)?;
        if let Some(p) = self.processor.as_mut() {
            p.accept(token);
        }
        Ok(self.take(token, raw.as_deref()))
    }

    /// Streams a chosen token (`raw`: its position's logits, for logprobs).
    pub(crate) fn take(&mut self, token: u32, raw: Option<&[f32]>) -> Next {
        if self.stop_ids.contains(&token) {
            return Next::Finish(FinishReason::Stop(token));
        }
        let logprob = raw.map(|r| token_logprob(r, token, self.logprobs.unwrap_or(0)));
        self.generated += 1;
        if self
            .events
            .send(Event::Token { id: token, logprob })
            .is_err()
        {
            return Next::Finish(FinishReason::Cancelled);
        }
        Next::Token(token)
    }

    /// Whether a draft model may guess this request's tokens: not while a
    /// processor constrains them (its state cannot follow guesses that may be
    /// rejected) or the prompt's log-probabilities are still to come.
    pub(crate) fn can_speculate(&self) -> bool {
        self.processor.is_none() && self.prompt_logprobs.is_none()
    }

    /// Whether rows of raw logits are needed for token logprobs.
    pub(crate) fn wants_logprobs(&self) -> bool {
        self.logprobs.is_some()
    }

    /// Tokens still allowed by the budget.
    pub(crate) fn remaining(&self) -> usize {
        self.max_tokens.saturating_sub(self.generated)
    }

    /// The request's sampler (its rule and random stream), for speculation.
    pub(crate) fn sampler(&mut self) -> &mut Sampler {
        &mut self.sampler
    }

    /// Tokens that end the request.
    pub(crate) fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Whether the budget of generated tokens is spent.
    pub(crate) fn budget_spent(&self) -> bool {
        self.generated >= self.max_tokens
    }

    /// Sends the final event.
    pub(crate) fn finish(self, finish: FinishReason, cached_prompt_tokens: usize) {
        let _ = self.events.send(Event::Finished(Completion {
            finish,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.generated,
            cached_prompt_tokens,
        }));
    }

    /// Sends a failure as the final event.
    pub(crate) fn fail(self, message: String) {
        let _ = self.events.send(Event::Failed(message));
    }
}
