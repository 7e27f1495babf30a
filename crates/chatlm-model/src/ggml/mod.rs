//! llama.cpp's numerics, bit for bit: an opt-in forward pass ([`Numerics::LlamaCpp`]) that
//! computes exactly what llama.cpp's CPU backend computes for the same GGUF file.
//!
//! Why: a greedy answer of an 8-bit or 4-bit model is a chain of argmaxes, and near-ties are
//! common; the native path is as accurate as llama.cpp (both sit ~0.17 logits from the exact
//! value of the quantized model) but not equal to it, and any flip of one 8-bit rounding
//! upstream can move a later argmax. Reproducing llama.cpp's output token for token therefore
//! takes its arithmetic, not only its accuracy: activations quantized as ggml does
//! (`127/amax`, ties to even, f16 scales), its block dot products and lane sums, an f16 KV
//! cache and f16 attention operands, its softmax (a polynomial `expf`, sums in f64), its
//! rms_norm (f64 sum), its rope angles (repeated multiplication) and GCC's fused
//! multiply-adds. [`math`] holds those routines, [`step`] the forward pass built from them.
//! llama.cpp's x86 builds sum some of them in other orders ([`Build`]): `math` follows the
//! AVX-512 build, [`avx2`] the routines where the AVX2 build differs (f16 products, `expf`,
//! softmax, silu).
//!
//! What it covers: one sequence; Llama-family decoders (Llama, Mistral without a window,
//! SmolLM2) whose matrices are Q4_1, Q8_0 or f16 — the formats llama.cpp multiplies with the
//! same arithmetic in prompt and decode batches on x86 (Q4_0 and the K formats take repacked
//! or tiled kernels there), plain rope. The reference is llama.cpp as llama-cpp-python
//! 0.3.36 builds it on x86-64, with AVX-512 or with AVX2 only, and `flash_attn` off (its
//! default).
//! It is several times slower than the native path: a tool for checking, not for serving.

mod avx2;
pub(crate) mod math;
#[cfg(target_arch = "x86_64")]
mod simd;
mod step;

pub(crate) use step::Trace;

use math::Q8Block;

/// Whether ggml's AVX2 instructions (AVX2, FMA, F16C) run here (checked once).
#[cfg(target_arch = "x86_64")]
fn simd() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(simd::available)
}

/// Whether the AVX-512 f16 products can run here (checked once).
#[cfg(target_arch = "x86_64")]
fn simd_512() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(simd::available_512)
}

/// Whose build of llama.cpp the arithmetic follows: its x86 builds differ in the width of
/// ggml's f16 vectors and in `ggml_v_expf` (see [`avx2`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    /// Built for AVX2 + FMA + F16C without AVX-512: 8 lanes.
    Avx2,
    /// Built with AVX-512 (F, DQ, …): 16 lanes.
    Avx512,
}

impl Build {
    /// The build llama.cpp makes for this CPU with its default (native) flags: AVX-512 where
    /// the CPU has AVX-512F and DQ (the pair ggml's AVX-512 softmax needs), else AVX2 — also
    /// off x86, where neither is native and AVX2, the common desktop build, is the reference.
    pub(crate) fn for_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
            return Self::Avx512;
        }
        Self::Avx2
    }

    /// Lanes of ggml's f16 vectors: tinyBLAS takes f16 products whose inner length is a
    /// multiple of it.
    pub(crate) fn f16_lanes(self) -> usize {
        match self {
            Self::Avx2 => 8,
            Self::Avx512 => 16,
        }
    }
}

/// Calls the `simd` kernel where the CPU runs it, else `math`'s or `avx2`'s reference.
macro_rules! pick {
    ($check:ident ? $fast:path : $slow:path; $($arg:ident),*) => {{
        #[cfg(target_arch = "x86_64")]
        if $check() {
            // SAFETY: the check above found the kernel's CPU features.
            return unsafe { $fast($($arg),*) };
        }
        $slow($($arg),*)
    }};
}

/// A routine whose arithmetic depends on the [`Build`], with each build's kernel and reference.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty {
        Avx512 => $c5:ident ? $f5:path : $s5:path,
        Avx2 => $c2:ident ? $f2:path : $s2:path $(,)?
    }) => {
        $(#[$doc])*
        pub(crate) fn $name(build: Build, $($arg: $ty),*) -> $ret {
            match build {
                Build::Avx512 => pick!($c5 ? $f5 : $s5; $($arg),*),
                Build::Avx2 => pick!($c2 ? $f2 : $s2; $($arg),*),
            }
        }
    };
}

