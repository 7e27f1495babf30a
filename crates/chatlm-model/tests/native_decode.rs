//! The candle-free one-token decode step (taken by `forward_last` with one token on block
//! weights) computes what the candle path computes for the same positions.
//!
//! `tests/data/llama3_gguf_f16/model.gguf` is `llama3_gguf` with its matrices in F16, made by
//! `python3 scripts/bench/model_convert.py tests/data/llama3_gguf/model.gguf OUT f16`: F16
//! GGUF matrices stay blocks (the native step's operands) and multiply f32 activations.

mod common;

use chatlm_model::{BatchInput, Model, Quantization};

use common::{load_quantized as load, max_diff, NATIVE_PROMPT as PROMPT};

/// Logits of every prompt position: from one call (candle path), and token by token
/// (native path).
fn both_ways(model: &Model) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut cache = model.new_cache(1, PROMPT.len()).unwrap();
    let whole = model.forward(&PROMPT, &mut cache).unwrap().to_vec2::<f32>().unwrap();
    let mut cache = model.new_cache(1, PROMPT.len()).unwrap();
    let steps = PROMPT.iter().map(|&t| model.forward_last(&[t], &mut cache).unwrap()).collect();
    (whole, steps)
}

#[test]
fn one_token_steps_match_one_call_on_f16_blocks() {
    // f16 matrices, f32 activations: no activation rounding, so the two paths differ only in
    // the order of f32 sums.
    for name in ["llama3_gguf_f16"] {
        let (whole, steps) = both_ways(&load(name, None));
        for (i, (a, b)) in whole.iter().zip(&steps).enumerate() {
            assert!(max_diff(a, b) < 1e-4, "{name} position {i}: {}", max_diff(a, b));
        }
    }
}

#[test]
fn one_token_steps_match_one_call_on_q8_blocks() {
    // Sliding window (mistral, window 8 < 12 tokens), grouped heads, tied embeddings, Phi-3's
    // fused projections. Activations are rounded to 8 bits from slightly different f32
    // inputs, so the bound is looser than rounding of the sums alone.
    let models = [
        load("llama3", Some(Quantization::Q8_0)),
        load("mistral", Some(Quantization::Q8_0)),
        load("phi3", Some(Quantization::Q8_0)),
        load("llama_tied_q8_0", None),
    ];
    for (name, model) in ["llama3", "mistral", "phi3", "llama_tied_q8_0"].iter().zip(&models) {
        let (whole, steps) = both_ways(model);
        for (i, (a, b)) in whole.iter().zip(&steps).enumerate() {
            let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max_diff(a, b) <= 1e-2 * scale, "{name} position {i}: {} (scale {scale})", max_diff(a, b));
        }
    }
}

#[test]
fn a_padded_batch_of_one_still_decodes_like_the_candle_path() {
    // Left padding in a one-row batch: the native step must skip the padding slots.
    let model = load("llama3_gguf_f16", None);
    let padded = BatchInput::left_padded(&[PROMPT[..5].to_vec(), PROMPT[..3].to_vec()], 0);
    let row = BatchInput { ids: vec![padded.ids[1].clone()], attention_mask: vec![padded.attention_mask[1].clone()] };
    let mut cache = model.new_cache(1, 8).unwrap();
    model.forward_batch(&row, &mut cache).unwrap();
    let native = model.forward_last(&[PROMPT[3]], &mut cache).unwrap();
    // The same slot through the candle path: a two-token call whose last position is it.
    let mut cache = model.new_cache(1, 8).unwrap();
    let mut ids = row.ids[0].clone();
    let mut mask = row.attention_mask[0].clone();
    ids.push(PROMPT[3]);
    mask.push(true);
    let whole = model.forward_batch_last(&BatchInput { ids: vec![ids], attention_mask: vec![mask] }, &mut cache).unwrap();
    assert!(max_diff(&native, &whole[0]) < 1e-4, "{}", max_diff(&native, &whole[0]));
}

#[test]
fn long_contexts_still_match() {
    // 150 cached tokens after a native prefill: the attention kernels take 16 keys at a time
    // and prefetch ahead, so runs longer than the 12-token prompt above matter.
    let prompt: Vec<u32> = (0..150u32).map(|i| 1 + (i * 37) % 120).collect();
    for name in ["llama3_gguf_f16"] {
        let model = load(name, None);
        let mut cache = model.new_cache(1, prompt.len()).unwrap();
        let whole = model.forward(&prompt, &mut cache).unwrap().to_vec2::<f32>().unwrap();
        let mut cache = model.new_cache(1, prompt.len()).unwrap();
        model.forward_last(&prompt[..140], &mut cache).unwrap();
        for (i, &t) in prompt.iter().enumerate().skip(140) {
            let step = model.forward_last(&[t], &mut cache).unwrap();
            assert!(max_diff(&whole[i], &step) < 1e-4, "{name} position {i}: {}", max_diff(&whole[i], &step));
        }
    }
}
