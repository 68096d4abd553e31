//! What a run leaves behind and how adapters meet base models: LoRA
//! adapters in PEFT's layout, fully trained models as Hugging Face
//! directories, and adapters folded into their base (`herd merge`, and
//! `--lora` at load time) as `W + scale · B A`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use herd_model::{Checkpoint, Llama, TensorSource, Tensors, Weight, WeightDtype};
use serde_json::Value;

use crate::error::{Result, TrainError};
use crate::lora::{save_adapter, Adapter};
use crate::model::{TrainModel, Tuning};

/// Files that travel with a model directory besides weights and config.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
];

/// Copies the tokenizer (and generation defaults) from `from` to `to`;
/// fails if `from` has neither `tokenizer.json` nor `tokenizer.model`.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    let mut found_tokenizer = false;
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.is_file() {
            let bytes = std::fs::read(&src).map_err(TrainError::io(&src))?;
            crate::io::write_atomic(&to.join(name), &bytes)?;
            found_tokenizer |= name.starts_with("tokenizer.");
        }
    }
    if !found_tokenizer {
        return Err(TrainError::InvalidOption(format!(
            "{}: no tokenizer.json or tokenizer.model to copy",
            from.display()
        )));
    }
    Ok(())
}

/// Writes what training produced into `dir`: the adapter (LoRA) or a
/// Hugging Face model directory (full). `config_json` is the model's
/// config.json text; `tokenizer_dir` supplies the tokenizer files.
pub fn save_trained(
    dir: &Path,
    model: &TrainModel,
    config_json: &str,
    tokenizer_dir: &Path,
    base_name: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    match model.tuning() {
        Tuning::Lora(cfg) => {
            let tensors: Vec<(String, Tensor)> = model
                .trainable()
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect();
            save_adapter(dir, cfg, base_name, &tensors)
        }
        Tuning::Full => {
            let mut config: Value = serde_json::from_str(config_json)
                .map_err(|e| TrainError::InvalidOption(format!("config.json: {e}")))?;
            if let Some(obj) = config.as_object_mut() {
                // The weights are written as trained: f32.
                obj.remove("dtype");
                obj.insert("torch_dtype".into(), "float32".into());
            }
            let text = serde_json::to_string_pretty(&config)
                .map_err(|e| TrainError::InvalidOption(e.to_string()))?;
            crate::io::write_atomic(&dir.join("config.json"), text.as_bytes())?;
            crate::io::save_safetensors(&dir.join("model.safetensors"), &model.weights(), None)?;
            copy_tokenizer_files(tokenizer_dir, dir)
        }
    }
}

/// `W + scale · B A` for every adapted projection, as f32 weights by HF
/// name; fails if the adapter does not fit the checkpoint.
pub fn merged_weights(ckpt: &Checkpoint, adapter: &Adapter) -> Result<HashMap<String, Tensor>> {
    let bad = |reason: String| TrainError::BadAdapter {
        path: adapter.path.clone(),
        reason,
    };
    let cfg = &ckpt.config;
    let scale = adapter.config.scale();
    let mut out = HashMap::new();
    for (&(layer, target), (a, b)) in &adapter.matrices {
        if layer >= cfg.num_hidden_layers {
            return Err(bad(format!(
                "adapts layer {layer}, but the model has {} layers",
                cfg.num_hidden_layers
            )));
        }
        let name = format!("{}.weight", target.path(layer));
        if !ckpt.tensors.has(&name) {
            return Err(bad(format!("the model has no tensor {name}")));
        }
        let (base, _) = read_any_shape(&ckpt.tensors, &name)?;
        let (out_dim, in_dim) = base.dims2()?;
        let (rank, a_in) = a.dims2()?;
        let (b_out, b_rank) = b.dims2()?;
        if a_in != in_dim || b_out != out_dim || rank != b_rank {
            return Err(bad(format!(
                "{name} is ({out_dim}, {in_dim}) but the adapter has A {:?} and B {:?}",
                a.dims(),
                b.dims()
            )));
        }
        let merged = (base + (b.matmul(a)? * scale)?)?;
        out.insert(name, merged);
    }
    Ok(out)
}

