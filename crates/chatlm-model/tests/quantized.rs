//! Reduced precision: computing on quantized blocks (GGUF as stored, or safetensors quantized
//! while loading) or in bf16/f16 stays close to the f32 computation and shrinks the weights.

mod common;

use candle_core::DType;
use chatlm_model::{LoadOptions, Model, ModelSource, Quantization};
use common::data_dir;

const PROMPT: [u32; 9] = [1, 5, 88, 23, 64, 120, 3, 77, 50];

fn logits(model: &Model) -> Vec<f32> {
    let mut cache = model.new_cache(1, PROMPT.len()).unwrap();
    model.forward_last(&PROMPT, &mut cache).unwrap()
}

/// Largest difference relative to the largest reference logit.
fn relative_error(got: &[f32], reference: &[f32]) -> f32 {
    let scale = reference.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    got.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

fn load(name: &str, options: LoadOptions) -> Model {
    let source = ModelSource::from_path(&data_dir(name)).unwrap();
    Model::from_source(&source, &options).unwrap()
}

#[test]
fn gguf_blocks_compute_close_to_their_f32_expansion_in_less_memory() {
    let exact = load("llama_tied_q8_0", LoadOptions { dequantize: true, ..LoadOptions::default() });
    let blocks = load("llama_tied_q8_0", LoadOptions::default());
    let error = relative_error(&logits(&blocks), &logits(&exact));
    // 8-bit activations: random tiny weights amplify their rounding (0.0245 measured with
    // our kernels, ~0.02 with candle's f16-scaled q8 blocks); the kernels' own error bound
    // is tested block by block in `kernels::tests`.
    assert!(error < 0.04, "relative error {error}");
    assert!(blocks.weight_bytes() * 3 < exact.weight_bytes(), "{} vs {}", blocks.weight_bytes(), exact.weight_bytes());
}

#[test]
fn in_situ_quantization_shrinks_weights_and_stays_close() {
    let dense = load("llama3", LoadOptions::default());
    let reference = logits(&dense);
    // Random tiny weights amplify rounding far more than trained ones do; the bound is loose.
    for (quantization, max_error) in [(Quantization::Q8_0, 0.1), (Quantization::Q4K, 0.1)] {
        let model = load("llama3", LoadOptions { quantize: Some(quantization), ..LoadOptions::default() });
        let error = relative_error(&logits(&model), &reference);
        assert!(error < max_error, "{quantization:?}: relative error {error}");
        // The tiny model's rows (64) are shorter than a Q4_K block (256): both fall back to Q8_0.
        assert!(model.weight_bytes() * 3 < dense.weight_bytes(), "{quantization:?}: {} bytes", model.weight_bytes());
    }
}

#[test]
fn quantization_names_parse_like_llama_cpp() {
    assert_eq!("q8_0".parse::<Quantization>(), Ok(Quantization::Q8_0));
    assert_eq!("Q4_K".parse::<Quantization>(), Ok(Quantization::Q4K));
    assert!("q3_k".parse::<Quantization>().unwrap_err().contains("q3_k"));
}

#[test]
fn bf16_and_f16_compute_stay_close_and_halve_dense_weights() {
    let dense = load("llama3", LoadOptions::default());
    let reference = logits(&dense);
    for dtype in [DType::BF16, DType::F16] {
        let model = load("llama3", LoadOptions { dtype, ..LoadOptions::default() });
        assert_eq!(model.dtype(), dtype);
        let error = relative_error(&logits(&model), &reference);
        assert!(error < 0.05, "{dtype:?}: relative error {error}");
        assert_eq!(model.weight_bytes() * 2, dense.weight_bytes(), "{dtype:?}");
    }
    // Quantized blocks under a half-precision computation.
    let blocks = load("llama_tied_q8_0", LoadOptions { dtype: DType::BF16, ..LoadOptions::default() });
    let exact = load("llama_tied_q8_0", LoadOptions { dequantize: true, ..LoadOptions::default() });
    let error = relative_error(&logits(&blocks), &logits(&exact));
    assert!(error < 0.05, "bf16 on Q8_0 blocks: relative error {error}");
    let unsupported = LoadOptions { dtype: DType::U8, ..LoadOptions::default() };
    assert!(Model::from_source(&ModelSource::from_path(&data_dir("llama3")).unwrap(), &unsupported).is_err());
}
