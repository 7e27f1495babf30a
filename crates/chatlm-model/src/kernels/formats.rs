//! GGUF block layouts, the q8 activation blocks they are multiplied with, and row
//! dequantization (embedding lookups and the tests' f32 reference).

use half::f16;

/// Weight formats the kernels multiply directly (llama.cpp's ggml types of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    /// Plain f32 values.
    F32,
    /// Plain f16 values.
    F16,
    /// 32 4-bit values `d * (q - 8)`.
    Q4_0,
    /// 32 4-bit values `d * q + m`.
    Q4_1,
    /// 32 8-bit values `d * q`.
    Q8_0,
    /// 256 4-bit values in 8 sub-blocks with 6-bit scales and mins.
    Q4K,
    /// 256 5-bit values in 8 sub-blocks with 6-bit scales and mins.
    Q5K,
    /// 256 6-bit values in 16 sub-blocks with 8-bit scales.
    Q6K,
}

/// Which activation encoding a weight format is multiplied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActKind {
    /// f32 activations as they are (f16/f32 weights).
    F32,
    /// [`BlockQ8`] blocks of 32.
    Q8,
    /// [`BlockQ8K`] blocks of 256.
    Q8K,
}

impl BlockFormat {
    /// Every format, for tests and dispatch tables.
    pub const ALL: [BlockFormat; 8] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q8_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    pub(crate) fn act_kind(self) -> ActKind {
        match self {
            Self::F32 | Self::F16 => ActKind::F32,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => ActKind::Q8,
            Self::Q4K | Self::Q5K | Self::Q6K => ActKind::Q8K,
        }
    }

    /// The format of a candle/ggml dtype, if the kernels handle it.
    pub fn from_ggml(dtype: candle_core::quantized::GgmlDType) -> Option<Self> {
        use candle_core::quantized::GgmlDType as G;
        Some(match dtype {
            G::F32 => Self::F32,
            G::F16 => Self::F16,
            G::Q4_0 => Self::Q4_0,
            G::Q4_1 => Self::Q4_1,
            G::Q8_0 => Self::Q8_0,
            G::Q4K => Self::Q4K,
            G::Q5K => Self::Q5K,
            G::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// The candle/ggml dtype of this format.
    pub fn to_ggml(self) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType as G;
        match self {
            Self::F32 => G::F32,
            Self::F16 => G::F16,
            Self::Q4_0 => G::Q4_0,
            Self::Q4_1 => G::Q4_1,
            Self::Q8_0 => G::Q8_0,
            Self::Q4K => G::Q4K,
            Self::Q5K => G::Q5K,
            Self::Q6K => G::Q6K,
        }
    }
}

/// An activation block of 32 values: `x ≈ d * qs`, with `s = d * Σqs` precomputed for the
/// formats with an offset (Q4_1's `m`, Q4_0's `-8`). llama.cpp's `block_q8_1` in f32.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct BlockQ8 {
    pub(crate) d: f32,
    pub(crate) s: f32,
    pub(crate) qs: [i8; 32],
}

/// An activation block of 256 values for the K formats: `x ≈ d * qs`, with the sums of each
/// 16 values (`bsums`) for the sub-block minimums. llama.cpp's `block_q8_K`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct BlockQ8K {
    pub(crate) d: f32,
    pub(crate) qs: [i8; 256],
    pub(crate) bsums: [i16; 16],
}

impl BlockQ8 {
    pub(crate) const ZERO: Self = Self { d: 0.0, s: 0.0, qs: [0; 32] };
}

impl BlockQ8K {
    pub(crate) const ZERO: Self = Self { d: 0.0, qs: [0; 256], bsums: [0; 16] };
}

/// Round half away from zero, as llama.cpp's `roundf`.
#[inline]
fn round_i8(v: f32) -> i8 {
    v.round().clamp(-127.0, 127.0) as i8
}

/// Quantizes `x` (a multiple of 32 long) into `out` (one block per 32 values).
pub(crate) fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    for (chunk, block) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in block.qs.iter_mut().zip(chunk) {
            *q = round_i8(v * id);
            sum += *q as i32;
        }
        block.d = d;
        block.s = d * sum as f32;
    }
}

