//! A teacher behind an OpenAI-compatible server as a [`TopKSource`]: each
//! sequence is scored with `/v1/completions` `echo` + `logprobs`
//! (herd-remote's [`RemoteTeacher::score`]), several at once, and its
//! top-k is stored in the same cache a local teacher fills.
//!
//! **What a server can and cannot give.** It returns at most its
//! `top_logprobs` limit per token (often 20), so k is capped there and the
//! cache header says so ([`crate::KLimit::Teacher`]). It returns
//! log-probabilities at temperature 1 only: the rest of the distribution is
//! unknown, so another temperature cannot be derived and is refused.
//! Alternatives whose text names several local tokens (lone UTF-8 bytes)
//! cannot be placed; their mass stays in the tail, and the row is padded to
//! k with unused ids at the cache's floor log-probability (−32, e⁻³² ≈ 1e−14),
//! which changes no loss measurably.
//!
//! **Token ids or text.** Sequences are sent as token ids, so positions
//! line up with the local tokenization by construction. A server that takes
//! text only (llama-cpp-python's) gets the sequence decoded, adds its own
//! BOS and leaves it out of the echo, so the first position (predicting the
//! token after BOS, never a reply token in chat data) comes back empty and
//! is stored as all tail; every echoed token is checked against the local
//! one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use herd_remote::{RemoteTeacher, TokenMap, Traffic, TOKENIZER_PROBE};
use herd_tokenizer::Tokenizer;

use crate::error::{DistillError, Result};
use crate::fused::TopK;
use crate::teacher::{SourceInfo, TopKSource};

/// The log-probability of padding entries: the cache's floor.
const PAD_LOGPROB: f32 = -32.0;

/// A remote teacher, checked and with its `top_logprobs` limit known.
pub struct RemoteSource<'t> {
    teacher: RemoteTeacher,
    tokenizer: &'t Tokenizer,
    map: TokenMap,
    limit: usize,
    in_flight: usize,
    /// The server takes text prompts only: sequences are sent decoded.
    text_prompts: bool,
}

impl<'t> RemoteSource<'t> {
    /// Verifies that the teacher tokenizes as `tokenizer` does (refusing it
    /// otherwise) and finds how many alternatives per token it grants, up
    /// to `wanted`. `in_flight` sequences are scored at once.
    pub fn new(
        teacher: RemoteTeacher,
        tokenizer: &'t Tokenizer,
        wanted: usize,
        in_flight: usize,
    ) -> Result<RemoteSource<'t>> {
        let map = TokenMap::new(tokenizer)?;
        teacher.verify_tokenizer(tokenizer, &map)?;
        let mut probe: Vec<u32> = tokenizer.bos_id().into_iter().collect();
        probe.extend(tokenizer.encode(TOKENIZER_PROBE)?);
        let text_prompts = !teacher.accepts_token_prompts(&probe)?;
        let mut source = RemoteSource {
            teacher,
            tokenizer,
            map,
            limit: wanted.max(1),
            in_flight: in_flight.max(1),
            text_prompts,
        };
        source.limit = source.probe_limit(&probe)?;
        Ok(source)
    }

    /// The server's `top_logprobs` limit, up to the k asked for.
    fn probe_limit(&self, probe: &[u32]) -> Result<usize> {
        if !self.text_prompts {
            return Ok(self.teacher.max_logprobs(probe, self.limit, &self.map)?);
        }
        // Text-only servers (llama.cpp's) have no limit to find: check that
        // the k asked for comes back.
        let granted = self.scored(probe, self.limit)?.k_granted;
        Ok(granted.clamp(1, self.limit))
    }

    /// `ids` scored as the server takes prompts.
    fn scored(&self, ids: &[u32], k: usize) -> Result<herd_remote::Scored> {
        if !self.text_prompts {
            return Ok(self.teacher.score(ids, k, &self.map)?);
        }
        let body = match (ids.first(), self.tokenizer.bos_id()) {
            (Some(&first), Some(bos)) if first == bos => &ids[1..],
            _ => ids,
        };
        let text = self.tokenizer.decode(body, false)?;
        Ok(self.teacher.score_text(&text, ids, k, &self.map)?)
    }

    /// The most alternatives per token the server grants (at most the k asked for).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests and bytes so far.
    pub fn traffic(&self) -> Traffic {
        self.teacher.traffic()
    }

    /// One sequence's rows, padded to exactly `k` entries per position.
    fn score(&self, ids: &[u32], k: usize) -> Result<TopK> {
        let mut rows = TopK {
            k,
            ..TopK::default()
        };
        if ids.len() < 2 {
            return Ok(rows);
        }
        let scored = self.scored(ids, k)?;
        let vocab = self.tokenizer.vocab_size() as u32;
        for position in &scored.positions {
            // Some servers add the sequence's own token to its top k.
            let mut top = position.top.clone();
            top.truncate(k);
            let mass: f32 = top.iter().map(|t| t.1.exp()).sum();
            let missing = k.saturating_sub(top.len());
            let pads: Vec<u32> = (0..vocab)
                .filter(|id| !top.iter().any(|t| t.0 == *id))
                .take(missing)
                .collect();
            if pads.len() < missing {
                return Err(DistillError::Teacher(format!(
                    "k = {k} exceeds the vocabulary"
                )));
            }
            top.extend(pads.into_iter().map(|id| (id, PAD_LOGPROB)));
            rows.ids.extend(top.iter().map(|t| t.0));
            rows.logprobs.extend(top.iter().map(|t| t.1));
            rows.tail.push((1.0 - mass).max(0.0));
        }
        Ok(rows)
    }
}

impl TopKSource for RemoteSource<'_> {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            identity: format!("remote:{}", self.teacher.model()),
            source: format!(
                "remote {} {}",
                self.teacher.base_url(),
                self.teacher.model()
            ),
            max_k: Some(self.limit),
            vocab: self.tokenizer.vocab_size(),
        }
    }

    fn top_k(&self, sequences: &[&[u32]], k: usize, temperature: f64) -> Result<Vec<TopK>> {
        let slots = Mutex::new(vec![None; sequences.len()]);
        self.top_k_each(sequences, k, temperature, &|i, rows| {
            slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(rows);
            Ok(())
        })?;
        let slots = slots.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(slots.into_iter().flatten().collect())
    }

    /// `in_flight` workers take the next unscored sequence until none is
    /// left or one fails; the first failure is returned, after every
    /// answer already received has gone to `done`.
    fn top_k_each(
        &self,
        sequences: &[&[u32]],
        k: usize,
        temperature: f64,
        done: &(dyn Fn(usize, TopK) -> Result<()> + Sync),
    ) -> Result<()> {
        if temperature != 1.0 {
            return Err(DistillError::InvalidOption(format!(
                "a remote teacher returns log-probabilities at temperature 1 only, not \
                 {temperature}: cache at --temperature 1"
            )));
        }
        if k > self.limit {
            return Err(DistillError::InvalidOption(format!(
                "k = {k} is above the server's top_logprobs limit of {}",
                self.limit
            )));
        }
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<DistillError>> = Mutex::new(None);
        let failed = || failure.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        std::thread::scope(|scope| {
            for _ in 0..self.in_flight.min(sequences.len()) {
                scope.spawn(|| {
                    while !failed() {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(ids) = sequences.get(i) else { return };
                        if let Err(e) = self.score(ids, k).and_then(|rows| done(i, rows)) {
                            let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
                            f.get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
