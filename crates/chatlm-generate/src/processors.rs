//! Logits processors with transformers' exact semantics and order:
//! repetition penalty, then temperature → top-k → top-p → min-p.
//!
//! Each function mirrors the class of the same name in transformers'
//! `generation/logits_process.py`; masked entries become `f32::NEG_INFINITY`
//! (transformers' default `filter_value`).

use crate::error::GenerateError;

/// CTRL repetition penalty (`RepetitionPenaltyLogitsProcessor`): every id in `context`
/// (prompt + generated; duplicates count once) gets `logit * penalty` when negative,
/// `logit / penalty` otherwise.
///
/// ```
/// let mut l = vec![2.0, -2.0, 1.0];
/// chatlm_generate::processors::repetition_penalty(&mut l, &[0, 1, 1], 2.0).unwrap();
/// assert_eq!(l, vec![1.0, -4.0, 1.0]);
/// ```
pub fn repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) -> Result<(), GenerateError> {
    let mut seen = vec![false; logits.len()];
    for &id in context {
        let slot = seen
            .get_mut(id as usize)
            .ok_or(GenerateError::TokenOutOfVocab { id, vocab_size: logits.len() })?;
        if !*slot {
            *slot = true;
            let l = &mut logits[id as usize];
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
    Ok(())
}

/// OpenAI's frequency and presence penalties over the generated ids: each id that occurs
/// `n > 0` times gets `logit - n * frequency - presence` (the formula of OpenAI's API
/// reference; vLLM and llama.cpp's server apply it to the answer only, as here).
///
/// ```
/// let mut l = vec![1.0, 1.0, 1.0];
/// chatlm_generate::processors::frequency_presence_penalty(&mut l, &[0, 0, 2], 0.5, 0.25).unwrap();
/// assert_eq!(l, vec![-0.25, 1.0, 0.25]);
/// ```
pub fn frequency_presence_penalty(logits: &mut [f32], generated: &[u32], frequency: f32, presence: f32) -> Result<(), GenerateError> {
    let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for &id in generated {
        if id as usize >= logits.len() {
            return Err(GenerateError::TokenOutOfVocab { id, vocab_size: logits.len() });
        }
        *counts.entry(id).or_default() += 1;
    }
    for (id, n) in counts {
        logits[id as usize] -= n as f32 * frequency + presence;
    }
    Ok(())
}

/// `TemperatureLogitsWarper`: divide every logit by `temperature` (> 0).
pub fn temperature(logits: &mut [f32], temperature: f32) {
    for l in logits.iter_mut() {
        *l /= temperature;
    }
}

/// `TopKLogitsWarper`: keep logits `>=` the k-th largest (ties at the k-th value survive).
/// `k` is raised to `min_tokens_to_keep` and capped at the vocabulary size.
pub fn top_k(logits: &mut [f32], k: usize, min_tokens_to_keep: usize) {
    let k = k.max(min_tokens_to_keep).min(logits.len());
    if k == 0 || k == logits.len() {
        return;
    }
    let mut sorted: Vec<f32> = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    for l in logits.iter_mut() {
        if *l < kth {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Softmax in f32 with max subtraction, as torch computes it.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices sorted by logit, stable (torch's `sort(stable=True)` order for ties).
fn argsort(logits: &[f32], descending: bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    if descending {
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    } else {
        idx.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    }
    idx
}

/// `TopPLogitsWarper`: sort ascending, accumulate softmax probabilities and drop the
/// tokens whose cumulative probability is `<= 1 - top_p`; the `min_tokens_to_keep`
/// most likely tokens always survive.
pub fn top_p(logits: &mut [f32], top_p: f32, min_tokens_to_keep: usize) {
    let order = argsort(logits, false);
    let sorted: Vec<f32> = order.iter().map(|&i| logits[i]).collect();
    let probs = softmax(&sorted);
    let keep_from = logits.len().saturating_sub(min_tokens_to_keep);
    let mut cumulative = 0.0f32;
    for (pos, (&i, p)) in order.iter().zip(probs).enumerate() {
        cumulative += p;
        if cumulative <= 1.0 - top_p && pos < keep_from {
            logits[i] = f32::NEG_INFINITY;
        }
    }
}

/// `MinPLogitsWarper`: drop tokens whose probability is below `min_p` times the top
/// probability, always keeping the `min_tokens_to_keep` most likely tokens. Among exactly
/// tied tokens at that boundary the lowest ids are kept (torch's `topk` leaves the tie
/// order unspecified).
pub fn min_p(logits: &mut [f32], min_p: f32, min_tokens_to_keep: usize) {
    let probs = softmax(logits);
    let top = probs.iter().copied().fold(0.0f32, f32::max);
    let threshold = min_p * top;
    let order = argsort(logits, true);
    for (pos, &i) in order.iter().enumerate() {
        if pos >= min_tokens_to_keep && probs[i] < threshold {
            logits[i] = f32::NEG_INFINITY;
        }
    }
}
