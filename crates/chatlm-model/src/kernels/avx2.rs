//! AVX2 + FMA + F16C dot products of one weight row against `N` activation rows.
//!
//! Each weight block is unpacked once and multiplied with the same block of every activation
//! row, so a matrix-matrix product (prefill) pays the nibble unpacking once per `N` rows.
//! Quantized formats multiply bytes with `vpmaddubsw` (unsigned × signed → i16 pairs, which
//! cannot saturate here: |q| ≤ 15 or one operand made non-negative) then `vpmaddwd` to i32.
//!
//! Safety: every function needs AVX2, FMA and F16C (checked by the caller with
//! `is_x86_feature_detected!`); slices are indexed within their lengths, which the caller
//! makes consistent (`w` holds whole blocks, each `x[n]` at least as many blocks).

use std::arch::x86_64::*;

use super::formats::BlockQ8;

#[inline(always)]
pub(super) unsafe fn f16(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 16 packed bytes → 32 values: low nibbles first, then high nibbles (GGUF's order).
#[inline(always)]
pub(super) unsafe fn nibbles(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    _mm256_set_m128i(hi, lo)
}

/// `Σ a·b` over each group of 4 bytes as 8 f32 (`a` unsigned, `b` signed).
#[inline(always)]
unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(a, b);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

#[inline(always)]
unsafe fn q8_bytes(x: &BlockQ8) -> __m256i {
    _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i)
}

/// One Q4_0/Q4_1 block against block `b` of every activation row, into `acc`.
#[inline(always)]
unsafe fn q4_block<const N: usize, const Q4_1: bool>(
    p: *const u8,
    x: &[&[BlockQ8]; N],
    b: usize,
    acc: &mut [__m256; N],
    offsets: &mut [f32; N],
) {
    let d = f16(p);
    let m = if Q4_1 { f16(p.add(2)) } else { -8.0 * d };
    let q = nibbles(p.add(if Q4_1 { 4 } else { 2 }));
    for n in 0..N {
        let a = x[n].get_unchecked(b);
        acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), dot_u8_i8(q, q8_bytes(a)), acc[n]);
        offsets[n] += m * a.s;
    }
}

