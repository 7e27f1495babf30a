//! AVX-512 micro kernels, for CPUs that have it (Intel Xeon since Skylake-SP, AMD Zen 4 when
//! the VM exposes it): twice the lanes and twice the registers of AVX2.
//!
//! Safety: every function needs AVX-512F (checked by the caller with
//! `is_x86_feature_detected!`); slices are indexed within their lengths.

use std::arch::x86_64::*;

/// Whether this CPU runs the AVX-512 kernels (detected once).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// [`super::avx2::f32_tile`] with 512-bit vectors: `R` weight rows × `A` activation rows;
/// 4 × 6 keeps 24 accumulators and 4 weight vectors in the 32 registers.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn f32_tile<const R: usize, const A: usize>(w: &[&[f32]; R], x: &[&[f32]; A], out: &mut [[f32; R]; A]) {
    let cols = w[0].len();
    let mut acc = [[_mm512_setzero_ps(); R]; A];
    let mut k = 0;
    while k + 16 <= cols {
        let wv: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(w[r].as_ptr().add(k)));
        for a in 0..A {
            let xv = _mm512_loadu_ps(x[a].as_ptr().add(k));
            for r in 0..R {
                acc[a][r] = _mm512_fmadd_ps(wv[r], xv, acc[a][r]);
            }
        }
        k += 16;
    }
    for a in 0..A {
        for r in 0..R {
            let mut sum = _mm512_reduce_add_ps(acc[a][r]);
            for j in k..cols {
                sum += w[r][j] * x[a][j];
            }
            out[a][r] = sum;
        }
    }
}
