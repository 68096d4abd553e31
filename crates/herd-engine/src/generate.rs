//! Single-sequence generation: prefill the prompt, then decode one token at a
//! time until a stop token, the token budget, the context end, or the caller
//! says stop. The serving engine (`engine.rs`) batches many sequences with the
//! same sampler and finish rules.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use herd_model::{logits_row, Config, KvCache, Llama, Logits};

use crate::error::{EngineError, Result};
use crate::sampler::{Sampler, SamplingParams};

/// What single-sequence generation needs from a model: the whole model in
/// this process, or rank 0 of a tensor/pipeline-parallel job (which runs
/// each step across all ranks and returns the gathered logits).
pub trait Decoder {
    /// The model's configuration (context length).
    fn config(&self) -> &Config;
    /// Logits of one sequence's new tokens, appending them to `cache`.
    fn forward_one(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        which: Logits,
    ) -> herd_model::Result<Tensor>;
}

impl Decoder for Llama {
    fn config(&self) -> &Config {
        Llama::config(self)
    }

    fn forward_one(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        which: Logits,
    ) -> herd_model::Result<Tensor> {
        Llama::forward_one(self, tokens, cache, which)
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The whole context: earlier turns and the new prompt.
    pub prompt: Vec<u32>,
    /// Upper bound on generated tokens.
    pub max_new_tokens: usize,
    /// Sampling rule, penalty and seed.
    pub sampling: SamplingParams,
    /// Tokens that end generation (not included in the output).
    pub stop_ids: Vec<u32>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced this stop token.
    Stop(u32),
    /// `max_new_tokens` were generated.
    Length,
    /// The context window is full.
    ContextFull,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated tokens, without the stop token.
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Prompt tokens actually computed (those not already in the cache).
    pub prefill_tokens: usize,
    /// From the call to the first generated token.
    pub time_to_first_token: Duration,
    /// From the first generated token to the end.
    pub decode_time: Duration,
}

impl Generation {
    /// Tokens decoded after the first one (a final stop token counts: it
    /// was computed), the work [`Generation::decode_time`] measures.
    pub fn decoded_tokens(&self) -> usize {
        self.tokens.len().saturating_sub(1) + matches!(self.finish, FinishReason::Stop(_)) as usize
    }

    /// Decoding speed after the first token, in tokens per second.
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.decoded_tokens();
        if self.decode_time.is_zero() || n == 0 {
            return 0.0;
        }
        n as f64 / self.decode_time.as_secs_f64()
    }
}

/// Generates from `request.prompt`, reusing whatever prefix of it `cache`
/// already holds (the caller guarantees the cache holds exactly
/// `prompt[..cache.len()]`). `on_token` sees each new token as soon as it is
/// sampled and may stop generation. On return the cache holds the prompt and
/// every generated token except the last (which was never fed back).
pub fn generate(
    model: &dyn Decoder,
    cache: &mut KvCache,
    request: &GenerateRequest,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    let mut sampler = Sampler::new(request.sampling.clone())?;
    let (mut run, mut logits) = Decoding::start(model, cache, request)?;
    if request.max_new_tokens == 0 {
        return Ok(run.finish(FinishReason::Length));
    }
    let finish = loop {
        let mut row = logits_row(&logits, 0)?;
        let token = sampler.sample(&mut row, &run.context)?;
        if let Some(finish) = run.emit(token, &mut on_token) {
            break finish;
        }
        logits = model.forward_one(&[token], cache, Logits::Last)?;
    };
    Ok(run.finish(finish))
}

/// The bookkeeping every single-sequence decoding loop shares (plain and
/// speculative): the context so far, the output, and the finish rules.
pub(crate) struct Decoding<'r> {
    request: &'r GenerateRequest,
    /// Prompt followed by the tokens emitted so far.
    pub(crate) context: Vec<u32>,
    /// Tokens emitted so far.
    pub(crate) tokens: Vec<u32>,
    /// The model's context length.
    limit: usize,
    prefill_tokens: usize,
    start: Instant,
    first_token_at: Option<Instant>,
}

impl<'r> Decoding<'r> {
    /// Checks the cache against the prompt and computes the prompt's part not
    /// yet in the cache; returns the logits of its last position.
    pub(crate) fn start(
        model: &dyn Decoder,
        cache: &mut KvCache,
        request: &'r GenerateRequest,
    ) -> Result<(Decoding<'r>, Tensor)> {
        let start = Instant::now();
        if cache.len() > request.prompt.len() {
            return Err(EngineError::InvalidRequest(format!(
                "cache holds {} tokens but the prompt has only {}",
                cache.len(),
                request.prompt.len()
            )));
        }
        if cache.len() == request.prompt.len() {
            // Nothing new to feed: recompute the last prompt token to get logits.
            cache.truncate(request.prompt.len().saturating_sub(1))?;
        }
        let new = &request.prompt[cache.len()..];
        if new.is_empty() {
            return Err(EngineError::InvalidRequest("empty prompt".into()));
        }
        let logits = model.forward_one(new, cache, Logits::Last)?;
        let run = Decoding {
            request,
            context: request.prompt.clone(),
            tokens: Vec::new(),
            limit: model.config().max_position_embeddings,
            prefill_tokens: new.len(),
            start,
            first_token_at: None,
        };
        Ok((run, logits))
    }

    /// Tokens that may still be emitted before the budget or the context ends.
    pub(crate) fn room(&self) -> usize {
        let budget = self.request.max_new_tokens - self.tokens.len();
        budget.min(self.limit - self.context.len())
    }

    /// Takes one sampled token: `Some` when generation ends with it.
    pub(crate) fn emit(
        &mut self,
        token: u32,
        on_token: &mut impl FnMut(u32) -> ControlFlow<()>,
    ) -> Option<FinishReason> {
        self.first_token_at.get_or_insert_with(Instant::now);
        if self.request.stop_ids.contains(&token) {
            return Some(FinishReason::Stop(token));
        }
        self.tokens.push(token);
        self.context.push(token);
        if on_token(token).is_break() {
            return Some(FinishReason::Cancelled);
        }
        if self.context.len() >= self.limit {
            return Some(FinishReason::ContextFull);
        }
        if self.tokens.len() >= self.request.max_new_tokens {
            return Some(FinishReason::Length);
        }
        None
    }

    /// The result, with its timings.
    pub(crate) fn finish(self, finish: FinishReason) -> Generation {
        let first = self.first_token_at.unwrap_or_else(Instant::now);
        Generation {
            tokens: self.tokens,
            finish,
            prefill_tokens: self.prefill_tokens,
            time_to_first_token: first - self.start,
            decode_time: first.elapsed(),
        }
    }
}
