//! AVX-512 micro kernels, for CPUs that have it (Intel Xeon since Skylake-SP, AMD Zen 4 when
//! the VM exposes it): twice the lanes and twice the registers of AVX2.
//!
//! Safety: every function needs AVX-512F (checked by the caller with
//! `is_x86_feature_detected!`); slices are indexed within their lengths.

use std::arch::x86_64::*;

// The block helpers are the AVX2 ones: both inline into these kernels.
use super::avx2::{f16, nibbles};

/// Whether this CPU runs the AVX-512 kernels (detected once).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// Whether this CPU runs the AVX-512 VNNI block kernels (detected once).
pub(crate) fn vnni_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("f16c")
    })
}


/// Two 256-bit halves as one register (`hi` may be zero for a lone last block).
#[inline(always)]
unsafe fn pair(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// One weight row of Q4_0 (`FORMAT` 0), Q4_1 (1) or Q8_0 (2) blocks against `N` activation
/// rows (the weight blocks are unpacked once for all of them), two blocks per 512-bit step: `vpdpbusd` multiplies unsigned weight bytes (nibbles,
/// or |q| with q's sign moved onto the activations) by signed activations into i32 lanes,
/// the low 8 lanes for one block and the high 8 for the next.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
pub(crate) unsafe fn q_rows<const FORMAT: u8, const N: usize>(
    w: &[u8],
    x: &[&[super::formats::BlockQ8]; N],
    out: &mut [f32; N],
) {
    let bytes = [18, 20, 34][FORMAT as usize];
    let blocks = w.len() / bytes;
    let mut acc = [_mm512_setzero_ps(); N];
    let mut offsets = [0.0f32; N];
    let zero256 = _mm256_setzero_si256();
    let mut b = 0;
    while b < blocks {
        let two = b + 1 < blocks;
        let p0 = w.as_ptr().add(b * bytes);
        let p1 = if two { p0.add(bytes) } else { p0 };
        let (d0, d1) = (f16(p0), if two { f16(p1) } else { 0.0 });
        let load_w = |p: *const u8| {
            if FORMAT == 2 {
                _mm256_loadu_si256(p.add(2) as *const __m256i)
            } else {
                nibbles(p.add(if FORMAT == 1 { 4 } else { 2 }))
            }
        };
        let q = pair(load_w(p0), if two { load_w(p1) } else { zero256 });
        // Q8_0: |q| unsigned, and q's sign moved onto the activations below.
        let (q, negative) = if FORMAT == 2 { (_mm512_abs_epi8(q), _mm512_movepi8_mask(q)) } else { (q, 0) };
        let (m0, m1) = match FORMAT {
            1 => (f16(p0.add(2)), if two { f16(p1.add(2)) } else { 0.0 }),
            0 => (-8.0 * d0, -8.0 * d1),
            _ => (0.0, 0.0),
        };
        // Per-lane weight scales; the activation scales are broadcast straight from memory
        // (load ports, not ALU ports) and multiplied in as a vector.
        let wd = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
        for n in 0..N {
            let a0 = x[n].get_unchecked(b);
            let a1 = if two { x[n].get_unchecked(b + 1) } else { a0 };
            let y_hi = if two { _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i) } else { zero256 };
            let mut y = pair(_mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i), y_hi);
            if FORMAT == 2 {
                y = _mm512_mask_sub_epi8(y, negative, _mm512_setzero_si512(), y);
            }
            let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y));
            let ad = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a0.d), _mm512_set1_ps(a1.d));
            acc[n] = _mm512_fmadd_ps(_mm512_mul_ps(wd, ad), dot, acc[n]);
            if FORMAT != 2 {
                offsets[n] += m0 * a0.s + if two { m1 * a1.s } else { 0.0 };
            }
        }
        b += 2;
    }
    for n in 0..N {
        out[n] = _mm512_reduce_add_ps(acc[n]) + offsets[n];
    }
}

/// Four weight rows of Q4_0 (`FORMAT` 0), Q4_1 (1) or Q8_0 (2) against one activation row
/// (decode), two blocks per 512-bit step: the activation pair is loaded once for the four
/// rows, whose FMA chains are independent.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
pub(crate) unsafe fn q_rows4<const FORMAT: u8>(w: &[&[u8]; 4], x: &[super::formats::BlockQ8], out: &mut [f32; 4]) {
    let bytes = [18, 20, 34][FORMAT as usize];
    let blocks = w[0].len() / bytes;
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut offsets = [0.0f32; 4];
    let zero256 = _mm256_setzero_si256();
    let mut b = 0;
    while b < blocks {
        let two = b + 1 < blocks;
        let a0 = x.get_unchecked(b);
        let a1 = if two { x.get_unchecked(b + 1) } else { a0 };
        let y_hi = if two { _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i) } else { zero256 };
        let y = pair(_mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i), y_hi);
        let ad = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(a0.d), _mm512_set1_ps(a1.d));
        for r in 0..4 {
            let p0 = w[r].as_ptr().add(b * bytes);
            let p1 = if two { p0.add(bytes) } else { p0 };
            // Four rows are four streams; fetch a few blocks ahead of each.
            _mm_prefetch::<_MM_HINT_T0>(p0.add(8 * bytes) as *const i8);
            let (d0, d1) = (f16(p0), if two { f16(p1) } else { 0.0 });
            let dot = if FORMAT == 2 {
                let q = pair(
                    _mm256_loadu_si256(p0.add(2) as *const __m256i),
                    if two { _mm256_loadu_si256(p1.add(2) as *const __m256i) } else { zero256 },
                );
                let y = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(q), _mm512_setzero_si512(), y);
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(q), y)
            } else {
                let off = if FORMAT == 1 { 4 } else { 2 };
                let q = pair(nibbles(p0.add(off)), if two { nibbles(p1.add(off)) } else { zero256 });
                let (m0, m1) = if FORMAT == 1 {
                    (f16(p0.add(2)), if two { f16(p1.add(2)) } else { 0.0 })
                } else {
                    (-8.0 * d0, -8.0 * d1)
                };
                offsets[r] += m0 * a0.s + if two { m1 * a1.s } else { 0.0 };
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y)
            };
            let wd = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(wd, ad), _mm512_cvtepi32_ps(dot), acc[r]);
        }
        b += 2;
    }
    for r in 0..4 {
        out[r] = _mm512_reduce_add_ps(acc[r]) + offsets[r];
    }
}