/// Q4_0 (`m = -8d`) or Q4_1 (`m` stored) rows: `Σ (d·q + m)·y = d·Σq·y + m·s`.
#[inline(always)]
unsafe fn q4<const N: usize, const Q4_1: bool>(w: &[u8], x: &[&[BlockQ8]; N], out: &mut [f32; N]) {
    let bytes = if Q4_1 { 20 } else { 18 };
    let blocks = w.len() / bytes;
    // Two accumulator sets: consecutive blocks do not wait on each other's FMA.
    let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let mut offsets = [0.0f32; N];
    let p = w.as_ptr();
    let mut b = 0;
    while b + 2 <= blocks {
        q4_block::<N, Q4_1>(p.add(b * bytes), x, b, &mut acc0, &mut offsets);
        q4_block::<N, Q4_1>(p.add((b + 1) * bytes), x, b + 1, &mut acc1, &mut offsets);
        b += 2;
    }
    if b < blocks {
        q4_block::<N, Q4_1>(p.add(b * bytes), x, b, &mut acc0, &mut offsets);
    }
    for n in 0..N {
        out[n] = hsum(_mm256_add_ps(acc0[n], acc1[n])) + offsets[n];
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_0<const N: usize>(w: &[u8], x: &[&[BlockQ8]; N], out: &mut [f32; N]) {
    q4::<N, false>(w, x, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_1<const N: usize>(w: &[u8], x: &[&[BlockQ8]; N], out: &mut [f32; N]) {
    q4::<N, true>(w, x, out)
}

/// One Q8_0 block against block `b` of every activation row, into `acc`.
#[inline(always)]
unsafe fn q8_block<const N: usize>(p: *const u8, x: &[&[BlockQ8]; N], b: usize, acc: &mut [__m256; N]) {
    let d = f16(p);
    let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
    // maddubs wants its first operand unsigned: |q| · (sign(q) · y).
    let abs = _mm256_sign_epi8(q, q);
    for n in 0..N {
        let a = x[n].get_unchecked(b);
        let y = _mm256_sign_epi8(q8_bytes(a), q);
        acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), dot_u8_i8(abs, y), acc[n]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_0<const N: usize>(w: &[u8], x: &[&[BlockQ8]; N], out: &mut [f32; N]) {
    let blocks = w.len() / 34;
    let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let p = w.as_ptr();
    let mut b = 0;
    while b + 2 <= blocks {
        q8_block::<N>(p.add(b * 34), x, b, &mut acc0);
        q8_block::<N>(p.add((b + 1) * 34), x, b + 1, &mut acc1);
        b += 2;
    }
    if b < blocks {
        q8_block::<N>(p.add(b * 34), x, b, &mut acc0);
    }
    for n in 0..N {
        out[n] = hsum(_mm256_add_ps(acc0[n], acc1[n]));
    }
}

/// 8 values of a dense row from column `i`.
#[inline(always)]
unsafe fn load_dense<const HALF: bool>(w: *const u8, i: usize) -> __m256 {
    if HALF {
        _mm256_cvtph_ps(_mm_loadu_si128(w.add(i * 2) as *const __m128i))
    } else {
        _mm256_loadu_ps(w.add(i * 4) as *const f32)
    }
}

/// Dense rows (f16 when `HALF`, else f32) against f32 activations; 16 columns per step.
#[inline(always)]
unsafe fn dense<const N: usize, const HALF: bool>(w: &[u8], x: &[&[f32]; N], out: &mut [f32; N]) {
    let cols = w.len() / if HALF { 2 } else { 4 };
        let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let mut i = 0;
    while i + 16 <= cols {
        let (w0, w1) = (load_dense::<HALF>(w.as_ptr(), i), load_dense::<HALF>(w.as_ptr(), i + 8));
        for n in 0..N {
            let xp = x[n].as_ptr().add(i);
            acc0[n] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp), acc0[n]);
            acc1[n] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(8)), acc1[n]);
        }
        i += 16;
    }
    for n in 0..N {
        let mut sum = hsum(_mm256_add_ps(acc0[n], acc1[n]));
        for j in i..cols {
            let wj = if HALF { f16(w.as_ptr().add(j * 2)) } else { (w.as_ptr().add(j * 4) as *const f32).read_unaligned() };
            sum += wj * x[n][j];
        }
        out[n] = sum;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_rows<const N: usize>(w: &[u8], x: &[&[f32]; N], out: &mut [f32; N]) {
    dense::<N, true>(w, x, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_rows<const N: usize>(w: &[u8], x: &[&[f32]; N], out: &mut [f32; N]) {
    dense::<N, false>(w, x, out)
}

/// Four weight rows against one activation row (decode): the activation block is loaded
/// once for the four rows, whose chains of FMAs are independent.
#[inline(always)]
unsafe fn rows4<const FORMAT: u8>(w: &[&[u8]; 4], x: &[BlockQ8], out: &mut [f32; 4]) {
    // FORMAT: 0 = Q4_0, 1 = Q4_1, 2 = Q8_0.
    let bytes = [18, 20, 34][FORMAT as usize];
    let blocks = w[0].len() / bytes;
    // Even blocks into one accumulator, odd into the other, summed at the end: the order of
    // `q4`/`q8_0` (the kernels of several activation rows), so a row's value does not depend on
    // how many rows are multiplied at once (batched decoding equals one sequence alone).
    let mut acc = [[_mm256_setzero_ps(); 4]; 2];
    let mut offsets = [0.0f32; 4];
    for b in 0..blocks {
        let acc = &mut acc[b % 2];
        let a = x.get_unchecked(b);
        let y = q8_bytes(a);
        for r in 0..4 {
            let p = w[r].as_ptr().add(b * bytes);
            // Four short rows are four streams; fetch a few blocks ahead of each.
            _mm_prefetch::<_MM_HINT_T0>(p.add(8 * bytes) as *const i8);
            let d = f16(p);
            let dot = if FORMAT == 2 {
                let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
                dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q))
            } else {
                let m = if FORMAT == 1 { f16(p.add(2)) } else { -8.0 * d };
                offsets[r] += m * a.s;
                dot_u8_i8(nibbles(p.add(if FORMAT == 1 { 4 } else { 2 })), y)
            };
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), dot, acc[r]);
        }
    }
    for r in 0..4 {
        out[r] = hsum(_mm256_add_ps(acc[0][r], acc[1][r])) + offsets[r];
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_0_rows4(w: &[&[u8]; 4], x: &[BlockQ8], out: &mut [f32; 4]) {
    rows4::<0>(w, x, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4_1_rows4(w: &[&[u8]; 4], x: &[BlockQ8], out: &mut [f32; 4]) {
    rows4::<1>(w, x, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_0_rows4(w: &[&[u8]; 4], x: &[BlockQ8], out: &mut [f32; 4]) {
    rows4::<2>(w, x, out)
}

/// `Σ a[i]·b[i]` over f32 slices of equal length (attention scores in the decode step).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), _mm256_loadu_ps(b.as_ptr().add(i + 8)), acc1);
        i += 16;
    }
    let mut sum = hsum(_mm256_add_ps(acc0, acc1));
    for j in i..n {
        sum += a[j] * b[j];
    }
    sum
}

/// `y[i] += alpha · x[i]` (attention's weighted sum of values in the decode step).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let a = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        let p = y.as_mut_ptr().add(i);
        _mm256_storeu_ps(p, _mm256_fmadd_ps(a, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)));
        i += 8;
    }
    for j in i..n {
        y[j] += alpha * x[j];
    }
}

/// f16 values (little-endian bytes) expanded to f32 into `out` (`bytes.len() / 2` long).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_to_f32(bytes: &[u8], out: &mut [f32]) {
    let n = (bytes.len() / 2).min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(bytes.as_ptr().add(2 * i) as *const __m128i);
        _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for j in i..n {
        out[j] = f16(bytes.as_ptr().add(2 * j));
    }
}

/// `out[a][r] = Σ_k w[r][k] · x[a][k]`: `R` f32 weight rows against `A` activation rows with
/// `R × A` accumulators, so each loaded vector feeds several FMAs (the prefill GEMM's micro
/// kernel; 4 × 3 keeps the 12 accumulators and 4 weight vectors in the 16 registers, the
/// activations come straight from memory into the FMAs).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_tile<const R: usize, const A: usize>(w: &[&[f32]; R], x: &[&[f32]; A], out: &mut [[f32; R]; A]) {
    let cols = w[0].len();
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let mut k = 0;
    while k + 8 <= cols {
        let wv: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(w[r].as_ptr().add(k)));
        for a in 0..A {
            let xv = _mm256_loadu_ps(x[a].as_ptr().add(k));
            for r in 0..R {
                acc[a][r] = _mm256_fmadd_ps(wv[r], xv, acc[a][r]);
            }
        }
        k += 8;
    }
    for a in 0..A {
        for r in 0..R {
            let mut sum = hsum(acc[a][r]);
            for j in k..cols {
                sum += w[r][j] * x[a][j];
            }
            out[a][r] = sum;
        }
    }
}

