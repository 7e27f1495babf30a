//! Every kernel against a dequantize-then-f32 reference on random blocks, and every SIMD path
//! against the scalar one.

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use super::*;

/// Deterministic pseudo-random f32 in [-1, 1) (xorshift), with a few larger outliers so
/// block scales vary.
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            if i % 97 == 0 {
                v * 8.0
            } else {
                v
            }
        })
        .collect()
}

/// A `rows × cols` matrix of random values encoded by candle's (independent) quantizer.
fn random_matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64) -> (QMatrix, Vec<f32>) {
    let values = random(rows * cols, seed);
    let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, format.to_ggml()).unwrap();
    let reference = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let m = QMatrix::new(format, rows, cols, q.data().unwrap().into_owned()).unwrap();
    (m, reference)
}

#[test]
fn rows_dequantize_exactly_like_candle() {
    for format in BlockFormat::ALL {
        let (w, reference) = random_matrix(format, 5, 512, 1);
        let mut row = vec![0.0; 512];
        for r in 0..5 {
            w.dequantize_row_into(r, &mut row);
            assert_eq!(row, reference[r * 512..(r + 1) * 512], "{format:?} row {r}");
        }
    }
}

fn matmul(kernels: &CpuKernels, w: &QMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * w.rows()];
    kernels.matmul(w, x, m, &mut out);
    out
}

#[test]
fn every_kernel_matches_the_f32_reference_within_activation_rounding() {
    let (rows, cols) = (37, 512);
    for isa in [Isa::Scalar, Isa::detect()] {
        let kernels = CpuKernels::with_isa(isa).unwrap();
        for format in BlockFormat::ALL {
            if !isa.has_kernel(format) {
                continue;
            }
            let (w, wf) = random_matrix(format, rows, cols, 2);
            for m in [1, 3, 4, 9, 14] {
                let x = random(m * cols, 3 + m as u64);
                let got = matmul(&kernels, &w, &x, m);
                for i in 0..m {
                    let xi = &x[i * cols..(i + 1) * cols];
                    let amax = xi.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                    for r in 0..rows {
                        let wr = &wf[r * cols..(r + 1) * cols];
                        let exact: f64 = wr.iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                        // q8 activations are off by at most half a step (amax / 254) each.
                        let bound = match format.act_kind() {
                            ActKind::F32 => 1e-4 * wr.iter().zip(xi).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1e-5,
                            _ => wr.iter().map(|v| v.abs()).sum::<f32>() * amax / 254.0 * 1.01 + 1e-4,
                        };
                        let diff = (got[i * rows + r] as f64 - exact).abs();
                        assert!(diff <= bound as f64, "{isa:?} {format:?} m={m} ({i},{r}): {} vs {exact} (bound {bound})", got[i * rows + r]);
                    }
                }
            }
        }
    }
}

#[test]
fn simd_paths_agree_with_the_scalar_path() {
    let simd = CpuKernels::detect();
    let scalar = CpuKernels::with_isa(Isa::Scalar).unwrap();
    if simd.isa() == Isa::Scalar {
        eprintln!("skipped: this CPU has no SIMD kernels");
        return;
    }
    let (rows, cols) = (70, 768);
    // 800 columns: an odd number of 32-blocks (the wide kernels take blocks in pairs).
    let shapes = BlockFormat::ALL
        .into_iter()
        .filter(|&f| simd.isa().has_kernel(f))
        .map(|f| (f, cols))
        .chain([BlockFormat::Q4_0, BlockFormat::Q4_1, BlockFormat::Q8_0].map(|f| (f, 800)))
        // Dense rows not a multiple of 16 long (the panel transpose's remainder).
        .chain([BlockFormat::F16, BlockFormat::F32].map(|f| (f, 200)));
    for (format, cols) in shapes {
        let (w, _) = random_matrix(format, rows, cols, 4);
        for m in [1, 4, 5, 8, 25] {
            let x = random(m * cols, 5);
            let (a, b) = (matmul(&simd, &w, &x, m), matmul(&scalar, &w, &x, m));
            for (j, (a, b)) in a.iter().zip(&b).enumerate() {
                // Same integer sums, different f32 summation order.
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{format:?} m={m} [{j}]: {a} vs {b}");
            }
        }
    }
}

#[test]
fn release_builds_pick_simd_on_simd_cpus() {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        assert_eq!(Isa::detect(), Isa::Avx2);
    }
}

#[test]
fn bad_byte_counts_are_rejected() {
    assert!(QMatrix::new(BlockFormat::Q4_1, 2, 64, vec![0; 79]).is_err());
    assert!(QMatrix::new(BlockFormat::Q4K, 1, 128, vec![0; 144]).is_err());
    assert!(QMatrix::new(BlockFormat::Q8_0, 2, 64, vec![0; 136]).is_ok());
}


#[test]
fn simd_quantization_is_bit_identical_to_the_scalar_one() {
    let simd = CpuKernels::detect();
    // Ties at .5 after scaling, zeros, and blocks whose largest value is negative.
    let mut x = random(32 * 40, 9);
    // amax 127 gives d = 1: every x.5 is a tie (nearest-even rounding would differ).
    x[..32].iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 - 15.5);
    x[0] = 127.0;
    x[32..64].fill(0.0);
    x[64] = -3.0;
    for m in [1, 8, 40] {
        let x = &x[..m * 32];
        let mut want = vec![BlockQ8::ZERO; m];
        quantize_q8(x, &mut want);
        let mut got = vec![BlockQ8::ZERO; m];
        simd.quantize_q8(x, m, &mut got);
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!((g.d.to_bits(), g.s.to_bits(), g.qs), (w.d.to_bits(), w.s.to_bits(), w.qs), "m={m} block {b}");
        }
    }
}

