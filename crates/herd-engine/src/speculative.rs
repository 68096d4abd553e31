//! Speculative decoding (Leviathan et al. 2023, "Fast Inference from
//! Transformers via Speculative Decoding"): a small draft model guesses the
//! next γ tokens one at a time, and the target model scores all of them in a
//! single forward pass. On a CPU, decoding one token reads every weight of the
//! target once; scoring γ + 1 tokens reads them once too, so every accepted
//! guess is a target token almost for free.
//!
//! ```text
//! context … t          draft:  d1 d2 d3 d4            (γ = 4, cheap, one by one)
//! target over [t d1 d2 d3 d4]  → rows p0 p1 p2 p3 p4  (one pass)
//! i = 1..γ: accept dᵢ with probability min(1, pᵢ₋₁(dᵢ) / qᵢ₋₁(dᵢ));
//!           on the first rejection draw from norm(max(0, pᵢ₋₁ − qᵢ₋₁)) and stop;
//! all accepted: draw a bonus token from p4
//! ```
//!
//! The tokens that come out are distributed exactly as the target's own
//! samples (the theorem of the paper), whatever the draft. Under greedy
//! decoding both distributions are one-hot, so a guess is accepted exactly
//! when it is the target's argmax and the output is token for token the
//! target's plain greedy output. The positions of rejected guesses are cut
//! from both KV caches ([`KvCache::truncate`]) before the next round.
//!
//! The draft must share the target's vocabulary (same ids for the same
//! tokens); [`Speculator::new`] refuses a draft whose vocabulary size differs.

use std::ops::ControlFlow;
use std::sync::Arc;

use herd_model::{logits_row, KvCache, Llama, Logits};

use crate::error::{EngineError, Result};
use crate::generate::{Decoding, FinishReason, GenerateRequest, Generation};
use crate::sampler::{Sampler, SamplingParams};

/// Counters of speculative rounds, to judge a draft by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeculationStats {
    /// Target forward passes over drafted tokens (verification rounds).
    pub rounds: u64,
    /// Tokens the draft proposed.
    pub drafted: u64,
    /// Drafted tokens the target accepted.
    pub accepted: u64,
}

impl SpeculationStats {
    /// Share of drafted tokens accepted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    /// Tokens gained per target pass: accepted guesses plus the one token
    /// every round yields (1.0 means no gain).
    pub fn tokens_per_round(&self) -> f64 {
        if self.rounds == 0 {
            0.0
        } else {
            (self.accepted + self.rounds) as f64 / self.rounds as f64
        }
    }

    pub(crate) fn add(&mut self, drafted: usize, accepted: usize) {
        self.rounds += 1;
        self.drafted += drafted as u64;
        self.accepted += accepted as u64;
    }
}

/// One drafted token and the draft's distribution it was drawn from.
#[derive(Debug, Clone)]
pub(crate) struct Proposal {
    pub(crate) token: u32,
    /// Dense probabilities over the vocabulary.
    pub(crate) probs: Vec<f32>,
}

/// The draft model's state for one sequence: its KV cache and the tokens
/// whose keys and values the cache holds.
#[derive(Debug, Clone)]
pub(crate) struct Drafter {
    cache: KvCache,
    cached: Vec<u32>,
}

impl Drafter {
    pub(crate) fn new(draft: &Llama) -> Drafter {
        Drafter {
            cache: draft.new_cache(),
            cached: Vec::new(),
        }
    }

    /// Proposes up to `n` tokens after `context`, drawn with `sampler` (the
    /// request's sampling rule on the draft's logits). Stops early after a
    /// stop token or at the draft's context end. The cache keeps whatever
    /// prefix of `context` it already holds and computes only the rest.
    pub(crate) fn propose(
        &mut self,
        draft: &Llama,
        context: &[u32],
        n: usize,
        sampler: &mut Sampler,
        stop_ids: &[u32],
    ) -> Result<Vec<Proposal>> {
        let limit = draft.config().max_position_embeddings;
        // The draft feeds the context and its own guesses but the last one.
        let n = n.min((limit + 1).saturating_sub(context.len()));
        if n == 0 {
            return Ok(Vec::new());
        }
        let shared = self
            .cached
            .iter()
            .zip(context)
            .take_while(|(a, b)| a == b)
            .count()
            .min(context.len() - 1);
        self.cache.truncate(shared)?;
        self.cached.truncate(shared);
        let mut logits = draft.forward_one(&context[shared..], &mut self.cache, Logits::Last)?;
        self.cached.extend_from_slice(&context[shared..]);
        let mut ctx = context.to_vec();
        let mut proposals = Vec::with_capacity(n);
        loop {
            let mut row = logits_row(&logits, 0)?;
            let probs = sampler.probabilities(&mut row, &ctx)?;
            let token = sampler.draw(&probs);
            proposals.push(Proposal { token, probs });
            ctx.push(token);
            if proposals.len() == n || stop_ids.contains(&token) {
                return Ok(proposals);
            }
            logits = draft.forward_one(&[token], &mut self.cache, Logits::Last)?;
            self.cached.push(token);
        }
    }
}

