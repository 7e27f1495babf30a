//! ggml's CPU arithmetic, operation for operation.
//!
//! Every function here reproduces one routine of ggml's x86 CPU backend as llama.cpp builds
//! it for an AVX-512 machine (ggml 0.9 as vendored by llama-cpp-python 0.3.36, GCC with
//! its default `-ffp-contract=fast`; [`super::avx2`] has the routines that its AVX2-only
//! build computes otherwise): the same roundings in the same order, SIMD lanes
//! written out as arrays, `mul_add` where ggml's code (or GCC's contraction of it) fuses.
//! Integer parts (the int8 dot products of a block) are exact in any order, so only the
//! float steps are spelled out. The doc comment of each function names the ggml routine.

use half::f16;

/// `GGML_CPU_FP32_TO_FP16`: round to nearest even (F16C `vcvtps2ph` with immediate 0).
#[inline]
pub(crate) fn to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// `GGML_CPU_FP16_TO_FP32` (exact).
#[inline]
pub(crate) fn from_f16(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// `x` rounded through f16 and back: what an f16 tensor (the KV cache, the f16 copy of an
/// activation) holds.
#[inline]
pub(crate) fn round_f16(x: f32) -> f32 {
    from_f16(to_f16(x))
}

/// `hsum_float_8`: 8 lanes summed as `(a4+a0 + a6+a2) + (a5+a1 + a7+a3)`.
#[inline]
pub(crate) fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// GCC's `_mm512_reduce_add_ps`: halves added down to one lane.
#[inline]
pub(crate) fn reduce16(a: &[f32; 16]) -> f32 {
    let mut t8 = [0.0f32; 8];
    for i in 0..8 {
        t8[i] = a[8 + i] + a[i];
    }
    let t4 = [t8[4] + t8[0], t8[5] + t8[1], t8[6] + t8[2], t8[7] + t8[3]];
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// One activation block of 32 as ggml's `quantize_row_q8_1` (x86) writes it; `s` is only
/// used by the Q4_1 dot product (Q8_0 blocks leave it out).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Q8Block {
    pub(crate) d: u16,
    pub(crate) s: u16,
    pub(crate) qs: [i8; 32],
}

/// `quantize_row_q8_0` / `quantize_row_q8_1` (AVX2 path) of one row: `d = amax/127` stored
/// as f16, values scaled by `127/amax` (not `1/d`) and rounded half to even, `s = d·Σq` as f16.
pub(crate) fn quantize_q8(x: &[f32], out: &mut [Q8Block]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            let r = (v * id).round_ties_even() as i32;
            *q = r.clamp(-128, 127) as i8;
            sum += r;
        }
        block.d = to_f16(d);
        block.s = to_f16(d * sum as f32);
    }
}

/// The 8 lane sums of one block's int8 products: lane `l` holds elements `4l..4l+4`, as
/// `_mm256_dpbusd_epi32` / `maddubs`+`madd` leave them.
#[inline]
fn lane_sums(a: &[i8; 32], b: &[i8; 32]) -> [f32; 8] {
    let mut lanes = [0.0f32; 8];
    for (l, lane) in lanes.iter_mut().enumerate() {
        let mut s = 0i32;
        for e in 4 * l..4 * l + 4 {
            s += a[e] as i32 * b[e] as i32;
        }
        *lane = s as f32;
    }
    lanes
}

