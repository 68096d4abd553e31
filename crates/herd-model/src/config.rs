//! Llama configuration in two stages: [`RawConfig`] mirrors `config.json`
//! exactly (every field optional, both the legacy `rope_theta`/`rope_scaling`
//! keys and the newer `rope_parameters`), and [`Config`] is the resolved,
//! validated form with no `Option`s left. Raw JSON never travels past
//! [`Config::from_file`].

use std::path::{Path, PathBuf};

use herd_kernels::QuantType;
use serde::Deserialize;

use crate::error::{ModelError, Result};

/// `config.json` as Hugging Face `transformers` writes it for Llama models.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    /// e.g. `["LlamaForCausalLM"]`.
    pub architectures: Option<Vec<String>>,
    /// e.g. `"llama"`.
    pub model_type: Option<String>,
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: Option<usize>,
    /// Width of the residual stream.
    pub hidden_size: Option<usize>,
    /// Width of the MLP.
    pub intermediate_size: Option<usize>,
    /// Number of decoder layers.
    pub num_hidden_layers: Option<usize>,
    /// Number of query heads.
    pub num_attention_heads: Option<usize>,
    /// Number of key/value heads (GQA); defaults to the query heads.
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: Option<f64>,
    /// Legacy RoPE base.
    pub rope_theta: Option<f64>,
    /// Legacy RoPE scaling block.
    pub rope_scaling: Option<RawRope>,
    /// Newer (transformers ≥ 4.56 / 5.x) RoPE block, which also carries the base.
    pub rope_parameters: Option<RawRope>,
    /// Context length.
    pub max_position_embeddings: Option<usize>,
    /// Whether `lm_head` shares the embedding matrix (Llama 3.2 1B/3B).
    pub tie_word_embeddings: Option<bool>,
    /// Storage dtype, older key.
    pub torch_dtype: Option<String>,
    /// Storage dtype, newer key.
    pub dtype: Option<String>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence token(s).
    pub eos_token_id: Option<TokenIds>,
    /// Llama has no attention biases; a checkpoint that has them is not Llama.
    pub attention_bias: Option<bool>,
    /// Llama has no MLP biases.
    pub mlp_bias: Option<bool>,
    /// Must be `silu`.
    pub hidden_act: Option<String>,
}

/// A RoPE block in either spelling (`rope_scaling` or `rope_parameters`).
#[derive(Debug, Clone, Deserialize)]
pub struct RawRope {
    /// `rope_type` (new) …
    pub rope_type: Option<String>,
    /// … or `type` (old).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Base, only in `rope_parameters`.
    pub rope_theta: Option<f64>,
    /// llama3: context extension factor.
    pub factor: Option<f64>,
    /// llama3: wavelengths longer than `original / low_freq_factor` are scaled.
    pub low_freq_factor: Option<f64>,
    /// llama3: wavelengths shorter than `original / high_freq_factor` are kept.
    pub high_freq_factor: Option<f64>,
    /// llama3: the pre-training context length.
    pub original_max_position_embeddings: Option<usize>,
}

/// One token id or several (`eos_token_id` is a list in Llama 3.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// How rotary frequencies are derived from the base.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE (Llama 3.0).
    None,
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        /// Context extension factor (8 for 3.1, 32 for 3.2 1B/3B).
        factor: f64,
        /// Low-frequency boundary factor (1).
        low_freq_factor: f64,
        /// High-frequency boundary factor (4).
        high_freq_factor: f64,
        /// Pre-training context (8192).
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors stored with the weights (a GGUF file's
    /// `rope_freqs` tensor, which is how llama.cpp encodes Llama 3.1 scaling).
    FrequencyFactors,
}

/// Storage dtype of the checkpoint's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// A ggml block-quantized format (GGUF files).
    Quant(QuantType),
}

