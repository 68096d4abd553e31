//! Slicing a checkpoint's tensors to a [`Plan`] and writing the result as a
//! Hugging Face Llama directory.

use std::path::Path;

use herd_model::{Checkpoint, Config, Tensors, WeightFiles};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::Value;

use crate::error::{PruneError, Result};
use crate::plan::Plan;

/// A tensor being written: name, shape, f32 values.
type Out = (String, Vec<usize>, Vec<f32>);

/// Writes the pruned model into `out` (created if missing): `config.json`
/// (`config_json` with the new shape) and an f32 `model.safetensors`.
/// Tokenizer files are the caller's to copy. Refuses a GGUF source (its
/// q/k rows are permuted for llama.cpp) and an `out` that already holds
/// a model. Returns the new configuration.
pub fn write_pruned(
    source: &Checkpoint,
    config_json: &str,
    plan: &Plan,
    out: &Path,
) -> Result<Config> {
    let Tensors::Safetensors(tensors) = &source.tensors else {
        return Err(PruneError::InvalidRequest(
            "prune a Hugging Face directory: a GGUF file's q/k rows are permuted for llama.cpp"
                .into(),
        ));
    };
    let weights = out.join("model.safetensors");
    if weights.exists() {
        return Err(PruneError::InvalidRequest(format!(
            "{} exists; choose an empty output directory",
            weights.display()
        )));
    }
    let cfg = &source.config;
    let mut slicer = Slicer {
        src: tensors,
        cfg,
        hidden: &plan.hidden,
        out: Vec::new(),
    };
    slicer.rows_cols(
        "model.embed_tokens.weight",
        None,
        Some(plan.hidden.as_slice()),
    )?;
    if !cfg.tie_word_embeddings {
        slicer.rows_cols("lm_head.weight", None, Some(plan.hidden.as_slice()))?;
    }
    slicer.vector("model.norm.weight")?;
    for (new, &old) in plan.layers.iter().enumerate() {
        slicer.layer(new, old, &plan.kv_groups[new], &plan.mlp[new])?;
    }
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;
    save(&slicer.out, &weights)?;
    let new_cfg = plan.config(cfg);
    let text = new_config_json(config_json, &new_cfg)?;
    let path = out.join("config.json");
    std::fs::write(&path, text).map_err(|e| write_error(&path, e))?;
    Ok(new_cfg)
}

/// Reads tensors of the source and keeps the planned rows and columns.
struct Slicer<'a> {
    src: &'a WeightFiles,
    cfg: &'a Config,
    hidden: &'a [usize],
    out: Vec<Out>,
}

impl Slicer<'_> {
    /// One decoder layer, renumbered from `old` to `new`.
    fn layer(&mut self, new: usize, old: usize, groups: &[usize], mlp: &[usize]) -> Result<()> {
        let (d, group) = (
            self.cfg.head_dim,
            self.cfg.num_attention_heads / self.cfg.num_key_value_heads,
        );
        // Rows of the kept query heads (all heads of each kept group) and KV heads.
        let q_rows: Vec<usize> = groups
            .iter()
            .flat_map(|&g| (g * group * d)..((g + 1) * group * d))
            .collect();
        let kv_rows: Vec<usize> = groups
            .iter()
            .flat_map(|&g| (g * d)..((g + 1) * d))
            .collect();
        let hidden = Some(self.hidden);
        let name = |part: &str| format!("model.layers.{old}.{part}.weight");
        for part in ["input_layernorm", "post_attention_layernorm"] {
            self.vector(&name(part))?;
        }
        let (q_rows, kv_rows) = (Some(q_rows.as_slice()), Some(kv_rows.as_slice()));
        self.rows_cols(&name("self_attn.q_proj"), q_rows, hidden)?;
        self.rows_cols(&name("self_attn.k_proj"), kv_rows, hidden)?;
        self.rows_cols(&name("self_attn.v_proj"), kv_rows, hidden)?;
        self.rows_cols(&name("self_attn.o_proj"), hidden, q_rows)?;
        self.rows_cols(&name("mlp.gate_proj"), Some(mlp), hidden)?;
        self.rows_cols(&name("mlp.up_proj"), Some(mlp), hidden)?;
        self.rows_cols(&name("mlp.down_proj"), hidden, Some(mlp))?;
        // Renumber this layer's tensors (the last nine written).
        let from = format!("model.layers.{old}.");
        let to = format!("model.layers.{new}.");
        let n = self.out.len();
        for (tensor_name, _, _) in &mut self.out[n - 9..] {
            *tensor_name = tensor_name.replacen(&from, &to, 1);
        }
        Ok(())
    }

    /// A norm weight, `(hidden,)`, cut to the kept channels.
    fn vector(&mut self, name: &str) -> Result<()> {
        let full = self.src.get(name, &[self.cfg.hidden_size])?.to_f32_vec()?;
        let values: Vec<f32> = self.hidden.iter().map(|&c| full[c]).collect();
        self.out.push((name.to_owned(), vec![values.len()], values));
        Ok(())
    }

    /// A matrix, keeping the listed rows and columns (`None`: all).
    fn rows_cols(
        &mut self,
        name: &str,
        rows: Option<&[usize]>,
        cols: Option<&[usize]>,
    ) -> Result<()> {
        let (r, c) = match self.src.shape(name) {
            Some(&[r, c]) => (r, c),
            _ => {
                return Err(PruneError::InvalidRequest(format!(
                    "the checkpoint has no matrix {name}"
                )))
            }
        };
        let full = self.src.get(name, &[r, c])?.to_f32_vec()?;
        let all_rows: Vec<usize> = (0..r).collect();
        let all_cols: Vec<usize> = (0..c).collect();
        let rows = rows.unwrap_or(&all_rows);
        let cols = cols.unwrap_or(&all_cols);
        let mut values = Vec::with_capacity(rows.len() * cols.len());
        for &i in rows {
            values.extend(cols.iter().map(|&j| full[i * c + j]));
        }
        self.out
            .push((name.to_owned(), vec![rows.len(), cols.len()], values));
        Ok(())
    }
}

/// Writes the tensors as one f32 safetensors file, through a temporary
/// file so that a failure never leaves a truncated model behind.
fn save(tensors: &[Out], path: &Path) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| write_error(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, None, &tmp).map_err(|e| write_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| write_error(path, e))
}

/// The source config.json with the pruned shape (head_dim written out, as
/// it no longer follows from hidden_size / heads) and f32 weights.
fn new_config_json(config_json: &str, cfg: &Config) -> Result<String> {
    let mut value: Value =
        serde_json::from_str(config_json).map_err(|e| PruneError::Config(e.to_string()))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| PruneError::Config("not a JSON object".into()))?;
    for (key, n) in [
        ("num_hidden_layers", cfg.num_hidden_layers),
        ("hidden_size", cfg.hidden_size),
        ("intermediate_size", cfg.intermediate_size),
        ("num_attention_heads", cfg.num_attention_heads),
        ("num_key_value_heads", cfg.num_key_value_heads),
        ("head_dim", cfg.head_dim),
    ] {
        obj.insert(key.into(), n.into());
    }
    obj.remove("dtype");
    obj.insert("torch_dtype".into(), "float32".into());
    serde_json::to_string_pretty(&value).map_err(|e| PruneError::Config(e.to_string()))
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> PruneError {
    PruneError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
