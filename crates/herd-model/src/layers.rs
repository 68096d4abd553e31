//! The building blocks of one decoder layer (linear, RMSNorm, attention,
//! SwiGLU MLP) and the per-pass context they share; [`crate::model`]
//! strings them into the Llama forward pass.

use std::ops::Range;

use candle_core::{Device, Storage, Tensor};
use herd_kernels::matmul_wt;

use crate::attention::{attend, Heads, Span};
use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::model::{BatchKv, Trace, TracePoint};
use crate::rope::RopeAngles;
use crate::shard::{Shard, TensorParallel};
use crate::weights::{TensorSource, Weight};

/// A linear layer without bias, computed by herd's own kernels.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `(out_features, in_features)`, as stored by PyTorch.
    pub(crate) weight: Weight,
}

impl Linear {
    pub(crate) fn load(
        files: &dyn TensorSource,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: files.get(&format!("{name}.weight"), &[out_features, in_features])?,
        })
    }

    /// Keeps output features `rows` (column-parallel); all of them on one rank.
    pub(crate) fn split_rows(self, shard: &Shard, rows: Range<usize>) -> Result<Linear> {
        if shard.tp_size == 1 {
            return Ok(self);
        }
        Ok(Linear {
            weight: self.weight.rows(rows)?,
        })
    }

    /// Keeps input features `cols` (row-parallel); all of them on one rank.
    pub(crate) fn split_columns(self, shard: &Shard, cols: Range<usize>) -> Result<Linear> {
        if shard.tp_size == 1 {
            return Ok(self);
        }
        Ok(Linear {
            weight: self.weight.columns(cols)?,
        })
    }

    /// `x · Wᵀ` for `x: (n, in_features)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let y = with_f32_slice(x, |xs| self.apply(xs, n))??;
        Ok(Tensor::from_vec(
            y,
            (n, self.weight.shape()[0]),
            x.device(),
        )?)
    }

    /// `x · Wᵀ` on plain rows: `x: (n, in_features)` → `(n, out_features)`.
    pub(crate) fn apply(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
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

/// What every layer of one forward pass shares besides its input: the
/// tensor-parallel group that sums the ranks' partial outputs, and the
/// [`Trace`] watching activations (if any), bound to the layer being computed.
pub(crate) struct Pass<'p, 't> {
    pub(crate) tp: &'p dyn TensorParallel,
    pub(crate) trace: Option<&'t mut dyn Trace>,
    pub(crate) layer: usize,
}

impl Pass<'_, '_> {
    /// Hands `(tokens, width)` rows to the trace, if there is one.
    pub(crate) fn record(&mut self, point: TracePoint, values: &[f32], width: usize) {
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.record(self.layer, point, values, width);
        }
    }

    /// Hands a `(tokens, width)` activation to the trace, if there is one.
    pub(crate) fn tensor(&mut self, point: TracePoint, t: &Tensor) -> Result<()> {
        if self.trace.is_none() {
            return Ok(());
        }
        let width = t.dim(1)?;
        with_f32_slice(t, |v| self.record(point, v, width))
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor without copying it.
pub(crate) fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
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
pub(crate) struct RmsNorm {
    /// `(hidden,)`.
    pub(crate) weight: Tensor,
    pub(crate) eps: f32,
}

impl RmsNorm {
    pub(crate) fn load(
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

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, &self.weight, self.eps)?)
    }
}

/// Grouped-query self-attention.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    /// `(n_heads * head_dim, hidden)`.
    pub(crate) q_proj: Linear,
    /// `(n_kv_heads * head_dim, hidden)`.
    pub(crate) k_proj: Linear,
    /// `(n_kv_heads * head_dim, hidden)`.
    pub(crate) v_proj: Linear,
    /// `(hidden, n_heads * head_dim)`.
    pub(crate) o_proj: Linear,
    pub(crate) n_heads: usize,
    pub(crate) n_kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    /// Loads the query and KV heads of `shard` (all of them on one rank).
    pub(crate) fn load(
        files: &dyn TensorSource,
        name: &str,
        cfg: &Config,
        shard: &Shard,
    ) -> Result<Attention> {
        let d = cfg.head_dim;
        let (h, q, kv) = (
            cfg.hidden_size,
            cfg.num_attention_heads * d,
            cfg.num_key_value_heads * d,
        );
        let dims = |heads: Range<usize>| heads.start * d..heads.end * d;
        let q_rows = dims(shard.even_slice(cfg.num_attention_heads));
        let kv_rows = dims(shard.even_slice(cfg.num_key_value_heads));
        Ok(Attention {
            q_proj: Linear::load(files, &format!("{name}.q_proj"), q, h)?
                .split_rows(shard, q_rows.clone())?,
            k_proj: Linear::load(files, &format!("{name}.k_proj"), kv, h)?
                .split_rows(shard, kv_rows.clone())?,
            v_proj: Linear::load(files, &format!("{name}.v_proj"), kv, h)?
                .split_rows(shard, kv_rows)?,
            o_proj: Linear::load(files, &format!("{name}.o_proj"), h, q)?
                .split_columns(shard, q_rows)?,
            n_heads: cfg.num_attention_heads / shard.tp_size,
            n_kv_heads: cfg.num_key_value_heads / shard.tp_size,
            head_dim: d,
        })
    }

    /// `x: (total_new_tokens, hidden)` packed over `spans`; returns the same
    /// shape, summed over the tensor-parallel group.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        spans: &[Span],
        angles: &[RopeAngles],
        kv: &mut BatchKv<'_, '_>,
        pass: &mut Pass<'_, '_>,
    ) -> Result<Tensor> {
        let layer = pass.layer;
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
        pass.record(TracePoint::AttentionHeads, &y, q_dim);
        // Row-parallel output projection: each rank's heads give a partial sum.
        let mut out = self.o_proj.apply(&y, n)?;
        pass.tp.all_reduce_sum(&mut out)?;
        Ok(Tensor::from_vec(out, (n, x.dim(1)?), x.device())?)
    }
}

