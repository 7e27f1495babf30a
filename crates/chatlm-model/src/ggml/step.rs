//! The forward pass in llama.cpp's numerics, one token at a time.
//!
//! A token's values do not depend on how llama.cpp batches the prompt (every row of a matrix
//! product is its own dot product, rms_norm/softmax/rope are per row, causal attention only
//! looks back) except in two places, which [`Batch`] selects: the f16 attention products (and
//! f16 matrices) run through tinyBLAS when a micro-batch has several tokens and through
//! `ggml_vec_dot_f16` when it has one, and those sum in different orders. So the prompt runs
//! here token by token with the prompt-batch arithmetic, each generated token with the
//! one-token arithmetic.

use crate::cache::KvCache;
use crate::decode::{NativeDecoder, StepInputs};
use crate::error::Result;
use crate::kernels::{self, BlockFormat, QMatrix};

use super::math::{self, Q8Block};
use super::Build;

/// How llama.cpp multiplies the micro-batch a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// A single token (decode): `ggml_vec_dot_*`.
    One,
    /// Several tokens (a prompt): tinyBLAS for the f16 products.
    Many,
}

/// llama.cpp's micro-batch (`n_ubatch`, default 512): longer prompts run in pieces.
const UBATCH: usize = 512;

/// Receives intermediate vectors (`name`, layer, values) for comparisons with llama.cpp's.
pub(crate) type Trace<'a> = &'a mut dyn FnMut(&str, usize, &[f32]);

impl NativeDecoder {
    /// Runs `tokens` at `positions` into the cache slots [`KvCache::begin_step`] has just
    /// recorded and returns the logits of the last token, or of every token with `all`, in
    /// the arithmetic of llama.cpp's `build`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ggml_forward(
        &self,
        build: Build,
        s: &StepInputs,
        tokens: &[u32],
        positions: &[u32],
        cache: &KvCache,
        all: bool,
        trace: Trace,
    ) -> Result<Vec<f32>> {
        let first = cache.len();
        let mut logits = Vec::new();
        for (chunk_at, chunk) in tokens.chunks(UBATCH).enumerate() {
            let batch = if chunk.len() == 1 { Batch::One } else { Batch::Many };
            for (i, &token) in chunk.iter().enumerate() {
                let at = chunk_at * UBATCH + i;
                let wanted = all || at + 1 == tokens.len();
                let out = self.ggml_token(build, s, token, positions[at], first + at, batch, cache, wanted, &mut *trace)?;
                logits.extend(out.into_iter().flatten());
            }
        }
        Ok(logits)
    }

    #[allow(clippy::too_many_arguments)]
    fn ggml_token(
        &self,
        build: Build,
        s: &StepInputs,
        token: u32,
        pos: u32,
        slot: usize,
        batch: Batch,
        cache: &KvCache,
        want_logits: bool,
        trace: Trace,
    ) -> Result<Option<Vec<f32>>> {
        let c = s.config;
        let (hd, heads, kv_heads) = (c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let (q_len, kv_len) = (heads * hd, kv_heads * hd);
        let eps = c.rms_norm_eps as f32;
        let mut emit = |name: &str, layer: usize, v: &[f32]| trace(name, layer, v);

        let mut x = vec![0.0f32; c.hidden_size];
        embedding_row(&self.embed, token as usize, &mut x);
        emit("embd", 0, &x);
        let rope = math::rope_cache(pos, c.rope_theta, hd);
        let mut h = vec![0.0f32; c.hidden_size];
        let mut qkv = vec![0.0f32; q_len + 2 * kv_len];
        let mut attn = vec![0.0f32; q_len];
        let mut y = vec![0.0f32; c.hidden_size];
        let mut gate_up = vec![0.0f32; 2 * c.intermediate_size];
        let mut act = vec![0.0f32; c.intermediate_size];

        for (index, (layer, m)) in s.layers.iter().zip(&self.layers).enumerate() {
            math::rms_norm(&x, layer.input_norm.values(), eps, &mut h);
            emit("attn_norm", index, &h);
            matmul(build, &m.qkv, &h, batch, &mut qkv);
            let (q, kv) = qkv.split_at_mut(q_len);
            let (k, v) = kv.split_at_mut(kv_len);
            for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                to_ggml_order(head);
                math::rope_rotate(head, &rope);
            }
            emit("Qcur", index, q);
            emit("Kcur", index, k);
            emit("Vcur", index, v);
            // The f16 cache, held as the f32 values of its f16 numbers.
            let k16: Vec<f32> = k.iter().map(|&v| math::round_f16(v)).collect();
            let v16: Vec<f32> = v.iter().map(|&v| math::round_f16(v)).collect();
            cache.write_slot_f32(index, slot, &k16, &v16)?;
            attention(build, cache, index, slot, q, c.num_attention_heads / kv_heads, hd, batch, &mut attn)?;
            emit("kqv_out", index, &attn);
            matmul(build, std::slice::from_ref(&m.o), &attn, batch, &mut y);
            emit("attn_out", index, &y);
            add(&mut x, &y);
            emit("ffn_inp", index, &x);

            math::rms_norm(&x, layer.post_attention_norm.values(), eps, &mut h);
            emit("ffn_norm", index, &h);
            matmul(build, &m.gate_up, &h, batch, &mut gate_up);
            let (gate, up) = gate_up.split_at(c.intermediate_size);
            super::swiglu(build, gate, up, &mut act);
            emit("ffn_swiglu", index, &act);
            matmul(build, std::slice::from_ref(&m.down), &act, batch, &mut y);
            emit("ffn_out", index, &y);
            add(&mut x, &y);
            emit("l_out", index, &x);
        }
        if !want_logits {
            return Ok(None);
        }
        math::rms_norm(&x, s.norm.values(), eps, &mut h);
        emit("result_norm", 0, &h);
        let mut logits = vec![0.0f32; self.lm_head.rows()];
        matmul(build, std::slice::from_ref(&self.lm_head), &h, batch, &mut logits);
        emit("result_output", 0, &logits);
        Ok(Some(logits))
    }
}

