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

impl PruneSpec {
    /// The widest cut of `cfg` with at most `fraction` of its parameters,
    /// as deep as possible: hidden a multiple of 16, KV groups in proportion
    /// to the width (at least one), the MLP as wide as the rest of the budget
    /// allows (a multiple of 8, at least the hidden width). This is how
    /// `herd distill` sizes a student cut out of its teacher: Minitron found
    /// width pruning beats depth pruning at the same size, so layers go only
    /// when no width fits. `None` when nothing fits.
    pub fn fitting(cfg: &Config, fraction: f64) -> Option<PruneSpec> {
        let budget = (cfg.num_parameters() as f64 * fraction) as u64;
        let group = cfg.num_attention_heads / cfg.num_key_value_heads.max(1);
        let shape = |depth: usize, hidden: usize, ffn: usize| {
            let kv = (cfg.num_key_value_heads * hidden)
                .div_ceil(cfg.hidden_size.max(1))
                .clamp(1, cfg.num_key_value_heads);
            Config {
                num_hidden_layers: depth,
                hidden_size: hidden,
                intermediate_size: ffn,
                num_key_value_heads: kv,
                num_attention_heads: kv * group,
                ..cfg.clone()
            }
        };
        for depth in (1..=cfg.num_hidden_layers).rev() {
            for hidden in (1..=cfg.hidden_size / 16).rev().map(|m| m * 16) {
                let ffn = (1..=cfg.intermediate_size / 8)
                    .rev()
                    .map(|m| m * 8)
                    .take_while(|&f| f >= hidden)
                    .find(|&f| shape(depth, hidden, f).num_parameters() <= budget);
                if let Some(ffn) = ffn {
                    let c = shape(depth, hidden, ffn);
                    return Some(PruneSpec {
                        depth: (depth < cfg.num_hidden_layers).then_some(depth),
                        drop_layers: Vec::new(),
                        kv_heads: Some(c.num_key_value_heads),
                        ffn: Some(ffn),
                        hidden: Some(hidden),
                    });
                }
            }
        }
        None
    }
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
    fn the_fitting_cut_is_the_widest_under_the_budget() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/teacher/config.json");
        let teacher = Config::from_file(&path).expect("config");
        let spec = PruneSpec::fitting(&teacher, 1.0 / 8.0).expect("a cut fits");
        let shape = |s: &PruneSpec| Config {
            num_hidden_layers: s.depth.unwrap_or(teacher.num_hidden_layers),
            hidden_size: s.hidden.unwrap(),
            intermediate_size: s.ffn.unwrap(),
            num_key_value_heads: s.kv_heads.unwrap(),
            num_attention_heads: s.kv_heads.unwrap() * teacher.num_attention_heads
                / teacher.num_key_value_heads,
            ..teacher.clone()
        };
        let cut = shape(&spec);
        assert!(8 * cut.num_parameters() <= teacher.num_parameters());
        // Every layer kept; eight more MLP channels would break the budget.
        assert_eq!(spec.depth, None);
        let wider = PruneSpec {
            ffn: Some(cut.intermediate_size + 8),
            ..spec.clone()
        };
        assert!(8 * shape(&wider).num_parameters() > teacher.num_parameters());
        assert!(PruneSpec::fitting(&teacher, 1e-4).is_none());
    }

    #[test]
    fn keeps_the_largest_in_original_order() {
        assert_eq!(top(&[0.5, 0.1, 0.9, 0.3], 2), vec![0, 2]);
        assert_eq!(top(&[0.5, 0.1, 0.9, 0.3], 4), vec![0, 1, 2, 3]);
    }
}
