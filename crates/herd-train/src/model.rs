//! A differentiable Llama for training: the same math as herd-model's
//! inference pass (RMSNorm, RoPE with llama3 scaling, GQA, SwiGLU, tied
//! embeddings), built from candle ops that have backward rules, with the
//! weights held as f32 tensors (trainable ones as `Var`s).
//!
//! herd-model keeps its weights memory-mapped and multiplies them with its
//! own kernels, which have no gradients; training needs its own copy anyway
//! (f32 master weights), so this file reads the same checkpoint through
//! herd-model's [`Checkpoint`] and rebuilds the forward pass from
//! differentiable pieces. The rotary frequencies come from herd-model's
//! [`Rope`], so both passes rotate by exactly the same angles.

use candle_core::{DType, Device, Tensor, Var, D};
use herd_model::{Checkpoint, Config, Rope, RopeLayout, TensorSource, Tensors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Row;
use crate::error::{Result, TrainError};
use crate::lora::{peft_name, LoraConfig, LoraTarget};

/// What is trained.
#[derive(Debug, Clone, PartialEq)]
pub enum Tuning {
    /// Every weight.
    Full,
    /// Low-rank adapters on the given projections; the base stays frozen.
    Lora(LoraConfig),
}

/// A linear layer `y = x Wᵀ (+ scale · x Aᵀ Bᵀ)`.
struct Linear {
    /// `(out, in)`.
    weight: Tensor,
    /// `(A: (r, in), B: (out, r), scale)` when adapted.
    lora: Option<(Tensor, Tensor, f64)>,
}

impl Linear {
    /// `x: (n, in)` → `(n, out)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul_t(x, &self.weight)?;
        Ok(match &self.lora {
            None => y,
            Some((a, b, scale)) => {
                let delta = x.matmul(&a.t()?)?.matmul(&b.t()?)?;
                (y + (delta * *scale)?)?
            }
        })
    }
}

struct Layer {
    /// `(hidden)`.
    input_layernorm: Tensor,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// `(hidden)`.
    post_attention_layernorm: Tensor,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// Where the initial weights come from.
enum Source<'a> {
    /// A Hugging Face checkpoint's tensors.
    Checkpoint(&'a Tensors),
    /// Random: normal(0, 0.02) matrices and unit norms, as `transformers` initialises Llama.
    Random(Box<ChaCha8Rng>),
}

impl Source<'_> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let values = match self {
            Source::Checkpoint(t) => t.get(name, shape)?.to_f32_vec()?,
            Source::Random(_) if shape.len() == 1 => vec![1.0; shape[0]],
            Source::Random(rng) => (0..shape.iter().product::<usize>())
                .map(|_| 0.02 * standard_normal(rng))
                .collect(),
        };
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
    }
}

/// Box–Muller from two uniforms: reproducible across platforms.
fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// The trainable model: weights, optional adapters, and the list of
/// trainable variables in a fixed order (the optimizer's and checkpoints' order).
pub struct TrainModel {
    config: Config,
    tuning: Tuning,
    /// `(vocab, hidden)`.
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    /// `(hidden)`.
    norm: Tensor,
    /// `(vocab, hidden)`; `None` when tied to `embed_tokens`.
    lm_head: Option<Tensor>,
    inv_freq: Vec<f32>,
    trainable: Vec<(String, Var)>,
}

/// Builds tensors from a source, marking the trainable ones.
struct Builder<'a> {
    source: Source<'a>,
    full: bool,
    trainable: Vec<(String, Var)>,
}

impl Builder<'_> {
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.source.get(name, shape)?;
        if !self.full {
            return Ok(t);
        }
        let var = Var::from_tensor(&t)?;
        let t = var.as_tensor().clone();
        self.trainable.push((name.to_string(), var));
        Ok(t)
    }

    fn linear(
        &mut self,
        layer: usize,
        target: LoraTarget,
        (out, inp): (usize, usize),
        lora: Option<(&LoraConfig, &mut ChaCha8Rng)>,
    ) -> Result<Linear> {
        let weight = self.weight(&format!("{}.weight", target.path(layer)), &[out, inp])?;
        let lora = match lora {
            Some((cfg, rng)) if cfg.targets.contains(&target) => {
                // PEFT's init: A ~ kaiming-uniform(a = √5) = U(±1/√in), B = 0.
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..cfg.rank * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Var::from_vec(a, (cfg.rank, inp), &Device::Cpu)?;
                let b = Var::zeros((out, cfg.rank), DType::F32, &Device::Cpu)?;
                let tensors = (a.as_tensor().clone(), b.as_tensor().clone(), cfg.scale());
                self.trainable.push((peft_name(layer, target, 'A'), a));
                self.trainable.push((peft_name(layer, target, 'B'), b));
                Some(tensors)
            }
            _ => None,
        };
        Ok(Linear { weight, lora })
    }
}