/// `ggml_get_rows`: the row dequantized by ggml-base's `to_float` (built without FMA, so
/// Q4_1's `q·d + m` rounds twice).
fn embedding_row(m: &QMatrix, r: usize, out: &mut [f32]) {
    let row_bytes = m.cols() / m.format().block_len() * m.format().block_bytes();
    let row = &m.data()[r * row_bytes..(r + 1) * row_bytes];
    match m.format() {
        BlockFormat::Q4_1 => {
            for (b, y) in row.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
                let d = math::from_f16(u16::from_le_bytes([b[0], b[1]]));
                let min = math::from_f16(u16::from_le_bytes([b[2], b[3]]));
                for (j, &byte) in b[4..20].iter().enumerate() {
                    y[j] = (byte & 0x0f) as f32 * d + min;
                    y[j + 16] = (byte >> 4) as f32 * d + min;
                }
            }
        }
        _ => m.dequantize_row_into(r, out),
    }
}

/// Reorders one head from the rotate-half layout of transformers (chatlm loads GGUF q/k rows
/// un-permuted) to llama.cpp's interleaved pairs: `(i, i + d/2)` → `(2i, 2i + 1)`. The order
/// matters for the attention dot products, which sum in lanes.
fn to_ggml_order(head: &mut [f32]) {
    let half = head.len() / 2;
    let hf = head.to_vec();
    for i in 0..half {
        head[2 * i] = hf[i];
        head[2 * i + 1] = hf[i + half];
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += *b;
    }
}

/// Rows per parallel chunk of a matrix product.
const ROWS: usize = 64;

