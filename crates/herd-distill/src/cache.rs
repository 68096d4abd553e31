//! The teacher cache: per token, the teacher's k most likely next tokens
//! with their log-probabilities and the mass of all the others, in
//! safetensors shards that Python reads with `safetensors.numpy`.
//!
//! **Layout of a shard** (`shard-00000.safetensors`, ...), `n` tokens of
//! `s` sequences:
//! - `entries`: u32 `(n, k)`. Each entry packs a token id in its low
//!   `id_bits` bits and the quantised log-probability `q` in the rest:
//!   `log p = −q · logprob_step`. 17 id bits cover Llama 3's 128k
//!   vocabulary and leave 15 bits (a step of 0.001 nats, 0.05 % in
//!   probability) for the log-probability, so a token costs `4k + 4` bytes:
//!   260 at k = 64. Log-probabilities below −32 are clamped there.
//! - `tail`: f32 `(n)`, the teacher's mass outside the k entries.
//! - `lengths`: u32 `(s)`, positions per sequence (its ids minus one).
//! - `keys`: u64 `(s)`, FNV-1a of each sequence's ids: the lookup key, so a
//!   training run finds an example's rows by content, whatever its order.
//!
//! The header (`__metadata__`) records the teacher's identity, the
//! tokenizer's, k, the temperature, the source, the data's hash and the
//! shard's place; every shard of a cache must agree on them.
//!
//! **Resumable.** Shard i holds sequences `[i · S, (i + 1) · S)` of the data;
//! each is written to a temporary file and renamed, so a shard exists only
//! when complete, and a rerun skips the shards that exist (after checking
//! that their headers match) and never writes a sequence twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use herd_train::io::write_atomic;
use herd_train::record::Example;
use herd_train::state::fnv1a;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{DistillError, Result};
use crate::fused::{counted_positions, TeacherRows, TeacherSide, TopK};
use crate::teacher::{SourceInfo, TopKSource};

const FORMAT: &str = "herd-teacher-cache";
const VERSION: &str = "1";
/// The most negative log-probability stored.
const LOGPROB_RANGE: f64 = 32.0;

/// What a cache holds; every shard's header carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheHeader {
    /// [`crate::model_identity`] of the teacher.
    pub teacher: String,
    /// [`crate::tokenizer_identity`] of the tokenizer the data was encoded with.
    pub tokenizer: String,
    /// Entries per token.
    pub k: usize,
    /// Temperature of the stored log-probabilities.
    pub temperature: f64,
    /// `local` or the remote server it came from.
    pub source: String,
    /// Bits of each entry holding the token id.
    pub id_bits: u32,
    /// FNV-1a of every sequence's ids, in data order.
    pub data: String,
    /// Sequences in the whole cache.
    pub sequences: usize,
    /// Sequences per shard (the last may hold fewer).
    pub shard_sequences: usize,
}

impl CacheHeader {
    /// The header for caching `sequences` from `source` with `tokenizer`:
    /// k is capped by the source's limit (a server's `top_logprobs`) and
    /// the vocabulary.
    pub fn new(
        source: &SourceInfo,
        tokenizer: String,
        k: usize,
        temperature: f64,
        sequences: &[&[u32]],
        shard_sequences: usize,
    ) -> Result<CacheHeader> {
        if k == 0 || shard_sequences == 0 {
            return Err(DistillError::InvalidOption(
                "-k and --shard-sequences must be at least 1".into(),
            ));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(DistillError::InvalidOption(format!(
                "--temperature must be positive, got {temperature}"
            )));
        }
        let k = k.min(source.max_k.unwrap_or(usize::MAX)).min(source.vocab);
        Ok(CacheHeader {
            teacher: source.identity.clone(),
            tokenizer,
            k,
            temperature,
            source: source.source.clone(),
            id_bits: id_bits(source.vocab)?,
            data: data_hash(sequences),
            sequences: sequences.len(),
            shard_sequences,
        })
    }

    fn logprob_step(&self) -> f64 {
        LOGPROB_RANGE / ((1u64 << (32 - self.id_bits)) - 1) as f64
    }

    fn shards(&self) -> usize {
        self.sequences.div_ceil(self.shard_sequences.max(1))
    }

