//! The block dot products of [`super::math`] with ggml's own AVX2 instructions: the same
//! values (the integer lane sums are exact, the fused float steps identical), 10–20× faster
//! than the lane-by-lane Rust. Chosen at run time; `math` stays the reference and the
//! fallback, and the tests check both agree bit for bit.

use std::arch::x86_64::*;

use super::math::Q8Block;

/// Whether this CPU runs the kernels below.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

#[inline(always)]
unsafe fn f16_to_f32(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// `hsum_float_8`.
#[inline(always)]
unsafe fn hsum8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// `sum_i16_pairs_float(maddubs(a, b))`: unsigned × signed bytes, 4 per float lane.
#[inline(always)]
unsafe fn lane_sums(a_unsigned: __m256i, b_signed: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(a_unsigned, b_signed);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// [`super::math::dot_q4_1`] (`ggml_vec_dot_q4_1_q8_1`, AVX2).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C ([`available`]); `row` holds `act.len()` Q4_1 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_1(row: &[u8], act: &[Q8Block]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    let low = _mm256_set1_epi8(0x0f);
    for (b, y) in row.chunks_exact(20).zip(act) {
        let d0 = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        let m = f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
        summs = m.mul_add(f16_to_f32(y.s), summs);
        let d0d1 = _mm256_set1_ps(d0 * f16_to_f32(y.d));
        let tmp = _mm_loadu_si128(b[4..20].as_ptr() as *const __m128i);
        let qx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp), low);
        let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
        acc = _mm256_fmadd_ps(d0d1, lane_sums(qx, qy), acc);
    }
    hsum8(acc) + summs
}

/// [`super::math::dot_q8_0`] (`ggml_vec_dot_q8_0_q8_0`, AVX2).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C ([`available`]); `row` holds `act.len()` Q8_0 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0(row: &[u8], act: &[Q8Block]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, y) in row.chunks_exact(34).zip(act) {
        let d = _mm256_set1_ps(f16_to_f32(u16::from_le_bytes([b[0], b[1]])) * f16_to_f32(y.d));
        let qx = _mm256_loadu_si256(b[2..34].as_ptr() as *const __m256i);
        let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
        let q = lane_sums(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum8(acc)
}

/// Whether this CPU also runs the AVX-512 kernels (ggml's f16 dot products in 16 lanes).
pub(crate) fn available_512() -> bool {
    available() && is_x86_feature_detected!("avx512f")
}

/// GCC's `_mm512_reduce_add_ps` ([`super::math::reduce16`]).
#[inline(always)]
unsafe fn reduce16(x: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
    let t8 = _mm256_add_ps(hi, _mm512_castps512_ps256(x));
    let t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8));
    let t2 = _mm_add_ps(t4, _mm_shuffle_ps(t4, t4, 0b01_00_11_10));
    _mm_cvtss_f32(t2) + _mm_cvtss_f32(_mm_shuffle_ps(t2, t2, 1))
}

/// f32 or f16 elements loaded as 16 or 8 f32 lanes.
trait Lanes: Copy {
    unsafe fn load16(p: *const Self) -> __m512;
    unsafe fn load8(p: *const Self) -> __m256;
    fn value(self) -> f32;
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    fn value(self) -> f32 {
        self
    }
}

impl Lanes for u16 {
    #[inline(always)]
    unsafe fn load16(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn load8(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    fn value(self) -> f32 {
        super::math::from_f16(self)
    }
}

/// [`super::math::dot_f16_vec`] (`ggml_vec_dot_f16`, AVX-512) on f16 values held as f32
/// (the cache) or as f16 bits (f16 matrices and their f16 activations).
#[inline(always)]
unsafe fn dot_vec<T: Lanes>(x: &[T], y: &[T]) -> f32 {
    let n = x.len().min(y.len());
    let np = n & !63;
    let mut sum = [_mm512_setzero_ps(); 4];
    for i in (0..np).step_by(64) {
        for (j, s) in sum.iter_mut().enumerate() {
            let at = i + 16 * j;
            *s = _mm512_fmadd_ps(T::load16(x.as_ptr().add(at)), T::load16(y.as_ptr().add(at)), *s);
        }
    }
    let lanes = _mm512_add_ps(_mm512_add_ps(sum[0], sum[2]), _mm512_add_ps(sum[1], sum[3]));
    let mut total = reduce16(lanes) as f64;
    for i in np..n {
        total += (x[i].value() * y[i].value()) as f64;
    }
    total as f32
}

/// [`super::math::dot_f16_tiny`] (tinyBLAS, AVX-512); lengths are multiples of 16.
#[inline(always)]
unsafe fn dot_tiny<T: Lanes>(x: &[T], y: &[T]) -> f32 {
    let n = x.len().min(y.len()) & !15;
    let mut acc = _mm512_setzero_ps();
    for at in (0..n).step_by(16) {
        acc = _mm512_fmadd_ps(T::load16(x.as_ptr().add(at)), T::load16(y.as_ptr().add(at)), acc);
    }
    reduce16(acc)
}

/// # Safety
/// The CPU has AVX-512F ([`available_512`]).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_vec(x: &[f32], y: &[f32]) -> f32 {
    dot_vec(x, y)
}

/// # Safety
/// The CPU has AVX-512F ([`available_512`]).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_tiny(x: &[f32], y: &[f32]) -> f32 {
    dot_tiny(x, y)
}

