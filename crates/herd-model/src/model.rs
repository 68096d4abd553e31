//! The Llama decoder. Weights are immutable and memory-mapped; each call to
//! [`Llama::forward`] takes a batch of sequences, each with its own
//! [`KvCache`], and returns logits for every new position (or only the last);
//! [`Llama::forward_paged`] takes sequences whose KV lives in a shared
//! [`KvPool`] instead.
//!
//! The batch is "packed": the new tokens of all sequences are concatenated
//! into one `(tokens, hidden)` matrix so that every linear layer streams its
//! weights once per step however many sequences are in flight; only attention,
//! which mixes positions, runs per sequence. No padding is ever computed, so a
//! sequence gives the same logits alone or in any batch.

use candle_core::{Device, Tensor};

use crate::attention::Span;
use crate::config::{Config, GenerationConfig, WeightDtype};
use crate::error::{ModelError, Result};
use crate::kv::{KvCache, KvPool, KvView};
use crate::layers::{held_bytes, with_f32_slice, DecoderLayer, Linear, Pass, RmsNorm};
use crate::rope::{Rope, RopeAngles};
use crate::shard::{
    interleave_vocab, NoTensorParallel, Shard, StageInput, StageOutput, TensorParallel,
};
use crate::weights::{TensorSource, Weight};

/// Which positions to compute logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Every new position (training, distillation, scoring).
    All,
    /// Only the last new position of each sequence (generation).
    Last,
}

/// Where [`Llama::forward_traced`] hands activations to a [`Trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracePoint {
    /// The residual stream entering a layer, `(tokens, hidden)`.
    LayerInput,
    /// The attention heads' outputs before `o_proj`, `(tokens, n_heads * head_dim)`,
    /// head `h` in columns `h * head_dim..(h + 1) * head_dim`.
    AttentionHeads,
    /// The MLP's hidden activations `silu(gate) * up`, `(tokens, intermediate)`.
    MlpHidden,
    /// The residual stream leaving a layer, `(tokens, hidden)`.
    LayerOutput,
}

/// Receives intermediate activations of a forward pass, e.g. to rank layers,
/// heads and channels by importance on calibration data (pruning). Values are
/// row-major f32 rows, one per new token.
pub trait Trace {
    /// `values` of `layer` at `point`, `width` columns per row.
    fn record(&mut self, layer: usize, point: TracePoint, values: &[f32], width: usize);
}

/// One sequence's part of a batch: its new tokens and its KV state.
pub struct SeqInput<'a> {
    /// Tokens to append (at least one).
    pub tokens: &'a [u32],
    /// The sequence's cache; its length is the position of `tokens[0]`.
    pub cache: &'a mut KvCache,
}

/// One sequence's part of a batch whose KV lives in a shared [`KvPool`].
#[derive(Debug, Clone, Copy)]
pub struct PagedSeq<'a> {
    /// Tokens to append (at least one).
    pub tokens: &'a [u32],
    /// Positions already stored in the blocks; the position of `tokens[0]`.
    pub past: usize,
    /// Block table: position `p` lives in block `blocks[p / block_size]`.
    /// Must cover `past + tokens.len()` positions; the blocks written in this
    /// step (those holding positions `past..`) must not be written by any other
    /// sequence of the batch.
    pub blocks: &'a [u32],
    /// Which of this sequence's positions get logits.
    pub logits: Logits,
}

/// One sequence's new tokens, where they start, and which logits it wants.
struct Step<'a> {
    tokens: &'a [u32],
    past: usize,
    logits: Logits,
}

/// The KV storage of a whole batch: each sequence's own cache, or one pool.
pub(crate) enum BatchKv<'x, 'a> {
    Contiguous(&'x mut [SeqInput<'a>]),
    Paged {
        pool: &'x mut KvPool,
        seqs: &'x [PagedSeq<'a>],
    },
}

