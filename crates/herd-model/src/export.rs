//! Writing a model as a GGUF file that llama.cpp (and Ollama, LM Studio)
//! loads: llama.cpp's tensor names, dims, q/k row order and metadata keys,
//! and its per-tensor type choices for the mixed `_M` file types, so a file
//! from `herd quantize` is laid out like one from `llama-quantize`.
//!
//! The tokenizer's metadata (`tokenizer.ggml.*`) is not the model's business:
//! the caller adds it to the writer's metadata.

use herd_gguf::{GgmlType, GgufWriter, Metadata, MetadataValue};

use crate::config::{Config, RopeScaling};
use crate::error::{ModelError, Result};
use crate::rope::{Rope, RopeLayout};
use crate::weights::TensorSource;

/// A target file type, as `llama-quantize` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Everything f32.
    F32,
    /// 2-D tensors f16.
    F16,
    /// 2-D tensors bf16.
    Bf16,
    /// 2-D tensors Q8_0.
    Q8_0,
    /// 2-D tensors Q4_0, output Q6_K.
    Q4_0,
    /// Q4_K with Q6_K for the output and for some attn_v / ffn_down layers.
    Q4KM,
    /// Q5_K with Q6_K for the output and for some attn_v / ffn_down layers.
    Q5KM,
    /// 2-D tensors Q6_K.
    Q6K,
}

