//! The prompt (prefill) step on plain f32 buffers, the counterpart of [`crate::decode`].
//!
//! Why: through candle a 512-token prefill of SmolLM2-135M spent ~35% of its time outside
//! the matrix products: every op allocates a fresh multi-megabyte tensor (page faults on
//! each), softmax and the residual adds ran on one thread, attention multiplied the masked
//! half of the scores too. Here the buffers are allocated once per call, the row-wise ops run
//! on the kernel threads, and causal attention is tiled with the packed GEMM kernel
//! ([`crate::kernels::gemm`]) over the visible keys only. It covers what the native decode
//! step covers (one sequence, f32 on the CPU, bias-free block matrices) when only the last
//! position's logits are wanted; everything else takes the candle path.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use crate::cache::KvCache;
use crate::decode::{NativeDecoder, StepInputs};
use crate::error::Result;
use crate::kernels::gemm::{Tile, TileIsa, MR, NR};
use crate::kernels::{self, CpuKernels, MatMulKernels, QMatrix};
use crate::layers::RmsNorm;

thread_local! {
    /// One attention tile's scores (`MR` query rows × visible keys).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A buffer whose disjoint parts the kernel threads write.
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub(crate) *mut f32);
// SAFETY: every user writes a part no other thread touches, and `parallel_for` joins the
// threads before the buffer is used again.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Elements `range` of the buffer.
    ///
    /// # Safety
    /// The range is inside the buffer and no other thread uses it meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, range: Range<usize>) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(range.start), range.len())
    }
}

/// Runs `f(rows)` for chunks of `rows` rows covering `0..n`, on the kernel threads.
fn par_rows(n: usize, rows: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    kernels::parallel_for(n.div_ceil(rows), &|c| f(c * rows..((c + 1) * rows).min(n)));
}

/// Token rows per chunk of the row-wise ops (a few µs of work each).
const ROWS: usize = 16;