/// `ggml_vec_dot_q4_1_q8_1` (AVX2): one Q4_1 weight row (raw GGUF blocks of 20 bytes) times
/// a q8_1 activation row.
pub(crate) fn dot_q4_1(row: &[u8], act: &[Q8Block]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (b, y) in row.chunks_exact(20).zip(act) {
        let d0 = from_f16(u16::from_le_bytes([b[0], b[1]]));
        let m = from_f16(u16::from_le_bytes([b[2], b[3]]));
        let d1 = from_f16(y.d);
        // `summs += m * s` contracted by GCC into one fused multiply-add.
        summs = m.mul_add(from_f16(y.s), summs);
        let d0d1 = d0 * d1;
        let mut q = [0i8; 32];
        for (j, &byte) in b[4..20].iter().enumerate() {
            q[j] = (byte & 0x0f) as i8;
            q[j + 16] = (byte >> 4) as i8;
        }
        let xy = lane_sums(&q, &y.qs);
        for (a, v) in acc.iter_mut().zip(xy) {
            *a = d0d1.mul_add(v, *a);
        }
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q8_0_q8_0` (AVX2), and per element tinyBLAS's Q8_0 product (the same fused
/// chain over blocks and the same final sum): one Q8_0 weight row (blocks of 34 bytes) times
/// a q8_0 activation row.
pub(crate) fn dot_q8_0(row: &[u8], act: &[Q8Block]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (b, y) in row.chunks_exact(34).zip(act) {
        let d = from_f16(u16::from_le_bytes([b[0], b[1]])) * from_f16(y.d);
        let q: &[i8; 32] = bytemuck_i8(&b[2..34]);
        let xy = lane_sums(q, &y.qs);
        for (a, v) in acc.iter_mut().zip(xy) {
            *a = d.mul_add(v, *a);
        }
    }
    hsum8(&acc)
}

fn bytemuck_i8(b: &[u8]) -> &[i8; 32] {
    let b: &[u8; 32] = b.try_into().expect("a Q8_0 block holds 32 values");
    // SAFETY: u8 and i8 have the same size and alignment.
    unsafe { &*(b as *const [u8; 32] as *const [i8; 32]) }
}

/// `ggml_vec_dot_f16` (AVX-512 without FP16 arithmetic): four 16-lane accumulators take
/// 64-element steps, are added `(0+2)+(1+3)` and reduced; a tail is summed in f64.
/// `x` and `y` hold f16 values (as f32).
#[inline(always)]
pub(crate) fn dot_f16_vec(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len();
    let np = n & !63;
    let mut sum = [[0.0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, acc) in sum.iter_mut().enumerate() {
            let at = i + 16 * j;
            for (l, a) in acc.iter_mut().enumerate() {
                *a = x[at + l].mul_add(y[at + l], *a);
            }
        }
    }
    let mut lanes = [0.0f32; 16];
    for l in 0..16 {
        lanes[l] = (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]);
    }
    let mut total = reduce16(&lanes) as f64;
    for i in np..n {
        total += (x[i] * y[i]) as f64;
    }
    total as f32
}

/// tinyBLAS's f16 product (`tinyBLAS<16, __m512, …>`, prompt batches): one 16-lane
/// accumulator over 16-element steps, then reduced. `x.len()` is a multiple of 16.
#[inline(always)]
pub(crate) fn dot_f16_tiny(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (xs, ys) in x.chunks_exact(16).zip(y.chunks_exact(16)) {
        for l in 0..16 {
            acc[l] = xs[l].mul_add(ys[l], acc[l]);
        }
    }
    reduce16(&acc)
}

/// [`dot_f16_vec`] on f16 bits (an f16 matrix row and its f16 activation).
pub(crate) fn dot_f16_vec_bits(x: &[u16], y: &[u16]) -> f32 {
    dot_f16_vec(&widen(x), &widen(y))
}

/// [`dot_f16_tiny`] on f16 bits.
pub(crate) fn dot_f16_tiny_bits(x: &[u16], y: &[u16]) -> f32 {
    dot_f16_tiny(&widen(x), &widen(y))
}

fn widen(x: &[u16]) -> Vec<f32> {
    x.iter().map(|&h| from_f16(h)).collect()
}

/// `ggml_v_expf` (AVX-512) of one lane: ARM's optimized-routines polynomial, `scalef` for
/// the exponent, flushed to 0 / ∞ beyond |n| > 192.
#[inline(always)]
pub(crate) fn v_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // `_mm512_scalef_ps(j, n)`: exact in f64, then one rounding (subnormals included).
    (j as f64 * (n as f64).exp2()) as f32
}

/// `ggml_v_silu`: `x / (1 + expf(-x))` with [`v_expf`].
#[inline(always)]
pub(crate) fn v_silu(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

/// `ggml_vec_swiglu_f32`: `silu(gate)·up`.
#[inline(always)]
pub(crate) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = v_silu(g) * u;
    }
}

/// `ggml_compute_forward_rms_norm_f32` fused with the weight multiply: squares in f32 summed
/// in f64, `1/sqrtf(mean + eps)`, then `x·scale·w`.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * w;
    }
}

/// `ggml_vec_soft_max_f32` + the scaling of `ggml_compute_forward_soft_max_f32`, on scores
/// already scaled and masked (`-∞` where masked): 16-lane chunks of [`v_expf`] reduced and
/// summed in f64, then multiplied by the f32 `1/sum`. `row.len()` is a multiple of 16.
#[inline(always)]
pub(crate) fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for chunk in row.chunks_exact_mut(16) {
        let mut lanes = [0.0f32; 16];
        for (l, v) in chunk.iter_mut().enumerate() {
            *v = v_expf(*v - max);
            lanes[l] = *v;
        }
        sum += reduce16(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `ggml_rope_cache_init` for one position (no scaling): `(cos, sin)` per pair, the angle
/// advanced by repeated multiplication with `base^(-2/n_dims)` as ggml does.
pub(crate) fn rope_cache(pos: u32, base: f32, n_dims: usize) -> Vec<(f32, f32)> {
    let theta_scale = base.powf(-2.0 / n_dims as f32);
    let mut theta = pos as f32;
    (0..n_dims / 2)
        .map(|_| {
            let cs = (theta.cos(), theta.sin());
            theta *= theta_scale;
            cs
        })
        .collect()
}

/// `rotate_pairs` of rope mode 0 on one head in ggml's (interleaved) order, GCC's contraction
/// of `x0·cos − x1·sin` / `x0·sin + x1·cos` included.
pub(crate) fn rope_rotate(head: &mut [f32], cache: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cache) {
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = x0.mul_add(cos, -(x1 * sin));
        pair[1] = x0.mul_add(sin, x1 * cos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp_and_flushes() {
        for i in -800..800 {
            let x = i as f32 * 0.11;
            let (got, want) = (v_expf(x), x.exp());
            assert!((got - want).abs() <= want * 4e-7, "{x}: {got} vs {want}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
    }

    #[test]
    fn sums_follow_the_lane_trees() {
        let a: [f32; 8] = [1e8, 1.0, -1e8, 1.0, 1.0, 1.0, 1.0, 1.0];
        // (a4+a0 + a6+a2) + (a5+a1 + a7+a3): 1e8+1 rounds to 1e8, then cancels.
        assert_eq!(hsum8(&a), (1e8f32 + 1.0 + (-1e8f32 + 1.0)) + (2.0 + 2.0));
        let mut b = [0.0f32; 16];
        b[0] = 1.0;
        b[8] = 2.0;
        b[15] = 4.0;
        assert_eq!(reduce16(&b), 7.0);
    }

    #[test]
    fn q8_blocks_use_127_over_amax_and_ties_to_even() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = 1.5;
        x[3] = -2.5;
        let mut out = [Q8Block { d: 0, s: 0, qs: [0; 32] }];
        quantize_q8(&x, &mut out);
        assert_eq!(&out[0].qs[..4], &[127, 0, 2, -2]);
        assert_eq!(from_f16(out[0].d), 1.0);
        assert_eq!(from_f16(out[0].s), 127.0);
    }

    #[test]
    fn dots_match_plain_sums_on_exact_values() {
        let x: Vec<f32> = (0..128).map(|i| (i % 7) as f32).collect();
        let y: Vec<f32> = (0..128).map(|i| (i % 5) as f32 - 2.0).collect();
        let exact: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(dot_f16_vec(&x, &y), exact);
        assert_eq!(dot_f16_tiny(&x, &y), exact);
        assert_eq!(dot_f16_vec(&x[..70], &y[..70]), x[..70].iter().zip(&y).map(|(a, b)| a * b).sum::<f32>());
    }
}
