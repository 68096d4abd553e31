//! Choosing a tensor × pipeline parallel layout for a model on a cluster,
//! and what it costs per device and per token.
//!
//! The rule is the one practitioners use for dense Llamas: tensor
//! parallelism (TP) stays inside a node, where links are fast, because it
//! all-reduces activations twice per layer; pipeline parallelism (PP) spans
//! nodes, because it sends one activation per stage boundary. Candidates are
//! one stage at any TP, or several stages at the largest TP a node allows
//! (splitting a node into stages before its TP is exhausted only adds
//! latency). Among those that fit, the plan takes the fewest devices, and
//! for equal device counts the larger TP.
//!
//! TP must divide the KV heads (each rank keeps whole KV heads; Llama 3 has
//! 8 at every size) and the query heads; PP cannot exceed the layer count.
//! Memory per device counts weights (a rank's slice of its stage's layers,
//! plus its slice of the embedding on the first stage and of the output head
//! on the last) and the KV cache for the requested context × batch; only
//! [`USABLE_FRACTION`] of a device's memory is planned for, leaving the rest
//! to activations and the runtime.

use std::fmt;
use std::ops::Range;

use herd_model::Config;

use crate::error::{DistError, Result};

/// Share of device memory the plan fills with weights and KV cache.
pub const USABLE_FRACTION: f64 = 0.90;

/// How weights are stored on the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanDtype {
    /// 2 bytes per weight.
    Bf16,
    /// 1 byte per weight (FP8 E4M3 with per-tensor scales).
    Fp8,
    /// Q4_K_M-like: about 4.85 bits per weight.
    Q4,
}

impl PlanDtype {
    /// Parses `bf16`, `fp8` or `q4`.
    pub fn parse(s: &str) -> Option<PlanDtype> {
        match s.to_ascii_lowercase().as_str() {
            "bf16" => Some(PlanDtype::Bf16),
            "fp8" => Some(PlanDtype::Fp8),
            "q4" => Some(PlanDtype::Q4),
            _ => None,
        }
    }

    /// Bytes per weight.
    pub fn bytes_per_weight(self) -> f64 {
        match self {
            PlanDtype::Bf16 => 2.0,
            PlanDtype::Fp8 => 1.0,
            PlanDtype::Q4 => 4.85 / 8.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PlanDtype::Bf16 => "bf16",
            PlanDtype::Fp8 => "fp8",
            PlanDtype::Q4 => "q4",
        }
    }
}

/// The machines available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cluster {
    /// Number of nodes.
    pub nodes: usize,
    /// Accelerators per node (TP stays within one node).
    pub devices_per_node: usize,
    /// Memory of one device in bytes.
    pub device_memory: f64,
}

/// What the layout must hold besides the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Tokens of context per sequence.
    pub context: usize,
    /// Sequences in flight.
    pub batch: usize,
}

/// A chosen layout with its costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Tensor-parallel degree (ranks per stage, inside a node).
    pub tp: usize,
    /// Pipeline stages.
    pub pp: usize,
    /// Layer range of each stage.
    pub stages: Vec<Range<usize>>,
    /// Weight bytes on the most loaded device.
    pub weight_bytes: f64,
    /// KV-cache bytes on the most loaded device.
    pub kv_bytes: f64,
    /// Bytes the plan may use per device.
    pub usable_bytes: f64,
    /// Per generated token: bytes all-reduced by TP (2 per layer, hidden-size bf16).
    pub tp_allreduce_bytes: f64,
    /// Per token: bytes each device sends for those all-reduces with a ring algorithm.
    pub tp_ring_bytes_per_device: f64,
    /// Per token: bytes sent across all stage boundaries (hidden-size bf16 each).
    pub pp_bytes: f64,
    /// Model parameters.
    pub parameters: f64,
    inputs: (Cluster, PlanDtype, Workload, usize, usize),
}

/// Parameter counts of a Llama, split the way the layout places them.
struct Sizes {
    per_layer: f64,
    embedding: f64,
    head: f64,
}

