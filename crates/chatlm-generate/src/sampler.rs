//! Token choice from processed logits: argmax, or a seeded multinomial draw.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::GenerateError;
use crate::processors::softmax;

/// Picks the next token; one per sequence, seeded so runs are reproducible.
#[derive(Debug, Clone)]
pub struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler whose draws depend only on `seed` (ChaCha8: same stream on every platform).
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// First index of the largest logit (torch's `argmax` tie rule).
    pub fn argmax(logits: &[f32]) -> Result<u32, GenerateError> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() {
                continue;
            }
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((i, l));
            }
        }
        match best {
            Some((i, l)) if l > f32::NEG_INFINITY => Ok(i as u32),
            _ => Err(GenerateError::NoCandidates),
        }
    }

    /// Draws an index with probability `softmax(logits)` (masked entries never win).
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, GenerateError> {
        let probs = softmax(logits);
        let total: f64 = probs.iter().map(|&p| p as f64).sum();
        if total.is_nan() || total <= 0.0 {
            return Err(GenerateError::NoCandidates);
        }
        let target = self.rng.random::<f64>() * total;
        let mut acc = 0.0f64;
        let mut last_positive = None;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                acc += p as f64;
                last_positive = Some(i);
                if target < acc {
                    return Ok(i as u32);
                }
            }
        }
        // Rounding can leave `target` a hair above the final sum.
        last_positive.map(|i| i as u32).ok_or(GenerateError::NoCandidates)
    }
}