/// SwiGLU feed-forward block.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    /// `(intermediate, hidden)`.
    pub(crate) gate_proj: Linear,
    /// `(intermediate, hidden)`.
    pub(crate) up_proj: Linear,
    /// `(hidden, intermediate)`.
    pub(crate) down_proj: Linear,
}

impl Mlp {
    /// Loads the intermediate features of `shard` (all of them on one rank).
    pub(crate) fn load(
        files: &dyn TensorSource,
        name: &str,
        cfg: &Config,
        shard: &Shard,
    ) -> Result<Mlp> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let mine = shard.even_slice(i);
        Ok(Mlp {
            gate_proj: Linear::load(files, &format!("{name}.gate_proj"), i, h)?
                .split_rows(shard, mine.clone())?,
            up_proj: Linear::load(files, &format!("{name}.up_proj"), i, h)?
                .split_rows(shard, mine.clone())?,
            down_proj: Linear::load(files, &format!("{name}.down_proj"), h, i)?
                .split_columns(shard, mine)?,
        })
    }

    /// `x: (n, hidden)` → `(n, hidden)`, summed over the tensor-parallel group.
    pub(crate) fn forward(&self, x: &Tensor, pass: &mut Pass<'_, '_>) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        let up = self.up_proj.forward(x)?;
        let hidden = (gate * up)?;
        pass.tensor(TracePoint::MlpHidden, &hidden)?;
        let n = x.dim(0)?;
        let mut out = with_f32_slice(&hidden, |xs| self.down_proj.apply(xs, n))??;
        pass.tp.all_reduce_sum(&mut out)?;
        Ok(Tensor::from_vec(out, (n, x.dim(1)?), x.device())?)
    }
}

/// One pre-norm decoder layer.
#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) self_attn: Attention,
    pub(crate) post_attention_layernorm: RmsNorm,
    pub(crate) mlp: Mlp,
}

impl DecoderLayer {
    pub(crate) fn load(
        files: &dyn TensorSource,
        i: usize,
        cfg: &Config,
        shard: &Shard,
        device: &Device,
    ) -> Result<DecoderLayer> {
        let name = format!("model.layers.{i}");
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::load(files, &format!("{name}.input_layernorm"), cfg, device)?,
            self_attn: Attention::load(files, &format!("{name}.self_attn"), cfg, shard)?,
            post_attention_layernorm: RmsNorm::load(
                files,
                &format!("{name}.post_attention_layernorm"),
                cfg,
                device,
            )?,
            mlp: Mlp::load(files, &format!("{name}.mlp"), cfg, shard)?,
        })
    }
}

/// Bytes of weights a shard uses: its embedding rows, layers and head.
pub(crate) fn held_bytes(
    embed: Option<&Weight>,
    layers: &[DecoderLayer],
    head: Option<&Linear>,
    cfg: &Config,
) -> u64 {
    let linear = |l: &Linear| l.weight.byte_len() as u64;
    let per_layer: u64 = layers
        .iter()
        .map(|l| {
            let (a, m) = (&l.self_attn, &l.mlp);
            [
                &a.q_proj,
                &a.k_proj,
                &a.v_proj,
                &a.o_proj,
                &m.gate_proj,
                &m.up_proj,
                &m.down_proj,
            ]
            .into_iter()
            .map(linear)
            .sum::<u64>()
                + 2 * 4 * cfg.hidden_size as u64
        })
        .sum();
    let embed_bytes = embed.map_or(0, |w| w.byte_len() as u64);
    // A tied head on the first stage reads the embedding's own rows.
    let head_bytes = match (head, embed.is_some() && cfg.tie_word_embeddings) {
        (Some(h), false) => linear(h),
        _ => 0,
    };
    embed_bytes + per_layer + head_bytes + 4 * cfg.hidden_size as u64
}