impl WeightDtype {
    /// Bytes taken by `elements` values, `None` if they are not whole blocks.
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        match self {
            WeightDtype::F32 => elements.checked_mul(4),
            WeightDtype::F16 | WeightDtype::Bf16 => elements.checked_mul(2),
            WeightDtype::Quant(q) => elements
                .is_multiple_of(q.block_elems())
                .then(|| elements / q.block_elems() * q.block_bytes()),
        }
    }

    /// Alignment the kernels need for a borrowed slice of this type
    /// (quantized blocks are read with unaligned loads).
    pub fn alignment(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 | WeightDtype::Bf16 => 2,
            WeightDtype::Quant(_) => 1,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "float32" | "f32" => Some(WeightDtype::F32),
            "float16" | "f16" | "half" => Some(WeightDtype::F16),
            "bfloat16" | "bf16" => Some(WeightDtype::Bf16),
            _ => None,
        }
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightDtype::F32 => f.write_str("f32"),
            WeightDtype::F16 => f.write_str("f16"),
            WeightDtype::Bf16 => f.write_str("bf16"),
            WeightDtype::Quant(q) => write!(f, "{q:?}"),
        }
    }
}

/// A resolved, validated Llama configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Context length.
    pub max_position_embeddings: usize,
    /// Whether `lm_head` is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Declared storage dtype (the files decide per tensor; this is for `info`).
    pub dtype: Option<WeightDtype>,
    /// Beginning-of-sequence id, if declared.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids declared in config.json.
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelError::MissingFile {
                    path: path.to_path_buf(),
                    hint:
                        "; a Hugging Face model directory has config.json beside its *.safetensors"
                            .into(),
                }
            } else {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Config::from_json(&text, path)
    }

    /// Parses and validates config.json text; `path` is only used in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Config> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            what: "Llama config.json",
            source,
        })?;
        Config::resolve(raw, path)
    }

    /// Validates a raw config; `path` is only used in error messages.
    pub fn resolve(raw: RawConfig, path: &Path) -> Result<Config> {
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        check_architecture(&raw, path)?;
        let need = |v: Option<usize>, name: &str| -> Result<usize> {
            match v {
                Some(0) => Err(invalid(format!("{name} must be positive"))),
                Some(v) => Ok(v),
                None => Err(invalid(format!("missing field {name}"))),
            }
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let num_key_value_heads = need(
            raw.num_key_value_heads.or(raw.num_attention_heads),
            "num_key_value_heads",
        )?;
        let head_dim = match raw.head_dim {
            Some(d) => need(Some(d), "head_dim")?,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(invalid(format!(
                    "hidden_size ({hidden_size}) is not divisible by num_attention_heads ({num_attention_heads}) and head_dim is not given"
                )))
            }
        };
        let (rope_theta, rope_scaling) = resolve_rope(&raw, path)?;
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-5);
        let dtype_name = raw.dtype.as_deref().or(raw.torch_dtype.as_deref());
        let dtype = match dtype_name {
            None => None,
            Some(s) => Some(WeightDtype::parse(s).ok_or_else(|| {
                invalid(format!(
                    "unsupported dtype {s:?}; herd loads float32, float16 and bfloat16"
                ))
            })?),
        };
        let config = Config {
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: need(raw.max_position_embeddings, "max_position_embeddings")?,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            dtype,
            bos_token_id: raw.bos_token_id.and_then(|t| t.to_vec().first().copied()),
            eos_token_ids: raw.eos_token_id.map(|t| t.to_vec()).unwrap_or_default(),
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Structural checks shared by every source of configuration.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let invalid = |reason: String| {
            Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason,
            })
        };
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return invalid(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return invalid(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim
            ));
        }
        if !positive(self.rms_norm_eps) {
            return invalid(format!(
                "rms_norm_eps must be positive, got {}",
                self.rms_norm_eps
            ));
        }
        if !positive(self.rope_theta) {
            return invalid(format!(
                "rope_theta must be positive, got {}",
                self.rope_theta
            ));
        }
        Ok(())
    }

    /// Number of parameters, counting a tied embedding once.
    pub fn num_parameters(&self) -> u64 {
        let (h, i, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let q = (self.num_attention_heads * self.head_dim) as u64;
        let kv = (self.num_key_value_heads * self.head_dim) as u64;
        let attn = h * q + 2 * h * kv + q * h;
        let mlp = 3 * h * i;
        let layer = attn + mlp + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers as u64 * layer + h + head
    }

    /// Bytes of KV cache per token of context (f32 keys and values, all layers).
    pub fn kv_bytes_per_token(&self) -> u64 {
        (2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * 4) as u64
    }
}

