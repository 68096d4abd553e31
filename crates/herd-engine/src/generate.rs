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
    /// Decoding speed after the first token, in tokens per second.
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1)
            + matches!(self.finish, FinishReason::Stop(_)) as usize;
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
    let start = Instant::now();
    let mut sampler = Sampler::new(request.sampling.clone())?;
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
    let prefill_tokens = new.len();
    let mut context = request.prompt.clone();
    let mut logits = model.forward_one(new, cache, Logits::Last)?;
    let mut tokens = Vec::new();
    let mut first_token_at = None;
    let limit = model.config().max_position_embeddings;
    let finish = loop {
        if tokens.len() >= request.max_new_tokens {
            break FinishReason::Length;
        }
        let mut row = logits_row(&logits, 0)?;
        let token = sampler.sample(&mut row, &context)?;
        first_token_at.get_or_insert_with(Instant::now);
        if request.stop_ids.contains(&token) {
            break FinishReason::Stop(token);
        }
        tokens.push(token);
        context.push(token);
        if on_token(token).is_break() {
            break FinishReason::Cancelled;
        }
        if context.len() >= limit {
            break FinishReason::ContextFull;
        }
        logits = model.forward_one(&[token], cache, Logits::Last)?;
    };
    let first = first_token_at.unwrap_or_else(Instant::now);
    Ok(Generation {
        tokens,
        finish,
        prefill_tokens,
        time_to_first_token: first - start,
        decode_time: first.elapsed(),
    })
}
