//! Rotary position embeddings, including Llama 3.1's frequency-dependent
//! "llama3" scaling. Frequencies are computed in f32 in the same order as
//! `transformers` so that angles at long positions agree to the last bits.

use crate::config::{Config, RopeScaling};

/// Which dimensions of a head are rotated together. Hugging Face checkpoints
/// pair dimension `i` with `i + head_dim / 2`; llama.cpp's converter permutes
/// the rows of `q_proj`/`k_proj` so that adjacent dimensions `2i, 2i + 1`
/// form the pairs. Both give identical attention scores for their own weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(x[i], x[i + d/2])` pairs: Hugging Face safetensors.
    HalfSplit,
    /// `(x[2i], x[2i + 1])` pairs: GGUF.
    Interleaved,
}

/// Per-frequency inverse wavelengths, `head_dim / 2` of them, and the
/// pairing of dimensions they rotate.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    layout: RopeLayout,
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
            // Factors live in the weights; the GGUF loader uses `from_factors`.
            RopeScaling::None | RopeScaling::FrequencyFactors => inv_freq,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let (factor, low, high) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                );
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
        Rope {
            inv_freq,
            layout: RopeLayout::HalfSplit,
        }
    }

    /// Frequencies `base^(-2i/d) / factors[i]`, as llama.cpp applies a GGUF
    /// file's `rope_freqs` tensor (which encodes Llama 3.1's scaling).
    pub fn from_factors(
        base: f64,
        head_dim: usize,
        factors: Option<&[f32]>,
        layout: RopeLayout,
    ) -> Rope {
        let base = base as f32;
        let inv_freq = (0..head_dim)
            .step_by(2)
            .enumerate()
            .map(|(j, i)| {
                let f = 1.0 / base.powf(i as f32 / head_dim as f32);
                factors
                    .and_then(|fs| fs.get(j))
                    .map_or(f, |factor| f / factor)
            })
            .collect();
        Rope { inv_freq, layout }
    }

    /// The inverse frequencies (for tests and tools).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// The rotation of positions `start..start + len`, computed once per
    /// forward pass and shared by every layer's queries and keys.
    pub fn angles(&self, start: usize, len: usize) -> RopeAngles {
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
        RopeAngles {
            cos,
            sin,
            half,
            layout: self.layout,
        }
    }
}

/// cos/sin tables for a run of positions, with the pairing to apply them in.
#[derive(Debug, Clone)]
pub struct RopeAngles {
    /// `(len, head_dim / 2)`.
    cos: Vec<f32>,
    /// `(len, head_dim / 2)`.
    sin: Vec<f32>,
    /// `head_dim / 2`.
    half: usize,
    layout: RopeLayout,
}

impl RopeAngles {
    /// Rotates `x: (len, heads, head_dim)` in place, position `i` of the run
    /// by row `i` of the tables (the arithmetic of candle's `rope`/`rope_i`).
    pub fn rotate(&self, x: &mut [f32]) {
        let half = self.half;
        let positions = self.cos.len() / half.max(1);
        if half == 0 || positions == 0 || x.is_empty() {
            return;
        }
        for (p, row) in x.chunks_exact_mut(x.len() / positions).enumerate() {
            let (cos, sin) = (&self.cos[p * half..][..half], &self.sin[p * half..][..half]);
            for head in row.chunks_exact_mut(2 * half) {
                for i in 0..half {
                    let (a, b) = match self.layout {
                        RopeLayout::HalfSplit => (i, i + half),
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    };
                    let (x1, x2) = (head[a], head[b]);
                    head[a] = x1 * cos[i] - x2 * sin[i];
                    head[b] = x1 * sin[i] + x2 * cos[i];
                }
            }
        }
    }
}