dispatch! {
    /// `ggml_vec_dot_f16` on f16 values held as f32.
    fn dot_f16_vec(x: &[f32], y: &[f32]) -> f32 {
        Avx512 => simd_512 ? simd::dot_f16_vec : math::dot_f16_vec,
        Avx2 => simd ? simd::avx2::dot_f16_vec : avx2::dot_f16_vec,
    }
}
dispatch! {
    /// tinyBLAS's f16 product on f16 values held as f32.
    fn dot_f16_tiny(x: &[f32], y: &[f32]) -> f32 {
        Avx512 => simd_512 ? simd::dot_f16_tiny : math::dot_f16_tiny,
        Avx2 => simd ? simd::avx2::dot_f16_tiny : avx2::dot_f16_tiny,
    }
}
dispatch! {
    /// `ggml_vec_dot_f16` on f16 bits.
    fn dot_f16_vec_bits(x: &[u16], y: &[u16]) -> f32 {
        Avx512 => simd_512 ? simd::dot_f16_vec_bits : math::dot_f16_vec_bits,
        Avx2 => simd ? simd::avx2::dot_f16_vec_bits : avx2::dot_f16_vec_bits,
    }
}
dispatch! {
    /// tinyBLAS's f16 product on f16 bits.
    fn dot_f16_tiny_bits(x: &[u16], y: &[u16]) -> f32 {
        Avx512 => simd_512 ? simd::dot_f16_tiny_bits : math::dot_f16_tiny_bits,
        Avx2 => simd ? simd::avx2::dot_f16_tiny_bits : avx2::dot_f16_tiny_bits,
    }
}
dispatch! {
    /// `ggml_vec_soft_max_f32` with its scaling.
    fn softmax(row: &mut [f32]) -> () {
        Avx512 => simd ? simd::softmax : math::softmax,
        Avx2 => simd ? simd::avx2::softmax : avx2::softmax,
    }
}
dispatch! {
    /// `ggml_vec_swiglu_f32`.
    fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) -> () {
        Avx512 => simd ? simd::swiglu : math::swiglu,
        Avx2 => simd ? simd::avx2::swiglu : avx2::swiglu,
    }
}

