//! A softmax over the last axis with a backward rule. candle-nn's fused
//! `softmax_last_dim` has none (its gradient is silently absent, which
//! leaves queries and keys untrained), and the composed `exp / sum`
//! version allocates four intermediate tensors per attention layer.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};
use rayon::prelude::*;

/// Row-wise softmax of a contiguous f32 tensor.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "herd-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("softmax: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax: the input must be contiguous");
        };
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = data[start..end].to_vec();
        out.par_chunks_mut(dim).for_each(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// `dx = y · (dy − Σ dy·y)` along the last axis.
    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((grad_res.broadcast_sub(&dot)? * res)?))
    }
}

/// Softmax over the last axis, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// `x wᵀ` for a frozen `w`: the backward pass yields the gradient of `x`
/// only. candle's own matmul rule always computes both operands'
/// gradients, which for LoRA would compute (and keep) a full-size gradient
/// of every frozen weight that nothing reads.
struct FrozenLinear;

impl CustomOp2 for FrozenLinear {
    fn name(&self) -> &'static str {
        "herd-frozen-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = x_layout.shape().dims2()?;
        let (n, k_w) = w_layout.shape().dims2()?;
        if k != k_w {
            candle_core::bail!("frozen linear: x is ({m}, {k}) but w is ({n}, {k_w})");
        }
        let out = x.matmul(w, (1, m, n, k), x_layout, &w_layout.transpose(0, 1)?)?;
        Ok((out, Shape::from((m, n))))
    }

    /// `dx = dy · w`; no gradient for `w`.
    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.matmul(w)?), None))
    }
}

/// `x: (n, in)` times the frozen `w: (out, in)` transposed, differentiable in `x` only.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op2(w, FrozenLinear)
}
