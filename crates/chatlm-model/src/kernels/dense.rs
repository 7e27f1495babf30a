//! The prefill product of dense (f16/f32) weights: a tiled GEMM.
//!
//! Multiplying one weight row with a few activation rows at a time (the quantized formats'
//! scheme) is load-bound for dense weights: every FMA needs a fresh activation vector. Here a
//! tile of weight rows is expanded to f32 once into a thread-local buffer small enough for
//! L1, and a micro kernel multiplies 4 of its rows with 3 activation rows, 12 accumulators,
//! so each loaded vector feeds 3–4 FMAs.

#![cfg(target_arch = "x86_64")]

use std::cell::RefCell;
use std::ops::Range;

use super::{avx2, avx512, BlockFormat, CpuKernels, OutPtr, QMatrix};

thread_local! {
    /// The current tile of weight rows, as f32.
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of f32 weights per tile: with 3 activation rows of the same length they fit L1.
const TILE_BYTES: usize = 24 * 1024;

impl CpuKernels {
    /// Weight rows `rows` of a dense `w` against all `m` rows of `x`. Needs AVX2 (the caller
    /// checks `self.isa`).
    pub(super) fn part_dense(&self, w: &QMatrix, x: &[f32], m: usize, rows: Range<usize>, out: OutPtr) {
        let (cols, n) = (w.cols, w.rows);
        let tile_rows = (TILE_BYTES / (4 * cols)).clamp(4, 32) / 4 * 4;
        let wide = avx512::available();
        TILE.with_borrow_mut(|buf| {
            buf.resize(tile_rows * cols, 0.0);
            let mut tile = rows.start;
            while tile < rows.end {
                let len = tile_rows.min(rows.end - tile);
                for (r, dst) in buf.chunks_exact_mut(cols).take(len).enumerate() {
                    expand(w.format, w.row(tile + r), dst);
                }
                let mut i = 0;
                while i < m {
                    // Six activation rows at a time when every weight group is 4 rows.
                    let a = if wide && len % 4 == 0 && m - i >= 6 { 6 } else { (m - i).min(3) };
                    let mut r = 0;
                    while r < len {
                        let k = (len - r).min(4);
                        let at = Block { w: &buf[r * cols..], x: &x[i * cols..], cols, out, n, i, r: tile + r };
                        if a == 6 {
                            // SAFETY: `wide` says the CPU has AVX-512F; the slices hold 4 weight
                            // rows and 6 activation rows.
                            unsafe { at.run512() };
                            r += k;
                            continue;
                        }
                        // SAFETY: `part_dense` only runs with `Isa::Avx2`; the slices hold `k`
                        // weight rows and `a` activation rows of `cols` values.
                        unsafe {
                            match (k, a) {
                                (4, 3) => at.run::<4, 3>(),
                                (4, 2) => at.run::<4, 2>(),
                                (4, _) => at.run::<4, 1>(),
                                (3, 3) => at.run::<3, 3>(),
                                (3, 2) => at.run::<3, 2>(),
                                (3, _) => at.run::<3, 1>(),
                                (2, 3) => at.run::<2, 3>(),
                                (2, 2) => at.run::<2, 2>(),
                                (2, _) => at.run::<2, 1>(),
                                (_, 3) => at.run::<1, 3>(),
                                (_, 2) => at.run::<1, 2>(),
                                _ => at.run::<1, 1>(),
                            }
                        }
                        r += k;
                    }
                    i += a;
                }
                tile += len;
            }
        });
    }
}

/// One dense row (f16 or f32 bytes) as f32.
fn expand(format: BlockFormat, row: &[u8], out: &mut [f32]) {
    match format {
        // SAFETY: only reached with `Isa::Avx2` (see `part_dense`).
        BlockFormat::F16 => unsafe { avx2::f16_to_f32(row, out) },
        _ => super::dequantize_row(format, row, out),
    }
}

/// Where one micro-kernel call reads and writes.
struct Block<'a> {
    /// Weight rows from the first of this call, `cols` apart.
    w: &'a [f32],
    /// Activation rows from the first of this call, `cols` apart.
    x: &'a [f32],
    cols: usize,
    out: OutPtr,
    /// Output row length (the matrix's rows).
    n: usize,
    /// First activation row.
    i: usize,
    /// First weight row (in the matrix).
    r: usize,
}

impl Block<'_> {
    /// 4 weight rows × 6 activation rows with AVX-512.
    unsafe fn run512(&self) {
        let c = self.cols;
        let w: [&[f32]; 4] = std::array::from_fn(|k| &self.w[k * c..(k + 1) * c]);
        let x: [&[f32]; 6] = std::array::from_fn(|a| &self.x[a * c..(a + 1) * c]);
        let mut y = [[0.0f32; 4]; 6];
        avx512::f32_tile::<4, 6>(&w, &x, &mut y);
        self.store(&y);
    }

    #[inline(always)]
    unsafe fn store<const R: usize, const A: usize>(&self, y: &[[f32; R]; A]) {
        for (a, row) in y.iter().enumerate() {
            for (k, &v) in row.iter().enumerate() {
                // SAFETY: (i + a, r + k) is inside `out` (m × n); only this part owns row r + k.
                *self.out.0.add((self.i + a) * self.n + self.r + k) = v;
            }
        }
    }

    #[inline(always)]
    unsafe fn run<const R: usize, const A: usize>(&self) {
        let c = self.cols;
        let w: [&[f32]; R] = std::array::from_fn(|k| &self.w[k * c..(k + 1) * c]);
        let x: [&[f32]; A] = std::array::from_fn(|a| &self.x[a * c..(a + 1) * c]);
        let mut y = [[0.0f32; R]; A];
        avx2::f32_tile::<R, A>(&w, &x, &mut y);
        self.store(&y);
    }
}