impl FileType {
    /// Parses `q8_0`, `q4_k_m`, … (case-insensitive).
    pub fn parse(s: &str) -> Option<FileType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => FileType::F32,
            "f16" => FileType::F16,
            "bf16" => FileType::Bf16,
            "q8_0" => FileType::Q8_0,
            "q4_0" => FileType::Q4_0,
            "q4_k_m" => FileType::Q4KM,
            "q5_k_m" => FileType::Q5KM,
            "q6_k" => FileType::Q6K,
            _ => return None,
        })
    }

    /// The accepted spellings, for error messages.
    pub const NAMES: &'static str = "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k";

    /// llama.cpp's `llama_ftype` number (`general.file_type`).
    fn llama_ftype(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::Q4KM => 15,
            FileType::Q5KM => 17,
            FileType::Q6K => 18,
            FileType::Bf16 => 32,
        }
    }

    fn base_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::Bf16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4KM => GgmlType::Q4_K,
            FileType::Q5KM => GgmlType::Q5_K,
            FileType::Q6K => GgmlType::Q6_K,
        }
    }

    /// The type of one 2-D tensor, following llama.cpp's rules for the
    /// tensors a Llama model has.
    fn tensor_type(self, role: Role, row_len: usize) -> GgmlType {
        let base = self.base_type();
        let quantized = !matches!(self, FileType::F32 | FileType::F16 | FileType::Bf16);
        let chosen = match role {
            // The output projection is the most sensitive matrix.
            Role::Output if quantized && base != GgmlType::Q8_0 => GgmlType::Q6_K,
            Role::AttnV { layer, layers } | Role::FfnDown { layer, layers }
                if matches!(self, FileType::Q4KM | FileType::Q5KM)
                    && use_more_bits(layer, layers) =>
            {
                GgmlType::Q6_K
            }
            _ => base,
        };
        // K-quants need rows of whole 256-element super-blocks.
        if chosen.block_size() > 1 && !row_len.is_multiple_of(chosen.block_size()) {
            if row_len.is_multiple_of(32) {
                GgmlType::Q8_0
            } else {
                GgmlType::F16
            }
        } else {
            chosen
        }
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and
/// every third in between get more bits.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// What a 2-D tensor does, for the type rules.
#[derive(Debug, Clone, Copy)]
enum Role {
    Output,
    AttnV { layer: usize, layers: usize },
    FfnDown { layer: usize, layers: usize },
    Other,
}

/// One tensor to export: GGUF name, HF name, PyTorch shape, role.
struct Plan {
    gguf: String,
    hf: String,
    shape: Vec<usize>,
    role: Role,
    permute_heads: Option<usize>,
}

fn plan(cfg: &Config, has_output: bool) -> Vec<Plan> {
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
    );
    let layers = cfg.num_hidden_layers;
    let mut out = vec![Plan {
        gguf: "token_embd.weight".into(),
        hf: "model.embed_tokens.weight".into(),
        shape: vec![v, h],
        // A tied embedding doubles as the output projection.
        role: if has_output {
            Role::Other
        } else {
            Role::Output
        },
        permute_heads: None,
    }];
    let one =
        |gguf: &str, hf: &str, shape: Vec<usize>, role: Role, permute_heads: Option<usize>| Plan {
            gguf: gguf.into(),
            hf: hf.into(),
            shape,
            role,
            permute_heads,
        };
    for l in 0..layers {
        let (g, p) = (format!("blk.{l}"), format!("model.layers.{l}"));
        out.push(one(
            &format!("{g}.attn_norm.weight"),
            &format!("{p}.input_layernorm.weight"),
            vec![h],
            Role::Other,
            None,
        ));
        out.push(one(
            &format!("{g}.attn_q.weight"),
            &format!("{p}.self_attn.q_proj.weight"),
            vec![q, h],
            Role::Other,
            Some(cfg.num_attention_heads),
        ));
        out.push(one(
            &format!("{g}.attn_k.weight"),
            &format!("{p}.self_attn.k_proj.weight"),
            vec![kv, h],
            Role::Other,
            Some(cfg.num_key_value_heads),
        ));
        out.push(one(
            &format!("{g}.attn_v.weight"),
            &format!("{p}.self_attn.v_proj.weight"),
            vec![kv, h],
            Role::AttnV { layer: l, layers },
            None,
        ));
        out.push(one(
            &format!("{g}.attn_output.weight"),
            &format!("{p}.self_attn.o_proj.weight"),
            vec![h, q],
            Role::Other,
            None,
        ));
        out.push(one(
            &format!("{g}.ffn_norm.weight"),
            &format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            Role::Other,
            None,
        ));
        out.push(one(
            &format!("{g}.ffn_gate.weight"),
            &format!("{p}.mlp.gate_proj.weight"),
            vec![i, h],
            Role::Other,
            None,
        ));
        out.push(one(
            &format!("{g}.ffn_up.weight"),
            &format!("{p}.mlp.up_proj.weight"),
            vec![i, h],
            Role::Other,
            None,
        ));
        out.push(one(
            &format!("{g}.ffn_down.weight"),
            &format!("{p}.mlp.down_proj.weight"),
            vec![h, i],
            Role::FfnDown { layer: l, layers },
            None,
        ));
    }
    out.push(one(
        "output_norm.weight",
        "model.norm.weight",
        vec![h],
        Role::Other,
        None,
    ));
    if has_output {
        out.push(one(
            "output.weight",
            "lm_head.weight",
            vec![v, h],
            Role::Output,
            None,
        ));
    }
    out
}