/// A tensor of the checkpoint as f32, whatever its shape, and its stored dtype.
fn read_any_shape(tensors: &Tensors, name: &str) -> Result<(Tensor, WeightDtype)> {
    let shape = match tensors {
        Tensors::Safetensors(files) => files.shape(name).map(<[usize]>::to_vec),
        Tensors::Gguf(_) => None,
    }
    .ok_or_else(|| {
        TrainError::InvalidOption(format!(
            "{name}: adapters are merged into Hugging Face safetensors checkpoints only"
        ))
    })?;
    let w = tensors.get(name, &shape)?;
    Ok((
        Tensor::from_vec(w.to_f32_vec()?, shape, &Device::Cpu)?,
        w.dtype(),
    ))
}

/// The checkpoint's tensors with merged weights in place of the adapted ones.
struct MergedTensors {
    base: Tensors,
    merged: HashMap<String, Weight>,
}

impl TensorSource for MergedTensors {
    fn get(&self, name: &str, expected: &[usize]) -> herd_model::Result<Weight> {
        match self.merged.get(name) {
            Some(w) if w.shape() == expected => Ok(w.clone()),
            _ => self.base.get(name, expected),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.base.has(name)
    }
    fn total_bytes(&self) -> u64 {
        self.base.total_bytes()
    }
    fn rope_layout(&self) -> herd_model::RopeLayout {
        self.base.rope_layout()
    }
}

/// Loads `ckpt` for inference with the adapter in `adapter_dir` merged in.
pub fn load_with_adapter(ckpt: Checkpoint, adapter_dir: &Path) -> Result<Llama> {
    let adapter = Adapter::load(adapter_dir)?;
    let merged = merged_weights(&ckpt, &adapter)?
        .into_iter()
        .map(|(name, t)| {
            let shape = t.dims().to_vec();
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            Ok((name, Weight::from_f32(&values, shape)))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let source = MergedTensors {
        base: ckpt.tensors,
        merged,
    };
    Ok(Llama::from_weights(
        ckpt.config,
        ckpt.generation,
        &source,
        ckpt.rope,
    )?)
}

/// `herd merge`: writes `out` as a Hugging Face directory holding the base
/// model with the adapter folded in, each tensor in the base's dtype.
/// Refuses to write into a non-empty directory, so nothing is overwritten.
pub fn merge_to_dir(model_dir: &Path, adapter_dir: &Path, out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(TrainError::io(out))?
            .next()
            .is_some()
    {
        return Err(TrainError::InvalidOption(format!(
            "{} exists and is not empty; choose a new output directory",
            out.display()
        )));
    }
    let ckpt = Checkpoint::open(model_dir)?;
    let Tensors::Safetensors(files) = &ckpt.tensors else {
        return Err(TrainError::InvalidOption(format!(
            "{}: adapters are merged into Hugging Face safetensors checkpoints only",
            model_dir.display()
        )));
    };
    let adapter = Adapter::load(adapter_dir)?;
    let merged = merged_weights(&ckpt, &adapter)?;
    let mut names: Vec<&str> = files.names().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let (base, stored) = read_any_shape(&ckpt.tensors, name)?;
        let t = merged.get(name).cloned().unwrap_or(base);
        let dtype = match stored {
            WeightDtype::Bf16 => DType::BF16,
            WeightDtype::F16 => DType::F16,
            _ => DType::F32,
        };
        tensors.push((name.to_string(), t.to_dtype(dtype)?));
    }
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let config = model_dir.join("config.json");
    let bytes = std::fs::read(&config).map_err(TrainError::io(&config))?;
    crate::io::write_atomic(&out.join("config.json"), &bytes)?;
    crate::io::save_safetensors(&out.join("model.safetensors"), &tensors, None)?;
    copy_tokenizer_files(model_dir, out)
}
