//! Turning OpenAI's sampling fields into validated engine parameters (the
//! second stage of the two-stage configuration: nothing raw goes further).
//!
//! Supported: `temperature` (0 = greedy, default 1, at most 2), `top_p`,
//! `seed`, `n`, `stop`, `max_tokens`/`max_completion_tokens`, and vLLM's
//! `top_k`, `min_p`, `repetition_penalty`. `frequency_penalty`,
//! `presence_penalty` and `logit_bias` are refused with a 400 unless they
//! are neutral (0 / empty), because the sampler has no such penalty and
//! silently ignoring them would change what the client asked for.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use herd_engine::{Sampling, SamplingParams};

use crate::api::SamplingFields;
use crate::error::{Result, ServerError};

/// Validated generation parameters for one request (all its choices).
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Sampling of choice 0; choice `i` adds `i` to the seed.
    pub sampling: SamplingParams,
    /// The requested budget, if any (checked against the context later).
    pub max_tokens: Option<usize>,
    /// Choices per prompt.
    pub n: usize,
    /// Stop strings (never empty strings).
    pub stop: Vec<String>,
    /// Stream server-sent events.
    pub stream: bool,
    /// Add a usage chunk to the stream.
    pub include_usage: bool,
}

impl GenParams {
    /// Sampling parameters of choice `index`: same rule, its own seed.
    pub fn for_choice(&self, index: usize) -> SamplingParams {
        let mut params = self.sampling.clone();
        params.seed = params.seed.wrapping_add(index as u64);
        params
    }
}

/// Validates `fields`. `min_tokens` is 1 for chat and 0 for legacy
/// completions (where `max_tokens: 0` with `echo` scores a prompt).
pub fn resolve(fields: &SamplingFields, min_tokens: usize, max_n: usize) -> Result<GenParams> {
    for (param, value) in [
        ("frequency_penalty", fields.frequency_penalty),
        ("presence_penalty", fields.presence_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(ServerError::param(
                param,
                format!("{param} is not supported by herd's sampler; use repetition_penalty"),
            ));
        }
    }
    if fields.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(ServerError::param(
            "logit_bias",
            "logit_bias is not supported",
        ));
    }
    let (param, requested) = match (fields.max_completion_tokens, fields.max_tokens) {
        (Some(v), _) => ("max_completion_tokens", Some(v)),
        (None, v) => ("max_tokens", v),
    };
    let max_tokens = match requested {
        Some(v) if v < min_tokens as i64 => {
            return Err(ServerError::param(
                param,
                format!("{param} must be at least {min_tokens}, got {v}"),
            ))
        }
        Some(v) => Some(usize::try_from(v).unwrap_or(usize::MAX)),
        None => None,
    };
    let n = fields.n.unwrap_or(1);
    if n < 1 || n > max_n as i64 {
        return Err(ServerError::param(
            "n",
            format!("n must be between 1 and {max_n}, got {n}"),
        ));
    }
    let stop = fields
        .stop
        .clone()
        .map(|s| s.into_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    Ok(GenParams {
        sampling: sampling(fields)?,
        max_tokens,
        n: n as usize,
        stop,
        stream: fields.stream,
        include_usage: fields
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    })
}

/// The sampling rule, penalty and seed.
fn sampling(fields: &SamplingFields) -> Result<SamplingParams> {
    let temperature = fields.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ServerError::param(
            "temperature",
            format!("temperature must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_k = match fields.top_k {
        None | Some(0) | Some(-1) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ServerError::param(
                "top_k",
                format!("top_k must be positive (or -1 for off), got {k}"),
            ))
        }
    };
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Random {
            temperature,
            top_k,
            top_p: fields.top_p.filter(|&p| p != 1.0),
            min_p: fields.min_p.filter(|&p| p != 0.0),
        }
    };
    let seed = match fields.seed {
        Some(s) => s as u64,
        None => RandomState::new().build_hasher().finish(),
    };
    let params = SamplingParams {
        sampling,
        repetition_penalty: fields.repetition_penalty.unwrap_or(1.0),
        seed,
    };
    params.validate()?;
    Ok(params)
}

/// The token budget of a request whose prompt has `prompt_len` tokens:
/// the requested one if it fits the context, else a context-length error;
/// without a request, `default` capped by the room left.
pub fn budget(
    prompt_len: usize,
    requested: Option<usize>,
    default: Option<usize>,
    max_context: usize,
) -> Result<usize> {
    if prompt_len >= max_context {
        return Err(ServerError::ContextLength(format!(
            "this model's maximum context length is {max_context} tokens, \
             but the prompt has {prompt_len} tokens"
        )));
    }
    let room = max_context - prompt_len;
    match requested {
        Some(n) if n > room => Err(ServerError::ContextLength(format!(
            "this model's maximum context length is {max_context} tokens; you requested \
             {} tokens ({prompt_len} in the prompt, {n} for the completion)",
            prompt_len.saturating_add(n)
        ))),
        Some(n) => Ok(n),
        None => Ok(default.map_or(room, |d| d.min(room))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OneOrMany;

    fn fields(json: &str) -> SamplingFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_sample_at_temperature_one() {
        let p = resolve(&fields("{}"), 1, 8).unwrap();
        assert_eq!(p.n, 1);
        assert!(
            matches!(p.sampling.sampling, Sampling::Random { temperature, .. } if temperature == 1.0)
        );
        assert_eq!(p.max_tokens, None);
    }

    #[test]
    fn seeds_greedy_and_choices() {
        let p = resolve(&fields(r#"{"temperature": 0, "seed": 7, "n": 3, "max_completion_tokens": 5, "max_tokens": 99}"#), 1, 8).unwrap();
        assert_eq!(p.sampling.sampling, Sampling::Greedy);
        assert_eq!(p.for_choice(2).seed, 9);
        assert_eq!(p.max_tokens, Some(5));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, param) in [
            (r#"{"max_tokens": -1}"#, "max_tokens"),
            (r#"{"max_completion_tokens": 0}"#, "max_completion_tokens"),
            (r#"{"n": 0}"#, "n"),
            (r#"{"n": 9}"#, "n"),
            (r#"{"temperature": 3}"#, "temperature"),
            (r#"{"frequency_penalty": 0.5}"#, "frequency_penalty"),
            (r#"{"logit_bias": {"1": 5}}"#, "logit_bias"),
            (r#"{"top_k": -3}"#, "top_k"),
        ] {
            match resolve(&fields(json), 1, 8) {
                Err(ServerError::InvalidParam { param: p, .. }) => assert_eq!(p, param, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(matches!(
            resolve(&fields(r#"{"top_p": 0}"#), 1, 8),
            Err(ServerError::Engine(_))
        ));
    }

    #[test]
    fn stop_strings_and_budget() {
        let mut f = fields(r#"{"stop": ["a", ""]}"#);
        assert_eq!(resolve(&f, 1, 8).unwrap().stop, vec!["a".to_string()]);
        f.stop = Some(OneOrMany::One("END".into()));
        assert_eq!(resolve(&f, 1, 8).unwrap().stop, vec!["END".to_string()]);
        assert_eq!(budget(10, None, None, 100).unwrap(), 90);
        assert_eq!(budget(10, None, Some(16), 100).unwrap(), 16);
        assert_eq!(budget(10, Some(90), None, 100).unwrap(), 90);
        assert!(matches!(
            budget(10, Some(91), None, 100),
            Err(ServerError::ContextLength(_))
        ));
        assert!(matches!(
            budget(100, None, None, 100),
            Err(ServerError::ContextLength(_))
        ));
    }
}