impl TrainModel {
    /// Loads a Hugging Face checkpoint for fine-tuning; `seed` draws the
    /// adapters' initial `A`.
    pub fn from_checkpoint(ckpt: &Checkpoint, tuning: Tuning, seed: u64) -> Result<TrainModel> {
        if matches!(ckpt.tensors, Tensors::Gguf(_))
            || ckpt.tensors.rope_layout() != RopeLayout::HalfSplit
        {
            return Err(TrainError::InvalidOption(format!(
                "{}: training needs a Hugging Face safetensors directory, not a GGUF file",
                ckpt.path.display()
            )));
        }
        TrainModel::build(
            ckpt.config.clone(),
            tuning,
            Source::Checkpoint(&ckpt.tensors),
            seed,
        )
    }

    /// A new model with random weights (`herd train`), every weight trainable.
    pub fn random(config: Config, seed: u64) -> Result<TrainModel> {
        let source = Source::Random(Box::new(ChaCha8Rng::seed_from_u64(seed)));
        TrainModel::build(config, Tuning::Full, source, seed)
    }

    fn build(config: Config, tuning: Tuning, source: Source<'_>, seed: u64) -> Result<TrainModel> {
        let cfg = &config;
        let mut b = Builder {
            source,
            full: tuning == Tuning::Full,
            trainable: Vec::new(),
        };
        let mut lora_rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
        let lora_cfg = match &tuning {
            Tuning::Lora(l) => Some(l.clone()),
            Tuning::Full => None,
        };
        let (h, q, kv, i) = (
            cfg.hidden_size,
            cfg.num_attention_heads * cfg.head_dim,
            cfg.num_key_value_heads * cfg.head_dim,
            cfg.intermediate_size,
        );
        let embed_tokens = b.weight("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let mut lin = |b: &mut Builder, t, shape| {
                b.linear(l, t, shape, lora_cfg.as_ref().map(|c| (c, &mut lora_rng)))
            };
            let prefix = format!("model.layers.{l}");
            layers.push(Layer {
                input_layernorm: b.weight(&format!("{prefix}.input_layernorm.weight"), &[h])?,
                q_proj: lin(&mut b, LoraTarget::Q, (q, h))?,
                k_proj: lin(&mut b, LoraTarget::K, (kv, h))?,
                v_proj: lin(&mut b, LoraTarget::V, (kv, h))?,
                o_proj: lin(&mut b, LoraTarget::O, (h, q))?,
                post_attention_layernorm: b
                    .weight(&format!("{prefix}.post_attention_layernorm.weight"), &[h])?,
                gate_proj: lin(&mut b, LoraTarget::Gate, (i, h))?,
                up_proj: lin(&mut b, LoraTarget::Up, (i, h))?,
                down_proj: lin(&mut b, LoraTarget::Down, (h, i))?,
            });
        }
        let norm = b.weight("model.norm.weight", &[h])?;
        let lm_head = match cfg.tie_word_embeddings {
            true => None,
            false => Some(b.weight("lm_head.weight", &[cfg.vocab_size, h])?),
        };
        Ok(TrainModel {
            inv_freq: Rope::new(cfg).inv_freq().to_vec(),
            trainable: b.trainable,
            config,
            tuning,
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Full fine-tuning or LoRA.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// The trainable variables with their checkpoint names (HF names for
    /// full training, PEFT names for adapters), in a fixed order.
    pub fn trainable(&self) -> &[(String, Var)] {
        &self.trainable
    }

    /// Number of trainable parameters.
    pub fn trainable_parameters(&self) -> usize {
        self.trainable.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The base weights under their Hugging Face names (the trained values
    /// when fine-tuning fully).
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.clone(),
        )];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_layernorm.clone(),
            ));
            for (t, lin) in [
                (LoraTarget::Q, &layer.q_proj),
                (LoraTarget::K, &layer.k_proj),
                (LoraTarget::V, &layer.v_proj),
                (LoraTarget::O, &layer.o_proj),
            ] {
                out.push((format!("{}.weight", t.path(l)), lin.weight.clone()));
            }
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_attention_layernorm.clone(),
            ));
            for (t, lin) in [
                (LoraTarget::Gate, &layer.gate_proj),
                (LoraTarget::Up, &layer.up_proj),
                (LoraTarget::Down, &layer.down_proj),
            ] {
                out.push((format!("{}.weight", t.path(l)), lin.weight.clone()));
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.clone()));
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head.clone()));
        }
        out
    }

    /// Logits `(rows · seq_len, vocab)` for packed rows.
    pub fn forward(&self, rows: &[Row]) -> Result<Tensor> {
        matmul_t(&self.hidden(rows)?, self.head())
    }

    /// The output projection `(vocab, hidden)`: `lm_head`, or the embedding
    /// when tied. Losses that never hold the whole `(positions, vocab)`
    /// logits matrix (herd-distill's chunked losses) multiply by it themselves.
    pub fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// The final normalised hidden states `(rows · seq_len, hidden)`: the
    /// logits are `hidden · headᵀ`.
    pub fn hidden(&self, rows: &[Row]) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t) = (rows.len(), rows.first().map_or(0, |r| r.inputs.len()));
        let dev = &Device::Cpu;
        let ids: Vec<u32> = rows.iter().flat_map(|r| r.inputs.iter().copied()).collect();
        let ids = Tensor::from_vec(ids, b * t, dev)?;
        let (cos, sin) = self.rope_tables(rows)?;
        let mask = attention_mask(rows)?;
        // Token embeddings: (b·t, hidden).
        let mut x = self.embed_tokens.index_select(&ids, 0)?;
        for layer in &self.layers {
            let h = rms_norm(&x, &layer.input_layernorm, cfg.rms_norm_eps)?;
            let attn = self.attention(layer, &h, (b, t), (&cos, &sin), &mask)?;
            x = (x + layer.o_proj.forward(&attn)?)?;
            let h = rms_norm(&x, &layer.post_attention_layernorm, cfg.rms_norm_eps)?;
            // SwiGLU: down(silu(gate(h)) · up(h)).
            let gated = (layer.gate_proj.forward(&h)?.silu()? * layer.up_proj.forward(&h)?)?;
            x = (x + layer.down_proj.forward(&gated)?)?;
        }
        rms_norm(&x, &self.norm, cfg.rms_norm_eps)
    }

    /// Causal self-attention over packed rows; returns `(b·t, heads·head_dim)`.
    fn attention(
        &self,
        layer: &Layer,
        h: &Tensor,
        (b, t): (usize, usize),
        (cos, sin): (&Tensor, &Tensor),
        mask: &Tensor,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let heads = |x: Tensor, n: usize| -> Result<Tensor> {
            Ok(x.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        // q: (b, nh, t, hd); k, v: (b, nkv, t, hd).
        let q = rotate(&heads(layer.q_proj.forward(h)?, nh)?, cos, sin)?;
        let k = rotate(&heads(layer.k_proj.forward(h)?, nkv)?, cos, sin)?;
        let v = heads(layer.v_proj.forward(h)?, nkv)?;
        // GQA without copying keys: the `rep` query heads sharing a KV head
        // are stacked along the time axis, (b, nkv, rep·t, hd).
        let rep = nh / nkv;
        let q = q.reshape((b, nkv, rep * t, hd))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = scores.reshape((b, nh, t, t))?.broadcast_add(mask)?;
        let probs = crate::ops::softmax_last_dim(&scores)?;
        let out = probs.reshape((b, nkv, rep * t, t))?.matmul(&v)?;
        // (b, nh, t, hd) → (b·t, nh·hd).
        Ok(out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b * t, nh * hd))?)
    }

    /// `cos`/`sin` of every token's angle, `(b, 1, t, head_dim)`, with the
    /// half-split layout's two halves already side by side.
    fn rope_tables(&self, rows: &[Row]) -> Result<(Tensor, Tensor)> {
        let (b, t) = (rows.len(), rows.first().map_or(0, |r| r.inputs.len()));
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(b * t * half);
        let mut sin = Vec::with_capacity(b * t * half);
        for &pos in rows.iter().flat_map(|r| &r.positions) {
            for &f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |v: Vec<f32>| -> Result<Tensor> {
            let t = Tensor::from_vec(v, (b, 1, t, half), &Device::Cpu)?;
            Ok(Tensor::cat(&[&t, &t], 3)?)
        };
        Ok((table(cos)?, table(sin)?))
    }
}