impl BatchKv<'_, '_> {
    /// Stores sequence `seq`'s new keys and values for `layer`.
    pub(crate) fn write(&mut self, layer: usize, seq: usize, k: &[f32], v: &[f32]) -> Result<()> {
        match self {
            BatchKv::Contiguous(batch) => batch[seq].cache.append(layer, k, v),
            BatchKv::Paged { pool, seqs } => {
                pool.write(layer, seqs[seq].blocks, seqs[seq].past, k, v);
                Ok(())
            }
        }
    }

    /// Every sequence's keys and values for `layer`, this step's included.
    pub(crate) fn views(&self, layer: usize) -> Vec<KvView<'_>> {
        match self {
            BatchKv::Contiguous(batch) => batch.iter().map(|s| s.cache.view(layer)).collect(),
            BatchKv::Paged { pool, seqs } => {
                seqs.iter().map(|s| pool.view(layer, s.blocks)).collect()
            }
        }
    }
}

/// A loaded Llama model: configuration plus immutable weights (all of them,
/// or one rank's [`Shard`]).
#[derive(Debug, Clone)]
pub struct Llama {
    config: Config,
    generation: GenerationConfig,
    /// Which part of the model this value holds.
    shard: Shard,
    /// `(vocab rows of this rank, hidden)`; first stage only.
    embed_tokens: Option<Weight>,
    /// This stage's layers, `shard.layers` in order.
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `(vocab rows of this rank, hidden)`, the embedding rows themselves when
    /// tied; last stage only.
    lm_head: Option<Linear>,
    rope: Rope,
    device: Device,
    dtype: WeightDtype,
    weight_bytes: u64,
    shard_bytes: u64,
}

impl Llama {
    /// Builds the model from already-opened weight files (HF tensor names),
    /// with the rotary embedding that matches their q/k row layout.
    pub fn from_weights(
        config: Config,
        generation: GenerationConfig,
        files: &dyn TensorSource,
        rope: Rope,
    ) -> Result<Llama> {
        let shard = Shard::whole(&config);
        Llama::from_shard(config, generation, files, rope, shard)
    }

