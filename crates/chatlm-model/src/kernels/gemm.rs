//! A packed f32 GEMM micro kernel: `C = A · B` for a block of up to [`MR`] rows of `A` and a
//! panel of [`NR`] columns of `B` whose rows are contiguous (`B[k][0..NR]`).
//!
//! Why this shape: every `k` loads the panel's row once (two 512-bit vectors) and broadcasts
//! one value per row of `A`, so 12 rows give 24 independent FMAs per 14 loads, the
//! accumulators are the output tile itself (no horizontal sums at the end, unlike dot
//! products of rows), and the output row is written with plain vector stores. Dense prefill
//! products pack 32 weight rows transposed (f16 expanded once) into such a panel and stream
//! every activation row past it; attention uses the same kernel with the transposed keys or
//! the values (already `[token][dim]`) as the panel.
//!
//! The AVX-512 kernel is chosen at run time, else an AVX2 one (3 rows × 32 columns); the
//! portable one (plain Rust loops over the panel, which the compiler vectorises) is the
//! path on other CPUs.

/// Columns of a panel: two 512-bit vectors of f32.
pub(crate) const NR: usize = 32;
/// Rows of `A` per tile: 24 accumulators of the 32 AVX-512 registers.
pub(crate) const MR: usize = 12;

/// Which code runs the tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileIsa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl TileIsa {
    /// The fastest kernel this CPU runs (detected once).
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            static ISA: std::sync::OnceLock<TileIsa> = std::sync::OnceLock::new();
            *ISA.get_or_init(|| {
                if super::avx512::available() {
                    Self::Avx512
                } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    Self::Fma
                } else {
                    Self::Portable
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::Portable
    }
}

/// One product tile: `c[i·ldc + j] (+)= Σ_{k<depth} a[i·lda + k] · b[k·ldb + j]` for
/// `i < rows ≤ MR`, `j < cols ≤ NR`. `b` must hold [`NR`] readable values from each
/// `k·ldb` (a panel wider than `cols` is padded, e.g. with zeros).
pub(crate) struct Tile<'a> {
    pub(crate) a: &'a [f32],
    pub(crate) lda: usize,
    pub(crate) b: &'a [f32],
    pub(crate) ldb: usize,
    pub(crate) depth: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Add to `c` instead of overwriting it.
    pub(crate) accumulate: bool,
}