fn sizes(cfg: &Config) -> Sizes {
    let (h, hd) = (cfg.hidden_size as f64, cfg.head_dim as f64);
    let q = h * cfg.num_attention_heads as f64 * hd;
    let kv = 2.0 * h * cfg.num_key_value_heads as f64 * hd;
    let o = q;
    let mlp = 3.0 * h * cfg.intermediate_size as f64;
    let embedding = cfg.vocab_size as f64 * h;
    Sizes {
        per_layer: q + kv + o + mlp + 2.0 * h,
        embedding,
        // A tied head reuses the embedding, but the last stage still needs a copy
        // when it is not the first stage.
        head: embedding + h,
    }
}

/// Splits `layers` into `pp` contiguous ranges, the first ones one longer.
pub fn stage_ranges(layers: usize, pp: usize) -> Vec<Range<usize>> {
    let (base, extra) = (layers / pp, layers % pp);
    let mut start = 0;
    (0..pp)
        .map(|s| {
            let len = base + usize::from(s < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

impl Plan {
    /// Evaluates one layout (no fitting decision).
    pub fn evaluate(
        cfg: &Config,
        cluster: Cluster,
        dtype: PlanDtype,
        work: Workload,
        tp: usize,
        pp: usize,
    ) -> Plan {
        let s = sizes(cfg);
        let bpw = dtype.bytes_per_weight();
        let stages = stage_ranges(cfg.num_hidden_layers, pp);
        let kv_per_layer = 2.0
            * (cfg.num_key_value_heads / tp) as f64
            * cfg.head_dim as f64
            * 2.0
            * (work.context * work.batch) as f64;
        let (mut weight_bytes, mut kv_bytes) = (0f64, 0f64);
        for (i, r) in stages.iter().enumerate() {
            let mut params = r.len() as f64 * s.per_layer / tp as f64;
            if i == 0 {
                params += s.embedding / tp as f64;
            }
            if i + 1 == pp && !(pp == 1 && cfg.tie_word_embeddings) {
                params += s.head / tp as f64;
            }
            weight_bytes = weight_bytes.max(params * bpw);
            kv_bytes = kv_bytes.max(r.len() as f64 * kv_per_layer);
        }
        let hidden_bf16 = cfg.hidden_size as f64 * 2.0;
        let tp_allreduce_bytes = if tp > 1 {
            2.0 * cfg.num_hidden_layers as f64 * hidden_bf16
        } else {
            0.0
        };
        let parameters = cfg.num_hidden_layers as f64 * s.per_layer
            + s.embedding
            + if cfg.tie_word_embeddings {
                cfg.hidden_size as f64
            } else {
                s.head
            };
        Plan {
            tp,
            pp,
            stages,
            weight_bytes,
            kv_bytes,
            usable_bytes: cluster.device_memory * USABLE_FRACTION,
            tp_allreduce_bytes,
            tp_ring_bytes_per_device: tp_allreduce_bytes * 2.0 * (tp - 1) as f64 / tp as f64,
            pp_bytes: (pp - 1) as f64 * hidden_bf16,
            parameters,
            inputs: (
                cluster,
                dtype,
                work,
                cfg.num_hidden_layers,
                cfg.num_key_value_heads,
            ),
        }
    }

    /// Whether weights and KV cache fit the usable memory of each device.
    pub fn fits(&self) -> bool {
        self.weight_bytes + self.kv_bytes <= self.usable_bytes
    }

    /// The layout with the fewest devices that fits (larger TP on ties).
    pub fn choose(
        cfg: &Config,
        cluster: Cluster,
        dtype: PlanDtype,
        work: Workload,
    ) -> Result<Plan> {
        if cluster.nodes == 0 || cluster.devices_per_node == 0 || cluster.device_memory <= 0.0 {
            return Err(DistError::InvalidPlan(
                "nodes, devices per node and device memory must all be positive".into(),
            ));
        }
        if work.context == 0 || work.batch == 0 {
            return Err(DistError::InvalidPlan(
                "context and batch must be at least 1".into(),
            ));
        }
        let total = cluster.nodes * cluster.devices_per_node;
        let tps: Vec<usize> = (1..=cluster.devices_per_node)
            .filter(|&t| valid_tp(cfg, t).is_ok())
            .collect();
        // Single-stage layouts at every TP; more stages only once TP is at its
        // largest, since a stage boundary costs latency that TP inside the
        // node does not.
        let tp_max = tps.last().copied().unwrap_or(1);
        let stages_per_node = cluster.devices_per_node / tp_max;
        let max_pp = cfg.num_hidden_layers.min(stages_per_node * cluster.nodes);
        let candidates: Vec<Plan> = tps
            .iter()
            .map(|&tp| (tp, 1))
            .chain((2..=max_pp).map(|pp| (tp_max, pp)))
            .filter(|&(tp, pp)| tp * pp <= total)
            .map(|(tp, pp)| Plan::evaluate(cfg, cluster, dtype, work, tp, pp))
            .collect();
        let best = candidates
            .iter()
            .filter(|p| p.fits())
            .min_by_key(|p| (p.tp * p.pp, std::cmp::Reverse(p.tp)));
        match best {
            Some(p) => Ok(p.clone()),
            None => {
                let closest = candidates
                    .iter()
                    .min_by(|a, b| {
                        (a.weight_bytes + a.kv_bytes).total_cmp(&(b.weight_bytes + b.kv_bytes))
                    })
                    .map(|p| {
                        format!(
                            "; the most spread layout (TP {} × PP {}) needs {} per device, {} usable",
                            p.tp,
                            p.pp,
                            gib(p.weight_bytes + p.kv_bytes),
                            gib(p.usable_bytes)
                        )
                    })
                    .unwrap_or_default();
                Err(DistError::InvalidPlan(format!(
                    "the model does not fit {} node(s) × {} device(s) of {} in {}{closest}",
                    cluster.nodes,
                    cluster.devices_per_node,
                    gib(cluster.device_memory),
                    dtype.name()
                )))
            }
        }
    }
}

/// Checks that `tp` ranks can split the model's heads.
pub fn valid_tp(cfg: &Config, tp: usize) -> Result<()> {
    if tp == 0
        || !cfg.num_key_value_heads.is_multiple_of(tp)
        || !cfg.num_attention_heads.is_multiple_of(tp)
    {
        return Err(DistError::InvalidPlan(format!(
            "TP {tp} must divide the {} KV heads and {} query heads",
            cfg.num_key_value_heads, cfg.num_attention_heads
        )));
    }
    Ok(())
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// KiB below a MiB, MiB above.
fn kib(bytes: f64) -> String {
    if bytes < 1024.0 * 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cluster, dtype, work, layers, kv_heads) = self.inputs;
        writeln!(
            f,
            "model: {:.1} B parameters, {layers} layers, {kv_heads} KV heads; weights in {}",
            self.parameters / 1e9,
            dtype.name()
        )?;
        writeln!(
            f,
            "cluster: {} node(s) × {} device(s) × {}; KV for {} tokens × {} sequence(s) (bf16)",
            cluster.nodes,
            cluster.devices_per_node,
            gib(cluster.device_memory),
            work.context,
            work.batch
        )?;
        let per_node = cluster.devices_per_node / self.tp;
        writeln!(
            f,
            "layout: TP {} × PP {} = {} device(s) on {} node(s)",
            self.tp,
            self.pp,
            self.tp * self.pp,
            self.pp.div_ceil(per_node)
        )?;
        for (i, r) in self.stages.iter().enumerate() {
            writeln!(
                f,
                "  stage {i}: layers {}..{} on node {}, {} rank(s)",
                r.start,
                r.end,
                i / per_node,
                self.tp
            )?;
        }
        writeln!(
            f,
            "memory per device: weights {} + KV cache {} = {} of {} usable ({:.0}% of {})",
            gib(self.weight_bytes),
            gib(self.kv_bytes),
            gib(self.weight_bytes + self.kv_bytes),
            gib(self.usable_bytes),
            USABLE_FRACTION * 100.0,
            gib(cluster.device_memory)
        )?;
        writeln!(
            f,
            "communication per token: TP all-reduce {} (2 per layer × hidden × 2 B), ring traffic {} per device; PP {} across {} boundary(ies)",
            kib(self.tp_allreduce_bytes),
            kib(self.tp_ring_bytes_per_device),
            kib(self.pp_bytes),
            self.pp - 1
        )
    }
}
