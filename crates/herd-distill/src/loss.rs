//! The per-position losses and their gradients with respect to the
//! student's logits, written out by hand so that one pass over a position's
//! logits yields both (the chunked head in [`crate::fused`] never keeps a
//! logits row longer than that pass).
//!
//! With temperature τ, the student's distribution is `q = softmax(s / τ)`
//! and the teacher's `p = softmax(t / τ)` (or its cached top-k). Every
//! divergence is computed on *buckets*: with a full teacher each token is
//! its own bucket; with a top-k teacher the k cached tokens are buckets and
//! every other token falls into one extra "rest" bucket, holding the
//! teacher's tail mass on the teacher side and the student's mass outside
//! the k tokens on the student side. With k = the whole vocabulary the rest
//! bucket is empty on both sides and the two forms agree.
//!
//! For a loss `L(q̃)` of the bucket masses `q̃_b` the gradient is
//! `∂L/∂s_l = (1/τ) · (q_l / q̃_b(l) · h_b(l) − q_l · Σ_b h_b)` with
//! `h_b = q̃_b · ∂L/∂q̃_b`, which each divergence supplies in closed form
//! (see [`Divergence::term`]). The position's loss is
//! `(1 − w) · CE + w · τ² · D(p, q)`, `w` the KD weight; cross-entropy is on
//! the data's next token at temperature 1, and τ² keeps the distillation
//! gradient's size independent of τ (Hinton et al., 2015).

/// Which divergence between teacher and student is minimised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DistillLoss {
    /// Cross-entropy on the data's tokens only (no teacher): the baseline.
    CrossEntropy,
    /// `KL(p ‖ q)`: mass-covering, the classic distillation loss.
    ForwardKl,
    /// `KL(q ‖ p)`: mode-seeking, as MiniLLM argues for generation.
    ReverseKl,
    /// Generalised Jensen–Shannon (GKD): with `m = β p + (1 − β) q`,
    /// `β KL(p ‖ m) + (1 − β) KL(q ‖ m)`, β in (0, 1).
    Jsd {
        /// Weight of the teacher side.
        beta: f64,
    },
    /// Skew KL (DistiLLM): `KL(p ‖ α p + (1 − α) q)`, α in [0, 1).
    SkewKl {
        /// Share of the teacher mixed into the student side.
        alpha: f64,
    },
}

/// A teacher's distribution at one position.
#[derive(Debug, Clone, Copy)]
pub enum TeacherRow<'a> {
    /// Raw logits over the vocabulary (online teacher).
    Logits(&'a [f32]),
    /// The k most likely tokens' log-probabilities at the loss temperature
    /// and the mass of all other tokens (cached teacher).
    TopK {
        /// Token ids, distinct.
        ids: &'a [u32],
        /// `log p` of each id.
        logprobs: &'a [f32],
        /// `1 − Σ p` over the k ids, the rest bucket's teacher mass.
        tail: f32,
    },
}

/// The loss of one training run: divergence, temperature, KD/CE mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSpec {
    /// The divergence (or plain cross-entropy).
    pub loss: DistillLoss,
    /// Softmax temperature of both distributions in the divergence.
    pub temperature: f64,
    /// Share `w` of the distillation term; `1 − w` goes to cross-entropy.
    pub kd_weight: f64,
}

/// Logs of teacher probabilities are floored here: a bucket to which the
/// teacher gives zero mass (possible only with a cached tail) would make
/// reverse KL infinite.
const LOG_FLOOR: f64 = -100.0;