/// `x wᵀ`; a weight that is not trained takes the frozen path, which skips
/// its gradient (LoRA's base weights).
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(if w.is_variable() {
        x.matmul(&w.t()?)?
    } else {
        crate::ops::frozen_linear(x, w)?
    })
}

/// `x / rms(x) · w` over the last axis, as `transformers`' `LlamaRMSNorm`.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
    let x = x.broadcast_div(&(mean_sq + eps)?.sqrt()?)?;
    Ok(x.broadcast_mul(w)?)
}

/// Half-split RoPE: `x · cos + rotate_half(x) · sin`.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// `(b, 1, t, t)`: 0 where token i may see token j (same segment, j ≤ i), −∞ elsewhere.
fn attention_mask(rows: &[Row]) -> Result<Tensor> {
    let (b, t) = (rows.len(), rows.first().map_or(0, |r| r.inputs.len()));
    let mut mask = vec![f32::NEG_INFINITY; b * t * t];
    for (r, row) in rows.iter().enumerate() {
        for i in 0..t {
            for j in 0..=i {
                if row.segments[i] == row.segments[j] {
                    mask[(r * t + i) * t + j] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (b, 1, t, t), &Device::Cpu)?)
}

/// Sum of the cross-entropy of the weighted positions, and their number.
pub fn loss_sum(logits: &Tensor, rows: &[Row]) -> Result<(Tensor, usize)> {
    let dev = &Device::Cpu;
    let labels: Vec<u32> = rows.iter().flat_map(|r| r.labels.iter().copied()).collect();
    let weights: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.weights.iter().copied())
        .collect();
    let count = weights.iter().filter(|&&w| w > 0.0).count();
    let n = labels.len();
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs
        .gather(&Tensor::from_vec(labels, (n, 1), dev)?, 1)?
        .squeeze(1)?;
    let weights = Tensor::from_vec(weights, n, dev)?;
    Ok(((picked * weights)?.sum_all()?.neg()?, count))
}
