//! `herd eval --compare url:http://host:port/v1`: a model behind an
//! OpenAI-compatible server scored by the same rules as a local one
//! (herd-shop's `CaseModel`): the gold reply's likelihood from
//! `/v1/completions` `echo` + `logprobs`, the greedy reply from a plain
//! completion of the same prompt ids.

use std::time::Instant;

use anyhow::Context;
use herd_remote::{RemoteConfig, RemoteTeacher, TokenMap};
use herd_shop::eval::{evaluate_with, Answer, CaseModel, CaseResult, EvalOptions, EvalReport};
use herd_shop::ShopError;
use herd_tokenizer::Tokenizer;

/// A served model; its tokenizer is checked against the local one.
struct Served {
    teacher: RemoteTeacher,
    map: TokenMap,
}

impl CaseModel for Served {
    fn answer(
        &self,
        prompt: &[u32],
        gold: &[u32],
        max_new_tokens: usize,
        _stop_ids: &[u32],
    ) -> Result<Answer, ShopError> {
        let remote = |e: herd_remote::RemoteError| ShopError::Eval(e.to_string());
        let ids: Vec<u32> = prompt.iter().chain(gold).copied().collect();
        let scored = self.teacher.score(&ids, 0, &self.map).map_err(remote)?;
        // Position j predicts ids[j + 1]: the gold reply starts at prompt.len() − 1.
        let first = prompt.len().saturating_sub(1);
        let nll: f64 = scored.positions[first..]
            .iter()
            .map(|p| -(p.logprob as f64))
            .sum();
        if !nll.is_finite() {
            return Err(ShopError::Eval(
                "the server gave no log-probability for a gold token".into(),
            ));
        }
        let start = Instant::now();
        let (reply, tokens) = self
            .teacher
            .complete(prompt, max_new_tokens)
            .map_err(remote)?;
        Ok(Answer {
            nll,
            reply,
            decode_tokens: tokens.saturating_sub(1),
            decode_seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Scores the model at `url` (the only one it lists) on `data`, encoding
/// the cases with `tokenizer`, which the server must share.
pub fn score(
    url: &str,
    api_key_env: Option<&str>,
    tokenizer: &Tokenizer,
    data: &std::path::Path,
    options: &EvalOptions,
    on_case: impl FnMut(&CaseResult),
) -> anyhow::Result<EvalReport> {
    let api_key = crate::remote_teacher::api_key("--api-key-env", api_key_env)?;
    let teacher = RemoteTeacher::connect(&RemoteConfig {
        api_key,
        ..RemoteConfig::new(url)
    })
    .with_context(|| format!("connecting to {url}"))?;
    let map = TokenMap::new(tokenizer)?;
    teacher.verify_tokenizer(tokenizer, &map)?;
    let served = Served { teacher, map };
    Ok(evaluate_with(&served, tokenizer, data, options, on_case)?)
}
