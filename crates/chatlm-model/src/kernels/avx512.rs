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
/// (decode), two blocks per 512-bit step. The rows must be rows of one matrix (one
/// allocation: their scales are gathered relative to the first).
///
/// Per row and block pair only the weight bytes are unpacked (Q8_0: `q + 128` by a flip of
/// the sign bit, so `vpdpbusd` takes them as the unsigned operand; Q4: nibbles), multiplied
/// and scaled; the 8 block scales of the 4 rows are fetched by one gather and converted
/// together, and the blocks' offsets (`c·sₓ` with `w = d·u + c`, see `qpanel`) accumulate
/// for all rows in one vector. The earlier kernel spent ~20 (Q8_0) to ~35 (Q4_1)
/// instructions per row and block pair; this one ~10 plus ~20 shared by the four rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
pub(crate) unsafe fn q_rows4<const FORMAT: u8>(w: &[&[u8]; 4], x: &[super::formats::BlockQ8], out: &mut [f32; 4]) {
    let bytes = [18usize, 20, 34][FORMAT as usize];
    let blocks = w[0].len() / bytes;
    // The raw loads below rely on these bounds (the callers' shapes were validated at load).
    assert!(w.iter().all(|r| r.len() >= blocks * bytes) && x.len() >= blocks, "q_rows4: rows or activations shorter than {blocks} blocks");
    let base = w[0].as_ptr();
    // Gather element 2r + j: the first 4 bytes of block b + j of row r (d, and m for Q4_1).
    let rel = |r: usize| w[r].as_ptr().offset_from(base) as i64;
    let mut offsets = _mm512_setr_epi64(0, 0, 0, 0, 0, 0, 0, 0);
    for r in 0..4 {
        let o = rel(r);
        offsets = _mm512_mask_set1_epi64(offsets, 1 << (2 * r), o);
        offsets = _mm512_mask_set1_epi64(offsets, 1 << (2 * r + 1), o + bytes as i64);
    }
    // Scale lanes after the conversion: f16 word 2e is element e's d, word 2e + 1 its m.
    // Row r's weight scales for (block b, block b + 1) are words 4r and 4r + 2.
    let scale_idx: [__m512i; 4] = [0, 1, 2, 3].map(|r: i32| {
        _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(4 * r), _mm512_set1_epi32(4 * r + 2))
    });
    // Activation scales and sums per word, from [a0.d, a0.s, a1.d, a1.s]: word 4r + 2j + h
    // takes block j's d (for the scales) and its s (for the offsets).
    let ad_idx = _mm512_setr_epi32(0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2);
    let as_idx = _mm512_setr_epi32(1, 1, 3, 3, 1, 1, 3, 3, 1, 1, 3, 3, 1, 1, 3, 3);
    // Offset coefficient per word: Q4_1's m words times 1; Q8_0/Q4_0 `c = -128d` / `-8d`.
    let (even, odd) = match FORMAT {
        1 => (0.0, 1.0),
        0 => (-8.0, 0.0),
        _ => (-128.0, 0.0),
    };
    let coeff = _mm512_mask_blend_ps(0xAAAA, _mm512_set1_ps(even), _mm512_set1_ps(odd));
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut off = _mm512_setzero_ps();
    let zero256 = _mm256_setzero_si256();
    let nibble = _mm512_set1_epi8(0x0F);
    let mut b = 0;
    while b < blocks {
        let two = b + 1 < blocks;
        let a0 = x.get_unchecked(b);
        let a1 = if two { x.get_unchecked(b + 1) } else { a0 };
        let y_hi = if two { _mm256_loadu_si256(a1.qs.as_ptr() as *const __m256i) } else { zero256 };
        let y = pair(_mm256_loadu_si256(a0.qs.as_ptr() as *const __m256i), y_hi);
        let step = _mm512_add_epi64(offsets, _mm512_set1_epi64((b * bytes) as i64));
        let words = _mm512_mask_i64gather_epi32::<1>(zero256, if two { 0xFF } else { 0x55 }, step, base as *const i32);
        // Only Q4_1 has a second f16 (m) per block; elsewhere those bytes are weights.
        let words = if FORMAT == 1 { words } else { _mm256_and_si256(words, _mm256_set1_epi32(0xFFFF)) };
        let f = _mm512_cvtph_ps(words);
        let a = _mm_castps_si128(_mm_setr_ps(a0.d, a0.s, if two { a1.d } else { 0.0 }, if two { a1.s } else { 0.0 }));
        let a = _mm512_castps128_ps512(_mm_castsi128_ps(a));
        let scales = _mm512_mul_ps(f, _mm512_permutexvar_ps(ad_idx, a));
        off = _mm512_fmadd_ps(_mm512_mul_ps(f, coeff), _mm512_permutexvar_ps(as_idx, a), off);
        for r in 0..4 {
            let p0 = w[r].as_ptr().add(b * bytes);
            let p1 = if two { p0.add(bytes) } else { p0 };
            // Fetch the same place 8 rows on (two calls ahead): a row is only ~10-40
            // cache lines, too short for the hardware prefetcher to ramp up on, and
            // fetching a few blocks ahead within the row hid too little of the memory
            // latency (one-thread decode +35-85% with this distance). Past the matrix
            // end it fetches nothing useful but is harmless.
            _mm_prefetch::<_MM_HINT_T0>(p0.wrapping_add(8 * w[r].len()) as *const i8);
            let q = if FORMAT == 2 {
                let q = pair(
                    _mm256_loadu_si256(p0.add(2) as *const __m256i),
                    if two { _mm256_loadu_si256(p1.add(2) as *const __m256i) } else { zero256 },
                );
                _mm512_xor_si512(q, _mm512_set1_epi8(-128))
            } else {
                let at = if FORMAT == 1 { 4 } else { 2 };
                let lo = _mm_loadu_si128(p0.add(at) as *const __m128i);
                let hi = if two { _mm_loadu_si128(p1.add(at) as *const __m128i) } else { _mm_setzero_si128() };
                // [qs0 | qs0 | qs1 | qs1], then the high nibbles in the 2nd and 4th lanes.
                let v = _mm512_castsi256_si512(_mm256_set_m128i(hi, lo));
                let v = _mm512_shuffle_i64x2::<0x50>(v, v);
                _mm512_and_si512(_mm512_mask_srli_epi16::<4>(v, 0xFF00_FF00, v), nibble)
            };
            let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y));
            acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(scale_idx[r], scales), dot, acc[r]);
        }
        b += 2;
    }
    let mut offs = [0.0f32; 16];
    _mm512_storeu_ps(offs.as_mut_ptr(), off);
    for r in 0..4 {
        out[r] = _mm512_reduce_add_ps(acc[r]) + offs[4 * r..4 * r + 4].iter().sum::<f32>();
    }
}

