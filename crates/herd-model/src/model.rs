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

use candle_core::{Device, Storage, Tensor};
use herd_kernels::matmul_wt;

use crate::attention::{attend, Heads, Span};
use crate::config::{Config, GenerationConfig};
use crate::error::{ModelError, Result};
use crate::kv::{KvCache, KvPool, KvView};
use crate::rope::{Rope, RopeAngles};
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
enum BatchKv<'x, 'a> {
    Contiguous(&'x mut [SeqInput<'a>]),
    Paged {
        pool: &'x mut KvPool,
        seqs: &'x [PagedSeq<'a>],
    },
}

impl BatchKv<'_, '_> {
    /// Stores sequence `seq`'s new keys and values for `layer`.
    fn write(&mut self, layer: usize, seq: usize, k: &[f32], v: &[f32]) -> Result<()> {
        match self {
            BatchKv::Contiguous(batch) => batch[seq].cache.append(layer, k, v),
            BatchKv::Paged { pool, seqs } => {
                pool.write(layer, seqs[seq].blocks, seqs[seq].past, k, v);
                Ok(())
            }
        }
    }

    /// Every sequence's keys and values for `layer`, this step's included.
    fn views(&self, layer: usize) -> Vec<KvView<'_>> {
        match self {
            BatchKv::Contiguous(batch) => batch.iter().map(|s| s.cache.view(layer)).collect(),
            BatchKv::Paged { pool, seqs } => {
                seqs.iter().map(|s| pool.view(layer, s.blocks)).collect()
            }
        }
    }
}

/// A linear layer without bias, computed by herd's own kernels.
#[derive(Debug, Clone)]
struct Linear {
    /// `(out_features, in_features)`, as stored by PyTorch.
    weight: Weight,
}

impl Linear {
    fn load(
        files: &dyn TensorSource,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: files.get(&format!("{name}.weight"), &[out_features, in_features])?,
        })
    }

    /// `x · Wᵀ` for `x: (n, in_features)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let y = with_f32_slice(x, |xs| self.apply(xs, n))??;
        Ok(Tensor::from_vec(
            y,
            (n, self.weight.shape()[0]),
            x.device(),
        )?)
    }

    /// `x · Wᵀ` on plain rows: `x: (n, in_features)` → `(n, out_features)`.
    fn apply(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let (out_features, in_features) = (self.weight.shape()[0], self.weight.shape()[1]);
        let mut y = vec![0f32; n * out_features];
        matmul_wt(
            x,
            n,
            in_features,
            self.weight.as_slice(),
            out_features,
            &mut y,
        )?;
        Ok(y)
    }
}

/// A [`Trace`] bound to the layer being computed.
struct Tap<'t> {
    trace: &'t mut dyn Trace,
    layer: usize,
}

impl Tap<'_> {
    /// Hands a `(tokens, width)` activation to the trace.
    fn tensor(&mut self, point: TracePoint, t: &Tensor) -> Result<()> {
        let width = t.dim(1)?;
        with_f32_slice(t, |v| self.trace.record(self.layer, point, v, width))
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor without copying it.
fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ModelError::InvalidInput(
            "herd's kernels run on CPU tensors".into(),
        ));
    };
    let data = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| ModelError::InvalidInput("non-contiguous activation".into()))?;
    Ok(f(&data[start..end]))
}

