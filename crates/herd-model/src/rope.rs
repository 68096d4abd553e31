//! Rotary position embeddings, including Llama 3.1's frequency-dependent
//! "llama3" scaling. Frequencies are computed in f32 in the same order as
//! `transformers` so that angles at long positions agree to the last bits.

use candle_core::{Device, Tensor};

use crate::config::{Config, RopeScaling};
use crate::error::Result;

/// Per-frequency inverse wavelengths, `head_dim / 2` of them.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Derives the frequencies from the config.
    pub fn new(cfg: &Config) -> Rope {
        let dim = cfg.head_dim;
        let base = cfg.rope_theta as f32;
        let inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
            .collect();
        let inv_freq = match cfg.rope_scaling {
            RopeScaling::None => inv_freq,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let (factor, low, high) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32);
                let old_context = original_max_position_embeddings as f32;
                let low_freq_wavelen = old_context / low;
                let high_freq_wavelen = old_context / high;
                inv_freq
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            // High frequencies: local detail, kept as trained.
                            f
                        } else if wavelen > low_freq_wavelen {
                            // Low frequencies: stretched to cover the longer context.
                            f / factor
                        } else {
                            // In between: interpolate smoothly.
                            let smooth = (old_context / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Rope { inv_freq }
    }

    /// The inverse frequencies (for tests and tools).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `(cos, sin)` tables of shape `(len, head_dim / 2)` for positions
    /// `start..start + len`.
    pub fn tables(&self, start: usize, len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in start..start + len {
            for &f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, half), device)?,
            Tensor::from_vec(sin, (len, half), device)?,
        ))
    }
}
