//! Llama models from GGUF files (llama.cpp's format).
//!
//! Three differences from a Hugging Face directory, each handled here so the
//! forward pass stays format-agnostic:
//! - **Names and dims.** `blk.3.attn_q.weight` instead of
//!   `model.layers.3.self_attn.q_proj.weight`, dims listed fastest-first
//!   (`[in_features, out_features]`). [`GgufWeights`] translates HF names and
//!   reverses dims, so the model code names each tensor once.
//! - **RoPE pairing.** llama.cpp's converter permutes the rows of q and k so
//!   that adjacent dimensions rotate together; the model uses
//!   [`RopeLayout::Interleaved`] for these files.
//! - **RoPE scaling.** Llama 3.1's scaling is stored as the `rope_freqs`
//!   tensor (one divisor per frequency) rather than as config values; it is
//!   applied as is (candle's quantized Llama ignores it, which silently breaks
//!   contexts past 8K).

use std::path::{Path, PathBuf};

use herd_gguf::{GgmlType, GgufFile};
use herd_kernels::QuantType;

use crate::config::{Config, RopeScaling, WeightDtype};
use crate::error::{ModelError, Result};
use crate::rope::{Rope, RopeLayout};
use crate::weights::{TensorSource, Weight};

/// A GGUF file's tensors, looked up by Hugging Face name.
pub struct GgufWeights {
    file: GgufFile,
    path: PathBuf,
}

impl GgufWeights {
    /// Wraps a parsed file; `path` is used in error messages.
    pub fn new(file: GgufFile, path: &Path) -> GgufWeights {
        GgufWeights {
            file,
            path: path.to_path_buf(),
        }
    }

    /// The parsed file (metadata for the tokenizer and `herd info`).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn gguf_error(&self, e: herd_gguf::GgufError) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// The GGUF name of a Hugging Face Llama tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let direct = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = direct {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match tail {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}.weight"))
}

fn weight_dtype(t: GgmlType) -> Option<WeightDtype> {
    match t {
        GgmlType::F32 => Some(WeightDtype::F32),
        GgmlType::F16 => Some(WeightDtype::F16),
        GgmlType::BF16 => Some(WeightDtype::Bf16),
        other => quant_type(other).map(WeightDtype::Quant),
    }
}

/// The kernels' name for a ggml block format herd can compute with.
pub(crate) fn quant_type(t: GgmlType) -> Option<QuantType> {
    match t {
        GgmlType::Q8_0 => Some(QuantType::Q8_0),
        GgmlType::Q4_0 => Some(QuantType::Q4_0),
        GgmlType::Q4_K => Some(QuantType::Q4_K),
        GgmlType::Q5_K => Some(QuantType::Q5_K),
        GgmlType::Q6_K => Some(QuantType::Q6_K),
        _ => None,
    }
}

impl TensorSource for GgufWeights {
    fn get(&self, name: &str, expected: &[usize]) -> Result<Weight> {
        let missing = || ModelError::MissingTensor {
            name: name.to_string(),
            location: self.path.display().to_string(),
        };
        let gname = gguf_name(name).ok_or_else(missing)?;
        let tensor = self
            .file
            .tensor(&gname)
            .ok_or_else(|| ModelError::MissingTensor {
                name: gname.clone(),
                location: self.path.display().to_string(),
            })?;
        let info = tensor.info();
        // GGUF lists dims fastest-first; PyTorch order is the reverse.
        let shape: Vec<usize> = info.dims().iter().rev().map(|&d| d as usize).collect();
        if shape != expected {
            return Err(ModelError::WrongShape {
                name: gname,
                path: self.path.clone(),
                expected: expected.to_vec(),
                actual: shape,
            });
        }
        let dtype = weight_dtype(info.ggml_type()).ok_or_else(|| ModelError::UnsupportedDtype {
            name: gname.clone(),
            path: self.path.clone(),
            dtype: info.ggml_type().name().to_string(),
        })?;
        Ok(Weight::from_gguf(
            self.file.bytes(),
            info.file_range(),
            dtype,
            shape,
        ))
    }

    fn has(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.file.tensor(&g).is_some())
    }

    fn total_bytes(&self) -> u64 {
        self.file
            .tensor_infos()
            .iter()
            .map(|t| t.n_bytes() as u64)
            .sum()
    }

    fn rope_layout(&self) -> RopeLayout {
        RopeLayout::Interleaved
    }
}

