//! The real SmolLM2-135M-Instruct Q4_1 GGUF (path in `CHATLM_SMOLLM2`) against transformers'
//! output on the same file (`scripts/reference/model_smollm2.py`).

mod common;

use chatlm_model::{LoadOptions, Model, ModelSource};
use common::argmax;
use serde_json::Value;

fn setup() -> Option<(ModelSource, Value)> {
    let Some(path) = std::env::var_os("CHATLM_SMOLLM2").filter(|p| std::path::Path::new(p).is_file()) else {
        println!("skipped: CHATLM_SMOLLM2 not set or not a file");
        return None;
    };
    let expected = std::fs::read_to_string(common::data_dir("smollm2_gguf_expected.json")).unwrap();
    Some((ModelSource::resolve(path.to_str().unwrap()).unwrap(), serde_json::from_str(&expected).unwrap()))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Greedy tokens after the prompt, `count` of them.
fn greedy(model: &Model, prompt: &[u32], count: usize) -> (Vec<f32>, Vec<u32>) {
    let mut cache = model.new_cache(1, prompt.len() + count).unwrap();
    let logits = model.forward_last(prompt, &mut cache).unwrap();
    let mut next = argmax(&logits);
    let mut tokens = vec![next];
    while tokens.len() < count {
        next = argmax(&model.forward_last(&[next], &mut cache).unwrap());
        tokens.push(next);
    }
    (logits, tokens)
}

/// On the quantized blocks the logits move by the rounding of 8-bit activations; the first
/// answer token is a near-tie in transformers' own logits (504 "The" vs 60 "L", 0.08 apart),
/// so the check is closeness to the exact expansion, not token equality.
#[test]
fn smollm2_gguf_on_blocks_stays_close_to_the_f32_expansion_in_a_quarter_of_the_memory() {
    let Some((source, expected)) = setup() else { return };
    let blocks = Model::from_source(&source, &LoadOptions::default()).unwrap();
    let exact = Model::from_source(&source, &LoadOptions { dequantize: true, ..LoadOptions::default() }).unwrap();
    let prompt = ids(&expected["prompt_ids"]);
    let (got, _) = greedy(&blocks, &prompt, 1);
    let (want, _) = greedy(&exact, &prompt, 1);
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let error = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale;
    assert!(error < 0.1, "relative error {error}");
    let top = expected["top"].as_array().unwrap();
    let top2: Vec<u32> = top[..2].iter().map(|p| p[0].as_u64().unwrap() as u32).collect();
    assert!(top2.contains(&argmax(&got)), "blocks pick {} outside transformers' top two {top2:?}", argmax(&got));
    assert!(blocks.weight_bytes() * 4 < exact.weight_bytes() + (8 << 20), "{} vs {}", blocks.weight_bytes(), exact.weight_bytes());
    println!("weights: {} MiB on blocks, {} MiB expanded", blocks.weight_bytes() >> 20, exact.weight_bytes() >> 20);
}

#[test]
fn smollm2_gguf_expanded_to_f32_matches_transformers() {
    let Some((source, expected)) = setup() else { return };
    let model = Model::from_source(&source, &LoadOptions { dequantize: true, ..LoadOptions::default() }).unwrap();
    let want = ids(&expected["greedy"]);
    let (logits, got) = greedy(&model, &ids(&expected["prompt_ids"]), want.len());
    for pair in expected["top"].as_array().unwrap() {
        let (id, value) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
        assert!((logits[id] - value).abs() < 1e-2, "logit of {id}: {} vs transformers {value}", logits[id]);
    }
    assert_eq!(got, want);
}
