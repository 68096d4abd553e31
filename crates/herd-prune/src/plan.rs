//! From importance scores and a requested shape to the parts that stay.

use herd_model::Config;

use crate::error::{PruneError, Result};
use crate::importance::{ascending, Importance};

/// The requested shape; `None` / empty keeps that dimension whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneSpec {
    /// Keep this many layers, the most important ones.
    pub depth: Option<usize>,
    /// Drop exactly these layers (0-based) instead of ranking them.
    pub drop_layers: Vec<usize>,
    /// Keep this many KV groups (key/value heads with their query heads) per layer.
    pub kv_heads: Option<usize>,
    /// Keep this many MLP channels per layer (the new `intermediate_size`).
    pub ffn: Option<usize>,
    /// Keep this many embedding channels (the new `hidden_size`).
    pub hidden: Option<usize>,
}

/// What stays, every list in the original order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Kept layers.
    pub layers: Vec<usize>,
    /// Per kept layer: its kept KV groups.
    pub kv_groups: Vec<Vec<usize>>,
    /// Per kept layer: its kept MLP channels.
    pub mlp: Vec<Vec<usize>>,
    /// Kept hidden channels.
    pub hidden: Vec<usize>,
}

impl Plan {
    /// The configuration of the pruned model.
    pub fn config(&self, cfg: &Config) -> Config {
        let groups = self.kv_groups.first().map_or(0, Vec::len);
        let group = cfg.num_attention_heads / cfg.num_key_value_heads;
        Config {
            num_hidden_layers: self.layers.len(),
            hidden_size: self.hidden.len(),
            intermediate_size: self.mlp.first().map_or(0, Vec::len),
            num_attention_heads: groups * group,
            num_key_value_heads: groups,
            ..cfg.clone()
        }
    }
}

/// Chooses the parts to keep for `spec`, by `importance`.
pub fn plan(cfg: &Config, importance: &Importance, spec: &PruneSpec) -> Result<Plan> {
    let bad = |m: String| Err(PruneError::InvalidRequest(m));
    let n = cfg.num_hidden_layers;
    let layers: Vec<usize> = match (spec.depth, spec.drop_layers.is_empty()) {
        (Some(_), false) => return bad("--depth and --drop-layers exclude each other".into()),
        (Some(d), true) => {
            if d == 0 || d > n {
                return bad(format!(
                    "--depth {d}: the model has {n} layers; keep 1 to {n}"
                ));
            }
            let mut keep = importance.layers_by_importance().split_off(n - d);
            keep.sort_unstable();
            keep
        }
        (None, _) => {
            if let Some(&l) = spec.drop_layers.iter().find(|&&l| l >= n) {
                return bad(format!(
                    "--drop-layers {l}: the model has layers 0 to {}",
                    n - 1
                ));
            }
            let keep: Vec<usize> = (0..n).filter(|l| !spec.drop_layers.contains(l)).collect();
            if keep.is_empty() {
                return bad("--drop-layers would drop every layer".into());
            }
            keep
        }
    };
    let kv = width(spec.kv_heads, cfg.num_key_value_heads, "--kv-heads")?;
    let ffn = width(spec.ffn, cfg.intermediate_size, "--ffn")?;
    let hidden = width(spec.hidden, cfg.hidden_size, "--hidden")?;
    Ok(Plan {
        kv_groups: layers
            .iter()
            .map(|&l| top(&importance.kv_groups[l], kv))
            .collect(),
        mlp: layers
            .iter()
            .map(|&l| top(&importance.mlp[l], ffn))
            .collect(),
        hidden: top(&importance.hidden, hidden),
        layers,
    })
}

/// A requested width, checked against the model's.
fn width(requested: Option<usize>, full: usize, flag: &str) -> Result<usize> {
    match requested {
        None => Ok(full),
        Some(w) if w >= 1 && w <= full => Ok(w),
        Some(w) => Err(PruneError::InvalidRequest(format!(
            "{flag} {w}: the model has {full}; keep 1 to {full}"
        ))),
    }
}

/// The indices of the `k` largest values, in ascending index order.
fn top(values: &[f64], k: usize) -> Vec<usize> {
    let mut keep = ascending(values).split_off(values.len() - k);
    keep.sort_unstable();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_largest_in_original_order() {
        assert_eq!(top(&[0.5, 0.1, 0.9, 0.3], 2), vec![0, 2]);
        assert_eq!(top(&[0.5, 0.1, 0.9, 0.3], 4), vec![0, 1, 2, 3]);
    }
}
