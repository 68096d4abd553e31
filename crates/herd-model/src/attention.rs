//! Causal grouped-query attention over KV state, as plain f32 loops.
//!
//! Work is split over (query position, KV head) pairs on the rayon pool: the
//! `group = n_heads / n_kv_heads` query heads that share a KV head are done
//! together, so every key and value row is read once per group rather than
//! once per query head, and each task writes its own contiguous slice of the
//! output. Keys and values are read through [`KvView`] runs, so a contiguous
//! cache and a paged pool go through exactly the same arithmetic in the same
//! order and give bit-identical results.
//!
//! Per task, for each query head `g` of the group at position `p`:
//! `s_j = q_g · k_j / √d` for `j ≤ p`, `w = softmax(s)`, `out_g = Σ_j w_j v_j`.

use rayon::prelude::*;

use crate::kv::KvView;

/// Head counts and width of one attention layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// One sequence's new rows in the packed batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    /// Number of new positions (rows of the packed batch).
    pub len: usize,
    /// Positions already stored before this step.
    pub past: usize,
}

/// `out = attention(q, kv)`: `q` and `out` are `(tokens, n_heads * head_dim)`,
/// packed over `spans` in order; `views[i]` holds sequence `i`'s keys and
/// values including this step's rows.
pub(crate) fn attend(
    heads: Heads,
    q: &[f32],
    spans: &[Span],
    views: &[KvView<'_>],
    out: &mut [f32],
) {
    let Heads {
        n_heads,
        n_kv_heads,
        head_dim: d,
    } = heads;
    let group = n_heads / n_kv_heads;
    // (sequence, position) of every packed row.
    let rows: Vec<(usize, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(s, span)| (span.past..span.past + span.len).map(move |p| (s, p)))
        .collect();
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(group * d)
        .enumerate()
        .for_each(|(task, out)| {
            let (row, kv_head) = (task / n_kv_heads, task % n_kv_heads);
            let (seq, pos) = rows[row];
            let q = &q[row * n_heads * d + kv_head * group * d..][..group * d];
            attend_group(q, views[seq], kv_head, pos + 1, heads, scale, out);
        });
}

/// Attention of the `group` query heads in `q` (`(group, d)`) over the first
/// `visible` positions of `kv`, head `kv_head`; writes `(group, d)` to `out`.
fn attend_group(
    q: &[f32],
    kv: KvView<'_>,
    kv_head: usize,
    visible: usize,
    heads: Heads,
    scale: f32,
    out: &mut [f32],
) {
    let d = heads.head_dim;
    let kv_dim = heads.n_kv_heads * d;
    let group = q.len() / d;
    // Scores, `(group, visible)`.
    let mut scores = vec![0f32; group * visible];
    for run in kv.runs(visible) {
        for (j, k) in run.k.chunks_exact(kv_dim).enumerate() {
            let k = &k[kv_head * d..][..d];
            for (g, q) in q.chunks_exact(d).enumerate() {
                scores[g * visible + run.start + j] = dot(q, k) * scale;
            }
        }
    }
    // Softmax per head.
    for s in scores.chunks_exact_mut(visible) {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for x in s.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inv = 1.0 / sum;
        s.iter_mut().for_each(|x| *x *= inv);
    }
    // Weighted sum of values.
    out.fill(0.0);
    for run in kv.runs(visible) {
        for (j, v) in run.v.chunks_exact(kv_dim).enumerate() {
            let v = &v[kv_head * d..][..d];
            for (g, out) in out.chunks_exact_mut(d).enumerate() {
                let w = scores[g * visible + run.start + j];
                out.iter_mut().zip(v).for_each(|(o, &x)| *o += w * x);
            }
        }
    }
}

/// Dot product with eight independent accumulators (vectorises without
/// reassociating a single serial sum).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::dot;

    #[test]
    fn dot_handles_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![2.0; 19];
        assert_eq!(dot(&a, &b), 2.0 * (0..19).sum::<i32>() as f32);
    }
}