/// Columns `j0..j0 + 16` of a packed panel (`panel[k·nr + j0 + j] = row j at k`, `k < cols`)
/// from up to 16 dense rows (f16 bytes when `HALF`, else f32 bytes); missing rows are zeros.
/// 16×16 blocks are transposed in registers (a scalar transpose was ~10% of f16 prefill).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn pack16<const HALF: bool>(rows: &[&[u8]], cols: usize, panel: &mut [f32], nr: usize, j0: usize) {
    // The raw loads and stores below rely on these bounds.
    assert!(rows.len() <= 16 && j0 + 16 <= nr && panel.len() >= cols * nr, "pack16: panel or tile out of bounds");
    assert!(rows.iter().all(|r| r.len() >= cols * if HALF { 2 } else { 4 }), "pack16: a row shorter than {cols} columns");
    let out = panel.as_mut_ptr();
    let mut k = 0;
    while k + 16 <= cols {
        let mut r = [_mm512_setzero_ps(); 16];
        for (j, v) in r.iter_mut().enumerate().take(rows.len()) {
            let p = rows[j].as_ptr();
            *v = if HALF {
                _mm512_cvtph_ps(_mm256_loadu_si256(p.add(2 * k) as *const __m256i))
            } else {
                _mm512_loadu_ps(p.add(4 * k) as *const f32)
            };
        }
        transpose16(&mut r);
        for (c, v) in r.iter().enumerate() {
            _mm512_storeu_ps(out.add((k + c) * nr + j0), *v);
        }
        k += 16;
    }
    for k in k..cols {
        for j in 0..16 {
            let v = match rows.get(j) {
                Some(row) if HALF => super::avx2::f16(row.as_ptr().add(2 * k)),
                Some(row) => f32::from_le_bytes([row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3]]),
                None => 0.0,
            };
            *out.add(k * nr + j0 + j) = v;
        }
    }
}

