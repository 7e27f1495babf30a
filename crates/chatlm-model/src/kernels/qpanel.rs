//! Prefill products of Q4_0/Q4_1/Q8_0 weights with AVX-512 VNNI on packed panels.
//!
//! Why: the row kernels (`avx512::q_rows`) take one weight row against 8 activation rows and
//! pay, per block pair and activation row, a pair of loads, a sign fix-up, a scale blend and
//! a horizontal sum at the end: ~10 instructions per `vpdpbusd`. Here 16 weight rows are
//! repacked once per product so that one 512-bit register holds 4 consecutive bytes of each
//! of the 16 rows; `vpdpbusd` against 4 activation bytes broadcast to every lane then adds 4
//! products to each row's sum, 8 of them cover a 32-value block, and the 16 results are
//! already one vector of the output row (no horizontal sums). The repacking (a few thousand
//! byte moves per panel) is paid once for all the prompt's rows.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so every format is packed as unsigned
//! `u` with `w = d·u + c` per block: Q4_0 `u` = nibble, `c = -8d`; Q4_1 `u` = nibble, `c =
//! m`; Q8_0 `u = q + 128`, `c = -128d`. With activations `x = dₓ·q` and `sₓ = dₓ·Σq`, a
//! block's dot product is `d·dₓ·Σ u·q + c·sₓ`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use super::formats::{f16_at, BlockQ8};
use super::{BlockFormat, CpuKernels, OutPtr, QMatrix};

/// Weight rows per panel: one i32 lane each.
pub(super) const ROWS: usize = 16;
// `matmul` hands out chunks of `ROW_TILE` rows: one panel each.
const _: () = assert!(ROWS == super::ROW_TILE);

/// Activation rows per kernel call: 8 accumulators next to the 8 weight registers.
const ACTS: usize = 8;

/// One 32-value block of 16 weight rows, packed.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct PanelBlock {
    /// `q[g][4r + j]`: unsigned value `4g + j` of row `r`.
    q: [[u8; 64]; 8],
    /// Per row: the scale `d` and the offset `c` (`w = d·u + c`).
    d: [f32; ROWS],
    c: [f32; ROWS],
}

const EMPTY: PanelBlock = PanelBlock { q: [[0; 64]; 8], d: [0.0; ROWS], c: [0.0; ROWS] };

thread_local! {
    static PANEL: RefCell<Vec<PanelBlock>> = const { RefCell::new(Vec::new()) };
}

/// Whether `format` has a packed-panel kernel.
pub(super) fn supports(format: BlockFormat) -> bool {
    matches!(format, BlockFormat::Q4_0 | BlockFormat::Q4_1 | BlockFormat::Q8_0)
}

/// Rows `r0..r0 + width` of `w` (`width ≤ 16`; missing rows are zeros) into `panel`.
fn pack(w: &QMatrix, r0: usize, width: usize, panel: &mut [PanelBlock]) {
    let bytes = w.format.block_bytes();
    for (b, block) in panel.iter_mut().enumerate() {
        *block = EMPTY;
        for r in 0..width {
            let src = &w.row(r0 + r)[b * bytes..(b + 1) * bytes];
            let d = f16_at(src, 0);
            let mut u = [0u8; 32];
            let c = match w.format {
                BlockFormat::Q8_0 => {
                    for (u, &q) in u.iter_mut().zip(&src[2..34]) {
                        *u = q ^ 0x80; // two's complement q + 128
                    }
                    -128.0 * d
                }
                _ => {
                    let (c, qs) = if w.format == BlockFormat::Q4_1 { (f16_at(src, 2), &src[4..20]) } else { (-8.0 * d, &src[2..18]) };
                    // GGUF order: low nibbles are values 0..16, high nibbles 16..32.
                    for (j, &q) in qs.iter().enumerate() {
                        u[j] = q & 0x0F;
                        u[j + 16] = q >> 4;
                    }
                    c
                }
            };
            for g in 0..8 {
                block.q[g][4 * r..4 * r + 4].copy_from_slice(&u[4 * g..4 * g + 4]);
            }
            block.d[r] = d;
            block.c[r] = c;
        }
    }
}

impl CpuKernels {
    /// Weight rows `rows` (whole panels of 16 but for the matrix's last) of `w` against all
    /// `m` rows of the q8 activations `x`. Needs AVX-512 VNNI (`self.wide`).
    pub(super) fn part_qpanels(&self, w: &QMatrix, x: &[BlockQ8], m: usize, rows: Range<usize>, out: OutPtr) {
        let (n, blocks) = (w.rows, w.cols / 32);
        PANEL.with_borrow_mut(|panel| {
            panel.resize(blocks, EMPTY);
            let mut r0 = rows.start;
            while r0 < rows.end {
                let width = ROWS.min(rows.end - r0);
                pack(w, r0, width, panel);
                let mask = if width == ROWS { u16::MAX } else { (1u16 << width) - 1 };
                let mut i = 0;
                while i < m {
                    let a = ACTS.min(m - i);
                    let acts: [&[BlockQ8]; ACTS] = std::array::from_fn(|k| {
                        let row = (i + k).min(m - 1);
                        &x[row * blocks..(row + 1) * blocks]
                    });
                    // SAFETY: `wide` says the CPU has AVX-512F/BW/VNNI; the panel and every
                    // activation row hold `blocks` blocks; the output rows i..i+a, columns
                    // r0..r0+width are inside `out` (m × n) and only this part writes them.
                    unsafe {
                        let c = out.0.add(i * n + r0);
                        match a {
                            8 => panel_rows::<8>(panel, &acts, c, n, mask),
                            7 => panel_rows::<7>(panel, &acts, c, n, mask),
                            6 => panel_rows::<6>(panel, &acts, c, n, mask),
                            5 => panel_rows::<5>(panel, &acts, c, n, mask),
                            4 => panel_rows::<4>(panel, &acts, c, n, mask),
                            3 => panel_rows::<3>(panel, &acts, c, n, mask),
                            2 => panel_rows::<2>(panel, &acts, c, n, mask),
                            _ => panel_rows::<1>(panel, &acts, c, n, mask),
                        }
                    }
                    i += a;
                }
                r0 += width;
            }
        });
    }
}

/// The first `A` activation rows of `x` against a packed panel; row `a`'s 16 results go to
/// `out + a·ldc` (lanes in `mask`).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn panel_rows<const A: usize>(panel: &[PanelBlock], x: &[&[BlockQ8]; ACTS], out: *mut f32, ldc: usize, mask: u16) {
    let mut acc = [_mm512_setzero_ps(); A];
    for (b, pb) in panel.iter().enumerate() {
        let mut w = [_mm512_setzero_si512(); 8];
        for (g, w) in w.iter_mut().enumerate() {
            *w = _mm512_load_si512(pb.q[g].as_ptr() as *const __m512i);
        }
        let wd = _mm512_load_ps(pb.d.as_ptr());
        let wc = _mm512_load_ps(pb.c.as_ptr());
        for (a, acc) in acc.iter_mut().enumerate() {
            let xb = x[a].get_unchecked(b);
            let q = xb.qs.as_ptr() as *const i32;
            let mut dot = _mm512_setzero_si512();
            for (g, w) in w.iter().enumerate() {
                dot = _mm512_dpbusd_epi32(dot, *w, _mm512_set1_epi32(q.add(g).read_unaligned()));
            }
            *acc = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(xb.d)), _mm512_cvtepi32_ps(dot), *acc);
            *acc = _mm512_fmadd_ps(wc, _mm512_set1_ps(xb.s), *acc);
        }
    }
    for (a, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(out.add(a * ldc), mask, *acc);
    }
}