/// Root-mean-square normalisation with a learned scale.
#[derive(Debug, Clone)]
struct RmsNorm {
    /// `(hidden,)`.
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(
        files: &dyn TensorSource,
        name: &str,
        cfg: &Config,
        device: &Device,
    ) -> Result<RmsNorm> {
        let w = files.get(&format!("{name}.weight"), &[cfg.hidden_size])?;
        Ok(RmsNorm {
            weight: Tensor::from_vec(w.to_f32_vec()?, cfg.hidden_size, device)?,
            eps: cfg.rms_norm_eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }
}

/// Grouped-query self-attention.
#[derive(Debug, Clone)]
struct Attention {
    /// `(n_heads * head_dim, hidden)`.
    q_proj: Linear,
    /// `(n_kv_heads * head_dim, hidden)`.
    k_proj: Linear,
    /// `(n_kv_heads * head_dim, hidden)`.
    v_proj: Linear,
    /// `(hidden, n_heads * head_dim)`.
    o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(files: &dyn TensorSource, name: &str, cfg: &Config) -> Result<Attention> {
        let (h, q, kv) = (
            cfg.hidden_size,
            cfg.num_attention_heads * cfg.head_dim,
            cfg.num_key_value_heads * cfg.head_dim,
        );
        Ok(Attention {
            q_proj: Linear::load(files, &format!("{name}.q_proj"), q, h)?,
            k_proj: Linear::load(files, &format!("{name}.k_proj"), kv, h)?,
            v_proj: Linear::load(files, &format!("{name}.v_proj"), kv, h)?,
            o_proj: Linear::load(files, &format!("{name}.o_proj"), h, q)?,
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// `x: (total_new_tokens, hidden)` packed over `spans`; returns the same shape.
    fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        spans: &[Span],
        angles: &[RopeAngles],
        kv: &mut BatchKv<'_, '_>,
        tap: Option<&mut Tap<'_>>,
    ) -> Result<Tensor> {
        // Projections for all sequences at once.
        let n = x.dim(0)?;
        let (mut q, mut k, v) = with_f32_slice(x, |xs| -> Result<_> {
            Ok((
                self.q_proj.apply(xs, n)?,
                self.k_proj.apply(xs, n)?,
                self.v_proj.apply(xs, n)?,
            ))
        })??;
        // Rotate each sequence's new rows by absolute position and store its keys and values.
        let (q_dim, kv_dim) = (
            self.n_heads * self.head_dim,
            self.n_kv_heads * self.head_dim,
        );
        let mut row = 0;
        for (i, (span, angles)) in spans.iter().zip(angles).enumerate() {
            let rows = row..row + span.len;
            angles.rotate(&mut q[rows.start * q_dim..rows.end * q_dim]);
            let (k, v) = (
                &mut k[rows.start * kv_dim..rows.end * kv_dim],
                &v[rows.start * kv_dim..rows.end * kv_dim],
            );
            angles.rotate(k);
            kv.write(layer, i, k, v)?;
            row = rows.end;
        }
        // Attend over each sequence's whole history, then project back.
        let mut y = vec![0f32; n * q_dim];
        let heads = Heads {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        };
        attend(heads, &q, spans, &kv.views(layer), &mut y);
        if let Some(tap) = tap {
            tap.trace
                .record(tap.layer, TracePoint::AttentionHeads, &y, q_dim);
        }
        self.o_proj
            .forward(&Tensor::from_vec(y, (n, q_dim), x.device())?)
    }
}

/// SwiGLU feed-forward block.
#[derive(Debug, Clone)]
struct Mlp {
    /// `(intermediate, hidden)`.
    gate_proj: Linear,
    /// `(intermediate, hidden)`.
    up_proj: Linear,
    /// `(hidden, intermediate)`.
    down_proj: Linear,
}

impl Mlp {
    fn load(files: &dyn TensorSource, name: &str, cfg: &Config) -> Result<Mlp> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate_proj: Linear::load(files, &format!("{name}.gate_proj"), i, h)?,
            up_proj: Linear::load(files, &format!("{name}.up_proj"), i, h)?,
            down_proj: Linear::load(files, &format!("{name}.down_proj"), h, i)?,
        })
    }

    fn forward(&self, x: &Tensor, tap: Option<&mut Tap<'_>>) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        let up = self.up_proj.forward(x)?;
        let hidden = (gate * up)?;
        if let Some(tap) = tap {
            tap.tensor(TracePoint::MlpHidden, &hidden)?;
        }
        self.down_proj.forward(&hidden)
    }
}

/// One pre-norm decoder layer.
#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(
        files: &dyn TensorSource,
        i: usize,
        cfg: &Config,
        device: &Device,
    ) -> Result<DecoderLayer> {
        let name = format!("model.layers.{i}");
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::load(files, &format!("{name}.input_layernorm"), cfg, device)?,
            self_attn: Attention::load(files, &format!("{name}.self_attn"), cfg)?,
            post_attention_layernorm: RmsNorm::load(
                files,
                &format!("{name}.post_attention_layernorm"),
                cfg,
                device,
            )?,
            mlp: Mlp::load(files, &format!("{name}.mlp"), cfg)?,
        })
    }
}

