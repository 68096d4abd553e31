//! LoRA: which projections get adapters, and adapters on disk in Hugging
//! Face PEFT's layout, so herd reads adapters PEFT made and PEFT reads
//! adapters herd made.
//!
//! PEFT's files: `adapter_config.json` (`r`, `lora_alpha`,
//! `target_modules`, ...) and `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
//! (`(r, in)`) and `...lora_B.weight` (`(out, r)`). The adapted layer is
//! `W x + (alpha / r) B A x` (`alpha / sqrt(r)` with `use_rslora`), so
//! merging adds `(alpha / r) B A` to `W`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, TrainError};

/// A projection inside a decoder layer that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl LoraTarget {
    /// Every target, in layer order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The module's Hugging Face name (`q_proj`), as PEFT's `target_modules` lists it.
    pub const fn module(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// `self_attn` or `mlp`.
    pub const fn block(self) -> &'static str {
        match self {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
            LoraTarget::Gate | LoraTarget::Up | LoraTarget::Down => "mlp",
        }
    }

    /// `model.layers.{layer}.self_attn.q_proj` (the base weight is this + `.weight`).
    pub fn path(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.{}", self.block(), self.module())
    }

    /// Accepts `q` or `q_proj` (and so on).
    pub fn parse(name: &str) -> Result<LoraTarget> {
        let short = name.trim().trim_end_matches("_proj");
        LoraTarget::ALL
            .into_iter()
            .find(|t| t.module().trim_end_matches("_proj") == short)
            .ok_or_else(|| TrainError::UnknownLoraTarget {
                found: name.to_string(),
            })
    }

    /// Parses a comma-separated list such as `q,k,v,o`.
    pub fn parse_list(list: &str) -> Result<Vec<LoraTarget>> {
        let mut targets = list
            .split(',')
            .map(LoraTarget::parse)
            .collect::<Result<Vec<_>>>()?;
        targets.sort();
        targets.dedup();
        Ok(targets)
    }
}

/// The shape of an adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of `B A`.
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Adapted projections.
    pub targets: Vec<LoraTarget>,
    /// PEFT's rank-stabilised scaling (`alpha / sqrt(r)`).
    pub rslora: bool,
}