    fn metadata(&self, shard: usize, tokens: usize) -> HashMap<String, String> {
        let pairs = [
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("teacher", self.teacher.clone()),
            ("tokenizer", self.tokenizer.clone()),
            ("k", self.k.to_string()),
            ("temperature", format!("{:?}", self.temperature)),
            ("source", self.source.clone()),
            ("id_bits", self.id_bits.to_string()),
            ("logprob_step", format!("{:?}", self.logprob_step())),
            ("data", self.data.clone()),
            ("sequences", self.sequences.to_string()),
            ("shard_sequences", self.shard_sequences.to_string()),
            ("shard", shard.to_string()),
            ("tokens", tokens.to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Reads a shard's header; `shard` is the index it claims.
    fn parse(path: &Path, meta: &HashMap<String, String>) -> Result<(CacheHeader, usize)> {
        let bad = |reason: String| DistillError::BadCache {
            path: path.to_path_buf(),
            reason,
        };
        let get = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| bad(format!("the header has no {key:?}")))
        };
        if get("format")? != FORMAT || get("version")? != VERSION {
            return Err(bad(format!("not a {FORMAT} version {VERSION} file")));
        }
        let num = |key: &str| -> Result<usize> {
            get(key)?
                .parse()
                .map_err(|_| bad(format!("header {key:?} is not a number")))
        };
        let header = CacheHeader {
            teacher: get("teacher")?,
            tokenizer: get("tokenizer")?,
            k: num("k")?,
            temperature: get("temperature")?
                .parse()
                .map_err(|_| bad("bad temperature".into()))?,
            source: get("source")?,
            id_bits: num("id_bits")? as u32,
            data: get("data")?,
            sequences: num("sequences")?,
            shard_sequences: num("shard_sequences")?,
        };
        if !(1..=24).contains(&header.id_bits) || header.k == 0 {
            return Err(bad("id_bits or k out of range".into()));
        }
        Ok((header, num("shard")?))
    }

    /// The first property in which a shard's header differs from `self`.
    fn mismatch(&self, path: &Path, found: &CacheHeader) -> Option<DistillError> {
        let fields: [(&'static str, String, String); 6] = [
            ("teacher", found.teacher.clone(), self.teacher.clone()),
            ("tokenizer", found.tokenizer.clone(), self.tokenizer.clone()),
            ("k", found.k.to_string(), self.k.to_string()),
            (
                "temperature",
                found.temperature.to_string(),
                self.temperature.to_string(),
            ),
            ("data", found.data.clone(), self.data.clone()),
            (
                "shard size",
                found.shard_sequences.to_string(),
                self.shard_sequences.to_string(),
            ),
        ];
        fields
            .into_iter()
            .find(|(_, f, e)| f != e)
            .map(|(what, found, expected)| DistillError::CacheMismatch {
                path: path.to_path_buf(),
                what,
                found,
                expected,
            })
    }
}

/// The id bits a vocabulary of `vocab` rows needs.
pub fn id_bits(vocab: usize) -> Result<u32> {
    let bits = (usize::BITS - vocab.saturating_sub(1).leading_zeros()).max(1);
    if bits > 24 {
        return Err(DistillError::InvalidOption(format!(
            "a vocabulary of {vocab} tokens does not fit the cache's 24-bit ids"
        )));
    }
    Ok(bits)
}

/// Key of a sequence: FNV-1a of its ids.
fn key(ids: &[u32]) -> u64 {
    let hex = fnv1a([ids
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect::<Vec<u8>>()]);
    u64::from_str_radix(&hex, 16).unwrap_or_default()
}

/// FNV-1a of sequences, in order (the header's `data`).
pub fn data_hash(sequences: &[&[u32]]) -> String {
    fnv1a(sequences.iter().map(|s| {
        let mut bytes: Vec<u8> = (s.len() as u32).to_le_bytes().to_vec();
        bytes.extend(s.iter().flat_map(|i| i.to_le_bytes()));
        bytes
    }))
}

/// Path of shard `i`.
pub fn shard_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i:05}.safetensors"))
}

/// What [`write_cache`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSummary {
    /// Shards computed in this run.
    pub written: usize,
    /// Shards found complete and skipped.
    pub skipped: usize,
    /// Tokens in the whole cache.
    pub tokens: u64,
    /// Bytes of the whole cache on disk.
    pub bytes: u64,
}

impl CacheSummary {
    /// Bytes per cached token.
    pub fn bytes_per_token(&self) -> f64 {
        self.bytes as f64 / self.tokens.max(1) as f64
    }
}