/// A loaded Llama model: configuration plus immutable weights.
#[derive(Debug, Clone)]
pub struct Llama {
    config: Config,
    generation: GenerationConfig,
    /// `(vocab, hidden)`.
    embed_tokens: Weight,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `(vocab, hidden)`; the embedding matrix itself when tied.
    lm_head: Linear,
    rope: Rope,
    device: Device,
    weight_bytes: u64,
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
        let device = Device::Cpu;
        let cfg = &config;
        let embed_tokens = files.get(
            "model.embed_tokens.weight",
            &[cfg.vocab_size, cfg.hidden_size],
        )?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear {
                weight: embed_tokens.clone(),
            }
        } else {
            Linear::load(files, "lm_head", cfg.vocab_size, cfg.hidden_size)?
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(files, i, cfg, &device))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(files, "model.norm", cfg, &device)?;
        Ok(Llama {
            rope,
            weight_bytes: files.total_bytes(),
            config,
            generation,
            embed_tokens,
            layers,
            norm,
            lm_head,
            device,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The checkpoint's generation defaults.
    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation
    }

    /// Bytes of weight data in the checkpoint files.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Storage dtype of the embedding (representative of the checkpoint).
    pub fn dtype(&self) -> crate::config::WeightDtype {
        self.embed_tokens.dtype()
    }

    /// A fresh, empty KV cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// Runs the batch and returns per-sequence logits, `(n_new, vocab)` for
    /// [`Logits::All`] or `(1, vocab)` for [`Logits::Last`]. Every input is
    /// checked before any cache is touched, so an error leaves caches intact.
    pub fn forward(&self, batch: &mut [SeqInput<'_>], which: Logits) -> Result<Vec<Tensor>> {
        self.check_batch(batch)?;
        let spans: Vec<Step<'_>> = batch
            .iter()
            .map(|s| Step {
                tokens: s.tokens,
                past: s.cache.len(),
                logits: which,
            })
            .collect();
        let logits = self.run(&spans, &mut BatchKv::Contiguous(batch), None)?;
        for seq in batch.iter_mut() {
            seq.cache.advance(seq.tokens.len());
        }
        Ok(logits)
    }

    /// Runs a batch whose KV lives in `pool`: each sequence's new tokens are
    /// written at positions `past..` of its block table and attend over
    /// positions `0..past + tokens.len()`. Returns per-sequence logits as
    /// [`Llama::forward`] does, with each sequence's own [`Logits`] choice.
    /// Every input is checked before the pool is touched.
    pub fn forward_paged(&self, pool: &mut KvPool, batch: &[PagedSeq<'_>]) -> Result<Vec<Tensor>> {
        self.check_paged(pool, batch)?;
        let spans: Vec<Step<'_>> = batch
            .iter()
            .map(|s| Step {
                tokens: s.tokens,
                past: s.past,
                logits: s.logits,
            })
            .collect();
        self.run(&spans, &mut BatchKv::Paged { pool, seqs: batch }, None)
    }

    /// Logits of every new token of one sequence, like [`Llama::forward_one`]
    /// with [`Logits::All`], handing each layer's activations to `trace`.
    pub fn forward_traced(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        trace: &mut dyn Trace,
    ) -> Result<Tensor> {
        let mut batch = [SeqInput { tokens, cache }];
        self.check_batch(&batch)?;
        let steps = [Step {
            tokens,
            past: batch[0].cache.len(),
            logits: Logits::All,
        }];
        let mut logits = self.run(&steps, &mut BatchKv::Contiguous(&mut batch), Some(trace))?;
        batch[0].cache.advance(tokens.len());
        logits
            .pop()
            .ok_or_else(|| ModelError::InvalidInput("empty batch".into()))
    }

    /// The forward pass proper, over already-checked inputs.
    fn run(
        &self,
        steps: &[Step<'_>],
        kv: &mut BatchKv<'_, '_>,
        mut trace: Option<&mut dyn Trace>,
    ) -> Result<Vec<Tensor>> {
        // Embed all new tokens of all sequences into one packed matrix.
        let tokens: Vec<u32> = steps
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let mut x = self.embed(&tokens)?;
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
        for (i, layer) in self.layers.iter().enumerate() {
            let mut tap = trace.as_deref_mut().map(|t| Tap { trace: t, layer: i });
            if let Some(tap) = tap.as_mut() {
                tap.tensor(TracePoint::LayerInput, &x)?;
            }
            // x = x + attn(norm(x))
            let h = layer.input_layernorm.forward(&x)?;
            let attn = layer
                .self_attn
                .forward(&h, i, &spans, &angles, kv, tap.as_mut())?;
            x = (x + attn)?;
            // x = x + mlp(norm(x))
            let h = layer.post_attention_layernorm.forward(&x)?;
            x = (x + layer.mlp.forward(&h, tap.as_mut())?)?;
            if let Some(tap) = tap.as_mut() {
                tap.tensor(TracePoint::LayerOutput, &x)?;
            }
        }
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
        let all = self.lm_head.forward(&selected)?;
        let mut logits = Vec::with_capacity(steps.len());
        let mut row = 0;
        for n in counts {
            logits.push(all.narrow(0, row, n)?);
            row += n;
        }
        Ok(logits)
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
            if seq.cache.num_layers() != self.config.num_hidden_layers
                || seq.cache.kv_dim() != self.kv_dim()
            {
                return Err(ModelError::InvalidInput(format!(
                    "KV cache made for {} layers of width {}, model has {} of width {}",
                    seq.cache.num_layers(),
                    seq.cache.kv_dim(),
                    self.config.num_hidden_layers,
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
        if pool.num_layers() != self.config.num_hidden_layers || pool.kv_dim() != self.kv_dim() {
            return Err(ModelError::InvalidInput(format!(
                "KV pool made for {} layers of width {}, model has {} of width {}",
                pool.num_layers(),
                pool.kv_dim(),
                self.config.num_hidden_layers,
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

    /// Width of one position's keys (or values) in one layer.
    fn kv_dim(&self) -> usize {
        self.config.num_key_value_heads * self.config.head_dim
    }

    /// Rows of the embedding table, converted to f32: `(tokens, hidden)`.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let h = self.config.hidden_size;
        let mut x = vec![0f32; tokens.len() * h];
        for (row, &t) in x.chunks_exact_mut(h).zip(tokens) {
            self.embed_tokens.read_f32(t as usize * h, row)?;
        }
        Ok(Tensor::from_vec(x, (tokens.len(), h), &self.device)?)
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
