//! One decode step of several independent sequences in one pass (continuous batching).
//!
//! Why: a decode step of one sequence is matrix-vector products, bound by reading every
//! weight once per token. Sequences that each have their own cache (different lengths and
//! positions) still share the weights, so their new tokens go through each matrix together
//! as one `m`-row product — the weights are read once for all `m` — and only the attention,
//! which reads each sequence's own keys and values, stays per sequence. The row-wise ops are
//! the prefill's ([`crate::prefill`]), the attention is the one-sequence step's
//! ([`crate::decode::attend_head`]).

use crate::cache::KvCache;
use crate::decode::{attend_head, visible_slots, HeadKv, NativeDecoder, StepInputs};
use crate::error::Result;
use crate::kernels::{self, MatMulKernels};
use crate::prefill::{add_norm, matmul_parts, rope_rows, silu_rows, Shared};

impl NativeDecoder {
    /// Runs `tokens[i]` at position `positions[i]` into the slot [`KvCache::begin_step`] has
    /// just recorded in `caches[i]` (row 0 of each, at its own `len()`) and returns every
    /// row's logits, in order. The caller ends or undoes every cache's step.
    pub(crate) fn step_many(&self, s: &StepInputs, tokens: &[u32], positions: &[u32], caches: &[&KvCache]) -> Result<Vec<Vec<f32>>> {
        let c = s.config;
        let kernels = kernels::cpu();
        let m = tokens.len();
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let (hd, heads, kv_heads) = (c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let (q_len, kv_len) = (heads * hd, kv_heads * hd);
        let width = q_len + 2 * kv_len;
        let groups = heads / kv_heads;
        // Per row: its slot, what it may attend to, its cache's row stride, its rope angles.
        let slots: Vec<usize> = caches.iter().map(|cache| cache.len()).collect();
        let visible: Vec<Vec<usize>> = caches
            .iter()
            .zip(&slots)
            .map(|(cache, &slot)| visible_slots(cache, slot, c.sliding_window))
            .collect();
        let capacities: Vec<usize> = caches.iter().map(|cache| cache.capacity()).collect();
        let angles: Vec<(Vec<f32>, Vec<f32>)> = positions.iter().map(|&p| s.rope.angles(p)).collect();
        // As the candle path: an f64 scale applied to f32 scores.
        let scale = (1.0 / (hd as f64).sqrt()) as f32;

        let mut x = vec![0.0f32; m * hidden];
        for (row, &token) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embed.dequantize_row_into(token as usize, row);
        }
        let mut h = vec![0.0f32; m * hidden];
        let mut y = vec![0.0f32; m * hidden];
        let mut qkv = vec![0.0f32; m * width];
        let mut attn = vec![0.0f32; m * q_len];
        let mut gate_up = vec![0.0f32; m * 2 * inter];
        let mut act = vec![0.0f32; m * inter];
        let mut parts = Vec::new();

        let first = s.layers.first().map_or(s.norm, |l| &l.input_norm);
        add_norm(&mut x, None, first, &mut h, hidden);
        for (index, (layer, w)) in s.layers.iter().zip(&self.layers).enumerate() {
            matmul_parts(kernels, &w.qkv, &h, m, &mut qkv, &mut parts);
            rope_rows(s, &mut qkv, width, q_len + kv_len, &angles);
            for (i, cache) in caches.iter().enumerate() {
                let row = &qkv[i * width..(i + 1) * width];
                cache.write_slot_f32(index, slots[i], &row[q_len..q_len + kv_len], &row[q_len + kv_len..])?;
            }
            let qkv = &qkv;
            let out = Shared(attn.as_mut_ptr());
            KvCache::with_layers_f32(caches, index, |layers| {
                // Every (sequence, head) pair is a task: with few sequences the heads still
                // keep the threads busy, as in the one-sequence step.
                kernels::parallel_for(m * heads, &|task| {
                    let (i, head) = (task / heads, task % heads);
                    let (keys, values) = layers[i];
                    let kv = HeadKv { keys, values, base: head / groups * capacities[i], visible: &visible[i] };
                    let q = &qkv[i * width + head * hd..][..hd];
                    // SAFETY: head `head` of row `i` of `attn` is written by this task alone,
                    // and `parallel_for` returns only when every task is done.
                    let out = unsafe { out.slice(i * q_len + head * hd..i * q_len + (head + 1) * hd) };
                    attend_head(kernels, q, &kv, scale, out);
                });
            })?;
            kernels.matmul(&w.o, &attn, m, &mut y);
            add_norm(&mut x, Some(&y), &layer.post_attention_norm, &mut h, hidden);

            matmul_parts(kernels, &w.gate_up, &h, m, &mut gate_up, &mut parts);
            silu_rows(kernels, &gate_up, &mut act, inter);
            kernels.matmul(&w.down, &act, m, &mut y);
            let next = s.layers.get(index + 1).map_or(s.norm, |l| &l.input_norm);
            add_norm(&mut x, Some(&y), next, &mut h, hidden);
        }
        // `h` holds the final norm of every row.
        let vocab = self.lm_head.rows();
        let mut logits = vec![0.0f32; m * vocab];
        kernels.matmul(&self.lm_head, &h, m, &mut logits);
        Ok(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }
}
