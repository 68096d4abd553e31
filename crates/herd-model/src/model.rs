//! The Llama decoder. Weights are immutable and memory-mapped; each call to
//! [`Llama::forward`] takes a batch of sequences, each with its own
//! [`KvCache`], and returns logits for every new position (or only the last).
//!
//! The batch is "packed": the new tokens of all sequences are concatenated
//! into one `(tokens, hidden)` matrix so that every linear layer streams its
//! weights once per step however many sequences are in flight; only attention,
//! which mixes positions, runs per sequence. No padding is ever computed, so a
//! sequence gives the same logits alone or in any batch.

use candle_core::{Device, Storage, Tensor};
use herd_kernels::matmul_wt;

use crate::config::{Config, GenerationConfig};
use crate::error::{ModelError, Result};
use crate::kv::KvCache;
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

/// One sequence's part of a batch: its new tokens and its KV state.
pub struct SeqInput<'a> {
    /// Tokens to append (at least one).
    pub tokens: &'a [u32],
    /// The sequence's cache; its length is the position of `tokens[0]`.
    pub cache: &'a mut KvCache,
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
        let (n, k) = x.dims2()?;
        let out_features = self.weight.shape()[0];
        let mut y = vec![0f32; n * out_features];
        with_f32_slice(x, |xs| {
            matmul_wt(xs, n, k, self.weight.as_slice(), out_features, &mut y)
        })??;
        Ok(Tensor::from_vec(y, (n, out_features), x.device())?)
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

    /// `x: (total_new_tokens, hidden)` packed over `batch`; returns the same shape.
    fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        batch: &mut [SeqInput<'_>],
        angles: &[RopeAngles],
    ) -> Result<Tensor> {
        // Projections for all sequences at once.
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        let mut outputs = Vec::with_capacity(batch.len());
        let mut row = 0;
        for (seq, angles) in batch.iter_mut().zip(angles) {
            let n = seq.tokens.len();
            let past = seq.cache.len();
            let q = q
                .narrow(0, row, n)?
                .reshape((1, n, self.n_heads, self.head_dim))?;
            let k = k
                .narrow(0, row, n)?
                .reshape((1, n, self.n_kv_heads, self.head_dim))?;
            let v = v
                .narrow(0, row, n)?
                .reshape((1, n, self.n_kv_heads, self.head_dim))?;
            row += n;
            // (1, heads, n, head_dim), rotated by absolute position.
            let q = angles.apply(&q.transpose(1, 2)?)?;
            let k = angles.apply(&k.transpose(1, 2)?)?;
            let v = v.transpose(1, 2)?.contiguous()?;
            // Append to this sequence's cache and attend over all of it.
            let (k, v) = seq.cache.append(layer, k, v)?;
            outputs.push(self.attend(&q, &k, &v, past)?);
        }
        let y = Tensor::cat(&outputs, 0)?;
        self.o_proj.forward(&y)
    }

    /// softmax(q kᵀ / √d + causal mask) v for one sequence.
    /// `q: (1, n_heads, n, d)`, `k, v: (1, n_kv_heads, past + n, d)`; returns `(n, n_heads * d)`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, past: usize) -> Result<Tensor> {
        let n = q.dim(2)?;
        let total = k.dim(2)?;
        let group = self.n_heads / self.n_kv_heads;
        // Query heads sharing a KV head are stacked, so K and V are never repeated.
        let q = q.reshape((1, self.n_kv_heads, group * n, self.head_dim))?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = if n > 1 {
            scores.broadcast_add(&causal_mask(n, group, past, total, q.device())?)?
        } else {
            scores
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(v)?; // (1, n_kv_heads, group * n, d)
        let y = y
            .reshape((1, self.n_heads, n, self.head_dim))?
            .transpose(1, 2)?;
        Ok(y.reshape((n, self.n_heads * self.head_dim))?)
    }
}

/// `(group * n, total)`: row `g * n + i` is query position `past + i`, which
/// may see keys `0..=past + i`.
fn causal_mask(
    n: usize,
    group: usize,
    past: usize,
    total: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut mask = Vec::with_capacity(group * n * total);
    for _ in 0..group {
        for i in 0..n {
            mask.extend((0..total).map(|j| {
                if j <= past + i {
                    0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    Ok(Tensor::from_vec(mask, (group * n, total), device)?)
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

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        let up = self.up_proj.forward(x)?;
        self.down_proj.forward(&(gate * up)?)
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
        // Embed all new tokens of all sequences into one packed matrix.
        let tokens: Vec<u32> = batch
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let mut x = self.embed(&tokens)?;
        // Rotary angles of each sequence's new positions, shared by all layers.
        let angles = batch
            .iter()
            .map(|s| {
                self.rope
                    .angles(s.cache.len(), s.tokens.len(), &self.device)
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, layer) in self.layers.iter().enumerate() {
            // x = x + attn(norm(x))
            let h = layer.input_layernorm.forward(&x)?;
            x = (x + layer.self_attn.forward(&h, i, batch, &angles)?)?;
            // x = x + mlp(norm(x))
            let h = layer.post_attention_layernorm.forward(&x)?;
            x = (x + layer.mlp.forward(&h)?)?;
        }
        for seq in batch.iter_mut() {
            seq.cache.advance(seq.tokens.len());
        }
        // Final norm, then the vocabulary projection on the requested rows.
        let x = self.norm.forward(&x)?;
        let mut logits = Vec::with_capacity(batch.len());
        match which {
            Logits::All => {
                let all = self.lm_head.forward(&x)?;
                let mut row = 0;
                for seq in batch.iter() {
                    logits.push(all.narrow(0, row, seq.tokens.len())?);
                    row += seq.tokens.len();
                }
            }
            Logits::Last => {
                let mut row = 0;
                let mut last_rows = Vec::with_capacity(batch.len());
                for seq in batch.iter() {
                    row += seq.tokens.len();
                    last_rows.push(x.narrow(0, row - 1, 1)?);
                }
                let all = self.lm_head.forward(&Tensor::cat(&last_rows, 0)?)?;
                for i in 0..batch.len() {
                    logits.push(all.narrow(0, i, 1)?);
                }
            }
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
            if seq.tokens.is_empty() {
                return Err(ModelError::InvalidInput(
                    "a sequence in the batch has no new tokens".into(),
                ));
            }
            if seq.cache.num_layers() != self.config.num_hidden_layers {
                return Err(ModelError::InvalidInput(format!(
                    "KV cache made for {} layers, model has {}",
                    seq.cache.num_layers(),
                    self.config.num_hidden_layers
                )));
            }
            let requested = seq.cache.len() + seq.tokens.len();
            if requested > self.config.max_position_embeddings {
                return Err(ModelError::ContextOverflow {
                    limit: self.config.max_position_embeddings,
                    requested,
                });
            }
            if let Some(&id) = seq
                .tokens
                .iter()
                .find(|&&t| t as usize >= self.config.vocab_size)
            {
                return Err(ModelError::TokenOutOfRange {
                    id,
                    vocab_size: self.config.vocab_size,
                });
            }
        }
        Ok(())
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
