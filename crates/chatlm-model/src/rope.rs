//! Rotary position embeddings, with the rope scaling variants of transformers.

use candle_core::{DType, Device, Tensor, D};

use crate::config::{ModelConfig, RopeScaling};
use crate::error::Result;

/// Rotary frequencies of one model; turns position ids into cos/sin tables.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    rotary_dim: usize,
    theta: f32,
    scaling: RopeScaling,
    max_position_embeddings: usize,
    /// Frequencies for sequences within `max_position_embeddings` (all but `dynamic` growth).
    base_inv_freq: Vec<f32>,
}

impl Rope {
    pub(crate) fn new(config: &ModelConfig) -> Self {
        let rotary_dim = config.rotary_dim();
        let mut rope = Self {
            rotary_dim,
            theta: config.rope_theta,
            scaling: config.rope_scaling.clone(),
            max_position_embeddings: config.max_position_embeddings,
            base_inv_freq: Vec::new(),
        };
        rope.base_inv_freq = rope.scaled_inv_freq(config.rope_theta);
        rope
    }

    /// `1 / theta^(2i/d)` in f32, as torch computes it, then the static rescalings.
    fn scaled_inv_freq(&self, theta: f32) -> Vec<f32> {
        let dim = self.rotary_dim as f32;
        let plain = (0..self.rotary_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / dim));
        match self.scaling {
            RopeScaling::None | RopeScaling::Dynamic { .. } => plain.collect(),
            RopeScaling::Linear { factor } => plain.map(|f| f / factor).collect(),
            RopeScaling::FrequencyFactors(ref factors) => plain.zip(factors).map(|(f, d)| f / d).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old_len = original_max_position_embeddings as f32;
                let low_freq_wavelen = old_len / low_freq_factor;
                let high_freq_wavelen = old_len / high_freq_factor;
                plain
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// Frequencies for a forward call whose largest position is `seq_len - 1`.
    ///
    /// `dynamic` scaling grows the base with the sequence, like transformers'
    /// `dynamic_rope_update`: within one sequence the positions only grow, so the frequencies
    /// transformers caches equal the ones computed from the current call.
    fn inv_freq_for(&self, seq_len: usize) -> Vec<f32> {
        match self.scaling {
            RopeScaling::Dynamic { factor } if seq_len > self.max_position_embeddings => {
                let dim = self.rotary_dim as f32;
                let ratio = factor * seq_len as f32 / self.max_position_embeddings as f32 - (factor - 1.0);
                let theta = self.theta * ratio.powf(dim / (dim - 2.0));
                self.scaled_inv_freq(theta)
            }
            _ => self.base_inv_freq.clone(),
        }
    }

    /// cos and sin tables of shape `(batch, seq, rotary_dim / 2)` for `positions[batch][seq]`.
    pub(crate) fn tables(&self, positions: &[Vec<u32>], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let max_pos = positions.iter().flatten().copied().max().unwrap_or(0) as usize;
        let inv_freq = self.inv_freq_for(max_pos + 1);
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(batch * seq * half);
        let mut sin = Vec::with_capacity(batch * seq * half);
        for &pos in positions.iter().flatten() {
            push_angles(&inv_freq, pos, &mut cos, &mut sin);
        }
        let shape = (batch, seq, half);
        Ok((
            Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?,
            Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?,
        ))
    }

    /// cos and sin (`rotary_dim / 2` each) of one position: the native decode step's table,
    /// computed exactly as [`Self::tables`] computes its rows.
    pub(crate) fn angles(&self, pos: u32) -> (Vec<f32>, Vec<f32>) {
        let inv_freq = self.inv_freq_for(pos as usize + 1);
        let (mut cos, mut sin) = (Vec::with_capacity(inv_freq.len()), Vec::with_capacity(inv_freq.len()));
        push_angles(&inv_freq, pos, &mut cos, &mut sin);
        (cos, sin)
    }

    /// Rotates `x` (one head, `head_dim` long) in place like [`Self::apply`] with the tables
    /// of [`Self::angles`].
    pub(crate) fn apply_one(&self, x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = self.rotary_dim / 2;
        let (lo, hi) = x[..self.rotary_dim].split_at_mut(half);
        for (((a, b), c), s) in lo.iter_mut().zip(hi).zip(cos).zip(sin) {
            let (x1, x2) = (*a, *b);
            *a = x1 * c - x2 * s;
            *b = x1 * s + x2 * c;
        }
    }

    /// Rotates the first `rotary_dim` features of `x` (`(batch, heads, seq, head_dim)`) in the
    /// rotate-half layout of transformers (pairs `i` and `i + rotary_dim / 2`).
    pub(crate) fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let head_dim = x.dim(D::Minus1)?;
        if self.rotary_dim == head_dim {
            return Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?);
        }
        let rot = x.narrow(D::Minus1, 0, self.rotary_dim)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope(&rot, cos, sin)?;
        let pass = x.narrow(D::Minus1, self.rotary_dim, head_dim - self.rotary_dim)?;
        Ok(Tensor::cat(&[&rotated, &pass], D::Minus1)?)
    }
}

/// Appends cos and sin of `f · pos` for each frequency: f32 product then f32 cos/sin, as
/// transformers computes its tables.
fn push_angles(inv_freq: &[f32], pos: u32, cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
    for &f in inv_freq {
        let angle = f * pos as f32;
        cos.push(angle.cos());
        sin.push(angle.sin());
    }
}
