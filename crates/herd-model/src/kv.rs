//! Per-sequence key/value state, kept outside the immutable model so that one
//! loaded [`crate::Llama`] serves any number of sequences at once.

use candle_core::Tensor;

use crate::config::Config;
use crate::error::{ModelError, Result};

/// Keys and values of every layer for one sequence, contiguous in position.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: `(k, v)`, each `(1, n_kv_heads, len, head_dim)`; `None` before the first token.
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already stored.
    len: usize,
}

impl KvCache {
    /// An empty cache for a model of this shape.
    pub fn new(cfg: &Config) -> KvCache {
        KvCache {
            layers: vec![None; cfg.num_hidden_layers],
            len: 0,
        }
    }

    /// Number of positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of layers this cache was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Keeps only the first `len` positions (e.g. a shared chat prefix).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        if len == 0 {
            self.clear();
            return Ok(());
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.narrow(2, 0, len)?.contiguous()?;
            *v = v.narrow(2, 0, len)?.contiguous()?;
        }
        self.len = len;
        Ok(())
    }

    /// Appends this step's keys and values for `layer` and returns all of them.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::InvalidInput(format!("KV cache has no layer {layer}")))?;
        let (k, v) = match slot.take() {
            None => (k, v),
            Some((old_k, old_v)) => (
                Tensor::cat(&[&old_k, &k], 2)?,
                Tensor::cat(&[&old_v, &v], 2)?,
            ),
        };
        *slot = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Records that `n` positions were appended to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
