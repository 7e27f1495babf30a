//! Matrix products over GGUF blocks, our own CPU kernels.
//!
//! A weight matrix ([`QMatrix`]) keeps GGUF's bytes. A product quantizes the activations once
//! to q8 blocks (32 values for Q4_0/Q4_1/Q8_0, 256 for the K formats) and takes integer dot
//! products block by block; f16/f32 weights multiply f32 activations. The instruction set is
//! chosen at run time ([`Isa::detect`]); the scalar code is the reference the SIMD paths are
//! tested against and runs only on CPUs without AVX2. Where the CPU also has AVX-512 (F, BW,
//! VNNI) the products take 512-bit kernels, detected at run time too: prompts multiply
//! packed panels of weight rows (`qpanel` for Q4_0/Q4_1/Q8_0, `gemm` for f16/f32), decode
//! steps four rows at a time (`avx512`). Work is split across a persistent pool of threads
//! by weight rows.
//!
//! [`MatMulKernels`] is the one interface the model calls, so another backend (a GPU) can
//! implement it for its own weight storage.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod dense;
mod formats;
pub(crate) mod gemm;
mod pool;
mod qpanel;
mod scalar;

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use formats::{dequantize_row, BlockFormat};
use formats::{quantize_q8, quantize_q8k, ActKind, BlockQ8, BlockQ8K};
use scalar::ActRow;

/// A `(rows, cols)` matrix stored as rows of GGUF blocks.
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

/// Why bytes do not make a [`QMatrix`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format:?} matrix of {rows}x{cols}: {message}")]
pub struct QMatrixError {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    message: String,
}

impl QMatrix {
    /// Wraps `data`, `rows` rows of `cols / block_len` blocks each.
    pub fn new(format: BlockFormat, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, QMatrixError> {
        let error = |message: String| QMatrixError { format, rows, cols, message };
        if cols % format.block_len() != 0 {
            return Err(error(format!("{cols} columns are not a multiple of the block of {}", format.block_len())));
        }
        let expected = rows * cols / format.block_len() * format.block_bytes();
        if data.len() != expected {
            return Err(error(format!("{} bytes where {expected} were expected", data.len())));
        }
        Ok(Self { format, rows, cols, data })
    }

    /// The block format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Output size.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input size.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The raw GGUF bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.format.block_len() * self.format.block_bytes()
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// Row `r` expanded to f32 into `out` (`cols` long): an embedding lookup.
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) {
        dequantize_row(self.format, self.row(r), out);
    }
}

/// Instruction sets the kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust: the reference, and CPUs without AVX2.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
}

impl Isa {
    /// The best instruction set this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            return Self::Avx2;
        }
        Self::Scalar
    }

    /// Whether this instruction set has its own kernel for `format` (otherwise the product
    /// must go elsewhere on a SIMD machine rather than silently run scalar code).
    pub fn has_kernel(self, format: BlockFormat) -> bool {
        match self {
            Self::Scalar => true,
            Self::Avx2 => matches!(
                format,
                BlockFormat::F32 | BlockFormat::F16 | BlockFormat::Q4_0 | BlockFormat::Q4_1 | BlockFormat::Q8_0
            ),
        }
    }
}

/// What a backend offers the model: `y = x Wᵀ` on its own weight storage.
pub trait MatMulKernels: Send + Sync {
    /// `out[i][r] = Σ_c x[i][c] · w[r][c]` for the `m` rows of `x` (`m × cols`, row-major);
    /// `out` is `m × rows`.
    fn matmul(&self, w: &QMatrix, x: &[f32], m: usize, out: &mut [f32]);
}

/// The CPU backend: one instruction set, the global thread pool.
#[derive(Debug, Clone, Copy)]
pub struct CpuKernels {
    isa: Isa,
    /// AVX-512 VNNI block kernels for prefill (x86-64 with `isa` AVX2 and those features).
    wide: bool,
}

impl CpuKernels {
    /// Kernels for the best instruction set of this CPU.
    pub fn detect() -> Self {
        Self::new(Isa::detect())
    }

    fn new(isa: Isa) -> Self {
        #[cfg(target_arch = "x86_64")]
        let wide = isa == Isa::Avx2 && avx512::vnni_available();
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        Self { isa, wide }
    }

