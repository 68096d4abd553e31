//! The output projection and the loss fused into one differentiable op, run
//! chunk by chunk so the `(positions, vocab)` logits never exist at once.
//!
//! Composing `hidden · headᵀ` and a loss from candle ops would keep every
//! chunk's logits alive until backward (autograd holds its inputs), so the
//! whole matrix would be materialised after all. Instead the forward pass
//! of [`head_loss`] does, per chunk of positions: student logits → loss and
//! `∂L/∂logits` ([`LossSpec::position`]) → `∂L/∂hidden = G · head` and
//! `∂L/∂head += Gᵀ · hidden`, then drops the chunk. Backward only scales
//! the saved gradients (the same trick as Liger's fused linear
//! cross-entropy). Peak memory is one chunk of student logits, one of
//! gradients and one of teacher rows, whatever the batch.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};
use herd_train::data::Row;
use herd_train::record::Example;
use rayon::prelude::*;

use crate::error::{DistillError, Result};
use crate::loss::{LossSpec, TeacherRow};

/// Logit elements per chunk (16 MiB of f32): 4096 positions of a 1k
/// vocabulary, or 32 of Llama 3's 128k.
const CHUNK_ELEMENTS: usize = 1 << 22;

/// A teacher's rows for the counted positions of one example.
#[derive(Debug, Clone, PartialEq)]
pub enum TeacherRows {
    /// Logits, `(positions, vocab)` row-major.
    Logits {
        /// The values.
        data: Vec<f32>,
        /// Row length.
        vocab: usize,
    },
    /// Top-k log-probabilities and tail masses.
    TopK(TopK),
}

/// A teacher's k most likely next tokens at each position of a sequence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopK {
    /// Entries per position.
    pub k: usize,
    /// `(positions, k)` token ids, most likely first.
    pub ids: Vec<u32>,
    /// `(positions, k)` log-probabilities at the cache's temperature.
    pub logprobs: Vec<f32>,
    /// `(positions)` mass outside the k ids.
    pub tail: Vec<f32>,
}

impl TeacherRows {
    /// Row `i` as the loss reads it.
    pub fn row(&self, i: usize) -> TeacherRow<'_> {
        match self {
            TeacherRows::Logits { data, vocab } => {
                TeacherRow::Logits(&data[i * vocab..(i + 1) * vocab])
            }
            TeacherRows::TopK(TopK {
                k,
                ids,
                logprobs,
                tail,
            }) => TeacherRow::TopK {
                ids: &ids[i * k..(i + 1) * k],
                logprobs: &logprobs[i * k..(i + 1) * k],
                tail: tail[i],
            },
        }
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        match self {
            TeacherRows::Logits { data, vocab } => data.len() / (*vocab).max(1),
            TeacherRows::TopK(t) => t.tail.len(),
        }
    }

    /// Whether there are no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where teacher rows come from during training: a live model or a cache.
pub trait TeacherSide: Send + Sync {
    /// The teacher's rows for the counted positions of `example` (those
    /// `i` with `target[i + 1]`, predicting `ids[i + 1]`), in order.
    fn rows(&self, example: &Example) -> Result<TeacherRows>;
}

/// Counted positions of an example: the input index of each.
pub fn counted_positions(example: &Example) -> Vec<usize> {
    (0..example.ids.len().saturating_sub(1))
        .filter(|&i| example.target[i + 1])
        .collect()
}

/// The examples of packed rows and, flattened over `(rows · seq_len)`, the
/// index of every counted position, example by example.
pub fn row_examples(rows: &[Row]) -> (Vec<Example>, Vec<u32>) {
    let mut examples = Vec::new();
    let mut index = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let base = r * row.inputs.len();
        for (start, ex) in row.examples() {
            index.extend(
                counted_positions(&ex)
                    .into_iter()
                    .map(|i| (base + start + i) as u32),
            );
            examples.push(ex);
        }
    }
    (examples, index)
}

/// The fused op: positions are the counted positions of `examples`, in order.
struct HeadLoss {
    spec: LossSpec,
    /// Vocabulary entries the loss runs over (teacher and student agree on them).
    vocab: usize,
    examples: Vec<Example>,
    teacher: Option<Arc<dyn TeacherSide>>,
    /// Whether `head` is trained (full fine-tuning) or frozen (LoRA).
    head_grad: bool,
    /// `(∂L/∂hidden, ∂L/∂head)` from the forward pass.
    saved: Mutex<Option<(Tensor, Option<Tensor>)>>,
}

/// The summed loss over the counted positions of `examples`, whose final
/// hidden states are the rows of `hidden: (n, h)`, with output projection
/// `head: (vocab_rows, h)`. `vocab` ≤ `vocab_rows` entries take part (rows
/// past it are embedding padding). `teacher` is needed when `spec` uses one.
pub fn head_loss(
    hidden: &Tensor,
    head: &Tensor,
    spec: LossSpec,
    vocab: usize,
    examples: Vec<Example>,
    teacher: Option<Arc<dyn TeacherSide>>,
) -> Result<Tensor> {
    if spec.uses_teacher() && teacher.is_none() {
        return Err(DistillError::InvalidOption(format!(
            "{:?} needs a teacher (--teacher or --cache)",
            spec.loss
        )));
    }
    let op = HeadLoss {
        spec,
        vocab,
        examples,
        teacher,
        head_grad: head.is_variable(),
        saved: Mutex::new(None),
    };
    Ok(hidden.contiguous()?.apply_op2(&head.contiguous()?, op)?)
}

