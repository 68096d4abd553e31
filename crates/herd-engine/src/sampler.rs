//! Turning logits into the next token. The [`Sampling`] enum makes greedy
//! decoding and random sampling distinct choices, so that "temperature 0 with
//! top-p 0.9" is not a state the code has to interpret. Random sampling draws
//! from a ChaCha stream seeded by the caller, whose output is fixed by its
//! specification: the same seed gives the same tokens on every machine and
//! every release.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};
use crate::request::TokenLogprob;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// Always the most likely token (the lowest id among exact ties).
    Greedy,
    /// Draw from the (filtered) distribution.
    Random {
        /// Divides the logits; must be > 0.
        temperature: f32,
        /// Keep only the `k` most likely tokens.
        top_k: Option<usize>,
        /// Keep the smallest set whose probability reaches `p` (0 < p ≤ 1).
        top_p: Option<f32>,
        /// Drop tokens less likely than `min_p` × the most likely one (0 ≤ min_p ≤ 1).
        min_p: Option<f32>,
    },
}

/// Everything a sampler needs: the rule, a penalty for repeats, and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Greedy or random.
    pub sampling: Sampling,
    /// CTRL-style repetition penalty (1 = off): logits of tokens already in
    /// the context are divided by it when positive, multiplied when negative.
    pub repetition_penalty: f32,
    /// Seed of the random stream.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            sampling: Sampling::Greedy,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Checks ranges, naming the offending parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(EngineError::InvalidSampling(what));
        if !positive_finite(self.repetition_penalty) {
            return bad(format!(
                "repetition penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if let Sampling::Random {
            temperature,
            top_k,
            top_p,
            min_p,
        } = &self.sampling
        {
            if !positive_finite(*temperature) {
                return bad(format!(
                    "temperature must be > 0 for sampling, got {temperature}"
                ));
            }
            if *top_k == Some(0) {
                return bad("top-k must be at least 1".into());
            }
            if let Some(p) = top_p {
                if !(*p > 0.0 && *p <= 1.0) {
                    return bad(format!("top-p must be in (0, 1], got {p}"));
                }
            }
            if let Some(p) = min_p {
                if !(*p >= 0.0 && *p <= 1.0) {
                    return bad(format!("min-p must be in [0, 1], got {p}"));
                }
            }
        }
        Ok(())
    }
}

/// `x > 0` and finite; false for NaN.
fn positive_finite(x: f32) -> bool {
    x > 0.0 && x.is_finite()
}

/// A sampler with its own random stream; one per sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// Validates the parameters and seeds the stream.
    pub fn new(params: SamplingParams) -> Result<Sampler> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Sampler { params, rng })
    }

    /// The parameters this sampler was made with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` (one row, vocabulary-sized), given
    /// the tokens of the context so far (for the repetition penalty).
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(EngineError::InvalidSampling("empty logits".into()));
        }
        apply_repetition_penalty(logits, context, self.params.repetition_penalty);
        match self.params.sampling.clone() {
            Sampling::Greedy => Ok(argmax(logits)),
            Sampling::Random {
                temperature,
                top_k,
                top_p,
                min_p,
            } => {
                let candidates = filtered_distribution(logits, temperature, top_k, top_p, min_p);
                let total: f64 = candidates.iter().map(|&(_, p)| p).sum();
                let mut r = self.rng.random::<f64>() * total;
                for &(id, p) in &candidates {
                    if r < p {
                        return Ok(id);
                    }
                    r -= p;
                }
                // Rounding can leave r a hair above the last bucket.
                Ok(candidates
                    .last()
                    .map(|&(id, _)| id)
                    .unwrap_or_else(|| argmax(logits)))
            }
        }
    }
}