    /// Kernels for `isa` (tests compare the paths); `None` if this CPU lacks it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        (isa == Isa::Scalar || isa == Isa::detect()).then(|| Self::new(isa))
    }

    /// The instruction set in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Whether a row's product with a Q4_0/Q4_1/Q8_0 matrix is the same to the bit however many
    /// rows are multiplied at once (the AVX2 and scalar block kernels sum every row in one
    /// order; the AVX-512 VNNI kernels of `wide` CPUs do not yet, nor the dense f16/f32 GEMM that
    /// takes over from 4 rows). Batched decoding of such models then equals one sequence alone.
    pub fn batch_invariant(&self) -> bool {
        !self.wide
    }
}

/// The process's CPU kernels (best instruction set, detected once).
pub fn cpu() -> &'static CpuKernels {
    static KERNELS: std::sync::OnceLock<CpuKernels> = std::sync::OnceLock::new();
    KERNELS.get_or_init(CpuKernels::detect)
}

/// Activations of one product in the encoding the weight format needs.
enum Acts<'a> {
    F32(&'a [f32]),
    Q8(&'a [BlockQ8]),
    Q8K(&'a [BlockQ8K]),
}

impl Acts<'_> {
    /// Row `i` of `m`.
    fn row(&self, i: usize, m: usize) -> ActRow<'_> {
        match self {
            Self::F32(x) => ActRow::F32(&x[i * x.len() / m..(i + 1) * x.len() / m]),
            Self::Q8(x) => ActRow::Q8(&x[i * x.len() / m..(i + 1) * x.len() / m]),
            Self::Q8K(x) => ActRow::Q8K(&x[i * x.len() / m..(i + 1) * x.len() / m]),
        }
    }
}

thread_local! {
    /// Quantized activations, reused across products (no allocation per decode step).
    static Q8_SCRATCH: RefCell<Vec<BlockQ8>> = const { RefCell::new(Vec::new()) };
    static Q8K_SCRATCH: RefCell<Vec<BlockQ8K>> = const { RefCell::new(Vec::new()) };
}

/// Output pointer shared by the parts of one product; each part writes disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: parts write disjoint elements and `Pool::run` joins them before `out` is used again.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Weight rows handled together, so their bytes stay in L1 while activation rows stream past.
const ROW_TILE: usize = 16;

impl CpuKernels {
    /// `R`-row activation groups against weight rows `rows` (one part of a product).
    fn part(&self, w: &QMatrix, acts: &Acts, m: usize, rows: std::ops::Range<usize>, out: OutPtr) {
        let n = w.rows;
        let mut tile = rows.start;
        while tile < rows.end {
            let tile_end = (tile + ROW_TILE).min(rows.end);
            let mut i = 0;
            // The wide kernels unpack a weight row once for 8 activation rows.
            while self.wide && i + 8 <= m {
                let x: [ActRow; 8] = std::array::from_fn(|k| acts.row(i + k, m));
                for r in tile..tile_end {
                    let y = self.dot_wide(w.format, w.row(r), &x).unwrap_or_else(|| self.dot::<8>(w.format, w.row(r), &x));
                    for (k, v) in y.into_iter().enumerate() {
                        // SAFETY: (i + k, r) is inside `out` (m × n) and only this part owns row r.
                        unsafe { *out.0.add((i + k) * n + r) = v };
                    }
                }
                i += 8;
            }
            while i + 4 <= m {
                let x = [acts.row(i, m), acts.row(i + 1, m), acts.row(i + 2, m), acts.row(i + 3, m)];
                for r in tile..tile_end {
                    let y = self.dot_wide(w.format, w.row(r), &x).unwrap_or_else(|| self.dot::<4>(w.format, w.row(r), &x));
                    for (k, v) in y.into_iter().enumerate() {
                        // SAFETY: (i + k, r) is inside `out` (m × n) and only this part owns row r.
                        unsafe { *out.0.add((i + k) * n + r) = v };
                    }
                }
                i += 4;
            }
            for i in i..m {
                let x = [acts.row(i, m)];
                let mut r = tile;
                while r + 4 <= tile_end {
                    let rows = [w.row(r), w.row(r + 1), w.row(r + 2), w.row(r + 3)];
                    let Some(y) = self.dot_rows4(w.format, &rows, x[0]) else { break };
                    for (k, v) in y.into_iter().enumerate() {
                        // SAFETY: as above.
                        unsafe { *out.0.add(i * n + r + k) = v };
                    }
                    r += 4;
                }
                for r in r..tile_end {
                    let [v] = self.dot::<1>(w.format, w.row(r), &x);
                    // SAFETY: as above.
                    unsafe { *out.0.add(i * n + r) = v };
                }
            }
            tile = tile_end;
        }
    }

