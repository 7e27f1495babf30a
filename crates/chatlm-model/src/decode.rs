//! The one-token decode step on plain f32 vectors.
//!
//! Why: a decode step of a small model is ~120 matrix-vector products of a few tens of µs
//! each; through candle every layer adds ~20 tensor ops, each allocating and dispatching,
//! which cost ~15–20% of the step on SmolLM2-135M. Here the step runs on a handful of vectors
//! allocated once per step and writes its keys and values into the cache in place. It covers
//! the common case — one sequence, f32 compute on the CPU, every matrix one of our block
//! matrices without a bias — and the candle path stays for everything else (and for
//! prefill, whose attention is a real matrix product).

use std::sync::Arc;

use candle_core::{DType, Device};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::kernels::{self, CpuKernels, MatMulKernels, QMatrix};
use crate::layers::{DecoderLayer, RmsNorm};
use crate::linear::{Linear, Weight};
use crate::rope::Rope;

thread_local! {
    /// One head's attention scores, then probabilities (no allocation per head and layer).
    static PROBS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One layer's matrices, in the order the step multiplies them.
#[derive(Debug, Clone)]
pub(crate) struct NativeLayer {
    /// q, k, v (one fused matrix, or one per part) whose outputs are laid end to end.
    pub(crate) qkv: Vec<Arc<QMatrix>>,
    pub(crate) o: Arc<QMatrix>,
    /// gate then up.
    pub(crate) gate_up: Vec<Arc<QMatrix>>,
    pub(crate) down: Arc<QMatrix>,
}

/// The model's matrices for the native step (shared with the candle path, not copied).
#[derive(Debug, Clone)]
pub(crate) struct NativeDecoder {
    pub(crate) embed: Arc<QMatrix>,
    pub(crate) layers: Vec<NativeLayer>,
    pub(crate) lm_head: Arc<QMatrix>,
}

/// What one step needs besides the matrices.
pub(crate) struct StepInputs<'a> {
    pub(crate) layers: &'a [DecoderLayer],
    pub(crate) norm: &'a RmsNorm,
    pub(crate) rope: &'a Rope,
    pub(crate) config: &'a ModelConfig,
}

