//! The routines where llama.cpp built for AVX2 without AVX-512 (the usual desktop build:
//! `GGML_AVX2`, `GGML_FMA`, `GGML_F16C`) computes otherwise than its AVX-512 build, whose
//! versions are in [`super::math`]: ggml's f16 vectors are 8 lanes wide there, its
//! `ggml_v_expf` builds `2^n` from the exponent bits instead of `scalef`, and softmax and
//! silu take 8-element chunks. Everything else (the q8 activations, the Q4_1/Q8_0 block
//! products, which use 256-bit instructions in both builds, rms_norm, rope) is shared.
//!
//! As in `math`, SIMD lanes are written out as arrays and `mul_add` stands where ggml's code
//! fuses; the doc comment of each function names the ggml routine and the build branch.

use super::math::{from_f16, hsum8};

/// `GGML_F32x8_REDUCE` of one 8-lane vector (after its four accumulators were added):
/// halves added, then two `hadd`s: `((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7))`. Not the order of
/// [`hsum8`], which tinyBLAS and softmax use.
#[inline]
pub(crate) fn reduce8(a: &[f32; 8]) -> f32 {
    let t = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (t[0] + t[1]) + (t[2] + t[3])
}

/// `ggml_vec_dot_f16` (AVX branch: `GGML_F16_STEP` 32, `GGML_F16_EPR` 8): four 8-lane
/// accumulators take 32-element steps, are added `(0+2)+(1+3)` and reduced by [`reduce8`];
/// a tail is summed in f64. `x` and `y` hold f16 values (as f32).
#[inline(always)]
pub(crate) fn dot_f16_vec(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let np = n & !31;
    let mut sum = [[0.0f32; 8]; 4];
    for i in (0..np).step_by(32) {
        for (j, acc) in sum.iter_mut().enumerate() {
            let at = i + 8 * j;
            for (l, a) in acc.iter_mut().enumerate() {
                *a = x[at + l].mul_add(y[at + l], *a);
            }
        }
    }
    let mut lanes = [0.0f32; 8];
    for l in 0..8 {
        lanes[l] = (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]);
    }
    let mut total = reduce8(&lanes) as f64;
    for i in np..n {
        total += (x[i] * y[i]) as f64;
    }
    total as f32
}

/// tinyBLAS's f16 product in the AVX2 build (`tinyBLAS<8, __m256, …>`, prompt batches): one
/// 8-lane accumulator over 8-element steps, then `hsum` ([`hsum8`]). `x.len()` is a multiple
/// of 8.
#[inline(always)]
pub(crate) fn dot_f16_tiny(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (xs, ys) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] = xs[l].mul_add(ys[l], acc[l]);
        }
    }
    hsum8(&acc)
}

/// [`dot_f16_vec`] on f16 bits.
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

/// `ggml_v_expf` (`__AVX2__ && __FMA__` branch) of one lane. The same reduction and
/// polynomial as the AVX-512 version but for its last step: `2^n` is put together from the
/// bits of `z` (`k`), the polynomial leaves out its constant 1 and is applied as `k·j + k`;
/// beyond |n| > 126 the scale is split in two factors (`s1`, `s2`) so that results near the
/// ends of the range neither overflow early nor lose their subnormal bits, and beyond
/// |n| > 192 the result is `s1²` (0 or ∞). ggml takes the split path for all 8 lanes when
/// one needs it, but it gives the other lanes the same `k·j + k`, so a lane's value is its own.
#[inline(always)]
pub(crate) fn v_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits() << 23;
    let k = c(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    // `_CMP_GT_OQ`, like `>`, is false for NaN.
    if n.abs() > 126.0 {
        let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
        let s1 = c(g.wrapping_add(0x7f00_0000));
        let s2 = c(e.wrapping_sub(g));
        if n.abs() > 192.0 {
            s1 * s1
        } else {
            s2.mul_add(j, s2) * s1
        }
    } else {
        k.mul_add(j, k)
    }
}

/// `ggml_v_silu` (AVX2): `x / (1 + expf(0 − x))` with [`v_expf`].
#[inline(always)]
pub(crate) fn v_silu(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

/// `ggml_vec_swiglu_f32` (AVX2 branch): `silu(gate)·up` in 8-element chunks, each lane on
/// its own, so the chunking does not show in the values (lengths are multiples of 8 here;
/// ggml's scalar tail would use `expf` from libm).
#[inline(always)]
pub(crate) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = v_silu(g) * u;
    }
}

/// `ggml_vec_soft_max_f32` (AVX2 branch) + the scaling of `ggml_compute_forward_soft_max_f32`,
/// on scores already scaled and masked: 8-lane chunks of [`v_expf`], each summed by
/// `hsum_float_8`'s tree ([`hsum8`]) and added in f64, then multiplied by the f32 `1/sum`.
/// `row.len()` is a multiple of 8.
#[inline(always)]
pub(crate) fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for chunk in row.chunks_exact_mut(8) {
        let mut lanes = [0.0f32; 8];
        for (l, v) in chunk.iter_mut().enumerate() {
            *v = v_expf(*v - max);
            lanes[l] = *v;
        }
        sum += hsum8(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp_flushes_and_keeps_subnormals() {
        for i in -950..887 {
            let x = i as f32 * 0.1;
            let (got, want) = (v_expf(x), (x as f64).exp());
            let tol = if want < f32::MIN_POSITIVE as f64 { 3.0 * f32::from_bits(1) as f64 } else { want * 4e-7 };
            assert!((got as f64 - want).abs() <= tol, "{x}: {got} vs {want}");
        }
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
        assert_eq!(v_expf(0.0), 1.0);
    }

    #[test]
    fn the_two_reduction_trees_differ() {
        let b: [f32; 8] = [1e8, -1e8, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        // reduce8: (1e8 + -1e8) + (2 + 0) = 2; hsum8: (1e8 + 2) + (-1e8) = 0, as 1e8 + 2
        // rounds back to 1e8 (f32 steps of 8 there).
        assert_eq!(reduce8(&b), 2.0);
        assert_eq!(hsum8(&b), 0.0);
    }

    #[test]
    fn dots_match_plain_sums_on_exact_values() {
        let x: Vec<f32> = (0..96).map(|i| (i % 7) as f32).collect();
        let y: Vec<f32> = (0..96).map(|i| (i % 5) as f32 - 2.0).collect();
        let exact: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(dot_f16_vec(&x, &y), exact);
        assert_eq!(dot_f16_tiny(&x, &y), exact);
        assert_eq!(dot_f16_vec(&x[..40], &y[..40]), x[..40].iter().zip(&y).map(|(a, b)| a * b).sum::<f32>());
    }
}
