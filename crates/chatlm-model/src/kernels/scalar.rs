//! Portable dot products: the reference the SIMD paths are tested against, and the path of
//! CPUs without AVX2.

use super::formats::{f16_at, unpack_k, BlockFormat, BlockQ8, BlockQ8K};

/// One row of activations in the encoding the weight format asks for.
#[derive(Clone, Copy)]
pub(crate) enum ActRow<'a> {
    F32(&'a [f32]),
    Q8(&'a [BlockQ8]),
    Q8K(&'a [BlockQ8K]),
}

/// `Σ w[i] * x[i]` over one weight row of `format` blocks.
pub(crate) fn dot(format: BlockFormat, w: &[u8], x: ActRow) -> f32 {
    match (format, x) {
        (BlockFormat::F32, ActRow::F32(x)) => w
            .chunks_exact(4)
            .zip(x)
            .map(|(b, v)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * v)
            .sum(),
        (BlockFormat::F16, ActRow::F32(x)) => w.chunks_exact(2).zip(x).map(|(b, v)| f16_at(b, 0) * v).sum(),
        (BlockFormat::Q4_0 | BlockFormat::Q4_1, ActRow::Q8(x)) => {
            let offset = if format == BlockFormat::Q4_1 { 4 } else { 2 };
            w.chunks_exact(format.block_bytes())
                .zip(x)
                .map(|(b, a)| {
                    let d = f16_at(b, 0);
                    let m = if format == BlockFormat::Q4_1 { f16_at(b, 2) } else { -8.0 * d };
                    let qs = &b[offset..offset + 16];
                    let mut sum = 0i32;
                    for j in 0..16 {
                        sum += (qs[j] & 0xF) as i32 * a.qs[j] as i32 + (qs[j] >> 4) as i32 * a.qs[j + 16] as i32;
                    }
                    d * a.d * sum as f32 + m * a.s
                })
                .sum()
        }
        (BlockFormat::Q8_0, ActRow::Q8(x)) => w
            .chunks_exact(34)
            .zip(x)
            .map(|(b, a)| {
                let sum: i32 = b[2..34].iter().zip(&a.qs).map(|(&q, &y)| q as i8 as i32 * y as i32).sum();
                f16_at(b, 0) * a.d * sum as f32
            })
            .sum(),
        (BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K, ActRow::Q8K(x)) => w
            .chunks_exact(format.block_bytes())
            .zip(x)
            .map(|(b, a)| {
                let k = unpack_k(format, b);
                let (mut scaled, mut mins) = (0i32, 0i32);
                for (sub, (q, y)) in k.q.chunks_exact(k.sub_len).zip(a.qs.chunks_exact(k.sub_len)).enumerate() {
                    let dot: i32 = q.iter().zip(y).map(|(&q, &y)| q as i32 * y as i32).sum();
                    scaled += k.scales[sub] * dot;
                    let per16 = k.sub_len / 16;
                    let ysum: i32 = a.bsums[sub * per16..(sub + 1) * per16].iter().map(|&s| s as i32).sum();
                    mins += k.mins[sub] * ysum;
                }
                a.d * (k.d * scaled as f32 - k.dmin * mins as f32)
            })
            .sum(),
        // The driver always pairs a format with its activation encoding.
        _ => f32::NAN,
    }
}