/// Reorders the rows of a q or k projection from Hugging Face's half-split
/// RoPE pairing to llama.cpp's interleaved one: within each head, row
/// `t * d/2 + j` moves to `2j + t`.
fn permute_rows(w: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for t in 0..2 {
            for j in 0..half {
                let src = h * head_dim + t * half + j;
                let dst = h * head_dim + 2 * j + t;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The `general.*` and `llama.*` metadata for a config.
pub fn model_metadata(cfg: &Config, name: &str, file_type: FileType) -> Metadata {
    let mut m = Metadata::new();
    m.set("general.architecture", "llama");
    m.set("general.name", name);
    m.set("general.file_type", file_type.llama_ftype());
    m.set("general.quantization_version", 2u32);
    let u = |x: usize| MetadataValue::U32(x as u32);
    m.set("llama.vocab_size", u(cfg.vocab_size));
    m.set("llama.context_length", u(cfg.max_position_embeddings));
    m.set("llama.embedding_length", u(cfg.hidden_size));
    m.set("llama.block_count", u(cfg.num_hidden_layers));
    m.set("llama.feed_forward_length", u(cfg.intermediate_size));
    m.set("llama.rope.dimension_count", u(cfg.head_dim));
    m.set("llama.attention.head_count", u(cfg.num_attention_heads));
    m.set("llama.attention.head_count_kv", u(cfg.num_key_value_heads));
    m.set("llama.attention.key_length", u(cfg.head_dim));
    m.set("llama.attention.value_length", u(cfg.head_dim));
    m.set(
        "llama.attention.layer_norm_rms_epsilon",
        MetadataValue::F32(cfg.rms_norm_eps as f32),
    );
    m.set(
        "llama.rope.freq_base",
        MetadataValue::F32(cfg.rope_theta as f32),
    );
    m
}

/// Adds every tensor of the model to `writer`, converted to `file_type`.
/// Tensors are produced lazily (one in memory at a time). `rope` is the
/// model's rotary embedding, whose frequencies become `rope_freqs`.
pub fn add_model_tensors<'a>(
    writer: &mut GgufWriter<'a>,
    cfg: &Config,
    source: &'a dyn TensorSource,
    rope: &Rope,
    file_type: FileType,
) -> Result<()> {
    let gguf_err = |e: herd_gguf::GgufError| ModelError::Export(e.to_string());
    let has_output = !cfg.tie_word_embeddings && source.has("lm_head.weight");
    let permute = source.rope_layout() == RopeLayout::HalfSplit;
    for p in plan(cfg, has_output) {
        // Check presence and shape now, so errors surface before writing.
        let weight = source.get(&p.hf, &p.shape)?;
        let dims: Vec<u64> = p.shape.iter().rev().map(|&d| d as u64).collect();
        let ggml_type = if p.shape.len() == 1 {
            GgmlType::F32
        } else {
            file_type.tensor_type(p.role, p.shape[1])
        };
        let permute_heads = p.permute_heads.filter(|_| permute);
        let cols = *p.shape.last().unwrap_or(&1);
        writer
            .add_tensor_with(
                &p.gguf,
                ggml_type,
                &dims,
                move || -> std::result::Result<Vec<u8>, ModelError> {
                    let mut values = weight.to_f32_vec()?;
                    if let Some(heads) = permute_heads {
                        values = permute_rows(&values, heads, cols);
                    }
                    encode(&values, ggml_type)
                },
            )
            .map_err(gguf_err)?;
    }
    if matches!(
        cfg.rope_scaling,
        RopeScaling::Llama3 { .. } | RopeScaling::FrequencyFactors
    ) {
        let unscaled =
            Rope::from_factors(cfg.rope_theta, cfg.head_dim, None, RopeLayout::Interleaved);
        let factors: Vec<u8> = unscaled
            .inv_freq()
            .iter()
            .zip(rope.inv_freq())
            .flat_map(|(base, scaled)| (base / scaled).to_le_bytes())
            .collect();
        writer
            .add_tensor(
                "rope_freqs.weight",
                GgmlType::F32,
                &[(cfg.head_dim / 2) as u64],
                factors,
            )
            .map_err(gguf_err)?;
    }
    Ok(())
}

/// f32 values → the bytes of `ggml_type`.
fn encode(values: &[f32], ggml_type: GgmlType) -> Result<Vec<u8>> {
    Ok(match ggml_type {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => {
            let qtype = crate::gguf::quant_type(other).ok_or_else(|| {
                ModelError::Export(format!("cannot write tensors of type {}", other.name()))
            })?;
            let mut out = Vec::new();
            herd_kernels::quantize(qtype, values, &mut out)?;
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp_for_16_layers() {
        let picked: Vec<usize> = (0..16).filter(|&l| use_more_bits(l, 16)).collect();
        assert_eq!(picked, vec![0, 1, 4, 7, 10, 13, 14, 15]);
    }

    #[test]
    fn permutation_pairs_adjacent_dimensions() {
        // One head of dim 4, one column: rows [a0 a1 b0 b1] → [a0 b0 a1 b1].
        assert_eq!(
            permute_rows(&[0.0, 1.0, 2.0, 3.0], 1, 1),
            vec![0.0, 2.0, 1.0, 3.0]
        );
    }
}