impl LoraConfig {
    /// The factor in front of `B A`.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Checks rank and targets.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(TrainError::InvalidOption(
                "--lora-rank must be at least 1".into(),
            ));
        }
        if self.targets.is_empty() {
            return Err(TrainError::InvalidOption(
                "--lora-targets names no projection".into(),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(TrainError::InvalidOption(format!(
                "--lora-alpha must be positive, got {}",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// PEFT's tensor name for an adapter matrix (`A` or `B`).
pub fn peft_name(layer: usize, target: LoraTarget, matrix: char) -> String {
    format!(
        "base_model.model.{}.lora_{matrix}.weight",
        target.path(layer)
    )
}

/// `adapter_config.json`, the fields herd reads and writes.
#[derive(Debug, Serialize, Deserialize)]
struct AdapterConfigFile {
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    target_modules: Value,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    inference_mode: bool,
    /// Per-module rank overrides (herd reads uniform adapters only).
    #[serde(default, skip_serializing)]
    rank_pattern: HashMap<String, Value>,
    /// Per-module alpha overrides.
    #[serde(default, skip_serializing)]
    alpha_pattern: HashMap<String, Value>,
}

/// An adapter read from disk: `(A, B)` per adapted projection.
pub struct Adapter {
    /// Rank, alpha and targets.
    pub config: LoraConfig,
    /// `(layer, target) → (A: (r, in), B: (out, r))`, f32.
    pub matrices: HashMap<(usize, LoraTarget), (Tensor, Tensor)>,
    /// Where it was read from.
    pub path: PathBuf,
}

impl Adapter {
    /// Reads a PEFT adapter directory.
    pub fn load(dir: &Path) -> Result<Adapter> {
        let bad = |reason: String| TrainError::BadAdapter {
            path: dir.to_path_buf(),
            reason,
        };
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(TrainError::io(&config_path))?;
        let file: AdapterConfigFile =
            serde_json::from_str(&text).map_err(|e| bad(format!("adapter_config.json: {e}")))?;
        if file.peft_type.as_deref().is_some_and(|t| t != "LORA") || file.use_dora {
            return Err(bad(
                "only plain LoRA adapters (peft_type LORA, no DoRA) are supported".into(),
            ));
        }
        if !file.rank_pattern.is_empty() || !file.alpha_pattern.is_empty() {
            return Err(bad(
                "per-module rank_pattern/alpha_pattern is not supported".into(),
            ));
        }
        if file.fan_in_fan_out || file.bias.as_deref().is_some_and(|b| b != "none") {
            return Err(bad(
                "fan_in_fan_out and LoRA biases are not supported".into()
            ));
        }
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| bad(format!("adapter_model.safetensors: {e}")))?;
        let mut matrices = HashMap::new();
        let mut targets = Vec::new();
        for (name, a) in &tensors {
            let Some(prefix) = name.strip_suffix(".lora_A.weight") else {
                continue;
            };
            let (layer, target) = parse_module(prefix)
                .ok_or_else(|| bad(format!("tensor {name} is not a Llama projection")))?;
            let b_name = format!("{prefix}.lora_B.weight");
            let b = tensors
                .get(&b_name)
                .ok_or_else(|| bad(format!("{b_name} is missing")))?;
            matrices.insert(
                (layer, target),
                (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?),
            );
            targets.push(target);
        }
        if matrices.is_empty() {
            return Err(bad(
                "adapter_model.safetensors holds no lora_A/lora_B tensors".into(),
            ));
        }
        targets.sort();
        targets.dedup();
        let config = LoraConfig {
            rank: file.r,
            alpha: file.lora_alpha,
            targets,
            rslora: file.use_rslora,
        };
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(Adapter {
            config,
            matrices,
            path: dir.to_path_buf(),
        })
    }
}

/// `base_model.model.model.layers.3.mlp.up_proj` → `(3, Up)`.
fn parse_module(prefix: &str) -> Option<(usize, LoraTarget)> {
    let rest = prefix.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (_, module) = rest.split_once('.')?;
    let target = LoraTarget::ALL.into_iter().find(|t| t.module() == module)?;
    (rest == format!("{}.{module}", target.block())).then_some(())?;
    Some((layer.parse().ok()?, target))
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`
/// (each file atomically). `tensors` are PEFT-named `(name, tensor)` pairs.
pub fn save_adapter(
    dir: &Path,
    config: &LoraConfig,
    base_model: &str,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let file = AdapterConfigFile {
        peft_type: Some("LORA".into()),
        r: config.rank,
        lora_alpha: config.alpha,
        target_modules: Value::from(
            config
                .targets
                .iter()
                .map(|t| t.module().to_string())
                .collect::<Vec<_>>(),
        ),
        use_rslora: config.rslora,
        use_dora: false,
        fan_in_fan_out: false,
        bias: Some("none".into()),
        task_type: Some("CAUSAL_LM".into()),
        base_model_name_or_path: Some(base_model.to_string()),
        lora_dropout: 0.0,
        inference_mode: true,
        rank_pattern: HashMap::new(),
        alpha_pattern: HashMap::new(),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| TrainError::BadAdapter {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::io::write_atomic(&dir.join("adapter_config.json"), json.as_bytes())?;
    crate::io::save_safetensors(&dir.join("adapter_model.safetensors"), tensors, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_short_and_long_names() {
        assert_eq!(
            LoraTarget::parse_list("v,q_proj,q, down").expect("parse"),
            [LoraTarget::Q, LoraTarget::V, LoraTarget::Down]
        );
        let err = LoraTarget::parse_list("q,attn").expect_err("attn is not a target");
        assert!(err.to_string().contains("\"attn\""), "{err}");
    }

    #[test]
    fn peft_names_round_trip() {
        let name = peft_name(3, LoraTarget::Up, 'A');
        assert_eq!(
            name,
            "base_model.model.model.layers.3.mlp.up_proj.lora_A.weight"
        );
        let prefix = name.strip_suffix(".lora_A.weight").expect("suffix");
        assert_eq!(parse_module(prefix), Some((3, LoraTarget::Up)));
        assert_eq!(
            parse_module("base_model.model.model.layers.3.self_attn.up_proj"),
            None
        );
    }
}