impl HeadLoss {
    /// Loss and gradients of the counted positions of `group`, given their
    /// hidden states `h`.
    fn chunk(
        &self,
        h: &Tensor,
        head: &Tensor,
        group: &[Example],
    ) -> Result<(f64, Tensor, Option<Tensor>)> {
        let vocab_rows = head.dim(0)?;
        let logits = h.matmul(&head.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        let teacher = match (&self.teacher, self.spec.uses_teacher()) {
            (Some(t), true) => group
                .iter()
                .map(|ex| t.rows(ex))
                .collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        // (example, row within its teacher rows, label) per position.
        let mut sites = Vec::new();
        for (e, ex) in group.iter().enumerate() {
            let pos = counted_positions(ex);
            if let Some(rows) = teacher.get(e) {
                if rows.len() != pos.len() {
                    return Err(DistillError::Teacher(format!(
                        "the teacher gave {} rows for {} counted positions",
                        rows.len(),
                        pos.len()
                    )));
                }
            }
            sites.extend(pos.iter().enumerate().map(|(j, &i)| (e, j, ex.ids[i + 1])));
        }
        let mut grad = vec![0f32; logits.len()];
        let loss: f64 = grad
            .par_chunks_mut(vocab_rows)
            .zip(logits.par_chunks(vocab_rows))
            .zip(sites.par_iter())
            .map(|((g, s), &(e, j, label))| {
                let t = teacher.get(e).map(|rows| rows.row(j));
                let v = self.vocab;
                self.spec.position(&s[..v], t, label, 1.0, &mut g[..v])
            })
            .sum();
        let g = Tensor::from_vec(grad, (sites.len(), vocab_rows), &Device::Cpu)?;
        let grad_h = g.matmul(head)?;
        let grad_head = match self.head_grad {
            true => Some(g.t()?.matmul(h)?),
            false => None,
        };
        Ok((loss, grad_h, grad_head))
    }
}

impl CustomOp2 for HeadLoss {
    fn name(&self) -> &'static str {
        "herd-distill-head-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(hs), CpuStorage::F32(ws)) = (s1, s2) else {
            candle_core::bail!("head loss: f32 only");
        };
        let (Some((h0, h1)), Some((w0, w1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("head loss: inputs must be contiguous");
        };
        let (n, dim) = l1.shape().dims2()?;
        if h1 - h0 != n * dim {
            candle_core::bail!("head loss: hidden storage does not match its shape");
        }
        let head = Tensor::from_slice(&ws[w0..w1], l2.shape().clone(), &Device::Cpu)?;
        let vocab_rows = head.dim(0)?;
        let chunk_rows = (CHUNK_ELEMENTS / vocab_rows).max(1);
        let (mut total, mut grads_h, mut grad_head) = (0f64, Vec::new(), None::<Tensor>);
        let (mut e, mut row) = (0, 0);
        while e < self.examples.len() {
            let first = e;
            let mut rows = 0;
            while e < self.examples.len() && (rows == 0 || rows < chunk_rows) {
                rows += counted_positions(&self.examples[e]).len();
                e += 1;
            }
            let h = Tensor::from_slice(
                &hs[h0 + row * dim..h0 + (row + rows) * dim],
                (rows, dim),
                &Device::Cpu,
            )?;
            let (loss, gh, gw) = self
                .chunk(&h, &head, &self.examples[first..e])
                .map_err(candle_core::Error::wrap)?;
            total += loss;
            grads_h.push(gh);
            grad_head = match (grad_head, gw) {
                (Some(acc), Some(g)) => Some((acc + g)?),
                (None, g) => g,
                (acc, None) => acc,
            };
            row += rows;
        }
        if row != n {
            candle_core::bail!("head loss: {n} hidden rows for {row} counted positions");
        }
        let grad_h = match grads_h.is_empty() {
            true => Tensor::zeros((n, dim), candle_core::DType::F32, &Device::Cpu)?,
            false => Tensor::cat(&grads_h, 0)?,
        };
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))? = Some((grad_h, grad_head));
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    /// The gradients were computed in the forward pass; scale them by the
    /// incoming gradient of the scalar loss.
    fn bwd(
        &self,
        _hidden: &Tensor,
        head: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?
            .take();
        let Some((gh, gw)) = saved else {
            candle_core::bail!("head loss: backward ran twice or before forward");
        };
        let scale = grad_res
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()? as f64;
        let gw = match gw {
            Some(g) => Some((g * scale)?),
            None if head.is_variable() => Some(head.zeros_like()?),
            None => None,
        };
        Ok((Some((gh * scale)?), gw))
    }
}