impl NativeDecoder {
    /// Runs `tokens` at `positions` into the slots [`KvCache::begin_step`] has just recorded
    /// (row 0, from `cache.len()` on) and returns the last token's logits. The caller ends or
    /// undoes the cache step.
    pub(crate) fn prefill(&self, s: &StepInputs, tokens: &[u32], positions: &[u32], cache: &KvCache) -> Result<Vec<f32>> {
        let c = s.config;
        let kernels = kernels::cpu();
        let t = tokens.len();
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let (hd, heads, kv_heads) = (c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let (q_len, kv_len) = (heads * hd, kv_heads * hd);
        let width = q_len + 2 * kv_len;
        let slot0 = cache.len();
        let angles: Vec<(Vec<f32>, Vec<f32>)> = positions.iter().map(|&p| s.rope.angles(p)).collect();
        let attention = Attention::new(s, cache, slot0, t);

        let mut x = vec![0.0f32; t * hidden];
        for (row, &token) in x.chunks_exact_mut(hidden).zip(tokens) {
            self.embed.dequantize_row_into(token as usize, row);
        }
        let mut h = vec![0.0f32; t * hidden];
        let mut y = vec![0.0f32; t * hidden];
        let mut qkv = vec![0.0f32; t * width];
        let mut attn = vec![0.0f32; t * q_len];
        let mut gate_up = vec![0.0f32; t * 2 * inter];
        let mut act = vec![0.0f32; t * inter];
        let mut parts = Vec::new();
        let mut panels = Vec::new();

        let first = s.layers.first().map_or(s.norm, |l| &l.input_norm);
        add_norm(&mut x, None, first, &mut h, hidden);
        for (index, (layer, m)) in s.layers.iter().zip(&self.layers).enumerate() {
            matmul_parts(kernels, &m.qkv, &h, t, &mut qkv, &mut parts);
            rope_rows(s, &mut qkv, width, q_len + kv_len, &angles);
            cache.write_slots_f32(index, slot0, t, &qkv, width, q_len, q_len + kv_len)?;
            cache.with_layer_f32(index, |keys, values| attention.run(kernels, &qkv, width, keys, values, &mut panels, &mut attn))?;
            kernels.matmul(&m.o, &attn, t, &mut y);
            add_norm(&mut x, Some(&y), &layer.post_attention_norm, &mut h, hidden);

            matmul_parts(kernels, &m.gate_up, &h, t, &mut gate_up, &mut parts);
            silu_rows(kernels, &gate_up, &mut act, inter);
            kernels.matmul(&m.down, &act, t, &mut y);
            let next = s.layers.get(index + 1).map_or(s.norm, |l| &l.input_norm);
            add_norm(&mut x, Some(&y), next, &mut h, hidden);
        }
        // `h` holds the final norm of every row; the logits of the last one.
        let mut logits = vec![0.0f32; self.lm_head.rows()];
        kernels.matmul(&self.lm_head, &h[(t - 1) * hidden..], 1, &mut logits);
        Ok(logits)
    }
}

/// Rotates the q and k heads (the first `rotated` values) of every row of `qkv` (row stride
/// `width`), row `i` at the angles `angles[i]` of its own position.
pub(crate) fn rope_rows(s: &StepInputs, qkv: &mut [f32], width: usize, rotated: usize, angles: &[(Vec<f32>, Vec<f32>)]) {
    let hd = s.config.head_dim;
    let rows = Shared(qkv.as_mut_ptr());
    par_rows(angles.len(), ROWS, &|range| {
        for i in range {
            // SAFETY: row i of `qkv`, owned by this chunk.
            let row = unsafe { rows.slice(i * width..i * width + rotated) };
            let (cos, sin) = &angles[i];
            for head in row.chunks_exact_mut(hd) {
                s.rope.apply_one(head, cos, sin);
            }
        }
    });
}

/// `act = silu(gate) · up` row by row, each row of `gate_up` being gate then up (`inter` each).
pub(crate) fn silu_rows(kernels: &CpuKernels, gate_up: &[f32], act: &mut [f32], inter: usize) {
    let out = Shared(act.as_mut_ptr());
    par_rows(act.len() / inter, ROWS, &|range| {
        for i in range {
            let row = &gate_up[i * 2 * inter..(i + 1) * 2 * inter];
            // SAFETY: row i of `act`, owned by this chunk.
            let out = unsafe { out.slice(i * inter..(i + 1) * inter) };
            kernels.silu_mul(&row[..inter], &row[inter..], out);
        }
    });
}

/// `x += y` (when given), then `h = norm(x)`, row by row on the kernel threads.
pub(crate) fn add_norm(x: &mut [f32], y: Option<&[f32]>, norm: &RmsNorm, h: &mut [f32], hidden: usize) {
    let (xs, hs) = (Shared(x.as_mut_ptr()), Shared(h.as_mut_ptr()));
    par_rows(x.len() / hidden, ROWS, &|range| {
        for i in range {
            let at = i * hidden..(i + 1) * hidden;
            // SAFETY: row i of `x` and of `h`, owned by this chunk.
            let (x, h) = unsafe { (xs.slice(at.clone()), hs.slice(at.clone())) };
            if let Some(y) = y {
                x.iter_mut().zip(&y[at]).for_each(|(a, b)| *a += b);
            }
            norm.forward_one(x, h);
        }
    });
}

/// `x` (`m` rows) times each matrix of `parts`, the outputs of one row laid end to end.
pub(crate) fn matmul_parts(kernels: &CpuKernels, parts: &[Arc<QMatrix>], x: &[f32], m: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
    if let [only] = parts {
        return kernels.matmul(only, x, m, out);
    }
    let width = out.len() / m;
    let mut start = 0;
    for p in parts {
        scratch.resize(m * p.rows(), 0.0);
        kernels.matmul(p, x, m, scratch);
        for (dst, src) in out.chunks_exact_mut(width).zip(scratch.chunks_exact(p.rows())) {
            dst[start..start + p.rows()].copy_from_slice(src);
        }
        start += p.rows();
    }
}

/// Causal grouped-query attention of the new tokens over every visible cached slot.
struct Attention {
    t: usize,
    slot0: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    capacity: usize,
    /// Per slot up to the last new token: whether it holds a real token.
    real: Vec<bool>,
    /// `holes[k]`: slots before `k` that hold padding (`total + 1` entries).
    holes: Vec<usize>,
    window: Option<usize>,
    /// As the candle path: an f64 scale applied to f32 scores.
    scale: f32,
    isa: TileIsa,
}

impl Attention {
    fn new(s: &StepInputs, cache: &KvCache, slot0: usize, t: usize) -> Self {
        let c = s.config;
        let total = slot0 + t;
        Self {
            t,
            slot0,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            hd: c.head_dim,
            capacity: cache.capacity(),
            real: (0..total).map(|k| cache.is_real(0, k)).collect(),
            holes: std::iter::once(0)
                .chain((0..total).scan(0, |n, k| {
                    *n += usize::from(!cache.is_real(0, k));
                    Some(*n)
                }))
                .collect(),
            window: c.sliding_window,
            scale: (1.0 / (c.head_dim as f64).sqrt()) as f32,
            isa: TileIsa::detect(),
        }
    }