/// The transpose of a 16×16 block of f32 (row `i` in `r[i]`, in place): 2×2 blocks within
/// 128-bit lanes, then 4×4, then lanes across registers. Plain loops, not closures: the
/// intrinsics must inline into the `avx512f` caller.
#[inline(always)]
unsafe fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    // t[2i] = a0 b0 a1 b1 | a4 b4 a5 b5 | ..., t[2i+1] = a2 b2 a3 b3 | ... (rows 2i, 2i+1).
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4g + c] = columns c, c+4, c+8, c+12 (one per lane) of rows 4g..4g+4.
    for g in 0..4 {
        r[4 * g] = _mm512_shuffle_ps::<0x44>(t[4 * g], t[4 * g + 2]);
        r[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * g], t[4 * g + 2]);
        r[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t[4 * g + 1], t[4 * g + 3]);
        r[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * g + 1], t[4 * g + 3]);
    }
    // t[j], j < 8: columns j and j+8 of rows 0..8; t[8 + j] the same of rows 8..16.
    for half in 0..2 {
        for c in 0..4 {
            let (a, b) = (r[8 * half + c], r[8 * half + 4 + c]);
            t[8 * half + c] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * half + 4 + c] = _mm512_shuffle_f32x4::<0xDD>(a, b);
        }
    }
    // Column j < 8 is the even lanes of t[j] and t[8 + j], column j + 8 the odd lanes.
    for j in 0..8 {
        r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
        r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(t[j], t[8 + j]);
    }
}

/// Four dense rows (f16 bytes when `HALF`, else f32) against one f32 activation row (decode),
/// 32 columns per step: four independent weight streams keep more loads in flight than one
/// row at a time, and each activation vector is loaded once for the four rows.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dense_rows4<const HALF: bool>(w: &[&[u8]; 4], x: &[f32], out: &mut [f32; 4]) {
    let size = if HALF { 2 } else { 4 };
    let cols = x.len();
    // The raw loads below rely on this bound.
    assert!(w.iter().all(|r| r.len() >= cols * size), "dense_rows4: a row shorter than {cols} columns");
    let load = |p: *const u8, k: usize| {
        if HALF {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.add(2 * k) as *const __m256i))
        } else {
            _mm512_loadu_ps(p.add(4 * k) as *const f32)
        }
    };
    let mut acc = [[_mm512_setzero_ps(); 2]; 4];
    let mut k = 0;
    while k + 32 <= cols {
        let (x0, x1) = (_mm512_loadu_ps(x.as_ptr().add(k)), _mm512_loadu_ps(x.as_ptr().add(k + 16)));
        for r in 0..4 {
            let p = w[r].as_ptr();
            // The same place 8 rows on, as in `q_rows4`.
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(8 * w[r].len() + size * k) as *const i8);
            acc[r][0] = _mm512_fmadd_ps(load(p, k), x0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(load(p, k + 16), x1, acc[r][1]);
        }
        k += 32;
    }
    for r in 0..4 {
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
        let p = w[r].as_ptr();
        for (j, &xj) in x.iter().enumerate().skip(k) {
            let wj = if HALF { super::avx2::f16(p.add(2 * j)) } else { (p.add(4 * j) as *const f32).read_unaligned() };
            sum += wj * xj;
        }
        out[r] = sum;
    }
}