impl LossSpec {
    /// Rejects parameters outside the losses' domains.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!(
                "--temperature must be positive, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.kd_weight) {
            return Err(format!(
                "--kd-weight must be in [0, 1], got {}",
                self.kd_weight
            ));
        }
        match self.loss {
            DistillLoss::Jsd { beta } if !(beta > 0.0 && beta < 1.0) => {
                Err(format!("--beta must be in (0, 1), got {beta}"))
            }
            DistillLoss::SkewKl { alpha } if !(0.0..1.0).contains(&alpha) => {
                Err(format!("--alpha must be in [0, 1), got {alpha}"))
            }
            _ => Ok(()),
        }
    }

    /// Whether a teacher is needed at all.
    pub fn uses_teacher(&self) -> bool {
        self.loss != DistillLoss::CrossEntropy && self.kd_weight > 0.0
    }

    /// The loss at one position; its gradient with respect to `student`
    /// times `scale` is added into `grad` (same length as `student`).
    pub fn position(
        &self,
        student: &[f32],
        teacher: Option<TeacherRow<'_>>,
        label: u32,
        scale: f64,
        grad: &mut [f32],
    ) -> f64 {
        let (ce_weight, kd) = match (self.uses_teacher(), teacher) {
            (true, Some(t)) => (1.0 - self.kd_weight, Some(t)),
            _ => (1.0, None),
        };
        let mut loss = 0.0;
        if ce_weight > 0.0 {
            loss += ce_weight * cross_entropy(student, label, ce_weight * scale, grad);
        }
        if let Some(teacher) = kd {
            let tau = self.temperature;
            let w = self.kd_weight * tau * tau;
            loss += w * self.divergence(student, teacher, w * scale, grad);
        }
        loss
    }

    /// `D(p, q)` at temperature τ; adds `scale · ∂D/∂s` into `grad`.
    fn divergence(
        &self,
        student: &[f32],
        teacher: TeacherRow<'_>,
        scale: f64,
        grad: &mut [f32],
    ) -> f64 {
        let inv_t = 1.0 / self.temperature;
        let logq = log_softmax(student, inv_t);
        let g = scale * inv_t;
        match teacher {
            TeacherRow::Logits(t) => {
                let logp = log_softmax(&t[..student.len()], inv_t);
                let terms: Vec<(f64, f64)> = logp
                    .iter()
                    .zip(&logq)
                    .map(|(&lp, &lq)| self.term(lp, lq))
                    .collect();
                let h_sum: f64 = terms.iter().map(|t| t.1).sum();
                for ((gr, &lq), (_, h)) in grad.iter_mut().zip(&logq).zip(&terms) {
                    *gr += (g * (h - lq.exp() * h_sum)) as f32;
                }
                terms.iter().map(|t| t.0).sum()
            }
            TeacherRow::TopK {
                ids,
                logprobs,
                tail,
            } => self.sparse(&logq, ids, logprobs, tail, g, grad),
        }
    }

    /// The top-k form: k singleton buckets plus the rest bucket.
    fn sparse(
        &self,
        logq: &[f64],
        ids: &[u32],
        logprobs: &[f32],
        tail: f32,
        g: f64,
        grad: &mut [f32],
    ) -> f64 {
        // Ids past the shared vocabulary (a teacher's embedding padding) are
        // no token of the student; their teacher mass is dropped.
        let (ids, logprobs): (Vec<u32>, Vec<f32>) = ids
            .iter()
            .zip(logprobs)
            .filter(|(&i, _)| (i as usize) < logq.len())
            .unzip();
        let mut in_top = vec![false; logq.len()];
        ids.iter().for_each(|&i| in_top[i as usize] = true);
        // The rest's student mass, summed directly (1 − Σ top loses digits).
        let q_rest: f64 = logq
            .iter()
            .zip(&in_top)
            .filter(|(_, &top)| !top)
            .map(|(lq, _)| lq.exp())
            .sum();
        let top: Vec<(f64, f64)> = ids
            .iter()
            .zip(&logprobs)
            .map(|(&i, &lp)| self.term(lp as f64, logq[i as usize]))
            .collect();
        let rest = match q_rest > 0.0 || tail > 0.0 {
            true => self.term((tail.max(0.0) as f64).ln(), q_rest.ln()),
            false => (0.0, 0.0),
        };
        let h_sum = top.iter().map(|t| t.1).sum::<f64>() + rest.1;
        let rest_ratio = if q_rest > 0.0 { rest.1 / q_rest } else { 0.0 };
        for ((gr, &lq), &is_top) in grad.iter_mut().zip(logq).zip(&in_top) {
            if !is_top {
                let q = lq.exp();
                *gr += (g * (q * rest_ratio - q * h_sum)) as f32;
            }
        }
        for (&i, (_, h)) in ids.iter().zip(&top) {
            let q = logq[i as usize].exp();
            grad[i as usize] += (g * (h - q * h_sum)) as f32;
        }
        top.iter().map(|t| t.0).sum::<f64>() + rest.0
    }

    /// One bucket's share of the divergence and `h = q̃ · ∂D/∂q̃`, from the
    /// teacher's and student's log-masses.
    fn term(&self, logp: f64, logq: f64) -> (f64, f64) {
        let logp = logp.max(LOG_FLOOR);
        let (p, q) = (logp.exp(), logq.exp());
        // x · log(x / y), zero when x is.
        let xlog = |x: f64, lx: f64, ly: f64| if x > 0.0 { x * (lx - ly) } else { 0.0 };
        match self.loss {
            DistillLoss::CrossEntropy => (0.0, 0.0),
            DistillLoss::ForwardKl => (xlog(p, logp, logq), -p),
            DistillLoss::ReverseKl => {
                let d = xlog(q, logq, logp);
                (d, d + q)
            }
            DistillLoss::Jsd { beta } => {
                let logm = (beta * p + (1.0 - beta) * q).ln();
                let student_side = xlog(q, logq, logm);
                (
                    beta * xlog(p, logp, logm) + (1.0 - beta) * student_side,
                    (1.0 - beta) * student_side,
                )
            }
            DistillLoss::SkewKl { alpha } => {
                let m = alpha * p + (1.0 - alpha) * q;
                let h = if m > 0.0 {
                    -(1.0 - alpha) * p * q / m
                } else {
                    0.0
                };
                (xlog(p, logp, m.ln()), h)
            }
        }
    }
}