    /// One weight row against `N` activation rows with AVX-512 VNNI, where the CPU and the
    /// format allow it (twice the lanes of the AVX2 kernels for prefill).
    #[inline]
    fn dot_wide<const N: usize>(&self, format: BlockFormat, w: &[u8], x: &[ActRow; N]) -> Option<[f32; N]> {
        #[cfg(target_arch = "x86_64")]
        if self.wide && x.iter().all(|a| matches!(a, ActRow::Q8(_))) {
            let mut out = [0.0f32; N];
            let x = x.map(q8);
            // SAFETY: `wide` says the CPU has the features; `w` is one whole row and each
            // activation row covers the same columns.
            unsafe {
                match format {
                    BlockFormat::Q4_0 => avx512::q_rows::<0, N>(w, &x, &mut out),
                    BlockFormat::Q4_1 => avx512::q_rows::<1, N>(w, &x, &mut out),
                    BlockFormat::Q8_0 => avx512::q_rows::<2, N>(w, &x, &mut out),
                    _ => return None,
                }
            }
            return Some(out);
        }
        let _ = (format, w, x);
        None
    }

    /// Four weight rows against one activation row, where a kernel for that exists.
    #[inline]
    fn dot_rows4(&self, format: BlockFormat, w: &[&[u8]; 4], x: ActRow) -> Option<[f32; 4]> {
        let mut out = [0.0f32; 4];
        #[cfg(target_arch = "x86_64")]
        if let (true, ActRow::F32(x), BlockFormat::F16 | BlockFormat::F32) = (self.wide, x, format) {
            // SAFETY: `wide` implies AVX-512F; the rows are whole, `x` as long as a row.
            unsafe {
                match format {
                    BlockFormat::F16 => avx512::dense_rows4::<true>(w, x, &mut out),
                    _ => avx512::dense_rows4::<false>(w, x, &mut out),
                }
            }
            return Some(out);
        }
        #[cfg(target_arch = "x86_64")]
        if let (true, ActRow::Q8(x)) = (self.wide, x) {
            // SAFETY: `wide` says the CPU has the features; the rows are whole.
            unsafe {
                match format {
                    BlockFormat::Q4_1 => avx512::q_rows4::<1>(w, x, &mut out),
                    BlockFormat::Q4_0 => avx512::q_rows4::<0>(w, x, &mut out),
                    BlockFormat::Q8_0 => avx512::q_rows4::<2>(w, x, &mut out),
                    _ => return None,
                }
            }
            return Some(out);
        }
        #[cfg(target_arch = "x86_64")]
        if let (Isa::Avx2, ActRow::Q8(x)) = (self.isa, x) {
            // SAFETY: as in `dot`: the CPU has the features, the rows are whole.
            unsafe {
                match format {
                    BlockFormat::Q4_1 => avx2::q4_1_rows4(w, x, &mut out),
                    BlockFormat::Q4_0 => avx2::q4_0_rows4(w, x, &mut out),
                    BlockFormat::Q8_0 => avx2::q8_0_rows4(w, x, &mut out),
                    _ => return None,
                }
            }
            return Some(out);
        }
        let _ = (format, w, x, &mut out);
        None
    }

    /// One weight row against `N` activation rows.
    #[inline]
    fn dot<const N: usize>(&self, format: BlockFormat, w: &[u8], x: &[ActRow; N]) -> [f32; N] {
        let mut out = [0.0f32; N];
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: `Avx2` is only constructed when the CPU has AVX2, FMA and F16C; `w` is
            // one whole row and each activation row covers the same columns.
            unsafe {
                match (format, x.first()) {
                    (BlockFormat::Q4_1, Some(ActRow::Q8(_))) => avx2::q4_1(w, &x.map(q8), &mut out),
                    (BlockFormat::Q4_0, Some(ActRow::Q8(_))) => avx2::q4_0(w, &x.map(q8), &mut out),
                    (BlockFormat::Q8_0, Some(ActRow::Q8(_))) => avx2::q8_0(w, &x.map(q8), &mut out),
                    (BlockFormat::F16, Some(ActRow::F32(_))) => avx2::f16_rows(w, &x.map(f32s), &mut out),
                    (BlockFormat::F32, Some(ActRow::F32(_))) => avx2::f32_rows(w, &x.map(f32s), &mut out),
                    _ => return x.map(|x| scalar::dot(format, w, x)),
                }
            }
            return out;
        }
        for (o, x) in out.iter_mut().zip(x) {
            *o = scalar::dot(format, w, *x);
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
fn q8<'a>(x: ActRow<'a>) -> &'a [BlockQ8] {
    match x {
        ActRow::Q8(x) => x,
        _ => &[],
    }
}