    /// `out` (`t × heads·hd`) = softmax(q kᵀ · scale + mask) v for every head, with `q` in
    /// `qkv` (row stride `width`) and `keys`/`values` of one layer `(kv_heads, capacity, hd)`.
    /// `panels` is scratch for the tiles' panels: the keys transposed per kv head, `(kv_heads,
    /// hd, padded slots)`, then the values with rows padded to whole panels, `(kv_heads,
    /// slots, padded hd)`.
    #[allow(clippy::too_many_arguments)]
    fn run(&self, kernels: &CpuKernels, qkv: &[f32], width: usize, keys: &[f32], values: &[f32], panels: &mut Vec<f32>, out: &mut [f32]) {
        let (hd, total) = (self.hd, self.slot0 + self.t);
        let (padded, hd_padded) = (total.next_multiple_of(NR), hd.next_multiple_of(NR));
        let keys_len = self.kv_heads * hd * padded;
        panels.resize(keys_len + self.kv_heads * total * hd_padded, 0.0);
        let (keys_t, values_p) = panels.split_at_mut(keys_len);
        for (g, (kt, vp)) in keys_t.chunks_exact_mut(hd * padded).zip(values_p.chunks_exact_mut(total * hd_padded)).enumerate() {
            let ks = &keys[g * self.capacity * hd..][..total * hd];
            for (j, key) in ks.chunks_exact(hd).enumerate() {
                for (d, &v) in key.iter().enumerate() {
                    kt[d * padded + j] = v;
                }
            }
            let vs = &values[g * self.capacity * hd..][..total * hd];
            for (dst, src) in vp.chunks_exact_mut(hd_padded).zip(vs.chunks_exact(hd)) {
                dst[..hd].copy_from_slice(src);
            }
        }
        let (keys_t, values_p) = (&*keys_t, &*values_p);
        let blocks = self.t.div_ceil(MR);
        let groups = self.heads / self.kv_heads;
        let q_len = self.heads * hd;
        let out = Shared(out.as_mut_ptr());
        // Tasks from the last query block back: the longest rows first balance the threads.
        kernels::parallel_for(self.heads * blocks, &|task| {
            let out = out;
            let (head, block) = (task / blocks, blocks - 1 - task % blocks);
            let g = head / groups;
            let i0 = block * MR;
            let rows = MR.min(self.t - i0);
            // Keys 0..visible can be seen by some query of the block.
            let visible = self.slot0 + i0 + rows;
            let ld = visible.next_multiple_of(NR);
            SCORES.with_borrow_mut(|scores| {
                scores.resize(rows * ld, 0.0);
                let q = &qkv[i0 * width + head * hd..];
                let panels = &keys_t[g * hd * padded..];
                for p in (0..visible).step_by(NR) {
                    let tile = Tile { a: q, lda: width, b: &panels[p..], ldb: padded, depth: hd, rows, cols: NR.min(visible - p), accumulate: false };
                    tile.run(self.isa, &mut scores[p..], ld);
                }
                for r in 0..rows {
                    self.softmax(kernels, self.slot0 + i0 + r, &mut scores[r * ld..r * ld + visible]);
                }
                let v = &values_p[g * total * hd_padded..];
                for d0 in (0..hd).step_by(NR) {
                    let tile = Tile { a: scores, lda: ld, b: &v[d0..], ldb: hd_padded, depth: visible, rows, cols: NR.min(hd - d0), accumulate: false };
                    // SAFETY: rows i0..i0+rows, columns of this head of `out` (t × q_len):
                    // only this task writes them.
                    unsafe { tile.run_raw(self.isa, out.0.add(i0 * q_len + head * hd + d0), q_len) };
                }
            });
        });
    }

    /// The probabilities of the query at `slot` over `row` (scores of slots `0..row.len()`),
    /// in place: what [`crate::layers`]' masked softmax computes.
    fn softmax(&self, kernels: &CpuKernels, slot: usize, row: &mut [f32]) {
        // The usual case: the visible slots are one run (no padding inside the window).
        let lo = self.window.map_or(0, |w| (slot + 1).saturating_sub(w));
        if self.holes[slot + 1] == self.holes[lo] {
            let run = &mut row[lo..=slot];
            let max = kernels.scale_max(run, self.scale);
            let sum = kernels.exp_sub_sum(run, max);
            run.iter_mut().for_each(|v| *v /= sum);
            row[..lo].fill(0.0);
            row[slot + 1..].fill(0.0);
            return;
        }
        let allowed = |k: usize| k <= slot && self.real[k] && self.window.is_none_or(|w| k + w > slot);
        let (Some(lo), Some(hi)) = ((0..row.len()).find(|&k| allowed(k)), (0..row.len()).rfind(|&k| allowed(k))) else {
            // Nothing to attend to: candle's softmax of equal scores is uniform.
            row.fill(1.0 / row.len() as f32);
            return;
        };
        let mut max = f32::NEG_INFINITY;
        for (k, v) in row.iter_mut().enumerate().take(hi + 1).skip(lo) {
            *v = if allowed(k) { *v * self.scale } else { f32::NEG_INFINITY };
            max = max.max(*v);
        }
        let sum = kernels.exp_sub_sum(&mut row[lo..=hi], max);
        // Masked scores come out of the vector exp as ~1e-38, not 0: set them.
        for (k, v) in row.iter_mut().enumerate().take(hi + 1).skip(lo) {
            *v = if allowed(k) { *v / sum } else { 0.0 };
        }
        row[..lo].fill(0.0);
        row[hi + 1..].fill(0.0);
    }
}
