//! `forward_step_many` (one decode step of several sequences, each with its own cache)
//! gives what stepping each sequence alone with `forward_last` gives, and changes no cache
//! when it fails.

mod common;

use chatlm_model::{KvCache, Model, ModelError, Numerics, Quantization};

use common::{load_quantized as load, max_diff, NATIVE_PROMPT as PROMPT};

/// Three prompts of different lengths and contents: the sequences sit at different
/// positions, so a step that mixed up rows, positions or caches would show.
fn prompts() -> [Vec<u32>; 3] {
    [PROMPT[..3].to_vec(), PROMPT[2..9].to_vec(), PROMPT.to_vec()]
}

/// The tokens fed to sequence `seq` at step `step` (different per sequence).
fn token(seq: usize, step: usize) -> u32 {
    [5, 40, 90][seq] + 3 * step as u32
}

const STEPS: usize = 6;

/// One step's logits, `[sequence][vocab]`.
type StepLogits = Vec<Vec<f32>>;

/// Per step, the logits of every sequence: stepped together (`forward_step_many`) and one
/// at a time (`forward_last`). The caches have different capacities (their layouts differ).
fn both_ways(model: &Model) -> Vec<(StepLogits, StepLogits)> {
    let prompts = prompts();
    let new_caches = || -> Vec<KvCache> {
        prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut cache = model.new_cache(1, p.len() + STEPS + 3 * i).unwrap();
                model.forward_last(p, &mut cache).unwrap();
                cache
            })
            .collect()
    };
    let (mut together, mut alone) = (new_caches(), new_caches());
    let mut out = Vec::new();
    for step in 0..STEPS {
        let tokens: Vec<u32> = (0..3).map(|seq| token(seq, step)).collect();
        let mut refs: Vec<&mut KvCache> = together.iter_mut().collect();
        let batched = model.forward_step_many(&tokens, &mut refs).unwrap();
        let single = tokens.iter().zip(&mut alone).map(|(&t, cache)| model.forward_last(&[t], cache).unwrap()).collect();
        out.push((batched, single));
    }
    for (a, b) in together.iter().zip(&alone) {
        assert_eq!(a.len(), b.len());
    }
    for (cache, prompt) in together.iter().zip(&prompts) {
        assert_eq!(cache.len(), prompt.len() + STEPS);
    }
    out
}

/// The sequences' logits are far apart: comparing rows would catch swapped or mixed rows.
fn assert_rows_differ(rows: &[Vec<f32>]) {
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            assert!(max_diff(&rows[i], &rows[j]) > 1e-2, "rows {i} and {j} nearly equal: {}", max_diff(&rows[i], &rows[j]));
        }
    }
}

#[test]
fn steps_together_match_steps_alone_on_f16_blocks() {
    // f16 matrices, f32 activations: the paths differ only in the order of f32 sums.
    let model = load("llama3_gguf_f16", None);
    for (step, (batched, single)) in both_ways(&model).iter().enumerate() {
        assert_eq!(batched.len(), 3);
        assert_rows_differ(single);
        for (seq, (a, b)) in batched.iter().zip(single).enumerate() {
            assert_eq!(a.len(), model.config().vocab_size);
            assert!(max_diff(a, b) < 1e-4, "step {step} sequence {seq}: {}", max_diff(a, b));
        }
    }
}

#[test]
fn steps_together_match_steps_alone_on_q8_blocks() {
    // Sliding window (mistral, window 8 < the 12-token prompt), grouped heads, tied
    // embeddings, Phi-3's fused projections; the bound of `native_decode.rs` (activations
    // rounded to 8 bits from slightly different f32 inputs).
    let models = [
        ("llama3", load("llama3", Some(Quantization::Q8_0))),
        ("mistral", load("mistral", Some(Quantization::Q8_0))),
        ("phi3", load("phi3", Some(Quantization::Q8_0))),
        ("llama_tied_q8_0", load("llama_tied_q8_0", None)),
    ];
    for (name, model) in &models {
        for (step, (batched, single)) in both_ways(model).iter().enumerate() {
            assert_rows_differ(single);
            if chatlm_model::kernels::cpu().batch_invariant() {
                // These kernels sum a row in one order whatever the batch: the same bits.
                assert_eq!(batched, single, "{name} step {step}");
            }
            for (seq, (a, b)) in batched.iter().zip(single).enumerate() {
                let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(max_diff(a, b) <= 1e-2 * scale, "{name} step {step} sequence {seq}: {} (scale {scale})", max_diff(a, b));
            }
        }
    }
}

#[test]
fn the_fallback_steps_each_sequence_with_forward_last() {
    // Dense f32 safetensors take the candle path, bf16 compute too: the fallback loops over
    // `forward_last`, so the logits are the same bits.
    for name in ["llama3", "llama3_bf16"] {
        for (batched, single) in both_ways(&load(name, None)) {
            assert_rows_differ(&single);
            assert_eq!(batched, single, "{name}");
        }
    }
}

