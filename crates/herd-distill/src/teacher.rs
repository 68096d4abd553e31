//! Teachers: the producer trait of the cache ([`TopKSource`]), the local
//! teacher (herd-model's inference pass, batched), identities of models and
//! tokenizers, and the vocabulary check between teacher and student.
//!
//! **Why a trait for the producer.** A cache only needs, per token, the k
//! most likely next tokens and the mass of the rest. A local model gives
//! that exactly; an OpenAI-compatible server gives it through `logprobs`
//! with k capped by its limit. Both implement [`TopKSource`], so
//! `herd teacher-cache` writes the same file from either.

use std::path::Path;
use std::sync::Arc;

use herd_model::{Llama, Logits, SeqInput};
use herd_tokenizer::Tokenizer;
use herd_train::record::Example;
use herd_train::state::fnv1a;
use rayon::prelude::*;

use crate::error::{DistillError, Result};
use crate::fused::{counted_positions, TeacherRows, TeacherSide, TopK};
use crate::loss::log_softmax;

/// What a cache header records about its producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Hash of the teacher's weights and configuration.
    pub identity: String,
    /// `local` or `remote <url> <model>`.
    pub source: String,
    /// The largest k it can return (a server's `top_logprobs` limit).
    pub max_k: Option<usize>,
    /// Rows of its output distribution.
    pub vocab: usize,
}

/// Anything that can score token sequences with a teacher's top-k.
pub trait TopKSource: Send + Sync {
    /// Identity, kind and limits, for the cache header.
    fn info(&self) -> SourceInfo;

    /// For each sequence of n ids, the top-k of the n − 1 distributions
    /// predicting `ids[1..]`, at `temperature`.
    fn top_k(&self, sequences: &[&[u32]], k: usize, temperature: f64) -> Result<Vec<TopK>>;
}

/// A teacher run in this process.
pub struct LocalTeacher {
    model: Arc<Llama>,
    identity: String,
}

impl LocalTeacher {
    /// Wraps a loaded model; `identity` is [`model_identity`] of its files.
    pub fn new(model: Arc<Llama>, identity: String) -> LocalTeacher {
        LocalTeacher { model, identity }
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Logits `(n − 1, vocab)` predicting `ids[1..]` for each sequence,
    /// the sequences run as one packed batch.
    pub fn logits(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let mut caches: Vec<_> = sequences.iter().map(|_| self.model.new_cache()).collect();
        let mut batch: Vec<SeqInput<'_>> = sequences
            .iter()
            .zip(caches.iter_mut())
            .filter(|(s, _)| s.len() >= 2)
            .map(|(s, cache)| SeqInput {
                tokens: &s[..s.len() - 1],
                cache,
            })
            .collect();
        let mut out = self.model.forward(&mut batch, Logits::All)?.into_iter();
        sequences
            .iter()
            .map(|s| match s.len() >= 2 {
                true => {
                    let t = out.next().ok_or_else(|| {
                        DistillError::Teacher("fewer outputs than sequences".into())
                    })?;
                    Ok(t.to_dtype(candle_core::DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?)
                }
                false => Ok(Vec::new()),
            })
            .collect()
    }
}

/// Sequences per teacher forward pass while caching.
const CACHE_BATCH: usize = 8;

impl TopKSource for LocalTeacher {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            identity: self.identity.clone(),
            source: "local".into(),
            max_k: None,
            vocab: self.model.config().vocab_size,
        }
    }

    fn top_k(&self, sequences: &[&[u32]], k: usize, temperature: f64) -> Result<Vec<TopK>> {
        let vocab = self.model.config().vocab_size;
        let mut out = Vec::with_capacity(sequences.len());
        for batch in sequences.chunks(CACHE_BATCH) {
            for logits in self.logits(batch)? {
                out.push(top_k_rows(&logits, vocab, k, temperature));
            }
        }
        Ok(out)
    }
}

impl TeacherSide for LocalTeacher {
    fn rows(&self, example: &Example) -> Result<TeacherRows> {
        let vocab = self.model.config().vocab_size;
        let logits = self.logits(&[&example.ids])?.remove(0);
        let mut data = Vec::new();
        for i in counted_positions(example) {
            data.extend_from_slice(&logits[i * vocab..(i + 1) * vocab]);
        }
        Ok(TeacherRows::Logits { data, vocab })
    }
}

