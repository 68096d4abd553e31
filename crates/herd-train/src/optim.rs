//! AdamW, the learning-rate schedule and gradient clipping, written out so
//! that every piece of optimizer state is a plain tensor this crate saves
//! and restores bit for bit (candle-nn's AdamW keeps its moments private).

use candle_core::{Tensor, Var};

use crate::error::Result;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not norms).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Linear warm-up to the peak rate, then a cosine decay to `min_ratio` of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total optimizer steps.
    pub total: usize,
    /// Final rate as a fraction of the peak.
    pub min_ratio: f64,
}

impl Schedule {
    /// The rate for optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.min_ratio + (1.0 - self.min_ratio) * cosine)
    }
}

/// AdamW state: one first and second moment per trainable variable.
pub struct AdamW {
    config: AdamWConfig,
    /// First moments, in the model's trainable order.
    pub m: Vec<Tensor>,
    /// Second moments.
    pub v: Vec<Tensor>,
    /// Updates applied so far (for bias correction).
    pub t: usize,
}

impl AdamW {
    /// Zero moments for `params`.
    pub fn new(params: &[(String, Var)], config: AdamWConfig) -> Result<AdamW> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        Ok(AdamW {
            config,
            m: params
                .iter()
                .map(|(_, p)| zeros(p))
                .collect::<candle_core::Result<_>>()?,
            v: params
                .iter()
                .map(|(_, p)| zeros(p))
                .collect::<candle_core::Result<_>>()?,
            t: 0,
        })
    }

    /// One update of every variable with its gradient.
    pub fn step(&mut self, params: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        let c = self.config;
        self.t += 1;
        let correct1 = 1.0 - c.beta1.powi(self.t as i32);
        let correct2 = 1.0 - c.beta2.powi(self.t as i32);
        for (i, ((_, p), g)) in params.iter().zip(grads).enumerate() {
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&m / correct1)?;
            let v_hat = (&v / correct2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decay = if p.rank() >= 2 { c.weight_decay } else { 0.0 };
            let next = ((p.as_tensor() * (1.0 - lr * decay))? - (update * lr)?)?;
            p.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// The global L2 norm of all gradients.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0f64;
    for g in grads {
        sum += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(sum.sqrt())
}

/// Scales gradients down so their global norm is at most `max_norm`
/// (as `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * factor)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = Schedule {
            peak: 1.0,
            warmup: 4,
            total: 14,
            min_ratio: 0.1,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(9) - 0.55).abs() < 1e-12);
        assert!((s.lr(14) - 0.1).abs() < 1e-12);
        assert!((s.lr(100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn adamw_first_step_moves_by_lr_against_the_gradient_sign() {
        let p = Var::from_vec(vec![1f32, -2.0], 2, &Device::Cpu).expect("var");
        let params = vec![("p".to_string(), p.clone())];
        let mut opt = AdamW::new(&params, AdamWConfig::default()).expect("adamw");
        let g = Tensor::new(&[0.5f32, -3.0], &Device::Cpu).expect("grad");
        opt.step(&params, &[g], 0.1).expect("step");
        let got = p.as_tensor().to_vec1::<f32>().expect("values");
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut grads = vec![
            Tensor::new(&[3f32], &Device::Cpu).expect("g"),
            Tensor::new(&[4f32], &Device::Cpu).expect("g"),
        ];
        assert!((clip(&mut grads, 1.0).expect("clip") - 5.0).abs() < 1e-9);
        assert!((global_norm(&grads).expect("norm") - 1.0).abs() < 1e-5);
    }
}
