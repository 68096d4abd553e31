//! The plain data that crosses the engine's boundary: what a client asks
//! for ([`Request`]), what it hears back ([`Event`]), and the engine's
//! knobs ([`EngineConfig`]) and gauges ([`EngineMetrics`]).

use crate::generate::FinishReason;
use crate::sampler::SamplingParams;

/// Shapes or constrains the next-token distribution of one request
/// (structured output such as JSON schemas). Called on the engine thread.
pub trait LogitsProcessor: Send {
    /// Adjusts the raw logits of the next token, e.g. sets forbidden tokens
    /// to `f32::NEG_INFINITY`. A processor that must end the output allows
    /// only stop tokens.
    fn process(&mut self, logits: &mut [f32]);
    /// Told which token was chosen, so the processor can advance its state.
    fn accept(&mut self, token: u32);
}

/// One generation request.
pub struct Request {
    /// The whole prompt, already formatted and tokenized.
    pub prompt: Vec<u32>,
    /// Sampling rule, penalty and seed.
    pub sampling: SamplingParams,
    /// Upper bound on generated tokens (the stop token not counted).
    pub max_tokens: usize,
    /// Tokens that end generation; not sent as [`Event::Token`].
    pub stop_ids: Vec<u32>,
    /// `Some(k)`: report each generated token's log-probability and the
    /// `k` most likely alternatives (`k` may be 0).
    pub logprobs: Option<usize>,
    /// `Some(k)`: report the log-probability of every prompt token after the
    /// first, and `k` alternatives each, as the first event.
    pub prompt_logprobs: Option<usize>,
    /// Optional constraint on the output.
    pub processor: Option<Box<dyn LogitsProcessor>>,
}

impl Request {
    /// A request with default sampling (greedy) and no extras.
    pub fn new(prompt: Vec<u32>, max_tokens: usize, stop_ids: Vec<u32>) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens,
            stop_ids,
            logprobs: None,
            prompt_logprobs: None,
            processor: None,
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("prompt_tokens", &self.prompt.len())
            .field("sampling", &self.sampling)
            .field("max_tokens", &self.max_tokens)
            .field("stop_ids", &self.stop_ids)
            .field("logprobs", &self.logprobs)
            .field("prompt_logprobs", &self.prompt_logprobs)
            .field("processor", &self.processor.is_some())
            .finish()
    }
}

/// Log-probability of one token and the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's id.
    pub id: u32,
    /// `ln p(token)` under the model's raw distribution.
    pub logprob: f32,
    /// The `k` most likely tokens with their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// How a request ended, with its token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Why generation ended.
    pub finish: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (stop token not counted).
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_prompt_tokens: usize,
}

/// What a request's stream delivers, in order: at most one
/// `PromptLogprobs`, any number of `Token`s, then exactly one `Finished`
/// or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Log-probabilities of prompt tokens 1.. (token 0 has none).
    PromptLogprobs(Vec<TokenLogprob>),
    /// A generated token.
    Token {
        /// Its id.
        id: u32,
        /// Present when the request asked for logprobs.
        logprob: Option<TokenLogprob>,
    },
    /// The request completed.
    Finished(Completion),
    /// The engine failed on this request; the message says why.
    Failed(String),
}

/// Engine limits, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Sequences decoded together at most.
    pub max_num_seqs: usize,
    /// Bytes of KV cache to allocate (all layers, keys and values, f32),
    /// rounded down to whole blocks. Memory is taken from the system as blocks
    /// are first written. One request can use the whole pool, so the pool's
    /// capacity also caps [`crate::EngineHandle::max_context`].
    pub kv_cache_bytes: u64,
    /// Positions per KV block: the unit of allocation and of prefix sharing.
    pub block_size: usize,
    /// Tokens computed per step at most (bounds chunked prefill, and so how
    /// long a long prompt can stall other requests' decoding).
    pub max_batch_tokens: usize,
    /// Reuse KV blocks of identical prompt prefixes (whole blocks).
    pub prefix_caching: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 64,
            kv_cache_bytes: 1 << 30,
            block_size: 16,
            max_batch_tokens: 512,
            prefix_caching: true,
        }
    }
}

/// A snapshot of the engine's gauges and counters (for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Requests being computed.
    pub running: usize,
    /// Requests waiting for room.
    pub waiting: usize,
    /// KV blocks in the pool.
    pub kv_blocks_total: usize,
    /// KV blocks held by requests (or by the prefix cache while referenced).
    pub kv_blocks_used: usize,
    /// Prompt tokens whose KV came from the prefix cache, since start.
    pub prefix_cache_hit_tokens: u64,
    /// Prompt tokens received, since start.
    pub prompt_tokens_total: u64,
    /// Tokens generated, since start.
    pub generated_tokens_total: u64,
    /// Requests preempted (their KV dropped and recomputed later), since start.
    pub preemptions_total: u64,
    /// Tokens guessed by the draft model (speculative decoding), since start.
    pub speculative_drafted_total: u64,
    /// Guessed tokens the target accepted, since start.
    pub speculative_accepted_total: u64,
}