/// Leviathan et al.'s acceptance rule. `rows[i]` holds the target's logits
/// after `context` + the first `i` proposals (`proposals.len() + 1` rows).
/// Returns the emitted tokens: the accepted proposals, then one token drawn
/// by the target (the correction at the first rejection, or the bonus).
pub(crate) fn verify(
    sampler: &mut Sampler,
    context: &[u32],
    proposals: &[Proposal],
    rows: &mut [Vec<f32>],
) -> Result<Vec<u32>> {
    let mut ctx = context.to_vec();
    let mut out = Vec::with_capacity(proposals.len() + 1);
    for (proposal, row) in proposals.iter().zip(rows.iter_mut()) {
        let p = sampler.probabilities(row, &ctx)?;
        let x = proposal.token as usize;
        let (px, qx) = (p[x] as f64, proposal.probs[x] as f64);
        if sampler.uniform() * qx < px {
            out.push(proposal.token);
            ctx.push(proposal.token);
            continue;
        }
        // Rejected: the residual max(0, p − q) is what the draft under-proposes.
        let residual: Vec<f32> = p
            .iter()
            .zip(&proposal.probs)
            .map(|(&p, &q)| (p - q).max(0.0))
            .collect();
        let weights = if residual.iter().any(|&r| r > 0.0) {
            &residual
        } else {
            &p
        };
        out.push(sampler.draw(weights));
        return Ok(out);
    }
    let row = rows.get_mut(proposals.len()).ok_or_else(|| {
        EngineError::InvalidRequest("verification has no row after the last guess".into())
    })?;
    let p = sampler.probabilities(row, &ctx)?;
    out.push(sampler.draw(&p));
    Ok(out)
}

/// The sampler that draws the draft's guesses: the request's rule, on a
/// stream of its own so the target's stream is untouched by drafting.
pub(crate) fn draft_sampler(params: &SamplingParams) -> Result<Sampler> {
    let mut params = params.clone();
    params.seed ^= 0x9e37_79b9_7f4a_7c15;
    Sampler::new(params)
}

/// Refuses a draft that cannot speculate for `target`.
pub(crate) fn check_draft(target: &Llama, draft: &Llama, draft_tokens: usize) -> Result<()> {
    let (t, d) = (target.config().vocab_size, draft.config().vocab_size);
    if t != d {
        return Err(EngineError::InvalidRequest(format!(
            "the draft model's vocabulary has {d} tokens but the target's has {t}: \
             speculative decoding needs a draft with the target's tokenizer \
             (e.g. a model distilled from it or trained with its tokenizer)"
        )));
    }
    if draft_tokens == 0 {
        return Err(EngineError::InvalidRequest(
            "the number of draft tokens per round must be at least 1".into(),
        ));
    }
    Ok(())
}

/// A draft model attached to single-sequence generation, with its KV state
/// (kept across calls, like the target's, so a chat reuses its prefix).
#[derive(Debug, Clone)]
pub struct Speculator {
    draft: Arc<Llama>,
    draft_tokens: usize,
    drafter: Drafter,
    stats: SpeculationStats,
}

impl Speculator {
    /// Pairs `draft` with `target`, guessing `draft_tokens` (γ) tokens per
    /// round. Fails if the vocabularies differ or `draft_tokens` is 0.
    pub fn new(target: &Llama, draft: Arc<Llama>, draft_tokens: usize) -> Result<Speculator> {
        check_draft(target, &draft, draft_tokens)?;
        Ok(Speculator {
            drafter: Drafter::new(&draft),
            draft,
            draft_tokens,
            stats: SpeculationStats::default(),
        })
    }

    /// Counters since this speculator was made.
    pub fn stats(&self) -> SpeculationStats {
        self.stats
    }
}

/// A draft model for the serving engine ([`crate::EngineHandle::start_speculative`]).
#[derive(Debug, Clone)]
pub struct DraftConfig {
    /// The draft; it must share the target's vocabulary.
    pub model: Arc<Llama>,
    /// Tokens guessed per round (γ).
    pub draft_tokens: usize,
}

/// The engine's draft state. The engine speculates only while a single
/// sequence runs (with several, batching already shares each pass of the
/// weights among them), so it keeps the drafter of that one sequence.
pub(crate) struct EngineDraft {
    config: DraftConfig,
    /// Sequence id, its drafter, and the sampler of its guesses.
    current: Option<(u64, Drafter, Sampler)>,
}

impl EngineDraft {
    pub(crate) fn new(target: &Llama, config: DraftConfig) -> Result<EngineDraft> {
        check_draft(target, &config.model, config.draft_tokens)?;
        Ok(EngineDraft {
            config,
            current: None,
        })
    }

    /// Tokens guessed per round.
    pub(crate) fn draft_tokens(&self) -> usize {
        self.config.draft_tokens
    }