/// Writes (or completes) the cache in `dir` for `sequences`.
/// `on_shard(done, total)` is called after each shard.
pub fn write_cache(
    source: &dyn TopKSource,
    sequences: &[&[u32]],
    header: &CacheHeader,
    dir: &Path,
    on_shard: &mut dyn FnMut(usize, usize),
) -> Result<CacheSummary> {
    if sequences.is_empty() {
        return Err(DistillError::InvalidOption(
            "no sequences to cache (is the data file empty?)".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(DistillError::io(dir))?;
    let mut summary = CacheSummary {
        written: 0,
        skipped: 0,
        tokens: 0,
        bytes: 0,
    };
    let total = header.shards();
    for (i, chunk) in sequences.chunks(header.shard_sequences).enumerate() {
        let path = shard_path(dir, i);
        if path.exists() {
            let shard = Shard::open(&path)?;
            if let Some(err) = header.mismatch(&path, &shard.header) {
                return Err(err);
            }
            shard.check_index(&path, i, chunk.len())?;
            summary.skipped += 1;
        } else {
            let rows = source.top_k(chunk, header.k, header.temperature)?;
            let bytes = encode_shard(header, i, chunk, &rows)?;
            write_atomic(&path, &bytes)?;
            summary.written += 1;
        }
        summary.tokens += chunk
            .iter()
            .map(|s| s.len().saturating_sub(1) as u64)
            .sum::<u64>();
        summary.bytes += std::fs::metadata(&path)
            .map_err(DistillError::io(&path))?
            .len();
        on_shard(i + 1, total);
    }
    Ok(summary)
}

/// One shard as safetensors bytes.
fn encode_shard(
    header: &CacheHeader,
    index: usize,
    seqs: &[&[u32]],
    rows: &[TopK],
) -> Result<Vec<u8>> {
    let (k, step) = (header.k, header.logprob_step());
    let max_q = (1u64 << (32 - header.id_bits)) - 1;
    let (mut entries, mut tail, mut lengths, mut keys) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (ids, top) in seqs.iter().zip(rows) {
        let positions = ids.len().saturating_sub(1);
        if top.k != k || top.tail.len() != positions {
            return Err(DistillError::Teacher(format!(
                "expected {positions} positions of top-{k}, got {} of top-{}",
                top.tail.len(),
                top.k
            )));
        }
        for (&id, &lp) in top.ids.iter().zip(&top.logprobs) {
            let q = ((-(lp as f64)) / step).round().clamp(0.0, max_q as f64) as u32;
            entries.extend_from_slice(&(id | (q << header.id_bits)).to_le_bytes());
        }
        tail.extend(top.tail.iter().flat_map(|t| t.to_le_bytes()));
        lengths.extend_from_slice(&(positions as u32).to_le_bytes());
        keys.extend_from_slice(&key(ids).to_le_bytes());
    }
    let tokens = tail.len() / 4;
    fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
        TensorView::new(dtype, shape, data).map_err(|e| DistillError::Teacher(e.to_string()))
    }
    let tensors = vec![
        ("entries", view(Dtype::U32, vec![tokens, k], &entries)?),
        ("tail", view(Dtype::F32, vec![tokens], &tail)?),
        ("lengths", view(Dtype::U32, vec![seqs.len()], &lengths)?),
        ("keys", view(Dtype::U64, vec![seqs.len()], &keys)?),
    ];
    safetensors::serialize(tensors, Some(header.metadata(index, tokens)))
        .map_err(|e| DistillError::Teacher(e.to_string()))
}

/// One shard, read into memory and checked.
struct Shard {
    header: CacheHeader,
    index: usize,
    entries: Vec<u32>,
    tail: Vec<f32>,
    lengths: Vec<u32>,
    keys: Vec<u64>,
}

impl Shard {
    fn open(path: &Path) -> Result<Shard> {
        let bad = |reason: String| DistillError::BadCache {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(DistillError::io(path))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let map = meta
            .metadata()
            .clone()
            .ok_or_else(|| bad("no header metadata".into()))?;
        let (header, index) = CacheHeader::parse(path, &map)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let read = |name: &str, dtype: Dtype, width: usize| -> Result<Vec<u8>> {
            let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if t.dtype() != dtype || t.data().len() % width != 0 {
                return Err(bad(format!("{name} has dtype {:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let u32s = |b: Vec<u8>| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let shard = Shard {
            entries: u32s(read("entries", Dtype::U32, 4)?),
            tail: read("tail", Dtype::F32, 4)?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            lengths: u32s(read("lengths", Dtype::U32, 4)?),
            keys: read("keys", Dtype::U64, 8)?
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            header,
            index,
        };
        let tokens: usize = shard.lengths.iter().map(|&l| l as usize).sum();
        if shard.tail.len() != tokens
            || shard.entries.len() != tokens * shard.header.k
            || shard.keys.len() != shard.lengths.len()
        {
            return Err(bad(format!(
                "its tensors disagree: {tokens} tokens by lengths, {} tails, {} entries of k = {}",
                shard.tail.len(),
                shard.entries.len(),
                shard.header.k
            )));
        }
        Ok(shard)
    }

    /// The shard is the `i`-th and holds `sequences` sequences.
    fn check_index(&self, path: &Path, i: usize, sequences: usize) -> Result<()> {
        if self.index != i || self.lengths.len() != sequences {
            return Err(DistillError::BadCache {
                path: path.to_path_buf(),
                reason: format!(
                    "it claims to be shard {} with {} sequences; expected shard {i} with {sequences}",
                    self.index,
                    self.lengths.len()
                ),
            });
        }
        Ok(())
    }
}

/// A complete cache, loaded for training.
pub struct TeacherCache {
    header: CacheHeader,
    shards: Vec<Shard>,
    /// Sequence key → (shard, first token, positions).
    index: HashMap<u64, (usize, usize, usize)>,
    dir: PathBuf,
}

impl TeacherCache {
    /// Opens every shard of `dir`, checking that they form one complete
    /// cache of one teacher and tokenizer.
    pub fn open(dir: &Path) -> Result<TeacherCache> {
        let first = shard_path(dir, 0);
        if !first.is_file() {
            return Err(DistillError::BadCache {
                path: first,
                reason: "missing: not a teacher cache directory (run `herd teacher-cache` first)"
                    .into(),
            });
        }
        let header = Shard::open(&first)?.header;
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for i in 0..header.shards() {
            let path = shard_path(dir, i);
            if !path.is_file() {
                return Err(DistillError::BadCache {
                    path,
                    reason: format!("missing: the cache is incomplete ({i} of {} shards); rerun `herd teacher-cache` with the same arguments to finish it", header.shards()),
                });
            }
            let shard = Shard::open(&path)?;
            if let Some(err) = header.mismatch(&path, &shard.header) {
                return Err(err);
            }
            let expected =
                (header.sequences - i * header.shard_sequences).min(header.shard_sequences);
            shard.check_index(&path, i, expected)?;
            let mut start = 0;
            for (&key, &len) in shard.keys.iter().zip(&shard.lengths) {
                index.insert(key, (i, start, len as usize));
                start += len as usize;
            }
            shards.push(shard);
        }
        Ok(TeacherCache {
            header,
            shards,
            index,
            dir: dir.to_path_buf(),
        })
    }

    /// The cache's header.
    pub fn header(&self) -> &CacheHeader {
        &self.header
    }

    /// Refuses a cache made with another tokenizer, another teacher (when
    /// one is given) or another temperature than this run's.
    pub fn verify(&self, tokenizer: &str, teacher: Option<&str>, temperature: f64) -> Result<()> {
        let mismatch = |what, found: String, expected: String| DistillError::CacheMismatch {
            path: self.dir.clone(),
            what,
            found,
            expected,
        };
        if self.header.tokenizer != tokenizer {
            return Err(mismatch(
                "tokenizer",
                self.header.tokenizer.clone(),
                tokenizer.into(),
            ));
        }
        if let Some(t) = teacher.filter(|t| *t != self.header.teacher) {
            return Err(mismatch("teacher", self.header.teacher.clone(), t.into()));
        }
        if self.header.temperature != temperature {
            return Err(mismatch(
                "temperature",
                self.header.temperature.to_string(),
                format!(
                    "{temperature} (pass --temperature {} or rebuild the cache)",
                    self.header.temperature
                ),
            ));
        }
        Ok(())
    }

    /// Every position of a cached sequence, dequantised.
    pub fn sequence(&self, ids: &[u32]) -> Result<TopK> {
        let positions = ids.len().saturating_sub(1);
        let Some(&(s, start, len)) = self.index.get(&key(ids)) else {
            return Err(DistillError::CacheMismatch {
                path: self.dir.clone(),
                what: "sequences",
                found: format!("{} other sequences", self.header.sequences),
                expected: format!(
                    "a sequence of {} tokens it lacks (another data file, tokenizer or --seq-len?)",
                    ids.len()
                ),
            });
        };
        if len != positions {
            return Err(DistillError::BadCache {
                path: shard_path(&self.dir, s),
                reason: format!("a sequence of {} positions is stored with {len}", positions),
            });
        }
        let (k, bits, step) = (
            self.header.k,
            self.header.id_bits,
            self.header.logprob_step(),
        );
        let shard = &self.shards[s];
        let raw = &shard.entries[start * k..(start + len) * k];
        Ok(TopK {
            k,
            ids: raw.iter().map(|e| e & ((1u32 << bits) - 1)).collect(),
            logprobs: raw
                .iter()
                .map(|e| (-((e >> bits) as f64) * step) as f32)
                .collect(),
            tail: shard.tail[start..start + len].to_vec(),
        })
    }
}

impl TeacherSide for TeacherCache {
    fn rows(&self, example: &Example) -> Result<TeacherRows> {
        let all = self.sequence(&example.ids)?;
        let k = all.k;
        let mut top = TopK {
            k,
            ..TopK::default()
        };
        for i in counted_positions(example) {
            top.ids.extend_from_slice(&all.ids[i * k..(i + 1) * k]);
            top.logprobs
                .extend_from_slice(&all.logprobs[i * k..(i + 1) * k]);
            top.tail.push(all.tail[i]);
        }
        Ok(TeacherRows::TopK(top))
    }
}