/// # Safety
/// The CPU has AVX-512F ([`available_512`]).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_vec_bits(x: &[u16], y: &[u16]) -> f32 {
    dot_vec(x, y)
}

/// # Safety
/// The CPU has AVX-512F ([`available_512`]).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_tiny_bits(x: &[u16], y: &[u16]) -> f32 {
    dot_tiny(x, y)
}

/// [`super::math::softmax`] compiled with FMA (its polynomial is all fused steps).
///
/// # Safety
/// The CPU has FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn softmax(row: &mut [f32]) {
    super::math::softmax(row)
}

/// `silu(g)·u` of [`super::math::v_silu`] compiled with FMA.
///
/// # Safety
/// The CPU has FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    super::math::swiglu(gate, up, out)
}

/// The kernels of llama.cpp's AVX2 build ([`super::avx2`]): its f16 products in 8 lanes, its
/// softmax and silu. They need AVX2, FMA and F16C ([`available`]).
pub(crate) mod avx2 {
    use super::*;

    /// `GGML_F32x8_REDUCE`'s last steps ([`super::super::avx2::reduce8`]).
    #[inline(always)]
    unsafe fn reduce8(x: __m256) -> f32 {
        let t0 = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        let t1 = _mm_hadd_ps(t0, t0);
        _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
    }

    /// [`super::super::avx2::dot_f16_vec`] (`ggml_vec_dot_f16`, AVX2).
    #[inline(always)]
    unsafe fn dot_vec<T: Lanes>(x: &[T], y: &[T]) -> f32 {
        let n = x.len().min(y.len());
        let np = n & !31;
        let mut sum = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (j, s) in sum.iter_mut().enumerate() {
                let at = i + 8 * j;
                *s = _mm256_fmadd_ps(T::load8(x.as_ptr().add(at)), T::load8(y.as_ptr().add(at)), *s);
            }
        }
        let lanes = _mm256_add_ps(_mm256_add_ps(sum[0], sum[2]), _mm256_add_ps(sum[1], sum[3]));
        let mut total = reduce8(lanes) as f64;
        for i in np..n {
            total += (x[i].value() * y[i].value()) as f64;
        }
        total as f32
    }

    /// [`super::super::avx2::dot_f16_tiny`] (tinyBLAS, AVX2); lengths are multiples of 8.
    #[inline(always)]
    unsafe fn dot_tiny<T: Lanes>(x: &[T], y: &[T]) -> f32 {
        let n = x.len().min(y.len()) & !7;
        let mut acc = _mm256_setzero_ps();
        for at in (0..n).step_by(8) {
            acc = _mm256_fmadd_ps(T::load8(x.as_ptr().add(at)), T::load8(y.as_ptr().add(at)), acc);
        }
        hsum8(acc)
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C ([`available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_f16_vec(x: &[f32], y: &[f32]) -> f32 {
        dot_vec(x, y)
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C ([`available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_f16_tiny(x: &[f32], y: &[f32]) -> f32 {
        dot_tiny(x, y)
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C ([`available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_f16_vec_bits(x: &[u16], y: &[u16]) -> f32 {
        dot_vec(x, y)
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C ([`available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_f16_tiny_bits(x: &[u16], y: &[u16]) -> f32 {
        dot_tiny(x, y)
    }

    /// [`super::super::avx2::softmax`] compiled with FMA.
    ///
    /// # Safety
    /// The CPU has FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn softmax(row: &mut [f32]) {
        super::super::avx2::softmax(row)
    }

    /// [`super::super::avx2::swiglu`] compiled with FMA.
    ///
    /// # Safety
    /// The CPU has FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        super::super::avx2::swiglu(gate, up, out)
    }
}