    /// Builds one rank's part of a tensor × pipeline parallel layout: only
    /// the shard's layers, and of each matrix only its rows or columns
    /// (shared with the memory-mapped file where rows are contiguous).
    pub fn from_shard(
        config: Config,
        generation: GenerationConfig,
        files: &dyn TensorSource,
        rope: Rope,
        shard: Shard,
    ) -> Result<Llama> {
        shard.check(&config)?;
        let device = Device::Cpu;
        let cfg = &config;
        let embedding = files.get(
            "model.embed_tokens.weight",
            &[cfg.vocab_size, cfg.hidden_size],
        )?;
        let dtype = embedding.dtype();
        let vocab_rows = shard.vocab_rows(cfg.vocab_size);
        let embed_tokens = if shard.is_first_stage() {
            Some(embedding.rows(vocab_rows.clone())?)
        } else {
            None
        };
        let lm_head = match (shard.is_last_stage(cfg), cfg.tie_word_embeddings) {
            (false, _) => None,
            (true, true) => Some(Linear {
                weight: embedding.rows(vocab_rows)?,
            }),
            (true, false) => Some(
                Linear::load(files, "lm_head", cfg.vocab_size, cfg.hidden_size)?
                    .split_rows(&shard, vocab_rows)?,
            ),
        };
        let layers = shard
            .layers
            .clone()
            .map(|i| DecoderLayer::load(files, i, cfg, &shard, &device))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(files, "model.norm", cfg, &device)?;
        let shard_bytes = held_bytes(embed_tokens.as_ref(), &layers, lm_head.as_ref(), cfg);
        Ok(Llama {
            rope,
            weight_bytes: files.total_bytes(),
            shard_bytes,
            config,
            generation,
            shard,
            embed_tokens,
            layers,
            norm,
            lm_head,
            device,
            dtype,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The part of the model this value holds.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The checkpoint's generation defaults.
    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation
    }

    /// Bytes of weight data in the checkpoint files.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes of weight data this shard uses (all of it for a whole model; a
    /// tied head counted once).
    pub fn shard_bytes(&self) -> u64 {
        self.shard_bytes
    }

    /// Storage dtype of the embedding (representative of the checkpoint).
    pub fn dtype(&self) -> crate::config::WeightDtype {
        self.dtype
    }

    /// A fresh, empty KV cache for one sequence (this shard's layers and KV heads).
    pub fn new_cache(&self) -> KvCache {
        KvCache::with_shape(self.layers.len(), self.kv_dim())
    }

    /// A pool of `num_blocks` KV blocks of `block_size` positions shaped for
    /// this shard's layers and KV heads (the whole model's for a whole model).
    pub fn new_pool(&self, block_size: usize, num_blocks: usize) -> Result<KvPool> {
        KvPool::with_shape(self.layers.len(), self.kv_dim(), block_size, num_blocks)
    }

    /// Bytes one block of [`Llama::new_pool`]'s pool takes (keys and values, f32).
    pub fn pool_bytes_per_block(&self, block_size: usize) -> u64 {
        (2 * self.layers.len() * self.kv_dim() * 4 * block_size) as u64
    }

    /// Runs the batch and returns per-sequence logits, `(n_new, vocab)` for
    /// [`Logits::All`] or `(1, vocab)` for [`Logits::Last`]. Every input is
    /// checked before any cache is touched, so an error leaves caches intact.
    pub fn forward(&self, batch: &mut [SeqInput<'_>], which: Logits) -> Result<Vec<Tensor>> {
        self.check_whole()?;
        let out = self.forward_stage(batch, which, StageInput::Tokens, &NoTensorParallel)?;
        expect_logits(out)
    }

    /// One pipeline stage of a sharded model: from the tokens (first stage)
    /// or the previous stage's hidden states, through this shard's layers,
    /// to hidden states for the next stage or, on the last stage, logits
    /// over the whole vocabulary (gathered over the group). Every rank of
    /// `tp`'s group makes the same call; every rank of every stage is given
    /// the same tokens, which fix positions and cache lengths.
    pub fn forward_stage(
        &self,
        batch: &mut [SeqInput<'_>],
        which: Logits,
        input: StageInput<'_>,
        tp: &dyn TensorParallel,
    ) -> Result<StageOutput> {
        self.check_batch(batch)?;
        let steps: Vec<Step<'_>> = batch
            .iter()
            .map(|s| Step {
                tokens: s.tokens,
                past: s.cache.len(),
                logits: which,
            })
            .collect();
        let out = self.run(&steps, &mut BatchKv::Contiguous(batch), input, tp, None)?;
        for seq in batch.iter_mut() {
            seq.cache.advance(seq.tokens.len());
        }
        Ok(out)
    }

    /// Runs a batch whose KV lives in `pool`: each sequence's new tokens are
    /// written at positions `past..` of its block table and attend over
    /// positions `0..past + tokens.len()`. Returns per-sequence logits as
    /// [`Llama::forward`] does, with each sequence's own [`Logits`] choice.
    /// Every input is checked before the pool is touched.
    pub fn forward_paged(&self, pool: &mut KvPool, batch: &[PagedSeq<'_>]) -> Result<Vec<Tensor>> {
        self.check_whole()?;
        expect_logits(self.forward_paged_stage(
            pool,
            batch,
            StageInput::Tokens,
            &NoTensorParallel,
        )?)
    }

    /// [`Llama::forward_stage`] for a batch whose KV lives in `pool` (made
    /// by this shard's [`Llama::new_pool`]): every rank of every stage is
    /// given the same block tables and writes its own layers' and heads' KV.
    pub fn forward_paged_stage(
        &self,
        pool: &mut KvPool,
        batch: &[PagedSeq<'_>],
        input: StageInput<'_>,
        tp: &dyn TensorParallel,
    ) -> Result<StageOutput> {
        self.check_paged(pool, batch)?;
        let spans: Vec<Step<'_>> = batch
            .iter()
            .map(|s| Step {
                tokens: s.tokens,
                past: s.past,
                logits: s.logits,
            })
            .collect();
        self.run(
            &spans,
            &mut BatchKv::Paged { pool, seqs: batch },
            input,
            tp,
            None,
        )
    }

    /// Logits of every new token of one sequence, like [`Llama::forward_one`]
    /// with [`Logits::All`], handing each layer's activations to `trace`.
    pub fn forward_traced(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        trace: &mut dyn Trace,
    ) -> Result<Tensor> {
        self.check_whole()?;
        let mut batch = [SeqInput { tokens, cache }];
        self.check_batch(&batch)?;
        let steps = [Step {
            tokens,
            past: batch[0].cache.len(),
            logits: Logits::All,
        }];
        let kv = &mut BatchKv::Contiguous(&mut batch);
        let out = self.run(
            &steps,
            kv,
            StageInput::Tokens,
            &NoTensorParallel,
            Some(trace),
        )?;
        batch[0].cache.advance(tokens.len());
        expect_logits(out)?
            .pop()
            .ok_or_else(|| ModelError::InvalidInput("empty batch".into()))
    }

    /// The forward pass proper, over already-checked inputs.
    fn run(
        &self,
        steps: &[Step<'_>],
        kv: &mut BatchKv<'_, '_>,
        input: StageInput<'_>,
        tp: &dyn TensorParallel,
        trace: Option<&mut dyn Trace>,
    ) -> Result<StageOutput> {
        let tokens: Vec<u32> = steps
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        // Embed all new tokens of all sequences into one packed matrix, or
        // take the previous stage's.
        let mut x = self.stage_input(&tokens, input, tp)?;
        // Rotary angles of each sequence's new positions, shared by all layers.
        let angles: Vec<RopeAngles> = steps
            .iter()
            .map(|s| self.rope.angles(s.past, s.tokens.len()))
            .collect();
        let spans: Vec<Span> = steps
            .iter()
            .map(|s| Span {
                len: s.tokens.len(),
                past: s.past,
            })
            .collect();
        let mut pass = Pass {
            tp,
            trace,
            layer: 0,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            pass.layer = i;
            pass.tensor(TracePoint::LayerInput, &x)?;
            // x = x + attn(norm(x))
            let h = layer.input_layernorm.forward(&x)?;
            x = (x + layer
                .self_attn
                .forward(&h, &spans, &angles, kv, &mut pass)?)?;
            // x = x + mlp(norm(x))
            let h = layer.post_attention_layernorm.forward(&x)?;
            x = (x + layer.mlp.forward(&h, &mut pass)?)?;
            pass.tensor(TracePoint::LayerOutput, &x)?;
        }
        let Some(lm_head) = &self.lm_head else {
            return Ok(StageOutput::Hidden(x.flatten_all()?.to_vec1()?));
        };
        // Final norm, then the vocabulary projection on the requested rows only.
        let x = self.norm.forward(&x)?;
        let mut rows = Vec::with_capacity(tokens.len());
        let mut counts = Vec::with_capacity(steps.len());
        let mut start = 0;
        for s in steps {
            let end = start + s.tokens.len();
            let first = match s.logits {
                Logits::All => start,
                Logits::Last => end - 1,
            };
            rows.extend(first as u32..end as u32);
            counts.push(end - first);
            start = end;
        }
        let selected = if rows.len() == tokens.len() {
            x
        } else {
            x.index_select(&Tensor::new(rows.as_slice(), &self.device)?, 0)?
        };
        let all = self.head(lm_head, &selected, tp)?;
        let mut logits = Vec::with_capacity(steps.len());
        let mut row = 0;
        for n in counts {
            logits.push(all.narrow(0, row, n)?);
            row += n;
        }
        Ok(StageOutput::Logits(logits))
    }

    /// The packed `(tokens, hidden)` input of this stage's first layer.
    fn stage_input(
        &self,
        tokens: &[u32],
        input: StageInput<'_>,
        tp: &dyn TensorParallel,
    ) -> Result<Tensor> {
        let h = self.config.hidden_size;
        match (input, &self.embed_tokens) {
            (StageInput::Tokens, Some(table)) => self.embed(table, tokens, tp),
            (StageInput::Hidden(x), None) if x.len() == tokens.len() * h => Ok(Tensor::from_vec(
                x.to_vec(),
                (tokens.len(), h),
                &self.device,
            )?),
            (StageInput::Hidden(x), None) => Err(ModelError::InvalidInput(format!(
                "{} hidden values for {} tokens of width {h}",
                x.len(),
                tokens.len()
            ))),
            (_, table) => Err(ModelError::InvalidInput(format!(
                "the stage holding layers {}..{} {}",
                self.shard.layers.start,
                self.shard.layers.end,
                if table.is_some() {
                    "embeds tokens, it takes no hidden states"
                } else {
                    "needs the previous stage's hidden states"
                }
            ))),
        }
    }

    /// Logits over the whole vocabulary for `x: (rows, hidden)`: each rank
    /// projects onto its vocabulary rows, then the group gathers them.
    fn head(&self, lm_head: &Linear, x: &Tensor, tp: &dyn TensorParallel) -> Result<Tensor> {
        if self.shard.tp_size == 1 {
            return lm_head.forward(x);
        }
        let (rows, vocab) = (x.dim(0)?, self.config.vocab_size);
        let chunk = self.shard.vocab_chunk(vocab);
        let mut local = with_f32_slice(x, |xs| lm_head.apply(xs, rows))??;
        // The last rank may own fewer rows: pad every row to `chunk`.
        let mine = local.len() / rows.max(1);
        if mine < chunk {
            local = local
                .chunks_exact(mine.max(1))
                .flat_map(|r| {
                    r.iter()
                        .copied()
                        .chain(std::iter::repeat_n(0.0, chunk - mine))
                })
                .collect();
            if mine == 0 {
                local = vec![0.0; rows * chunk];
            }
        }
        let mut gathered = vec![0f32; local.len() * self.shard.tp_size];
        tp.all_gather(&local, &mut gathered)?;
        let logits = interleave_vocab(&gathered, self.shard.tp_size, rows, vocab);
        Ok(Tensor::from_vec(logits, (rows, vocab), &self.device)?)
    }

    /// Plain `forward`/`forward_paged` compute the whole model in one process.
    fn check_whole(&self) -> Result<()> {
        if self.shard.is_whole(&self.config) {
            return Ok(());
        }
        Err(ModelError::InvalidInput(format!(
            "this model holds TP rank {} of {} for layers {}..{}; run it with forward_stage",
            self.shard.tp_rank, self.shard.tp_size, self.shard.layers.start, self.shard.layers.end
        )))
    }

    /// Convenience: logits of one sequence's new tokens.
    pub fn forward_one(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        which: Logits,
    ) -> Result<Tensor> {
        let mut batch = [SeqInput { tokens, cache }];
        let mut out = self.forward(&mut batch, which)?;
        out.pop()
            .ok_or_else(|| ModelError::InvalidInput("empty batch".into()))
    }

    fn check_batch(&self, batch: &[SeqInput<'_>]) -> Result<()> {
        if batch.is_empty() {
            return Err(ModelError::InvalidInput("empty batch".into()));
        }
        for seq in batch {
            if seq.cache.num_layers() != self.layers.len() || seq.cache.kv_dim() != self.kv_dim() {
                return Err(ModelError::InvalidInput(format!(
                    "KV cache made for {} layers of width {}, model has {} of width {}",
                    seq.cache.num_layers(),
                    seq.cache.kv_dim(),
                    self.layers.len(),
                    self.kv_dim()
                )));
            }
            self.check_tokens(seq.tokens, seq.cache.len())?;
        }
        Ok(())
    }

    fn check_paged(&self, pool: &KvPool, batch: &[PagedSeq<'_>]) -> Result<()> {
        if batch.is_empty() {
            return Err(ModelError::InvalidInput("empty batch".into()));
        }
        if pool.num_layers() != self.layers.len() || pool.kv_dim() != self.kv_dim() {
            return Err(ModelError::InvalidInput(format!(
                "KV pool made for {} layers of width {}, model has {} of width {}",
                pool.num_layers(),
                pool.kv_dim(),
                self.layers.len(),
                self.kv_dim()
            )));
        }
        let mut written = std::collections::HashSet::new();
        for seq in batch {
            self.check_tokens(seq.tokens, seq.past)?;
            let end = seq.past + seq.tokens.len();
            if seq.blocks.len() * pool.block_size() < end {
                return Err(ModelError::InvalidInput(format!(
                    "block table of {} blocks of {} positions cannot hold {end} positions",
                    seq.blocks.len(),
                    pool.block_size()
                )));
            }
            if let Some(&b) = seq
                .blocks
                .iter()
                .find(|&&b| b as usize >= pool.num_blocks())
            {
                return Err(ModelError::InvalidInput(format!(
                    "block {b} is outside the pool of {} blocks",
                    pool.num_blocks()
                )));
            }
            // Two sequences writing the same block would corrupt each other.
            let first = seq.past / pool.block_size();
            let last = (end - 1) / pool.block_size();
            for &b in &seq.blocks[first..=last] {
                if !written.insert(b) {
                    return Err(ModelError::InvalidInput(format!(
                        "block {b} is written by two sequences of one batch"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks one sequence's new tokens against the context and vocabulary.
    fn check_tokens(&self, tokens: &[u32], past: usize) -> Result<()> {
        if tokens.is_empty() {
            return Err(ModelError::InvalidInput(
                "a sequence in the batch has no new tokens".into(),
            ));
        }
        let requested = past + tokens.len();
        if requested > self.config.max_position_embeddings {
            return Err(ModelError::ContextOverflow {
                limit: self.config.max_position_embeddings,
                requested,
            });
        }
        if let Some(&id) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab_size: self.config.vocab_size,
            });
        }
        Ok(())
    }

    /// Width of one position's keys (or values) in one layer of this shard.
    fn kv_dim(&self) -> usize {
        self.config.num_key_value_heads / self.shard.tp_size * self.config.head_dim
    }

    /// Rows of the embedding table, converted to f32: `(tokens, hidden)`.
    /// Each rank fills the rows of the tokens in its vocabulary slice and
    /// leaves the others zero, so a sum over the group is exact.
    fn embed(&self, table: &Weight, tokens: &[u32], tp: &dyn TensorParallel) -> Result<Tensor> {
        let h = self.config.hidden_size;
        let mine = self.shard.vocab_rows(self.config.vocab_size);
        let mut x = vec![0f32; tokens.len() * h];
        for (row, &t) in x.chunks_exact_mut(h).zip(tokens) {
            if mine.contains(&(t as usize)) {
                table.read_f32((t as usize - mine.start) * h, row)?;
            }
        }
        if self.shard.tp_size > 1 {
            tp.all_reduce_sum(&mut x)?;
        }
        Ok(Tensor::from_vec(x, (tokens.len(), h), &self.device)?)
    }
}

/// The logits of a stage that must be the last one.
fn expect_logits(out: StageOutput) -> Result<Vec<Tensor>> {
    match out {
        StageOutput::Logits(logits) => Ok(logits),
        StageOutput::Hidden(_) => Err(ModelError::InvalidInput(
            "a model without its output head produced no logits".into(),
        )),
    }
}

/// Logits row as a plain vector (for samplers and tests).
pub fn logits_row(logits: &Tensor, row: usize) -> Result<Vec<f32>> {
    Ok(logits
        .narrow(0, row, 1)?
        .squeeze(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()?)
}