/// `out[i] = q · row(slots[i])` with rows of `16·D` values at `keys[(base + slot)·16D..]`:
/// the decode step's attention scores. Sixteen keys at a time, whose sixteen partial-sum
/// vectors are added across lanes together (one tree for all, instead of a horizontal sum
/// per key, which cost as much as the key's products).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dots16<const D: usize>(q: &[f32], keys: &[f32], base: usize, slots: &[usize], out: &mut [f32]) {
    let d = 16 * D;
    // The raw loads below rely on these bounds (slots come from the cache's own bookkeeping).
    assert!(q.len() == d && out.len() >= slots.len(), "dots16: query or output of the wrong size");
    assert!(slots.iter().all(|&s| (base + s + 1) * d <= keys.len()), "dots16: a slot past the cached keys");
    let mut qv = [_mm512_setzero_ps(); D];
    for (c, v) in qv.iter_mut().enumerate() {
        *v = _mm512_loadu_ps(q.as_ptr().add(16 * c));
    }
    let row = |s: usize| keys.as_ptr().add((base + s) * d);
    let mut i = 0;
    while i + 16 <= slots.len() {
        let mut v = [_mm512_setzero_ps(); 16];
        for (j, v) in v.iter_mut().enumerate() {
            let k = row(slots[i + j]);
            // The next block's keys (as in `q_rows4`, rows too short for the prefetcher).
            for c in (0..d).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(k.wrapping_add(16 * d + c) as *const i8);
            }
            let mut a = _mm512_mul_ps(qv[0], _mm512_loadu_ps(k));
            for (c, q) in qv.iter().enumerate().skip(1) {
                a = _mm512_fmadd_ps(*q, _mm512_loadu_ps(k.add(16 * c)), a);
            }
            *v = a;
        }
        _mm512_storeu_ps(out.as_mut_ptr().add(i), sum16(&v));
        i += 16;
    }
    for j in i..slots.len() {
        let k = row(slots[j]);
        let mut a = _mm512_setzero_ps();
        for (c, q) in qv.iter().enumerate() {
            a = _mm512_fmadd_ps(*q, _mm512_loadu_ps(k.add(16 * c)), a);
        }
        out[j] = _mm512_reduce_add_ps(a);
    }
}

/// Lane `i` of the result is the sum of the lanes of `v[i]`.
#[inline(always)]
unsafe fn sum16(v: &[__m512; 16]) -> __m512 {
    // Per 128-bit lane: t[i] = [a0+a2, b0+b2, a1+a3, b1+b3] for a, b = v[2i], v[2i+1].
    let mut t = [_mm512_setzero_ps(); 8];
    for i in 0..8 {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    // u[i], per 128-bit lane: partial sums of v[4i], v[4i+1], v[4i+2], v[4i+3].
    let mut u = [_mm512_setzero_ps(); 4];
    for i in 0..4 {
        let (a, b) = (t[2 * i], t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b));
    }
    // Add the four 128-bit lanes of each u[i]; u[i]'s total becomes lane i.
    let s01 = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(u[0], u[1]), _mm512_shuffle_f32x4::<0xDD>(u[0], u[1]));
    let s23 = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(u[2], u[3]), _mm512_shuffle_f32x4::<0xDD>(u[2], u[3]));
    _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(s01, s23), _mm512_shuffle_f32x4::<0xDD>(s01, s23))
}

/// `out = Σ_i p[i] · row(slots[i])` with rows of `16·D` values at `values[(base + slot)·16D..]`:
/// the decode step's weighted sum of values; two sets of accumulators (even and odd keys)
/// so the FMA latency does not bound a key per 4 cycles.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn weighted16<const D: usize>(p: &[f32], values: &[f32], base: usize, slots: &[usize], out: &mut [f32]) {
    let d = 16 * D;
    // The raw loads below rely on these bounds (slots come from the cache's own bookkeeping).
    assert!(out.len() == d && p.len() >= slots.len(), "weighted16: output or weights of the wrong size");
    assert!(slots.iter().all(|&s| (base + s + 1) * d <= values.len()), "weighted16: a slot past the cached values");
    let mut acc = [[_mm512_setzero_ps(); D]; 2];
    for (i, &s) in slots.iter().enumerate() {
        let row = values.as_ptr().add((base + s) * d);
        for c in (0..d).step_by(16) {
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(16 * d + c) as *const i8);
        }
        let pv = _mm512_set1_ps(*p.get_unchecked(i));
        let acc = &mut acc[i % 2];
        for (c, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(pv, _mm512_loadu_ps(row.add(16 * c)), *a);
        }
    }
    for (c, (a, b)) in acc[0].iter().zip(&acc[1]).enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), _mm512_add_ps(*a, *b));
    }
}