impl Tile<'_> {
    /// Runs the tile into `c` (row `i` at `c[i·ldc..]`).
    pub(crate) fn run(&self, isa: TileIsa, c: &mut [f32], ldc: usize) {
        if self.rows > 0 && self.cols > 0 {
            assert!(c.len() >= (self.rows - 1) * ldc + self.cols, "C too short");
        }
        // SAFETY: `c` covers the tile (checked above) and is borrowed exclusively.
        unsafe { self.run_raw(isa, c.as_mut_ptr(), ldc) }
    }

    /// [`Self::run`] into memory that other threads write elsewhere (a shared output).
    ///
    /// # Safety
    /// `c + i·ldc + j` for `i < rows`, `j < cols` must be valid for reads and writes and
    /// not accessed by anyone else during the call.
    pub(crate) unsafe fn run_raw(&self, isa: TileIsa, c: *mut f32, ldc: usize) {
        let (rows, depth) = (self.rows, self.depth);
        assert!(rows <= MR && self.cols <= NR, "tile of {rows}x{} exceeds {MR}x{NR}", self.cols);
        if rows == 0 || self.cols == 0 {
            return;
        }
        // The bounds the kernels rely on (checked once per tile, not per element).
        assert!(depth == 0 || self.a.len() >= (rows - 1) * self.lda + depth, "A too short");
        assert!(depth == 0 || self.b.len() >= (depth - 1) * self.ldb + NR, "B too short");
        match isa {
            // SAFETY: `Avx512` is only detected on CPUs with AVX-512F; `a` and `b` were
            // checked above, `c` is the caller's promise.
            #[cfg(target_arch = "x86_64")]
            TileIsa::Avx512 => unsafe {
                match rows {
                    12 => tile512::<12>(self, c, ldc),
                    11 => tile512::<11>(self, c, ldc),
                    10 => tile512::<10>(self, c, ldc),
                    9 => tile512::<9>(self, c, ldc),
                    8 => tile512::<8>(self, c, ldc),
                    7 => tile512::<7>(self, c, ldc),
                    6 => tile512::<6>(self, c, ldc),
                    5 => tile512::<5>(self, c, ldc),
                    4 => tile512::<4>(self, c, ldc),
                    3 => tile512::<3>(self, c, ldc),
                    2 => tile512::<2>(self, c, ldc),
                    _ => tile512::<1>(self, c, ldc),
                }
            },
            // SAFETY: `Fma` is only detected on CPUs with AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            TileIsa::Fma => unsafe { self.rows_fma(c, ldc) },
            TileIsa::Portable => unsafe { self.rows_portable(c, ldc) },
        }
    }

    /// Three rows at a time: 12 accumulators of the 16 AVX2 registers, the panel's row
    /// read straight into the FMAs (the portable loops spilled, ~3x slower).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_fma(&self, c: *mut f32, ldc: usize) {
        let mut i = 0;
        while i < self.rows {
            match self.rows - i {
                1 => tile256::<1>(self, i, c, ldc),
                2 => tile256::<2>(self, i, c, ldc),
                _ => tile256::<3>(self, i, c, ldc),
            }
            i += 3;
        }
    }

    /// Four rows at a time with `[f32; NR]` accumulators the compiler keeps in vectors.
    #[inline(always)]
    unsafe fn rows_portable(&self, c: *mut f32, ldc: usize) {
        let mut i = 0;
        while i < self.rows {
            match self.rows - i {
                1 => self.portable::<1>(i, c, ldc),
                2 => self.portable::<2>(i, c, ldc),
                3 => self.portable::<3>(i, c, ldc),
                _ => self.portable::<4>(i, c, ldc),
            }
            i += 4;
        }
    }

    #[inline(always)]
    unsafe fn portable<const R: usize>(&self, i0: usize, c: *mut f32, ldc: usize) {
        let mut acc = [[0.0f32; NR]; R];
        for k in 0..self.depth {
            let bk: &[f32; NR] = self.b[k * self.ldb..k * self.ldb + NR].try_into().unwrap_or(&[0.0; NR]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = self.a[(i0 + r) * self.lda + k];
                for (s, &bv) in acc.iter_mut().zip(bk) {
                    *s += av * bv;
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, &v) in acc.iter().enumerate().take(self.cols) {
                let o = c.add((i0 + r) * ldc + j);
                *o = if self.accumulate { *o + v } else { v };
            }
        }
    }
}

/// The AVX-512 tile of `R` rows: 2·R accumulators, the panel row loaded once per `k`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize>(t: &Tile, c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    let (a, b) = (t.a.as_ptr(), t.b.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for k in 0..t.depth {
        let bk = b.add(k * t.ldb);
        let (b0, b1) = (_mm512_loadu_ps(bk), _mm512_loadu_ps(bk.add(16)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(r * t.lda + k));
            acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
        }
    }
    // Lanes of each half that are inside `cols`.
    let lo = if t.cols >= 16 { 0xFFFF } else { (1u16 << t.cols) - 1 };
    let hi = if t.cols >= 32 { 0xFFFF } else if t.cols > 16 { (1u16 << (t.cols - 16)) - 1 } else { 0 };
    for (r, acc) in acc.iter().enumerate() {
        let row = c.add(r * ldc);
        let (mut v0, mut v1) = (acc[0], acc[1]);
        if t.accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(lo, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(hi, row.add(16)));
        }
        _mm512_mask_storeu_ps(row, lo, v0);
        _mm512_mask_storeu_ps(row.add(16), hi, v1);
    }
}

/// The AVX2 tile of `R ≤ 3` rows from row `i0`: 4·R accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const R: usize>(t: &Tile, i0: usize, c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    let (a, b) = (t.a.as_ptr().add(i0 * t.lda), t.b.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    for k in 0..t.depth {
        let bk = b.add(k * t.ldb);
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm256_set1_ps(*a.add(r * t.lda + k));
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(av, _mm256_loadu_ps(bk.add(8 * j)), *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut row = [0.0f32; NR];
        for (j, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(row.as_mut_ptr().add(8 * j), *v);
        }
        for (j, &v) in row.iter().enumerate().take(t.cols) {
            let o = c.add((i0 + r) * ldc + j);
            *o = if t.accumulate { *o + v } else { v };
        }
    }
}