/// Top-k of every row of `logits: (n, vocab)` at `temperature`.
pub fn top_k_rows(logits: &[f32], vocab: usize, k: usize, temperature: f64) -> TopK {
    let k = k.min(vocab);
    let rows: Vec<(Vec<u32>, Vec<f32>, f32)> = logits
        .par_chunks(vocab)
        .map(|row| {
            let logp = log_softmax(row, 1.0 / temperature);
            let mut order: Vec<u32> = (0..vocab as u32).collect();
            let by_prob = |a: &u32, b: &u32| logp[*b as usize].total_cmp(&logp[*a as usize]);
            if k < vocab {
                order.select_nth_unstable_by(k, by_prob);
            }
            order.truncate(k);
            order.sort_by(by_prob);
            let mut in_top = vec![false; vocab];
            order.iter().for_each(|&i| in_top[i as usize] = true);
            let tail: f64 = logp
                .iter()
                .zip(&in_top)
                .filter(|(_, &t)| !t)
                .map(|(l, _)| l.exp())
                .sum();
            let lps = order.iter().map(|&i| logp[i as usize] as f32).collect();
            (order, lps, tail as f32)
        })
        .collect();
    let mut top = TopK {
        k,
        ..TopK::default()
    };
    for (ids, lps, tail) in rows {
        top.ids.extend(ids);
        top.logprobs.extend(lps);
        top.tail.push(tail);
    }
    top
}

/// FNV-1a of a model's configuration and weight bytes: two checkpoints get
/// the same identity exactly when they would compute the same function.
pub fn model_identity(config_json: &[u8], weights: &[&[u8]]) -> String {
    fnv1a(std::iter::once(config_json).chain(weights.iter().copied()))
}

/// [`model_identity`] of a Hugging Face directory (config.json and every
/// `*.safetensors` file, in name order).
pub fn dir_identity(dir: &Path) -> Result<String> {
    let config_path = dir.join("config.json");
    let config = std::fs::read(&config_path).map_err(DistillError::io(&config_path))?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(DistillError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let maps = files
        .iter()
        .map(|p| {
            let file = std::fs::File::open(p).map_err(DistillError::io(p))?;
            // SAFETY: read-only map of a weight file nobody writes while we hash it.
            unsafe { memmap2::Mmap::map(&file) }.map_err(DistillError::io(p))
        })
        .collect::<Result<Vec<_>>>()?;
    let slices: Vec<&[u8]> = maps.iter().map(|m| &m[..]).collect();
    Ok(model_identity(&config, &slices))
}

/// Every token's text by id (special tokens included), from the
/// tokenizer's own `tokenizer.json` rendering.
pub fn vocabulary(tokenizer: &Tokenizer) -> Result<Vec<String>> {
    let json = tokenizer.to_tokenizer_json()?;
    let bad = |m: &str| DistillError::InvalidOption(format!("tokenizer.json: {m}"));
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| bad(&e.to_string()))?;
    let mut tokens = vec![String::new(); tokenizer.vocab_size()];
    let vocab = value["model"]["vocab"]
        .as_object()
        .ok_or_else(|| bad("no model.vocab"))?;
    let added = value["added_tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pairs = vocab
        .iter()
        .map(|(t, id)| (t.clone(), id.as_u64()))
        .chain(added.iter().map(|a| {
            let text = a["content"].as_str().unwrap_or_default().to_string();
            (text, a["id"].as_u64())
        }));
    for (text, id) in pairs {
        if let Some(slot) = id.and_then(|i| tokens.get_mut(i as usize)) {
            *slot = text;
        }
    }
    Ok(tokens)
}

/// A stable hash of a tokenizer's vocabulary.
pub fn tokenizer_identity(tokenizer: &Tokenizer) -> Result<String> {
    let tokens = vocabulary(tokenizer)?;
    Ok(fnv1a(
        tokens.iter().flat_map(|t| [t.as_bytes(), &b"\0"[..]]),
    ))
}

/// Checks that teacher and student tokenize identically and returns the
/// number of vocabulary entries the losses run over. Embedding tables may
/// be longer than the tokenizer (padding rows, e.g. to a multiple of 64);
/// such rows are no token, so the losses cover only the shared ones.
pub fn check_vocabularies(
    teacher: (&Tokenizer, usize),
    student: (&Tokenizer, usize),
) -> Result<usize> {
    let (t, s) = (vocabulary(teacher.0)?, vocabulary(student.0)?);
    let fix = "give the student the teacher's tokenizer (copy tokenizer.json and \
               vocab_size from the teacher into the student's directory or --student-config)";
    if t.len() != s.len() {
        return Err(DistillError::VocabularyMismatch(format!(
            "the teacher's tokenizer has {} tokens, the student's {}; {fix}",
            t.len(),
            s.len()
        )));
    }
    if let Some(id) = (0..t.len()).find(|&i| t[i] != s[i]) {
        return Err(DistillError::VocabularyMismatch(format!(
            "token {id} is {:?} for the teacher but {:?} for the student; {fix}",
            t[id], s[id]
        )));
    }
    let rows = teacher.1.min(student.1);
    if rows < t.len() {
        return Err(DistillError::VocabularyMismatch(format!(
            "the tokenizer has {} tokens but an embedding table has only {rows} rows; {fix}",
            t.len()
        )));
    }
    Ok(rows)
}