impl NativeDecoder {
    /// The plan when every matrix qualifies and the computation is f32 on the CPU.
    pub(crate) fn new(embed: &Weight, layers: &[DecoderLayer], lm_head: &Linear, dtype: DType, device: &Device) -> Option<Self> {
        if dtype != DType::F32 || !device.is_cpu() {
            return None;
        }
        let layers = layers
            .iter()
            .map(|l| {
                Some(NativeLayer {
                    qkv: l.attention.qkv.block_matrices()?,
                    o: l.attention.o.block_matrix()?,
                    gate_up: l.mlp.gate_up.block_matrices()?,
                    down: l.mlp.down.block_matrix()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            embed: embed.block_matrix()?,
            layers,
            lm_head: lm_head.block_matrix()?,
        })
    }

    /// Runs `token` at position `pos` into the slot [`KvCache::begin_step`] has just recorded
    /// (row 0) and returns the logits. The caller ends or undoes the cache step.
    pub(crate) fn step(&self, s: &StepInputs, token: u32, pos: u32, cache: &KvCache) -> Result<Vec<f32>> {
        let c = s.config;
        let kernels = kernels::cpu();
        let (hd, heads, kv_heads) = (c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let (q_len, kv_len) = (heads * hd, kv_heads * hd);
        let slot = cache.len();
        let visible = visible_slots(cache, slot, c.sliding_window);
        let (cos, sin) = s.rope.angles(pos);

        let mut x = vec![0.0f32; c.hidden_size];
        self.embed.dequantize_row_into(token as usize, &mut x);
        let mut h = vec![0.0f32; c.hidden_size];
        let mut y = vec![0.0f32; c.hidden_size];
        let mut qkv = vec![0.0f32; q_len + 2 * kv_len];
        let mut attn = vec![0.0f32; q_len];
        let mut gate_up = vec![0.0f32; 2 * c.intermediate_size];
        let mut act = vec![0.0f32; c.intermediate_size];
        // As the candle path: an f64 scale applied to f32 scores.
        let scale = (1.0 / (hd as f64).sqrt()) as f32;

        for (index, (layer, m)) in s.layers.iter().zip(&self.layers).enumerate() {
            layer.input_norm.forward_one(&x, &mut h);
            matvec(kernels, &m.qkv, &h, &mut qkv);
            let (q, kv) = qkv.split_at_mut(q_len);
            let (k, v) = kv.split_at_mut(kv_len);
            for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                s.rope.apply_one(head, &cos, &sin);
            }
            cache.write_slot_f32(index, slot, k, v)?;
            let capacity = cache.capacity();
            let q = &*q;
            let out = HeadsPtr(attn.as_mut_ptr());
            cache.with_layer_f32(index, |keys, values| {
                let groups = heads / kv_heads;
                // Heads in parallel: at a few hundred cached tokens one thread's attention
                // would be ~5% of the step while the other thread waits.
                kernels::parallel_for(heads, &|head| {
                    let out = out;
                    // SAFETY: head `head` alone writes `attn[head·hd..(head+1)·hd]`, and
                    // `parallel_for` returns only when every head is done.
                    let out = unsafe { std::slice::from_raw_parts_mut(out.0.add(head * hd), hd) };
                    let qh = &q[head * hd..(head + 1) * hd];
                    let kv = HeadKv { keys, values, base: head / groups * capacity, visible: &visible };
                    attend_head(kernels, qh, &kv, scale, out);
                });
            })?;
            matvec(kernels, std::slice::from_ref(&m.o), &attn, &mut y);
            add(&mut x, &y);

            layer.post_attention_norm.forward_one(&x, &mut h);
            matvec(kernels, &m.gate_up, &h, &mut gate_up);
            let (gate, up) = gate_up.split_at(c.intermediate_size);
            // The kernels' silu (as the prefill and the batched step): one sequence decodes
            // to the same bits alone or in a batch.
            kernels.silu_mul(gate, up, &mut act);
            matvec(kernels, std::slice::from_ref(&m.down), &act, &mut y);
            add(&mut x, &y);
        }
        s.norm.forward_one(&x, &mut h);
        let mut logits = vec![0.0f32; self.lm_head.rows()];
        matvec(kernels, std::slice::from_ref(&self.lm_head), &h, &mut logits);
        Ok(logits)
    }
}

/// One kv head of one layer's cache as a query sees it: keys and values laid out
/// `(kv_heads, capacity, head_dim)`, the head's first row `base`, the slots it may attend to.
pub(crate) struct HeadKv<'a> {
    pub(crate) keys: &'a [f32],
    pub(crate) values: &'a [f32],
    pub(crate) base: usize,
    pub(crate) visible: &'a [usize],
}

/// `out = softmax(q·kᵀ·scale) v` of one query head over `kv`'s visible slots: the decode
/// steps' attention (one sequence or several), written once so both sum alike.
pub(crate) fn attend_head(kernels: &CpuKernels, q: &[f32], kv: &HeadKv, scale: f32, out: &mut [f32]) {
    PROBS.with_borrow_mut(|probs| {
        probs.resize(kv.visible.len(), 0.0);
        kernels.dots(q, kv.keys, kv.base, kv.visible, probs);
        let max = kernels.scale_max(probs, scale);
        let sum = kernels.exp_sub_sum(probs, max);
        probs.iter_mut().for_each(|p| *p /= sum);
        kernels.weighted_rows(probs, kv.values, kv.base, kv.visible, out);
    });
}

/// Slots the query at `slot` attends to: real tokens up to itself, within the window.
pub(crate) fn visible_slots(cache: &KvCache, slot: usize, window: Option<usize>) -> Vec<usize> {
    (0..=slot)
        .filter(|&k| cache.is_real(0, k) && window.is_none_or(|w| k + w > slot))
        .collect()
}

/// `x` times each matrix of `parts`, outputs laid end to end in `out`.
fn matvec(kernels: &CpuKernels, parts: &[Arc<QMatrix>], x: &[f32], out: &mut [f32]) {
    let mut start = 0;
    for m in parts {
        kernels.matmul(m, x, 1, &mut out[start..start + m.rows()]);
        start += m.rows();
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// The attention output shared by the heads of one layer; each head writes its own slice.
#[derive(Clone, Copy)]
struct HeadsPtr(*mut f32);
// SAFETY: heads write disjoint slices and `parallel_for` joins them before the vector is read.
unsafe impl Send for HeadsPtr {}
unsafe impl Sync for HeadsPtr {}