/// The rotary embedding of a GGUF file: interleaved pairs, frequencies
/// divided by `rope_freqs` when present.
pub(crate) fn gguf_rope(weights: &GgufWeights, config: &Config) -> Result<Rope> {
    let factors = match weights.file.tensor("rope_freqs.weight") {
        None => None,
        Some(t) => {
            let w = weights.get_raw_f32("rope_freqs.weight", t.info().n_elements() as usize)?;
            if w.len() != config.head_dim / 2 {
                return Err(ModelError::WrongShape {
                    name: "rope_freqs.weight".into(),
                    path: weights.path.clone(),
                    expected: vec![config.head_dim / 2],
                    actual: vec![w.len()],
                });
            }
            Some(w)
        }
    };
    Ok(Rope::from_factors(
        config.rope_theta,
        config.head_dim,
        factors.as_deref(),
        RopeLayout::Interleaved,
    ))
}

impl GgufWeights {
    /// A small f32 tensor by its GGUF name (e.g. `rope_freqs.weight`).
    fn get_raw_f32(&self, gname: &str, len: usize) -> Result<Vec<f32>> {
        let t = self
            .file
            .tensor(gname)
            .ok_or_else(|| ModelError::MissingTensor {
                name: gname.to_string(),
                location: self.path.display().to_string(),
            })?;
        let dtype =
            weight_dtype(t.info().ggml_type()).ok_or_else(|| ModelError::UnsupportedDtype {
                name: gname.to_string(),
                path: self.path.clone(),
                dtype: t.info().ggml_type().name().to_string(),
            })?;
        Weight::from_gguf(self.file.bytes(), t.info().file_range(), dtype, vec![len]).to_f32_vec()
    }
}

/// The resolved config from `llama.*` metadata (and tensor shapes where the
/// metadata is optional).
pub(crate) fn gguf_config(weights: &GgufWeights) -> Result<Config> {
    let meta = weights.file.metadata();
    let path = &weights.path;
    let arch = meta.architecture().map_err(|e| weights.gguf_error(e))?;
    if arch != "llama" {
        return Err(ModelError::UnsupportedArchitecture {
            path: path.clone(),
            found: arch.to_string(),
        });
    }
    let need = |key: &str| -> Result<usize> {
        let v = meta.get_usize(key).map_err(|e| weights.gguf_error(e))?;
        if v == 0 {
            return Err(ModelError::InvalidConfig {
                path: path.clone(),
                reason: format!("{key} must be positive"),
            });
        }
        Ok(v)
    };
    let optional_usize = |key: &str| -> Result<Option<usize>> {
        if meta.contains_key(key) {
            need(key).map(Some)
        } else {
            Ok(None)
        }
    };
    let optional_f64 = |key: &str| -> Result<Option<f64>> {
        if meta.contains_key(key) {
            meta.get_f64(key)
                .map(Some)
                .map_err(|e| weights.gguf_error(e))
        } else {
            Ok(None)
        }
    };
    let hidden_size = need("llama.embedding_length")?;
    let num_attention_heads = need("llama.attention.head_count")?;
    let num_key_value_heads =
        optional_usize("llama.attention.head_count_kv")?.unwrap_or(num_attention_heads);
    let vocab_size = match optional_usize("llama.vocab_size")? {
        Some(v) => v,
        None => weights
            .file
            .tensor("token_embd.weight")
            .and_then(|t| t.info().dims().get(1).copied())
            .map(|d| d as usize)
            .ok_or_else(|| ModelError::MissingTensor {
                name: "token_embd.weight".into(),
                location: path.display().to_string(),
            })?,
    };
    let head_dim = match optional_usize("llama.attention.key_length")? {
        Some(d) => d,
        None => hidden_size / num_attention_heads,
    };
    let token_id = |key: &str| -> Option<u32> { meta.get_u32(key).ok() };
    let config = Config {
        vocab_size,
        hidden_size,
        intermediate_size: need("llama.feed_forward_length")?,
        num_hidden_layers: need("llama.block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: optional_f64("llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        rope_theta: optional_f64("llama.rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling: if weights.file.tensor("rope_freqs.weight").is_some() {
            RopeScaling::FrequencyFactors
        } else {
            RopeScaling::None
        },
        max_position_embeddings: need("llama.context_length")?,
        tie_word_embeddings: weights.file.tensor("output.weight").is_none(),
        dtype: None,
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_ids: token_id("tokenizer.ggml.eos_token_id")
            .into_iter()
            .collect(),
    };
    config.validate(path)?;
    Ok(config)
}
