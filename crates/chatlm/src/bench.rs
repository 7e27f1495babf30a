//! What `llama-bench` measures (`pp` and `tg`): one forward pass over a prompt, then greedy
//! single-token steps on top of it, on a fresh cache.

use std::time::Instant;

use chatlm_generate::Sampler;
use chatlm_model::Model;
use serde::Serialize;

use crate::error::{Error, Result};

/// Speed of one repetition.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SpeedRun {
    /// Prompt tokens per second of the prefill.
    pub prefill_tok_s: f64,
    /// Tokens per second of the decode steps.
    pub decode_tok_s: f64,
}

/// Deterministic ids spread over the vocabulary (like llama-bench's random prompt, but the
/// same on every run so runs and tools compare).
pub fn bench_prompt(len: usize, vocab: usize) -> Vec<u32> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab.max(1) as u64) as u32
        })
        .collect()
}

/// Prefills `prompt` and takes `gen_tokens` greedy steps after it.
pub fn speed_run(model: &Model, prompt: &[u32], gen_tokens: usize) -> Result<SpeedRun> {
    let mut cache = model.new_cache(1, prompt.len() + gen_tokens).map_err(Error::Model)?;
    let t0 = Instant::now();
    let logits = model.forward_last(prompt, &mut cache).map_err(Error::Model)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let argmax = |l: &[f32]| Sampler::argmax(l).map_err(|e| Error::Generate { name: "bench".into(), source: e });
    let mut next = argmax(&logits)?;
    let t1 = Instant::now();
    for _ in 0..gen_tokens {
        let logits = model.forward_last(&[next], &mut cache).map_err(Error::Model)?;
        next = argmax(&logits)?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    Ok(SpeedRun {
        prefill_tok_s: prompt.len() as f64 / prefill_s.max(f64::MIN_POSITIVE),
        decode_tok_s: gen_tokens as f64 / decode_s.max(f64::MIN_POSITIVE),
    })
}