#[test]
fn simd_exp_is_within_a_few_ulp_of_libm() {
    let kernels = CpuKernels::detect();
    let mut row: Vec<f32> = (0..2000).map(|i| -90.0 + i as f32 * 0.0467).chain([0.0, -0.0, 1e-8, -1e-3]).collect();
    let want: Vec<f32> = row.iter().map(|v| (v - 1.5f32).exp()).collect();
    let sum = kernels.exp_sub_sum(&mut row, 1.5);
    for (i, (g, w)) in row.iter().zip(&want).enumerate() {
        // Values that underflow to subnormals (x < -87) may flush to zero.
        assert!((g - w).abs() <= 4.0 * f32::EPSILON * w.abs() + 1e-37, "[{i}] {g} vs {w}");
    }
    let exact: f64 = want.iter().map(|&v| v as f64).sum();
    assert!(((sum as f64) - exact).abs() <= 1e-5 * exact, "{sum} vs {exact}");
}

#[test]
fn weighted_rows_match_the_scalar_sum() {
    let simd = CpuKernels::detect();
    // 72 columns: one 64-column register block and a remainder.
    for d in [16, 64, 72] {
        let values = random(10 * d, 11);
        let (p, slots) = ([0.5f32, 0.25, 0.125, 0.125], [1usize, 4, 5, 9]);
        let mut got = vec![f32::NAN; d];
        simd.weighted_rows(&p, &values, 0, &slots, &mut got);
        for (c, g) in got.iter().enumerate() {
            let want: f32 = p.iter().zip(&slots).map(|(p, t)| p * values[t * d + c]).sum();
            assert!((g - want).abs() <= 1e-6, "d={d} [{c}]: {g} vs {want}");
        }
    }
}

#[test]
fn gemm_tiles_match_the_naive_product() {
    use gemm::{Tile, TileIsa, MR, NR};
    let mut isas = vec![TileIsa::Portable, TileIsa::detect()];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        isas.push(TileIsa::Fma);
    }
    // Strides wider than the tile, odd depths, partial rows and columns, accumulation.
    let (lda, ldb, ldc) = (70, 40, 45);
    let a = random(MR * lda, 21);
    let b = random(67 * ldb, 22);
    for isa in isas {
        for (rows, cols, depth) in [(MR, NR, 67), (1, NR, 64), (5, 17, 3), (12, 31, 1), (7, 16, 33), (3, 1, 0)] {
            for accumulate in [false, true] {
                let start = random(MR * ldc, 23);
                let mut c = start.clone();
                let tile = Tile { a: &a, lda, b: &b, ldb, depth, rows, cols, accumulate };
                tile.run(isa, &mut c, ldc);
                for i in 0..MR {
                    for j in 0..ldc {
                        let inside = i < rows && j < cols;
                        let sum: f32 = if inside { (0..depth).map(|k| a[i * lda + k] * b[k * ldb + j]).sum() } else { 0.0 };
                        let want = match (inside, accumulate) {
                            (false, _) => start[i * ldc + j],
                            (true, false) => sum,
                            (true, true) => start[i * ldc + j] + sum,
                        };
                        let got = c[i * ldc + j];
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{isa:?} {rows}x{cols}x{depth} acc={accumulate} ({i},{j}): {got} vs {want}");
                    }
                }
            }
        }
    }
}

#[test]
fn silu_mul_matches_the_scalar_formula() {
    let simd = CpuKernels::detect();
    // 37 values: whole vectors and a remainder; large magnitudes saturate e^-g.
    let gate: Vec<f32> = random(37, 31).iter().map(|v| v * 12.0).collect();
    let up = random(37, 32);
    let mut got = vec![f32::NAN; 37];
    simd.silu_mul(&gate, &up, &mut got);
    for (i, ((g, u), o)) in gate.iter().zip(&up).zip(&got).enumerate() {
        let want = g / ((-g).exp() + 1.0) * u;
        assert!((o - want).abs() <= 1e-6 * (1.0 + want.abs()), "[{i}] {o} vs {want}");
    }
}

#[test]
fn attention_dots_and_weighted_sums_match_the_scalar_ones() {
    let simd = CpuKernels::detect();
    for d in [16, 64, 128] {
        let rows = random(50 * d, 41);
        let q = random(d, 42);
        // 37 slots (two blocks of 16 and a remainder), not contiguous, from row 3 on.
        let slots: Vec<usize> = (0..37).map(|i| i + i / 5).collect();
        let base = 3;
        let mut got = vec![f32::NAN; slots.len()];
        simd.dots(&q, &rows, base, &slots, &mut got);
        for (i, &t) in slots.iter().enumerate() {
            let want: f32 = q.iter().zip(&rows[(base + t) * d..]).map(|(a, b)| a * b).sum();
            assert!((got[i] - want).abs() <= 1e-5 * (1.0 + want.abs()), "d={d} dot {i}: {} vs {want}", got[i]);
        }
        let p = random(slots.len(), 43);
        let mut out = vec![f32::NAN; d];
        simd.weighted_rows(&p, &rows, base, &slots, &mut out);
        for c in 0..d {
            let want: f32 = p.iter().zip(&slots).map(|(p, &t)| p * rows[(base + t) * d + c]).sum();
            assert!((out[c] - want).abs() <= 1e-5 * (1.0 + want.abs()), "d={d} column {c}: {} vs {want}", out[c]);
        }
    }
}