/// [`math::dot_q4_1`], on ggml's AVX2 instructions where the CPU has them.
fn dot_q4_1(row: &[u8], act: &[Q8Block]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` checked the CPU features; `row` and `act` come in matching lengths.
        return unsafe { simd::dot_q4_1(row, act) };
    }
    math::dot_q4_1(row, act)
}

/// [`math::dot_q8_0`], on ggml's AVX2 instructions where the CPU has them.
fn dot_q8_0(row: &[u8], act: &[Q8Block]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: as in `dot_q4_1`.
        return unsafe { simd::dot_q8_0(row, act) };
    }
    math::dot_q8_0(row, act)
}

use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::decode::NativeDecoder;
use crate::error::{ModelError, Result};
use crate::kernels::BlockFormat;

/// Which arithmetic the forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Numerics {
    /// chatlm's own kernels (fast; as accurate as llama.cpp, not equal to it bit for bit).
    #[default]
    Native,
    /// llama.cpp's CPU arithmetic reproduced exactly (see the module docs): the same logits,
    /// so the same greedy tokens, as llama.cpp on the same GGUF file, as llama.cpp builds
    /// itself for this CPU ([`Self::LlamaCppAvx512`] where the CPU has AVX-512F and DQ, else
    /// [`Self::LlamaCppAvx2`]).
    LlamaCpp,
    /// llama.cpp built for AVX2 without AVX-512 (the common desktop build), on any CPU.
    LlamaCppAvx2,
    /// llama.cpp built with AVX-512, on any CPU.
    LlamaCppAvx512,
}

impl Numerics {
    /// The llama.cpp build this follows, `None` for [`Self::Native`].
    pub(crate) fn llamacpp_build(self) -> Option<Build> {
        match self {
            Self::Native => None,
            Self::LlamaCpp => Some(Build::for_this_cpu()),
            Self::LlamaCppAvx2 => Some(Build::Avx2),
            Self::LlamaCppAvx512 => Some(Build::Avx512),
        }
    }
}

impl std::str::FromStr for Numerics {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "native" => Ok(Self::Native),
            "llamacpp" | "llama.cpp" => Ok(Self::LlamaCpp),
            "llamacpp-avx2" => Ok(Self::LlamaCppAvx2),
            "llamacpp-avx512" => Ok(Self::LlamaCppAvx512),
            other => Err(format!("unknown numerics `{other}` (native, llamacpp, llamacpp-avx2, llamacpp-avx512)")),
        }
    }
}

/// Checks that llama.cpp's numerics are defined for this model (see the module docs).
pub(crate) fn check_support(config: &ModelConfig, native: Option<&NativeDecoder>) -> Result<()> {
    let unsupported = |why: String| Err(ModelError::InvalidInput(format!("llama.cpp numerics: {why}")));
    if !matches!(config.architecture, Architecture::Llama | Architecture::Mistral) {
        return unsupported(format!("{:?} models are not covered (Llama-family only)", config.architecture));
    }
    if config.sliding_window.is_some() {
        return unsupported("a sliding attention window is not covered".into());
    }
    if !matches!(config.rope_scaling, RopeScaling::None) || config.partial_rotary_factor != 1.0 || config.head_dim % 16 != 0 {
        return unsupported("rope scaling, partial rotary and head sizes that are not a multiple of 16 are not covered".into());
    }
    let Some(native) = native else {
        return unsupported("the model needs f32 compute on the CPU, bias-free block matrices".into());
    };
    let mut formats = vec![native.embed.format(), native.lm_head.format()];
    for layer in &native.layers {
        formats.extend(layer.qkv.iter().chain(&layer.gate_up).chain([&layer.o, &layer.down]).map(|m| m.format()));
    }
    if let Some(f) = formats.iter().find(|f| !matches!(f, BlockFormat::Q4_1 | BlockFormat::Q8_0 | BlockFormat::F16)) {
        return unsupported(format!("{f:?} matrices are not covered (Q4_1, Q8_0, F16)"));
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency for a test).
    fn lcg(state: &mut u64) -> u32 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*state >> 33) as u32
    }

    #[test]
    fn avx2_block_products_equal_the_reference_bit_for_bit() {
        if !simd::available() {
            println!("skipped: no AVX2/FMA/F16C");
            return;
        }
        let mut state = 7u64;
        for _ in 0..200 {
            let blocks = 1 + (lcg(&mut state) % 24) as usize;
            let x: Vec<f32> = (0..blocks * 32).map(|_| (lcg(&mut state) as f32 / u32::MAX as f32 - 0.5) * 8.0).collect();
            let mut act = vec![Q8Block { d: 0, s: 0, qs: [0; 32] }; blocks];
            math::quantize_q8(&x, &mut act);
            let mut q4_1 = Vec::new();
            let mut q8_0 = Vec::new();
            for _ in 0..blocks {
                let (d, m) = (math::to_f16(lcg(&mut state) as f32 / u32::MAX as f32 * 0.1), math::to_f16(-(lcg(&mut state) as f32 / u32::MAX as f32)));
                q4_1.extend(d.to_le_bytes());
                q4_1.extend(m.to_le_bytes());
                q4_1.extend((0..16).map(|_| lcg(&mut state) as u8));
                q8_0.extend(d.to_le_bytes());
                q8_0.extend((0..32).map(|_| (lcg(&mut state) % 255) as u8 as i8 as u8 ^ 0x80));
            }
            // SAFETY: features checked above; lengths match.
            let (fast4, fast8) = unsafe { (simd::dot_q4_1(&q4_1, &act), simd::dot_q8_0(&q8_0, &act)) };
            assert_eq!(fast4.to_bits(), math::dot_q4_1(&q4_1, &act).to_bits());
            assert_eq!(fast8.to_bits(), math::dot_q8_0(&q8_0, &act).to_bits());
        }
    }

    #[test]
    fn avx512_f16_products_and_fma_routines_equal_the_reference() {
        if !simd::available_512() {
            println!("skipped: no AVX-512F");
            return;
        }
        let mut state = 11u64;
        for len in [16, 48, 64, 70, 256, 320] {
            let x: Vec<u16> = (0..len).map(|_| math::to_f16((lcg(&mut state) as f32 / u32::MAX as f32 - 0.5) * 4.0)).collect();
            let y: Vec<u16> = (0..len).map(|_| math::to_f16((lcg(&mut state) as f32 / u32::MAX as f32 - 0.5) * 4.0)).collect();
            let (xf, yf): (Vec<f32>, Vec<f32>) = (x.iter().map(|&h| math::from_f16(h)).collect(), y.iter().map(|&h| math::from_f16(h)).collect());
            // SAFETY: AVX-512F checked above.
            unsafe {
                assert_eq!(simd::dot_f16_vec(&xf, &yf).to_bits(), math::dot_f16_vec(&xf, &yf).to_bits());
                assert_eq!(simd::dot_f16_vec_bits(&x, &y).to_bits(), math::dot_f16_vec_bits(&x, &y).to_bits());
                if len % 16 == 0 {
                    assert_eq!(simd::dot_f16_tiny(&xf, &yf).to_bits(), math::dot_f16_tiny(&xf, &yf).to_bits());
                    assert_eq!(simd::dot_f16_tiny_bits(&x, &y).to_bits(), math::dot_f16_tiny_bits(&x, &y).to_bits());
                }
            }
        }
        let scores: Vec<f32> = (0..64).map(|i| if i < 40 { (lcg(&mut state) % 1000) as f32 / 37.0 } else { f32::NEG_INFINITY }).collect();
        let (mut fast, mut slow) = (scores.clone(), scores);
        // SAFETY: AVX-512F implies the FMA the kernel needs (checked by `available_512`).
        unsafe { simd::softmax(&mut fast) };
        math::softmax(&mut slow);
        assert_eq!(fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        let gate: Vec<f32> = (0..64).map(|i| i as f32 * 0.37 - 11.0).collect();
        let (mut fast, mut slow) = (vec![0.0; 64], vec![0.0; 64]);
        // SAFETY: as above.
        unsafe { simd::swiglu(&gate, &gate, &mut fast) };
        math::swiglu(&gate, &gate, &mut slow);
        assert_eq!(fast, slow);
    }

    #[test]
    fn avx2_build_kernels_equal_their_reference() {
        if !simd::available() {
            println!("skipped: no AVX2/FMA/F16C");
            return;
        }
        let mut state = 13u64;
        for len in [8, 24, 32, 40, 64, 100, 256, 264] {
            let x: Vec<u16> = (0..len).map(|_| math::to_f16((lcg(&mut state) as f32 / u32::MAX as f32 - 0.5) * 4.0)).collect();
            let y: Vec<u16> = (0..len).map(|_| math::to_f16((lcg(&mut state) as f32 / u32::MAX as f32 - 0.5) * 4.0)).collect();
            let (xf, yf): (Vec<f32>, Vec<f32>) = (x.iter().map(|&h| math::from_f16(h)).collect(), y.iter().map(|&h| math::from_f16(h)).collect());
            // SAFETY: AVX2, FMA and F16C checked above.
            unsafe {
                assert_eq!(simd::avx2::dot_f16_vec(&xf, &yf).to_bits(), avx2::dot_f16_vec(&xf, &yf).to_bits());
                assert_eq!(simd::avx2::dot_f16_vec_bits(&x, &y).to_bits(), avx2::dot_f16_vec_bits(&x, &y).to_bits());
                if len % 8 == 0 {
                    assert_eq!(simd::avx2::dot_f16_tiny(&xf, &yf).to_bits(), avx2::dot_f16_tiny(&xf, &yf).to_bits());
                    assert_eq!(simd::avx2::dot_f16_tiny_bits(&x, &y).to_bits(), avx2::dot_f16_tiny_bits(&x, &y).to_bits());
                }
            }
        }
        // Scores spread wide enough that some lanes take v_expf's split path (|n| > 126).
        let scores: Vec<f32> = (0..64).map(|i| if i < 44 { (lcg(&mut state) % 2000) as f32 / 13.0 } else { f32::NEG_INFINITY }).collect();
        let (mut fast, mut slow) = (scores.clone(), scores);
        // SAFETY: as above.
        unsafe { simd::avx2::softmax(&mut fast) };
        avx2::softmax(&mut slow);
        assert_eq!(fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!(slow.iter().any(|&p| p > 0.0 && p < f32::MIN_POSITIVE), "a subnormal probability from the split path");
        let gate: Vec<f32> = (0..64).map(|i| i as f32 * 3.1 - 99.0).collect();
        let (mut fast, mut slow) = (vec![0.0; 64], vec![0.0; 64]);
        // SAFETY: as above.
        unsafe { simd::avx2::swiglu(&gate, &gate, &mut fast) };
        avx2::swiglu(&gate, &gate, &mut slow);
        assert_eq!(fast, slow);
    }
}