/// `x > 0`, false for NaN (so NaN from a config is rejected).
fn positive(x: f64) -> bool {
    x > 0.0
}

fn check_architecture(raw: &RawConfig, path: &Path) -> Result<()> {
    let unsupported = |found: String| ModelError::UnsupportedArchitecture {
        path: path.to_path_buf(),
        found,
    };
    if let Some(archs) = &raw.architectures {
        if let Some(other) = archs.iter().find(|a| a.as_str() != "LlamaForCausalLM") {
            return Err(unsupported(other.clone()));
        }
    }
    match raw.model_type.as_deref() {
        Some("llama") => {}
        Some(other) => return Err(unsupported(other.to_string())),
        None if raw.architectures.is_none() => return Err(unsupported("(none declared)".into())),
        None => {}
    }
    let invalid = |reason: &str| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if raw.attention_bias == Some(true) || raw.mlp_bias == Some(true) {
        return Err(invalid(
            "attention_bias/mlp_bias are set; Llama 3.x has no biases",
        ));
    }
    if let Some(act) = raw.hidden_act.as_deref() {
        if act != "silu" {
            return Err(invalid(&format!("hidden_act {act:?} is not silu")));
        }
    }
    Ok(())
}

/// Merges the legacy (`rope_theta` + `rope_scaling`) and new
/// (`rope_parameters`) spellings; the new one wins where both are present.
fn resolve_rope(raw: &RawConfig, path: &Path) -> Result<(f64, RopeScaling)> {
    let block = raw.rope_parameters.as_ref().or(raw.rope_scaling.as_ref());
    let theta = block
        .and_then(|b| b.rope_theta)
        .or(raw.rope_theta)
        .unwrap_or(10_000.0);
    let invalid = |reason: String| ModelError::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    };
    let Some(block) = block else {
        return Ok((theta, RopeScaling::None));
    };
    let kind = block
        .rope_type
        .as_deref()
        .or(block.kind.as_deref())
        .unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::None,
        "llama3" => {
            let field = |v: Option<f64>, name: &str| {
                v.ok_or_else(|| invalid(format!("llama3 rope scaling lacks {name}")))
            };
            let scaling = RopeScaling::Llama3 {
                factor: field(block.factor, "factor")?,
                low_freq_factor: field(block.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: field(block.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: block
                    .original_max_position_embeddings
                    .ok_or_else(|| {
                        invalid("llama3 rope scaling lacks original_max_position_embeddings".into())
                    })?,
            };
            if let RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } = scaling
            {
                if !positive(factor)
                    || !positive(low_freq_factor)
                    || !positive(high_freq_factor - low_freq_factor)
                    || original_max_position_embeddings == 0
                {
                    return Err(invalid(format!(
                        "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0; got {scaling:?}"
                    )));
                }
            }
            scaling
        }
        other => {
            return Err(ModelError::UnsupportedRope {
                path: path.to_path_buf(),
                found: other.to_string(),
            })
        }
    };
    Ok((theta, scaling))
}

/// `generation_config.json`: the checkpoint author's sampling defaults.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfig {
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<TokenIds>,
    /// Stop ids (Llama 3.1 lists `<|end_of_text|>`, `<|eom_id|>`, `<|eot_id|>`).
    pub eos_token_id: Option<TokenIds>,
    /// Whether the author intends sampling rather than greedy decoding.
    pub do_sample: Option<bool>,
    /// Default temperature.
    pub temperature: Option<f64>,
    /// Default nucleus threshold.
    pub top_p: Option<f64>,
    /// Default top-k.
    pub top_k: Option<usize>,
    /// Default repetition penalty.
    pub repetition_penalty: Option<f64>,
}

impl GenerationConfig {
    /// Reads `generation_config.json`; a missing file means "no defaults".
    pub fn from_file(path: &Path) -> Result<GenerationConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => GenerationConfig::from_json(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GenerationConfig::default()),
            Err(source) => Err(ModelError::Io {
                path: PathBuf::from(path),
                source,
            }),
        }
    }

    /// Parses generation_config.json text; `path` is only used in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<GenerationConfig> {
        serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            what: "generation_config.json",
            source,
        })
    }
}
