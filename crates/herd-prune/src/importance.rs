//! Measuring how much a model uses each of its parts on calibration text.

use herd_model::{logits_row, Llama, Logits, Trace, TracePoint};

use crate::error::{PruneError, Result};

/// Importance scores, higher = more important, averaged over calibration tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    /// Per layer: mean `1 − cos(input, output)` of the residual stream.
    pub layers: Vec<f64>,
    /// Per layer, per KV group: mean summed L2 norm of the group's query heads' outputs.
    pub kv_groups: Vec<Vec<f64>>,
    /// Per layer, per MLP channel: mean `|silu(gate) · up|`.
    pub mlp: Vec<Vec<f64>>,
    /// Per hidden channel: mean `|x / rms(x)|` of the residual stream, summed over layer inputs.
    pub hidden: Vec<f64>,
    /// Calibration tokens the means are over.
    pub tokens: usize,
}

impl Importance {
    /// Layers from least to most important (ties: earlier first).
    pub fn layers_by_importance(&self) -> Vec<usize> {
        ascending(&self.layers)
    }
}

/// Indices of `values` from smallest to largest (stable).
pub(crate) fn ascending(values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order
}

/// Sums the activations [`measure`] needs, layer by layer.
struct Collector {
    imp: Importance,
    /// Query heads per KV group and the width of one head.
    group: usize,
    head_dim: usize,
    /// The current layer's input, for the cosine with its output.
    input: Vec<f32>,
}

impl Trace for Collector {
    fn record(&mut self, layer: usize, point: TracePoint, values: &[f32], width: usize) {
        let rows = values.chunks_exact(width);
        match point {
            TracePoint::LayerInput => {
                self.input = values.to_vec();
                for row in rows {
                    let rms = (row.iter().map(|&x| (x * x) as f64).sum::<f64>() / width as f64)
                        .sqrt()
                        .max(1e-12);
                    for (acc, &x) in self.imp.hidden.iter_mut().zip(row) {
                        *acc += (x as f64).abs() / rms;
                    }
                }
            }
            TracePoint::LayerOutput => {
                for (out, inp) in rows.zip(self.input.chunks_exact(width)) {
                    self.imp.layers[layer] += 1.0 - cosine(inp, out);
                }
            }
            TracePoint::AttentionHeads => {
                for row in rows {
                    for (h, head) in row.chunks_exact(self.head_dim).enumerate() {
                        let norm = head.iter().map(|&x| (x * x) as f64).sum::<f64>().sqrt();
                        self.imp.kv_groups[layer][h / self.group] += norm;
                    }
                }
            }
            TracePoint::MlpHidden => {
                for row in rows {
                    for (acc, &x) in self.imp.mlp[layer].iter_mut().zip(row) {
                        *acc += (x as f64).abs();
                    }
                }
            }
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-30)
}

/// Runs `model` over the calibration `sequences` (each cut to the model's
/// context) and averages the importance of its parts over their tokens.
pub fn measure(model: &Llama, sequences: &[Vec<u32>]) -> Result<Importance> {
    let cfg = model.config();
    let layers = cfg.num_hidden_layers;
    let mut collector = Collector {
        imp: Importance {
            layers: vec![0.0; layers],
            kv_groups: vec![vec![0.0; cfg.num_key_value_heads]; layers],
            mlp: vec![vec![0.0; cfg.intermediate_size]; layers],
            hidden: vec![0.0; cfg.hidden_size],
            tokens: 0,
        },
        group: cfg.num_attention_heads / cfg.num_key_value_heads,
        head_dim: cfg.head_dim,
        input: Vec::new(),
    };
    for seq in usable(model, sequences)? {
        let mut cache = model.new_cache();
        model.forward_traced(seq, &mut cache, &mut collector)?;
        collector.imp.tokens += seq.len();
    }
    let mut imp = collector.imp;
    let n = imp.tokens as f64;
    let scale = |v: &mut Vec<f64>| v.iter_mut().for_each(|x| *x /= n);
    scale(&mut imp.layers);
    scale(&mut imp.hidden);
    imp.kv_groups.iter_mut().for_each(scale);
    imp.mlp.iter_mut().for_each(scale);
    Ok(imp)
}

/// Perplexity of `model` on `sequences` (every token after the first of
/// each, each sequence cut to the model's context).
pub fn perplexity(model: &Llama, sequences: &[Vec<u32>]) -> Result<f64> {
    let (mut nll, mut count) = (0f64, 0usize);
    for seq in usable(model, sequences)? {
        if seq.len() < 2 {
            continue;
        }
        let logits = model.forward_one(seq, &mut model.new_cache(), Logits::All)?;
        for (r, &next) in seq[1..].iter().enumerate() {
            let row = logits_row(&logits, r)?;
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            nll += max + sum.ln() - row[next as usize] as f64;
            count += 1;
        }
    }
    if count == 0 {
        return Err(PruneError::Calibration(
            "no sequence has two tokens to score".into(),
        ));
    }
    Ok((nll / count as f64).exp())
}

/// The non-empty sequences, cut to the model's context; an error if none.
fn usable<'s>(model: &Llama, sequences: &'s [Vec<u32>]) -> Result<Vec<&'s [u32]>> {
    let limit = model.config().max_position_embeddings;
    let seqs: Vec<&[u32]> = sequences
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| &s[..s.len().min(limit)])
        .collect();
    if seqs.is_empty() {
        return Err(PruneError::Calibration("no calibration tokens".into()));
    }
    Ok(seqs)
}
