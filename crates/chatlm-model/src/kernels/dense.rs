//! The prefill product of dense (f16/f32) weights: a tiled GEMM.
//!
//! Multiplying one weight row with a few activation rows at a time (the quantized formats'
//! scheme) is load-bound for dense weights: every FMA needs a fresh activation vector. With
//! AVX-512, panels of 32 weight rows are expanded and transposed once and multiplied by the
//! packed kernel of [`super::gemm`] (~1.15x the 4×6 dot-product tile it replaced on one
//! thread). With AVX2 a tile of weight rows is expanded to f32 once into a thread-local
//! buffer small enough for L1, and a micro kernel multiplies 4 of its rows with 3
//! activation rows, 12 accumulators, so each loaded vector feeds 3–4 FMAs.

#![cfg(target_arch = "x86_64")]

use std::cell::RefCell;
use std::ops::Range;

use super::gemm::{Tile, TileIsa, MR, NR};
use super::{avx2, avx512, BlockFormat, CpuKernels, OutPtr, QMatrix};

thread_local! {
    /// The current tile of weight rows, as f32.
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The current panel of [`NR`] weight rows, transposed.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of f32 weights per tile: with 3 activation rows of the same length they fit L1.
const TILE_BYTES: usize = 24 * 1024;

impl CpuKernels {
    /// Weight rows `rows` of a dense `w` against all `m` rows of `x`. Needs AVX2 (the caller
    /// checks `self.isa`).
    pub(super) fn part_dense(&self, w: &QMatrix, x: &[f32], m: usize, rows: Range<usize>, out: OutPtr) {
        let (cols, n) = (w.cols, w.rows);
        let tile_rows = (TILE_BYTES / (4 * cols)).clamp(4, 32) / 4 * 4;
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
                    let a = (m - i).min(3);
                    let mut r = 0;
                    while r < len {
                        let k = (len - r).min(4);
                        let at = Block { w: &buf[r * cols..], x: &x[i * cols..], cols, out, n, i, r: tile + r };
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

impl CpuKernels {
    /// Weight rows `rows` (whole panels of [`NR`], but for the matrix's last) of a dense
    /// `w` against all `m` rows of `x` with the packed AVX-512 kernel: each panel is
    /// expanded and transposed once, then every activation row streams past it.
    pub(super) fn part_panels(&self, w: &QMatrix, x: &[f32], m: usize, rows: Range<usize>, out: OutPtr) {
        let (cols, n) = (w.cols, w.rows);
        PANEL.with_borrow_mut(|panel| {
            panel.resize(cols * NR, 0.0);
            let mut r0 = rows.start;
            while r0 < rows.end {
                let width = NR.min(rows.end - r0);
                let rows: Vec<&[u8]> = (r0..r0 + width).map(|r| w.row(r)).collect();
                for (half, j0) in [(0, 0), (1, 16)] {
                    let part = &rows[(16 * half).min(width)..(16 * half + 16).min(width)];
                    // SAFETY: this path runs only where `TileIsa::Avx512` was detected (AVX-512F);
                    // `pack16` checks the lengths.
                    unsafe {
                        match w.format {
                            BlockFormat::F16 => avx512::pack16::<true>(part, cols, panel, NR, j0),
                            _ => avx512::pack16::<false>(part, cols, panel, NR, j0),
                        }
                    }
                }
                let mut i = 0;
                while i < m {
                    let rows = MR.min(m - i);
                    let tile = Tile { a: &x[i * cols..], lda: cols, b: panel, ldb: NR, depth: cols, rows, cols: width, accumulate: false };
                    // SAFETY: the tile covers rows i..i+rows, columns r0..r0+width of `out`
                    // (m × n), columns only this part writes.
                    unsafe { tile.run_raw(TileIsa::Avx512, out.0.add(i * n + r0), n) };
                    i += rows;
                }
                r0 += width;
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