#[cfg(target_arch = "x86_64")]
fn f32s<'a>(x: ActRow<'a>) -> &'a [f32] {
    match x {
        ActRow::F32(x) => x,
        _ => &[],
    }
}

/// Runs `f(i)` for every `i < n` on the kernel threads, items claimed one at a time (the
/// decode step's attention heads).
pub(crate) fn parallel_for(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let next = AtomicUsize::new(0);
    pool::global().run(&|| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(i);
    });
}

/// Block pointer shared by the parts of one quantization; each part writes disjoint rows.
#[derive(Clone, Copy)]
struct BlocksPtr(*mut BlockQ8);
// SAFETY: as `OutPtr`.
unsafe impl Send for BlocksPtr {}
unsafe impl Sync for BlocksPtr {}

impl CpuKernels {
    /// Quantizes the `m` rows of `x` into `out`; a prompt's rows in parallel (on one
    /// thread this was ~6% of a Q8_0 prefill).
    fn quantize_q8(&self, x: &[f32], m: usize, out: &mut [BlockQ8]) {
        let one = |x: &[f32], out: &mut [BlockQ8]| {
            #[cfg(target_arch = "x86_64")]
            if self.isa == Isa::Avx2 {
                // SAFETY: `Avx2` is only constructed when the CPU has the features.
                return unsafe { avx2::quantize_q8(x, out) };
            }
            quantize_q8(x, out)
        };
        let pool = pool::global();
        if m < 8 || pool.threads() == 1 {
            return one(x, out);
        }
        let (cols, blocks) = (x.len() / m, out.len() / m);
        let ptr = BlocksPtr(out.as_mut_ptr());
        let next = AtomicUsize::new(0);
        pool.run(&|| loop {
            let start = next.fetch_add(4, Ordering::Relaxed);
            if start >= m {
                break;
            }
            let end = (start + 4).min(m);
            let ptr = ptr;
            // SAFETY: rows start..end of `out`, claimed by this part alone; `run` joins
            // every part before `out` is used again.
            let rows = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(start * blocks), (end - start) * blocks) };
            one(&x[start * cols..end * cols], rows);
        });
    }

    /// `Σ a[i]·b[i]` (the decode step's attention scores).
    pub(crate) fn dot_f32(&self, a: &[f32], b: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: `Avx2` is only constructed when the CPU has the features.
            return unsafe { avx2::dot_f32(a, b) };
        }
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// `row[i] = e^(row[i] - max)`, returning the sum: a softmax's numerators.
    pub(crate) fn exp_sub_sum(&self, row: &mut [f32], max: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: `Avx2` is only constructed when the CPU has the features.
            return unsafe { avx2::exp_sub_sum(row, max) };
        }
        let mut sum = 0.0;
        for v in row {
            *v = (*v - max).exp();
            sum += *v;
        }
        sum
    }

    /// `out[i] = q · keys[(base + slots[i]) · d ..][..d]` with `d = q.len()`: the decode
    /// step's attention scores of one head.
    pub(crate) fn dots(&self, q: &[f32], keys: &[f32], base: usize, slots: &[usize], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: `wide` implies AVX-512F; the kernels check the bounds.
            match q.len() {
                64 => return unsafe { avx512::dots16::<4>(q, keys, base, slots, out) },
                128 => return unsafe { avx512::dots16::<8>(q, keys, base, slots, out) },
                _ => {}
            }
        }
        let d = q.len();
        for (o, &t) in out.iter_mut().zip(slots) {
            *o = self.dot_f32(q, &keys[(base + t) * d..(base + t + 1) * d]);
        }
    }

    /// `out = Σ_i p[i] · values[(base + slots[i]) · d ..][..d]` with `d = out.len()`: the
    /// decode step's weighted sum of one head's values.
    pub(crate) fn weighted_rows(&self, p: &[f32], values: &[f32], base: usize, slots: &[usize], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: `wide` implies AVX-512F; the kernels check the bounds.
            match out.len() {
                64 => return unsafe { avx512::weighted16::<4>(p, values, base, slots, out) },
                128 => return unsafe { avx512::weighted16::<8>(p, values, base, slots, out) },
                _ => {}
            }
        }
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: `Avx2` is only constructed when the CPU has the features.
            return unsafe { avx2::weighted_rows(p, values, base, slots, out) };
        }
        let d = out.len();
        out.fill(0.0);
        for (&pi, &t) in p.iter().zip(slots) {
            self.axpy_f32(pi, &values[(base + t) * d..(base + t + 1) * d], out);
        }
    }

    /// `row[i] *= scale`, returning the largest result (a softmax's scaled scores).
    pub(crate) fn scale_max(&self, row: &mut [f32], scale: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: `Avx2` is only constructed when the CPU has the features.
            return unsafe { avx2::scale_max(row, scale) };
        }
        row.iter_mut().fold(f32::NEG_INFINITY, |m, v| {
            *v *= scale;
            m.max(*v)
        })
    }

    /// `out[i] = silu(gate[i]) · up[i]`, the SwiGLU activation (`silu(g) = g / (1 + e^-g)`).
    pub(crate) fn silu_mul(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: `Avx2` is only constructed when the CPU has the features.
            return unsafe { avx2::silu_mul(gate, up, out) };
        }
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / ((-g).exp() + 1.0) * u;
        }
    }

    /// `y[i] += alpha · x[i]` (the decode step's weighted sum of values).
    pub(crate) fn axpy_f32(&self, alpha: f32, x: &[f32], y: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx2 {
            // SAFETY: as above.
            return unsafe { avx2::axpy_f32(alpha, x, y) };
        }
        for (y, x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }
}