/// `x` times each matrix of `parts` (their outputs laid end to end in `out`), each row one
/// ggml dot product; rows in parallel (a row's value does not depend on the split).
fn matmul(build: Build, parts: &[std::sync::Arc<QMatrix>], x: &[f32], batch: Batch, out: &mut [f32]) {
    let mut q8: Option<Vec<Q8Block>> = None;
    let mut x16: Option<Vec<u16>> = None;
    let mut start = 0;
    for m in parts {
        let dst = Out(out[start..start + m.rows()].as_mut_ptr());
        let row_bytes = m.cols() / m.format().block_len() * m.format().block_bytes();
        let rows = |f: &(dyn Fn(&[u8]) -> f32 + Sync)| {
            kernels::parallel_for(m.rows().div_ceil(ROWS), &|chunk| {
                let dst = dst;
                let end = ((chunk + 1) * ROWS).min(m.rows());
                for r in chunk * ROWS..end {
                    let v = f(&m.data()[r * row_bytes..(r + 1) * row_bytes]);
                    // SAFETY: row `r` of this part is written by this chunk alone, inside
                    // the part's slice of `out`; `parallel_for` joins before `out` is read.
                    unsafe { *dst.0.add(r) = v };
                }
            })
        };
        match m.format() {
            BlockFormat::Q4_1 | BlockFormat::Q8_0 => {
                let act = q8.get_or_insert_with(|| {
                    let mut blocks = vec![Q8Block { d: 0, s: 0, qs: [0; 32] }; x.len() / 32];
                    math::quantize_q8(x, &mut blocks);
                    blocks
                });
                if m.format() == BlockFormat::Q4_1 {
                    rows(&|row| super::dot_q4_1(row, act));
                } else {
                    rows(&|row| super::dot_q8_0(row, act));
                }
            }
            BlockFormat::F16 => {
                let act = x16.get_or_insert_with(|| x.iter().map(|&v| math::to_f16(v)).collect());
                // tinyBLAS takes prompt batches when the rows come in fours and the columns
                // fill its f16 vectors; otherwise ggml falls back to its vector dot product.
                let tiny = batch == Batch::Many && m.rows() % 4 == 0 && m.cols() % build.f16_lanes() == 0;
                rows(&|row| {
                    let w = f16_bits(row);
                    if tiny {
                        super::dot_f16_tiny_bits(build, &w, act)
                    } else {
                        super::dot_f16_vec_bits(build, &w, act)
                    }
                });
            }
            other => unreachable!("llama.cpp numerics were checked to cover every matrix, not {other:?}"),
        }
        start += m.rows();
    }
}

/// An f16 matrix row as f16 bits (borrowed when the bytes are 2-aligned, as a `Vec`'s are).
fn f16_bits(row: &[u8]) -> std::borrow::Cow<'_, [u16]> {
    // SAFETY: any bit pattern is a valid u16.
    match unsafe { row.align_to::<u16>() } {
        (&[], bits, &[]) => std::borrow::Cow::Borrowed(bits),
        _ => row.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect(),
    }
}

/// Output pointer shared by the chunks of one product.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: chunks write disjoint rows and `parallel_for` joins them before the buffer is read.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Causal attention of the query at `slot` (heads in llama.cpp's order) over the f16 cache:
/// `kq = K·q` (q rounded to f16), scaled, softmax, probabilities rounded to f16, `kqv = V·p`.
#[allow(clippy::too_many_arguments)]
fn attention(build: Build, cache: &KvCache, layer: usize, slot: usize, q: &[f32], groups: usize, hd: usize, batch: Batch, out: &mut [f32]) -> Result<()> {
    let capacity = cache.capacity();
    let scale = 1.0f32 / (hd as f32).sqrt();
    let visible = slot + 1;
    // llama.cpp's KV views are padded to 256 cells; masked and empty cells add exact zeros,
    // so any length that keeps the real cells in the same lanes (a multiple of 64) is equal.
    let len = visible.div_ceil(64) * 64;
    let dst = Out(out.as_mut_ptr());
    cache.with_layer_f32(layer, |keys, values| {
        kernels::parallel_for(q.len() / hd, &|head| {
            let dst = dst;
            let q16: Vec<f32> = q[head * hd..(head + 1) * hd].iter().map(|&v| math::round_f16(v)).collect();
            let base = head / groups * capacity;
            let mut row = vec![f32::NEG_INFINITY; len];
            for (t, r) in row.iter_mut().enumerate().take(visible) {
                let key = &keys[(base + t) * hd..(base + t + 1) * hd];
                let kq = match batch {
                    Batch::One => super::dot_f16_vec(build, key, &q16),
                    Batch::Many => super::dot_f16_tiny(build, key, &q16),
                };
                *r = kq * scale + 0.0;
            }
            super::softmax(build, &mut row);
            let p16: Vec<f32> = row.iter().map(|&p| math::round_f16(p)).collect();
            let mut column = vec![0.0f32; len];
            for d in 0..hd {
                for (t, c) in column.iter_mut().enumerate().take(visible) {
                    *c = values[(base + t) * hd + d];
                }
                let v = match batch {
                    Batch::One => super::dot_f16_vec(build, &column, &p16),
                    Batch::Many => super::dot_f16_tiny(build, &column, &p16),
                };
                // SAFETY: head `head` alone writes `out[head·hd..(head+1)·hd]`, and
                // `parallel_for` returns only when every head is done.
                unsafe { *dst.0.add(head * hd + d) = v };
            }
        });
    })
}