/// [`super::formats::quantize_q8`] with the same operations in the same order per value
/// (max of |x|, `d = amax / 127`, `x · (1 / d)` rounded half away from zero), so the blocks
/// are bit-identical to the scalar ones.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    let sign = _mm256_set1_ps(-0.0);
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    for (chunk, block) in x.chunks_exact(32).zip(out.iter_mut()) {
        let v: [__m256; 4] = std::array::from_fn(|j| _mm256_loadu_ps(chunk.as_ptr().add(8 * j)));
        let abs = v.map(|v| _mm256_andnot_ps(sign, v));
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let q = v.map(|v| {
            let y = _mm256_mul_ps(v, id);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            // Round half away from zero: add ±1 where the dropped fraction is at least 0.5.
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, _mm256_sub_ps(y, t)), half);
            let step = _mm256_or_ps(_mm256_and_ps(y, sign), one);
            let r = _mm256_add_ps(t, _mm256_and_ps(up, step));
            _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0)), _mm256_set1_ps(127.0)))
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        // packs interleave the 128-bit lanes; the permute puts the 32 bytes back in order.
        let w = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(block.qs.as_mut_ptr() as *mut __m256i, w);
        block.d = d;
        block.s = d * _mm_cvtsi128_si32(s) as f32;
    }
}