impl MatMulKernels for CpuKernels {
    fn matmul(&self, w: &QMatrix, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * w.cols, "activations must be m × cols");
        assert_eq!(out.len(), m * w.rows, "output must be m × rows");
        let pool = pool::global();
        let out = OutPtr(out.as_mut_ptr());
        // Dense prefill products take the tiled GEMM (see `dense`).
        #[cfg(target_arch = "x86_64")]
        let dense = self.isa == Isa::Avx2 && matches!(w.format, BlockFormat::F16 | BlockFormat::F32) && m >= 4;
        #[cfg(target_arch = "x86_64")]
        let panels = dense && gemm::TileIsa::detect() == gemm::TileIsa::Avx512;
        #[cfg(not(target_arch = "x86_64"))]
        let panels = false;
        // Prompts take the packed VNNI panels; the repacking needs a few rows to pay off.
        #[cfg(target_arch = "x86_64")]
        let qpanels = self.wide && qpanel::supports(w.format) && m >= 8;
        #[cfg(not(target_arch = "x86_64"))]
        let qpanels = false;
        let run = |acts: &Acts| {
            // Chunks of rows claimed dynamically: ~8 per thread balances a busy machine
            // without making the counter hot; multiples of 4 keep the row tiles whole.
            // A packed panel is ~100 µs of work at prefill sizes: one at a time.
            let chunk = if panels {
                gemm::NR
            } else if qpanels {
                ROW_TILE // one VNNI panel
            } else {
                (w.rows / (8 * pool.threads())).next_multiple_of(4).max(ROW_TILE)
            };
            let next = AtomicUsize::new(0);
            pool.run(&|| loop {
                let start = next.fetch_add(chunk, Ordering::Relaxed);
                if start >= w.rows {
                    break;
                }
                let rows = start..(start + chunk).min(w.rows);
                match acts {
                    #[cfg(target_arch = "x86_64")]
                    Acts::F32(x) if panels => self.part_panels(w, x, m, rows, out),
                    #[cfg(target_arch = "x86_64")]
                    Acts::Q8(x) if qpanels => self.part_qpanels(w, x, m, rows, out),
                    #[cfg(target_arch = "x86_64")]
                    Acts::F32(x) if dense => self.part_dense(w, x, m, rows, out),
                    _ => self.part(w, acts, m, rows, out),
                }
            });
        };
        match w.format.act_kind() {
            ActKind::F32 => run(&Acts::F32(x)),
            ActKind::Q8 => Q8_SCRATCH.with_borrow_mut(|buf| {
                buf.resize(m * w.cols / 32, BlockQ8::ZERO);
                self.quantize_q8(x, m, buf);
                run(&Acts::Q8(buf));
            }),
            ActKind::Q8K => Q8K_SCRATCH.with_borrow_mut(|buf| {
                buf.resize(m * w.cols / 256, BlockQ8K::ZERO);
                quantize_q8k(x, buf);
                run(&Acts::Q8K(buf));
            }),
        }
    }
}

#[cfg(test)]
mod tests;