    /// Up to `n` guesses after `tokens` for sequence `id`, sampled by the
    /// rule in `params` (a new sequence gets a fresh drafter).
    pub(crate) fn propose(
        &mut self,
        id: u64,
        params: &SamplingParams,
        tokens: &[u32],
        n: usize,
        stop_ids: &[u32],
    ) -> Result<Vec<Proposal>> {
        if self.current.as_ref().is_none_or(|(cur, _, _)| *cur != id) {
            let drafter = Drafter::new(&self.config.model);
            self.current = Some((id, drafter, draft_sampler(params)?));
        }
        let Some((_, drafter, sampler)) = self.current.as_mut() else {
            return Ok(Vec::new());
        };
        drafter.propose(&self.config.model, tokens, n, sampler, stop_ids)
    }
}

/// [`crate::generate`] with a draft model: the same tokens under greedy
/// decoding, the same distribution under sampling, fewer target passes.
/// The cache rules are those of [`crate::generate`], except that on return
/// the cache may also hold the last generated token.
pub fn generate_speculative(
    model: &Llama,
    cache: &mut KvCache,
    speculator: &mut Speculator,
    request: &GenerateRequest,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    let mut sampler = Sampler::new(request.sampling.clone())?;
    let mut guesser = draft_sampler(&request.sampling)?;
    let (mut run, logits) = Decoding::start(model, cache, request)?;
    if request.max_new_tokens == 0 {
        return Ok(run.finish(FinishReason::Length));
    }
    let token = sampler.sample(&mut logits_row(&logits, 0)?, &run.context)?;
    if let Some(finish) = run.emit(token, &mut on_token) {
        return Ok(run.finish(finish));
    }
    let finish = loop {
        // The last emitted token is not in the cache yet; it leads the batch.
        let start = cache.len();
        let n = speculator.draft_tokens.min(run.room() - 1);
        let proposals = speculator.drafter.propose(
            &speculator.draft,
            &run.context,
            n,
            &mut guesser,
            &request.stop_ids,
        )?;
        let mut batch = vec![run.context[start]];
        batch.extend(proposals.iter().map(|p| p.token));
        let logits = model.forward_one(&batch, cache, Logits::All)?;
        let mut rows = (0..batch.len())
            .map(|r| logits_row(&logits, r))
            .collect::<herd_model::Result<Vec<_>>>()?;
        let emitted = verify(&mut sampler, &run.context, &proposals, &mut rows)?;
        let accepted = emitted.len() - 1;
        speculator.stats.add(proposals.len(), accepted);
        let mut finish = None;
        for &token in &emitted {
            finish = run.emit(token, &mut on_token);
            if finish.is_some() {
                break;
            }
        }
        // Keep the leading token and the accepted guesses; drop the rejected.
        cache.truncate(run.context.len().min(start + 1 + accepted))?;
        if let Some(finish) = finish {
            break finish;
        }
    };
    Ok(run.finish(finish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Sampling;

    fn sampler(seed: u64) -> Sampler {
        Sampler::new(SamplingParams {
            sampling: Sampling::Random {
                temperature: 1.0,
                top_k: None,
                top_p: None,
                min_p: None,
            },
            repetition_penalty: 1.0,
            seed,
        })
        .unwrap()
    }

    fn logits(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    /// A draft far from the target still yields the target's distribution:
    /// the first emitted token's frequencies match p, not q.
    #[test]
    fn acceptance_rule_gives_the_target_distribution() {
        let p = [0.5f32, 0.3, 0.15, 0.05];
        let q = [0.1f32, 0.2, 0.3, 0.4];
        let mut target = sampler(1);
        let mut draft = sampler(2);
        let trials = 20_000;
        let mut counts = [0usize; 4];
        for _ in 0..trials {
            let token = draft.draw(&q);
            let proposals = [Proposal {
                token,
                probs: q.to_vec(),
            }];
            let mut rows = vec![logits(&p), logits(&p)];
            let out = verify(&mut target, &[], &proposals, &mut rows).unwrap();
            counts[out[0] as usize] += 1;
        }
        // Chi-square with 3 degrees of freedom: 16.3 is the 0.1% critical value.
        let chi2: f64 = counts
            .iter()
            .zip(p)
            .map(|(&c, p)| {
                let e = p as f64 * trials as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 16.3, "chi2 = {chi2}, counts {counts:?}");
    }

    #[test]
    fn greedy_accepts_exactly_the_argmax() {
        let mut greedy = Sampler::new(SamplingParams::default()).unwrap();
        let one_hot = |i: usize| {
            let mut v = vec![0f32; 3];
            v[i] = 1.0;
            v
        };
        let proposals = [
            Proposal {
                token: 2,
                probs: one_hot(2),
            },
            Proposal {
                token: 0,
                probs: one_hot(0),
            },
        ];
        let mut rows = vec![
            vec![0.0, 1.0, 5.0],
            vec![0.0, 3.0, 1.0],
            vec![9.0, 0.0, 0.0],
        ];
        // The first guess is the argmax, the second is not: correction 1.
        let out = verify(&mut greedy, &[], &proposals, &mut rows).unwrap();
        assert_eq!(out, vec![2, 1]);
    }
}