/// e^x for 8 lanes: `x = n·ln2 + r` with |r| ≤ ln2/2, a degree-7 Taylor polynomial of e^r
/// (error below 1e-8 relative, ~1 ulp) scaled by 2^n through the exponent bits.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0)), _mm256_set1_ps(-87.0));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
    // ln 2 in two parts so n · ln2_hi is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_mul_ps(p, _mm256_castsi256_ps(scale))
}

/// `row[i] = e^(row[i] - max)` and returns the sum (a softmax's numerators).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn exp_sub_sum(row: &mut [f32], max: f32) -> f32 {
    let m = _mm256_set1_ps(max);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= row.len() {
        let p = row.as_mut_ptr().add(i);
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), m));
        _mm256_storeu_ps(p, e);
        acc = _mm256_add_ps(acc, e);
        i += 8;
    }
    let mut sum = hsum(acc);
    for v in &mut row[i..] {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// `out = Σ_i p[i] · rows[i]` for rows of `out.len()` values starting at `base + slots[i] ·
/// out.len()`: attention's weighted sum of values, 64 columns at a time held in registers
/// across all rows (no load and store of `out` per row).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn weighted_rows(p: &[f32], values: &[f32], base: usize, slots: &[usize], out: &mut [f32]) {
    let d = out.len();
    let mut c = 0;
    while c + 64 <= d {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (&pi, &t) in p.iter().zip(slots) {
            let row = values[(base + t) * d + c..][..64].as_ptr();
            let pv = _mm256_set1_ps(pi);
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(8 * j)), *a);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * j), *a);
        }
        c += 64;
    }
    if c < d {
        out[c..].fill(0.0);
        for (&pi, &t) in p.iter().zip(slots) {
            axpy_f32(pi, &values[(base + t) * d + c..(base + t + 1) * d], &mut out[c..]);
        }
    }
}

/// `out[i] = silu(gate[i]) · up[i]` with `silu(g) = g / (1 + e^-g)` (candle's formula).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len().min(gate.len()).min(up.len());
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        let g = _mm256_loadu_ps(gate.as_ptr().add(i));
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        let s = _mm256_div_ps(g, _mm256_add_ps(e, one));
        _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i))));
        i += 8;
    }
    for j in i..n {
        out[j] = gate[j] / ((-gate[j]).exp() + 1.0) * up[j];
    }
}

/// `row[i] *= scale` and returns the largest result (scores before a softmax).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scale_max(row: &mut [f32], scale: f32) -> f32 {
    let s = _mm256_set1_ps(scale);
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 8 <= row.len() {
        let p = row.as_mut_ptr().add(i);
        let v = _mm256_mul_ps(_mm256_loadu_ps(p), s);
        _mm256_storeu_ps(p, v);
        m = _mm256_max_ps(m, v);
        i += 8;
    }
    let h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    let mut max = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    for v in &mut row[i..] {
        *v *= scale;
        max = max.max(*v);
    }
    max
}