/// `−log softmax(s)[label]`; adds `scale · (softmax(s) − onehot)` into `grad`.
fn cross_entropy(student: &[f32], label: u32, scale: f64, grad: &mut [f32]) -> f64 {
    let logq = log_softmax(student, 1.0);
    for (g, &lq) in grad.iter_mut().zip(&logq) {
        *g += (scale * lq.exp()) as f32;
    }
    grad[label as usize] -= scale as f32;
    -logq[label as usize]
}

/// `log softmax(x · inv_t)` in f64.
pub fn log_softmax(x: &[f32], inv_t: f64) -> Vec<f64> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64 * inv_t;
    let sum: f64 = x.iter().map(|&v| (v as f64 * inv_t - max).exp()).sum();
    let lse = max + sum.ln();
    x.iter().map(|&v| v as f64 * inv_t - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(loss: DistillLoss) -> LossSpec {
        LossSpec {
            loss,
            temperature: 1.7,
            kd_weight: 0.8,
        }
    }

    /// Central differences of the loss agree with the analytic gradient.
    #[test]
    fn gradients_match_finite_differences() {
        let s: Vec<f32> = (0..9).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.7).collect();
        let t: Vec<f32> = (0..9).map(|i| ((i * 3 % 4) as f32 - 1.5) * 0.9).collect();
        let losses = [
            DistillLoss::CrossEntropy,
            DistillLoss::ForwardKl,
            DistillLoss::ReverseKl,
            DistillLoss::Jsd { beta: 0.3 },
            DistillLoss::SkewKl { alpha: 0.2 },
        ];
        let logp = log_softmax(&t, 1.0 / 1.7);
        let ids = [2u32, 5, 7];
        let lps: Vec<f32> = ids.iter().map(|&i| logp[i as usize] as f32).collect();
        let tail = 1.0 - lps.iter().map(|&l| (l as f64).exp()).sum::<f64>();
        let sparse = TeacherRow::TopK {
            ids: &ids,
            logprobs: &lps,
            tail: tail as f32,
        };
        for loss in losses {
            for teacher in [TeacherRow::Logits(&t), sparse] {
                let sp = spec(loss);
                let mut grad = vec![0f32; 9];
                sp.position(&s, Some(teacher), 4, 1.0, &mut grad);
                for l in 0..9 {
                    let at = |d: f32| {
                        let mut x = s.clone();
                        x[l] += d;
                        sp.position(&x, Some(teacher), 4, 1.0, &mut [0f32; 9])
                    };
                    let fd = (at(1e-3) - at(-1e-3)) / 2e-3;
                    assert!(
                        (fd - grad[l] as f64).abs() < 2e-3,
                        "{loss:?} logit {l}: numeric {fd}, analytic {}",
                        grad[l]
                    );
                }
            }
        }
    }

    #[test]
    fn parameters_outside_their_domain_are_refused() {
        let mut sp = spec(DistillLoss::Jsd { beta: 1.0 });
        assert!(sp.validate().unwrap_err().contains("--beta"));
        sp.loss = DistillLoss::ForwardKl;
        sp.temperature = 0.0;
        assert!(sp.validate().unwrap_err().contains("--temperature"));
    }
}