impl Sampler {
    /// The distribution [`Sampler::sample`] draws from, as dense
    /// probabilities over the vocabulary: one-hot on the argmax for greedy
    /// decoding. Speculative decoding compares the target's and the draft's
    /// distributions token by token, so both must be explicit.
    pub(crate) fn probabilities(&self, logits: &mut [f32], context: &[u32]) -> Result<Vec<f32>> {
        if logits.is_empty() {
            return Err(EngineError::InvalidSampling("empty logits".into()));
        }
        apply_repetition_penalty(logits, context, self.params.repetition_penalty);
        let mut probs = vec![0f32; logits.len()];
        match &self.params.sampling {
            Sampling::Greedy => probs[argmax(logits) as usize] = 1.0,
            Sampling::Random {
                temperature,
                top_k,
                top_p,
                min_p,
            } => {
                let candidates =
                    filtered_distribution(logits, *temperature, *top_k, *top_p, *min_p);
                let total: f64 = candidates.iter().map(|&(_, p)| p).sum();
                for (id, p) in candidates {
                    probs[id as usize] = (p / total) as f32;
                }
            }
        }
        Ok(probs)
    }

    /// A uniform draw from `[0, 1)` off this sampler's stream.
    pub(crate) fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Draws a token from non-negative `weights` (not necessarily normalised,
    /// not all zero); the last non-zero weight absorbs rounding.
    pub(crate) fn draw(&mut self, weights: &[f32]) -> u32 {
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        let mut r = self.uniform() * total;
        let mut last = argmax(weights);
        for (id, &w) in weights.iter().enumerate() {
            if w <= 0.0 {
                continue;
            }
            if r < w as f64 {
                return id as u32;
            }
            r -= w as f64;
            last = id as u32;
        }
        last
    }
}

/// `ln p(id)` under `softmax(logits)` and the `k` most likely tokens,
/// best first (ties by lower id).
pub fn token_logprob(logits: &[f32], id: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max
        + logits
            .iter()
            .map(|&x| ((x - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let lp = |i: usize| logits[i] - log_sum;
    let mut top: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(logits.len());
    if k > 0 {
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        top.select_nth_unstable_by(k - 1, by_logit);
        top.truncate(k);
        top.sort_by(by_logit);
    } else {
        top.clear();
    }
    TokenLogprob {
        id,
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |_| lp(id as usize)),
        top: top.into_iter().map(|t| (t, lp(t as usize))).collect(),
    }
}

/// Index of the largest value; the first one among ties, like `torch.argmax`.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &t in context {
        let t = t as usize;
        if t < logits.len() && !seen[t] {
            seen[t] = true;
            let l = &mut logits[t];
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Candidates `(id, unnormalised probability)` in descending probability
/// after temperature, top-k, top-p and min-p; never empty.
fn filtered_distribution(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
) -> Vec<(u32, f64)> {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit_desc = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    // Partial selection first: sorting 128k logits per token would dominate decoding.
    if let Some(k) = top_k.filter(|&k| k < order.len()) {
        order.select_nth_unstable_by(k - 1, by_logit_desc);
        order.truncate(k);
    }
    order.sort_unstable_by(by_logit_desc);
    let max = logits[order[0] as usize] as f64;
    let t = temperature as f64;
    let mut candidates: Vec<(u32, f64)> = order
        .iter()
        .map(|&id| (id, ((logits[id as usize] as f64 - max) / t).exp()))
        .collect();
    let total: f64 = candidates.iter().map(|&(_, p)| p).sum();
    if let Some(p) = top_p {
        let mut cumulative = 0.0;
        let mut keep = candidates.len();
        for (i, &(_, q)) in candidates.iter().enumerate() {
            cumulative += q / total;
            if cumulative >= p as f64 {
                keep = i + 1;
                break;
            }
        }
        candidates.truncate(keep);
    }
    if let Some(min_p) = min_p {
        // The first candidate has probability ratio 1 to itself, so one always survives.
        candidates.retain(|&(_, q)| q >= min_p as f64);
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        min_p: Option<f32>,
        seed: u64,
    ) -> Sampler {
        Sampler::new(SamplingParams {
            sampling: Sampling::Random {
                temperature,
                top_k,
                top_p,
                min_p,
            },
            repetition_penalty: 1.0,
            seed,
        })
        .unwrap()
    }

    fn draws(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| s.sample(&mut logits.to_vec(), &[]).unwrap())
            .collect()
    }

    #[test]
    fn greedy_takes_first_maximum() {
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let a = draws(&mut random(1.0, None, None, None, 7), &logits, 64);
        let b = draws(&mut random(1.0, None, None, None, 7), &logits, 64);
        let c = draws(&mut random(1.0, None, None, None, 8), &logits, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn top_k_limits_support() {
        let logits = [5.0, 4.0, 3.0, 2.0, 1.0];
        let got = draws(&mut random(10.0, Some(2), None, None, 1), &logits, 200);
        assert!(got.iter().all(|&t| t < 2));
        assert!(got.contains(&0) && got.contains(&1));
    }

    #[test]
    fn top_p_keeps_smallest_set_reaching_p() {
        // Probabilities ≈ 0.64, 0.24, 0.09, 0.03: p = 0.8 keeps the first two.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let got = draws(&mut random(1.0, None, Some(0.8), None, 3), &logits, 300);
        assert!(got.iter().all(|&t| t < 2));
        assert!(got.contains(&1));
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // Ratios to the top: 1, e^-1 ≈ 0.37, e^-3 ≈ 0.05.
        let logits = [3.0, 2.0, 0.0];
        let got = draws(&mut random(1.0, None, None, Some(0.1), 4), &logits, 300);
        assert!(!got.contains(&2));
        assert!(got.contains(&1));
    }

    #[test]
    fn low_temperature_approaches_greedy_high_spreads() {
        let logits = [1.0, 0.9, 0.8];
        assert!(draws(&mut random(0.01, None, None, None, 5), &logits, 100)
            .iter()
            .all(|&t| t == 0));
        let spread = draws(&mut random(5.0, None, None, None, 5), &logits, 300);
        assert!(spread.contains(&1) && spread.contains(&2));
    }

    #[test]
    fn sampling_frequencies_follow_probabilities() {
        // p = [0.5, 0.25, 0.25]
        let logits = [2f32.ln(), 0.0, 0.0];
        let got = draws(&mut random(1.0, None, None, None, 11), &logits, 4000);
        let share = got.iter().filter(|&&t| t == 0).count() as f64 / 4000.0;
        assert!((share - 0.5).abs() < 0.04, "share of token 0 = {share}");
    }

    #[test]
    fn repetition_penalty_discourages_seen_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        })
        .unwrap();
        // Token 0 (3.0 → 1.5) loses to token 1 (2.0); negative seen logits get more negative.
        let mut logits = [3.0, 2.0, -1.0];
        assert_eq!(s.sample(&mut logits, &[0, 0, 2]).unwrap(), 1);
        assert_eq!(logits, [1.5, 2.0, -2.0]);
    }

    #[test]
    fn invalid_parameters_are_errors() {
        for sampling in [
            Sampling::Random {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                min_p: None,
            },
            Sampling::Random {
                temperature: 1.0,
                top_k: Some(0),
                top_p: None,
                min_p: None,
            },
            Sampling::Random {
                temperature: 1.0,
                top_k: None,
                top_p: Some(1.5),
                min_p: None,
            },
            Sampling::Random {
                temperature: 1.0,
                top_k: None,
                top_p: None,
                min_p: Some(-0.1),
            },
        ] {
            let err = Sampler::new(SamplingParams {
                sampling,
                repetition_penalty: 1.0,
                seed: 0,
            });
            assert!(matches!(err, Err(EngineError::InvalidSampling(_))));
        }
        let err = Sampler::new(SamplingParams {
            repetition_penalty: 0.0,
            ..Default::default()
        });
        assert!(err.is_err());
    }
}
