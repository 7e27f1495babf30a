//! The candle-free prefill (taken by `forward_last` with several tokens of one sequence on
//! block weights) computes what the candle path computes for the last position, from an
//! empty cache and after earlier turns.

mod common;

use chatlm_model::{BatchInput, Model, Quantization};

use common::{load_quantized as load, max_diff, NATIVE_PROMPT as PROMPT};

/// The last logits of `PROMPT` three ways: the candle path (every position), one native
/// prefill, and a native prefill of the first `split` tokens then one of the rest.
fn three_ways(model: &Model, split: usize) -> [Vec<f32>; 3] {
    let mut cache = model.new_cache(1, PROMPT.len()).unwrap();
    let whole = model.forward(&PROMPT, &mut cache).unwrap().to_vec2::<f32>().unwrap();
    let mut cache = model.new_cache(1, PROMPT.len()).unwrap();
    let native = model.forward_last(&PROMPT, &mut cache).unwrap();
    assert_eq!(cache.len(), PROMPT.len());
    let mut cache = model.new_cache(1, PROMPT.len()).unwrap();
    model.forward_last(&PROMPT[..split], &mut cache).unwrap();
    let turns = model.forward_last(&PROMPT[split..], &mut cache).unwrap();
    [whole[PROMPT.len() - 1].clone(), native, turns]
}

#[test]
fn native_prefill_matches_the_candle_path_on_f16_blocks() {
    // f16 matrices, f32 activations: only the order of f32 sums differs.
    let model = load("llama3_gguf_f16", None);
    let [whole, native, turns] = three_ways(&model, 5);
    assert!(max_diff(&whole, &native) < 1e-4, "{}", max_diff(&whole, &native));
    assert!(max_diff(&whole, &turns) < 1e-4, "{}", max_diff(&whole, &turns));
}

#[test]
fn native_prefill_matches_the_candle_path_on_q8_blocks() {
    // Sliding window (mistral, window 8 < 12 tokens), grouped heads, tied embeddings, Phi-3's
    // fused projections.
    let models = [
        ("llama3", load("llama3", Some(Quantization::Q8_0))),
        ("mistral", load("mistral", Some(Quantization::Q8_0))),
        ("phi3", load("phi3", Some(Quantization::Q8_0))),
        ("llama_tied_q8_0", load("llama_tied_q8_0", None)),
    ];
    for (name, model) in &models {
        for split in [2, 7] {
            let [whole, native, turns] = three_ways(model, split);
            let scale = whole.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // Same activations, same kernels: the two native runs differ only in sum order.
            assert!(max_diff(&whole, &native) <= 1e-4 * scale.max(1.0), "{name}: {} (scale {scale})", max_diff(&whole, &native));
            assert!(max_diff(&native, &turns) <= 1e-4 * scale.max(1.0), "{name} split {split}: {}", max_diff(&native, &turns));
        }
    }
}

#[test]
fn prefill_after_padding_skips_the_padding_slots() {
    // A left-padded one-row batch first (candle path), then a native prefill after it.
    let model = load("llama3_gguf_f16", None);
    let padded = BatchInput::left_padded(&[PROMPT[..5].to_vec(), PROMPT[..3].to_vec()], 0);
    let row = BatchInput { ids: vec![padded.ids[1].clone()], attention_mask: vec![padded.attention_mask[1].clone()] };
    let mut cache = model.new_cache(1, 10).unwrap();
    model.forward_batch(&row, &mut cache).unwrap();
    let native = model.forward_last(&PROMPT[3..8], &mut cache).unwrap();
    let mut cache = model.new_cache(1, 10).unwrap();
    let mut ids = row.ids[0].clone();
    let mut mask = row.attention_mask[0].clone();
    ids.extend_from_slice(&PROMPT[3..8]);
    mask.extend([true; 5]);
    let whole = model.forward_batch_last(&BatchInput { ids: vec![ids], attention_mask: vec![mask] }, &mut cache).unwrap();
    assert!(max_diff(&native, &whole[0]) < 1e-4, "{}", max_diff(&native, &whole[0]));
}