#[test]
fn the_real_model_steps_together_in_both_numerics() {
    // The tiny models' head size is outside llama.cpp numerics: SmolLM2 (Q4_1) when
    // `CHATLM_SMOLLM2` names it. Native: the m-row products; llama.cpp: the fallback, bit for bit.
    let Some(path) = std::env::var_os("CHATLM_SMOLLM2").filter(|p| std::path::Path::new(p).is_file()) else {
        println!("skipped: CHATLM_SMOLLM2 not set or not a file");
        return;
    };
    let source = chatlm_model::ModelSource::resolve(path.to_str().unwrap()).unwrap();
    let mut model = Model::from_source(&source, &chatlm_model::LoadOptions::default()).unwrap();
    for (step, (batched, single)) in both_ways(&model).iter().enumerate() {
        if chatlm_model::kernels::cpu().batch_invariant() {
            assert_eq!(batched, single, "step {step}: batched rows are the lone sequences' bits");
        }
        for (i, a) in batched.iter().enumerate() {
            // Where the kernels are not batch-invariant (AVX-512 VNNI): SmolLM2's activation
            // outliers make its 8-bit activation rounding flip on ulp-sized changes of the sum
            // order; the native prefill and the one-token step already differ by ~2% of the
            // logit scale (measured 1.5–2.1%), the batched step by up to 2.5%.
            let scale = single[i].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let own = max_diff(a, &single[i]);
            assert!(own <= 5e-2 * scale, "step {step} sequence {i}: {own} (scale {scale})");
            // Whatever the rounding, each row is its own sequence's, not a neighbour's.
            for (j, other) in single.iter().enumerate().filter(|&(j, _)| j != i) {
                assert!(own < max_diff(a, other), "step {step}: row {i} is as close to sequence {j}");
            }
        }
    }
    model.set_numerics(Numerics::LlamaCpp).unwrap();
    for (batched, single) in both_ways(&model) {
        assert_eq!(batched, single);
    }
}

#[test]
fn one_sequence_is_forward_last_bit_for_bit() {
    for model in [load("llama3_gguf_f16", None), load("mistral", Some(Quantization::Q8_0))] {
        let (mut a, mut b) = (model.new_cache(1, 16).unwrap(), model.new_cache(1, 16).unwrap());
        model.forward_last(&PROMPT[..5], &mut a).unwrap();
        model.forward_last(&PROMPT[..5], &mut b).unwrap();
        for &t in &PROMPT[5..] {
            let many = model.forward_step_many(&[t], &mut [&mut a]).unwrap();
            assert_eq!(many, vec![model.forward_last(&[t], &mut b).unwrap()]);
        }
        assert_eq!(a.len(), b.len());
    }
}

#[test]
fn a_full_cache_fails_the_step_and_changes_no_cache() {
    for model in [load("llama3_gguf_f16", None), load("llama3", None)] {
        let mut caches: Vec<KvCache> = [8, 4, 9].iter().map(|&cap| model.new_cache(1, cap).unwrap()).collect();
        for (cache, n) in caches.iter_mut().zip([3, 4, 5]) {
            model.forward_last(&PROMPT[..n], cache).unwrap();
        }
        // The middle cache is full; the first is stepped before it on the fallback path.
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        let err = model.forward_step_many(&[7, 8, 9], &mut refs).unwrap_err();
        assert!(matches!(err, ModelError::ContextOverflow { needed: 5, capacity: 4 }), "{err}");
        assert_eq!(caches.iter().map(KvCache::len).collect::<Vec<_>>(), vec![3, 4, 5]);

        // Nothing was half-written: the other two still step like fresh copies of themselves.
        let mut fresh: Vec<KvCache> = [(8, 3), (9, 5)]
            .iter()
            .map(|&(cap, n)| {
                let mut cache = model.new_cache(1, cap).unwrap();
                model.forward_last(&PROMPT[..n], &mut cache).unwrap();
                cache
            })
            .collect();
        let [first, _, third] = &mut caches[..] else { unreachable!() };
        let batched = model.forward_step_many(&[7, 9], &mut [first, third]).unwrap();
        for ((row, cache), t) in batched.iter().zip(&mut fresh).zip([7, 9]) {
            let alone = model.forward_last(&[t], cache).unwrap();
            assert!(max_diff(row, &alone) < 1e-4, "{}", max_diff(row, &alone));
        }
    }
}

#[test]
fn invalid_steps_are_typed_errors() {
    let model = load("llama3_gguf_f16", None);
    let vocab = model.config().vocab_size as u32;
    let (mut a, mut b) = (model.new_cache(1, 8).unwrap(), model.new_cache(1, 8).unwrap());
    model.forward_last(&PROMPT[..2], &mut a).unwrap();
    let mut batch_two = model.new_cache(2, 8).unwrap();
    let invalid = |r: chatlm_model::Result<Vec<Vec<f32>>>| matches!(r, Err(ModelError::InvalidInput(_)));
    assert!(invalid(model.forward_step_many(&[], &mut [])));
    assert!(invalid(model.forward_step_many(&[1], &mut [&mut a, &mut b])));
    assert!(invalid(model.forward_step_many(&[1, vocab], &mut [&mut a, &mut b])));
    assert!(invalid(model.forward_step_many(&[1, 2], &mut [&mut a, &mut batch_two])));
    assert_eq!((a.len(), b.len(), batch_two.len()), (2, 0, 0));
}