/// Quantizes `x` (a multiple of 256 long) into `out` (one block per 256 values).
pub(crate) fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    for (chunk, block) in x.chunks_exact(256).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, v) in block.qs.iter_mut().zip(chunk) {
            *q = round_i8(v * id);
        }
        for (sum, group) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
            *sum = group.iter().map(|&q| q as i16).sum();
        }
        block.d = d;
    }
}

#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_K/Q5_K's packed 6-bit (scale, min) of sub-block `j` (llama.cpp's `get_scale_min_k4`).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Integer view of one K block: per-value quants (unsigned for Q4_K/Q5_K, signed for Q6_K),
/// per-sub-block scales and mins, and the block's f32 scales.
pub(crate) struct KBlock {
    pub(crate) q: [i8; 256],
    /// Scale per sub-block of `sub_len` values.
    pub(crate) scales: [i32; 16],
    pub(crate) mins: [i32; 16],
    pub(crate) sub_len: usize,
    pub(crate) d: f32,
    pub(crate) dmin: f32,
}

/// Unpacks one K-format block into integers (`x = d * scale * q - dmin * min`).
pub(crate) fn unpack_k(format: BlockFormat, b: &[u8]) -> KBlock {
    let mut k = KBlock {
        q: [0; 256],
        scales: [0; 16],
        mins: [0; 16],
        sub_len: 32,
        d: 0.0,
        dmin: 0.0,
    };
    match format {
        BlockFormat::Q4K | BlockFormat::Q5K => {
            k.d = f16_at(b, 0);
            k.dmin = f16_at(b, 2);
            let sc = &b[4..16];
            for j in 0..8 {
                let (s, m) = scale_min_k4(j, sc);
                k.scales[j] = s as i32;
                k.mins[j] = m as i32;
            }
            let (qh, qs) = if format == BlockFormat::Q5K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
            for chunk in 0..4 {
                for l in 0..32 {
                    let byte = qs[chunk * 32 + l];
                    let (mut lo, mut hi) = (byte & 0xF, byte >> 4);
                    if let Some(qh) = qh {
                        lo |= ((qh[l] >> (2 * chunk)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * chunk + 1)) & 1) << 4;
                    }
                    k.q[chunk * 64 + l] = lo as i8;
                    k.q[chunk * 64 + 32 + l] = hi as i8;
                }
            }
        }
        BlockFormat::Q6K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            k.d = f16_at(b, 208);
            k.sub_len = 16;
            for (s, &v) in k.scales.iter_mut().zip(sc) {
                *s = v as i8 as i32;
            }
            for half in 0..2 {
                let (ql, qh) = (&ql[half * 64..], &qh[half * 32..]);
                let y = &mut k.q[half * 128..];
                for l in 0..32 {
                    y[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                    y[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                    y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                    y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                }
            }
        }
        _ => {}
    }
    k
}

/// Expands one row (`out.len()` values) of `format` blocks to f32.
pub fn dequantize_row(format: BlockFormat, row: &[u8], out: &mut [f32]) {
    let n = format.block_len();
    for (b, y) in row.chunks_exact(format.block_bytes()).zip(out.chunks_exact_mut(n)) {
        match format {
            BlockFormat::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            BlockFormat::F16 => y[0] = f16_at(b, 0),
            BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                let d = f16_at(b, 0);
                let (m, qs) = if format == BlockFormat::Q4_1 { (f16_at(b, 2), &b[4..20]) } else { (-8.0 * d, &b[2..18]) };
                for j in 0..16 {
                    y[j] = d * (qs[j] & 0xF) as f32 + m;
                    y[j + 16] = d * (qs[j] >> 4) as f32 + m;
                }
            }
            BlockFormat::Q8_0 => {
                let d = f16_at(b, 0);
                for (v, &q) in y.iter_mut().zip(&b[2..34]) {
                    *v = d * q as i8 as f32;
                }
            }
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => {
                let k = unpack_k(format, b);
                for (i, v) in y.iter_mut().enumerate() {
                    let sub = i / k.sub_len;
                    *v = k.d * (k.scales[sub] * k.q[i] as i32) as f32 - k.dmin * k.mins[sub] as f32;
                }
            }
        }
    }
}
