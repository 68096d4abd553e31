//! Sharding hooks: which part of a Llama one rank of a tensor × pipeline
//! parallel job holds, and the two collectives its forward pass needs.
//!
//! The model code knows nothing of MPI: a [`Shard`] says which slice of the
//! weights to load, and a [`TensorParallel`] value (implemented over a real
//! communicator one crate up, in `herd-parallel`) sums or gathers activations
//! among the ranks of one pipeline stage. One forward pass serves every
//! layout, so the single-process model is simply the shard that holds
//! everything with [`NoTensorParallel`].
//!
//! Megatron-style split of one layer over `tp` ranks, rank `r`:
//!
//! ```text
//! q/k/v_proj, gate/up_proj   rows (output features) of rank r   column-parallel: no communication
//! attention                  query heads and KV heads of rank r (whole GQA groups stay together)
//! o_proj, down_proj          columns (input features) of rank r  row-parallel: partial sums,
//!                                                                 one all-reduce each
//! embed_tokens, lm_head      vocabulary rows of rank r           embedding: all-reduce of rows
//!                                                                 (others are zero); head: all-gather
//! ```

use std::ops::Range;

use crate::config::Config;
use crate::error::{ModelError, Result};

/// The part of the model one rank holds: a tensor-parallel slice of a
/// contiguous range of layers (a pipeline stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// This rank's index within its stage's tensor-parallel group.
    pub tp_rank: usize,
    /// Ranks in the tensor-parallel group.
    pub tp_size: usize,
    /// Decoder layers of this stage; the first stage embeds, the last one
    /// normalises and projects to the vocabulary.
    pub layers: Range<usize>,
}

impl Shard {
    /// Everything, on one rank.
    pub fn whole(cfg: &Config) -> Shard {
        Shard {
            tp_rank: 0,
            tp_size: 1,
            layers: 0..cfg.num_hidden_layers,
        }
    }

    /// Whether this shard is the whole model.
    pub fn is_whole(&self, cfg: &Config) -> bool {
        self.tp_size == 1 && self.layers == (0..cfg.num_hidden_layers)
    }

    /// Whether this stage embeds the tokens.
    pub fn is_first_stage(&self) -> bool {
        self.layers.start == 0
    }

    /// Whether this stage computes logits.
    pub fn is_last_stage(&self, cfg: &Config) -> bool {
        self.layers.end == cfg.num_hidden_layers
    }

    /// Checks that the model's heads, hidden and intermediate sizes split
    /// evenly over `tp_size` ranks and that the layer range exists.
    pub fn check(&self, cfg: &Config) -> Result<()> {
        let tp = self.tp_size;
        if tp == 0 || self.tp_rank >= tp {
            return Err(ModelError::InvalidShard(format!(
                "tensor-parallel rank {} of {tp}",
                self.tp_rank
            )));
        }
        let sizes = [
            ("KV heads", cfg.num_key_value_heads),
            ("attention heads", cfg.num_attention_heads),
            ("hidden size", cfg.hidden_size),
            ("intermediate size", cfg.intermediate_size),
        ];
        for (what, n) in sizes {
            if !n.is_multiple_of(tp) {
                return Err(ModelError::InvalidShard(format!(
                    "TP {tp} does not divide the model's {n} {what}; choose a TP that divides \
                     {} KV heads, {} attention heads, hidden size {} and intermediate size {}",
                    cfg.num_key_value_heads,
                    cfg.num_attention_heads,
                    cfg.hidden_size,
                    cfg.intermediate_size
                )));
            }
        }
        if self.layers.is_empty() || self.layers.end > cfg.num_hidden_layers {
            return Err(ModelError::InvalidShard(format!(
                "layers {}..{} of a model with {} layers",
                self.layers.start, self.layers.end, cfg.num_hidden_layers
            )));
        }
        Ok(())
    }

    /// This rank's slice of `0..n` when `n` splits evenly.
    pub(crate) fn even_slice(&self, n: usize) -> Range<usize> {
        let len = n / self.tp_size;
        self.tp_rank * len..(self.tp_rank + 1) * len
    }

    /// Vocabulary rows per rank: the vocabulary need not divide evenly, so
    /// every rank owns `ceil(vocab / tp)` slots and the last one fewer rows.
    pub(crate) fn vocab_chunk(&self, vocab: usize) -> usize {
        vocab.div_ceil(self.tp_size)
    }

    /// This rank's vocabulary rows.
    pub(crate) fn vocab_rows(&self, vocab: usize) -> Range<usize> {
        let chunk = self.vocab_chunk(vocab);
        let start = (self.tp_rank * chunk).min(vocab);
        start..(start + chunk).min(vocab)
    }
}

/// Collectives among the ranks of one tensor-parallel group. Every rank of
/// the group calls them in the same order with buffers of the same length.
pub trait TensorParallel {
    /// Element-wise sum over the group, in place.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Every rank's `local` (all the same length) concatenated in rank order into `out`.
    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<()>;
}

/// The group of one: sums and gathers are copies.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTensorParallel;

impl TensorParallel for NoTensorParallel {
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        if local.len() != out.len() {
            return Err(ModelError::InvalidInput(format!(
                "gather of {} values into {}",
                local.len(),
                out.len()
            )));
        }
        out.copy_from_slice(local);
        Ok(())
    }
}

/// What a pipeline stage starts from.
#[derive(Debug, Clone, Copy)]
pub enum StageInput<'a> {
    /// The batch's tokens (the first stage).
    Tokens,
    /// The previous stage's output, `(total new tokens, hidden)` row-major.
    Hidden(&'a [f32]),
}

/// What a pipeline stage produces.
#[derive(Debug)]
pub enum StageOutput {
    /// Hidden states for the next stage, `(total new tokens, hidden)` row-major.
    Hidden(Vec<f32>),
    /// Per-sequence logits over the whole vocabulary (the last stage).
    Logits(Vec<candle_core::Tensor>),
}

/// Reorders gathered vocabulary slices, `(tp, rows, chunk)`, into
/// `(rows, vocab)` logits, dropping the padding of the last slice.
pub(crate) fn interleave_vocab(gathered: &[f32], tp: usize, rows: usize, vocab: usize) -> Vec<f32> {
    let chunk = vocab.div_ceil(tp);
    let mut out = Vec::with_capacity(rows * vocab);
    for r in 0..rows {
        for rank in 0..tp {
            let start = rank * chunk;
            let n = chunk.min(vocab.saturating_sub(start));
            let from = (rank * rows + r) * chunk;
            out.extend_from_slice(&gathered[from..from + n]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_slices_cover_an_uneven_vocabulary() {
        let shard = |r| Shard {
            tp_rank: r,
            tp_size: 3,
            layers: 0..1,
        };
        let rows: Vec<_> = (0..3).map(|r| shard(r).vocab_rows(10)).collect();
        assert_eq!(rows, vec![0..4, 4..8, 8..10]);
        // Two rows of logits, ranks' slices padded to 4 values.
        let gathered: Vec<f32> = (0..3)
            .flat_map(|rank| {
                (0..2).flat_map(move |row| {
                    (0..4).map(move |i| {
                        let v = rank * 4 + i;
                        if v < 10 {
                            (row * 100 + v) as f32
                        } else {
                            -1.0
                        }
                    })
                })
            })
            .collect();
        let logits = interleave_vocab(&gathered, 3, 2, 10);
        let expected: Vec<f32> = (0..2)
            .flat_map(|row| (0..10).map(move |v| (row * 100 + v) as f32))
            .collect();
        assert_eq!(logits, expected);
    }
}
