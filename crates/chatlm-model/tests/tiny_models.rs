//! Tiny random models made by `scripts/reference/model_tiny.py`: logits and greedy tokens must
//! match what transformers computed with the same weights.

use std::path::PathBuf;

use chatlm_model::{BatchInput, LoadOptions, Model, ModelSource};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn data_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn load(name: &str) -> (Model, Value) {
    let dir = data_dir(name);
    // GGUF blocks are expanded to f32: the path that is exact against transformers' GGUF loading.
    let options = LoadOptions { dequantize: true, ..LoadOptions::default() };
    let model = Model::from_source(&ModelSource::resolve(dir.to_str().unwrap()).unwrap(), &options).unwrap();
    let expected = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (model, expected)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32
}

/// Largest |a - b|, asserting it is within tolerance.
fn assert_close(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= TOLERANCE, "{what}: max |diff| {worst} > {TOLERANCE}");
    worst
}

fn check_single_prompts(model: &Model, expected: &Value, name: &str) {
    let sample: Vec<usize> = ids(&expected["sample_vocab"]).into_iter().map(|i| i as usize).collect();
    for (p, prompt) in expected["prompts"].as_array().unwrap().iter().enumerate() {
        let prompt_ids = ids(&prompt["ids"]);
        // Exactly the slots needed: the prompt and the 19 fed-back tokens.
        let mut cache = model.new_cache(1, prompt_ids.len() + 19).unwrap();
        let logits: Vec<Vec<f32>> = model.forward(&prompt_ids, &mut cache).unwrap().to_vec2().unwrap();
        assert_close(&format!("{name} prompt {p} last"), logits.last().unwrap(), &floats(&prompt["last_logits"]));
        for (pos, want) in prompt["all_logits"].as_array().unwrap().iter().enumerate() {
            let got: Vec<f32> = sample.iter().map(|&i| logits[pos][i]).collect();
            assert_close(&format!("{name} prompt {p} position {pos}"), &got, &floats(want));
        }
        let mut next = argmax(logits.last().unwrap());
        let mut greedy = vec![next];
        while greedy.len() < 20 {
            next = argmax(&model.forward_last(&[next], &mut cache).unwrap());
            greedy.push(next);
        }
        assert_eq!(greedy, ids(&prompt["greedy"]), "{name} prompt {p} greedy tokens");
    }
}

fn check_batch(model: &Model, expected: &Value, name: &str) {
    let batch = &expected["batch"];
    let sample: Vec<usize> = ids(&expected["sample_vocab"]).into_iter().map(|i| i as usize).collect();
    let mask: Vec<Vec<u32>> = batch["attention_mask"].as_array().unwrap().iter().map(ids).collect();
    let input = BatchInput::with_mask(batch["ids"].as_array().unwrap().iter().map(ids).collect(), &mask);
    let rows = input.ids.len();
    let mut cache = model.new_cache(rows, input.ids[0].len() + 19).unwrap();
    let logits: Vec<Vec<Vec<f32>>> = model.forward_batch(&input, &mut cache).unwrap().to_vec3().unwrap();
    for r in 0..rows {
        for (pos, want) in batch["real_logits"][r].as_array().unwrap().iter().enumerate() {
            if want.is_null() {
                continue;
            }
            let got: Vec<f32> = sample.iter().map(|&i| logits[r][pos][i]).collect();
            assert_close(&format!("{name} batch row {r} position {pos}"), &got, &floats(want));
        }
        assert_close(&format!("{name} batch row {r} last"), logits[r].last().unwrap(), &floats(&batch["last_logits"][r]));
    }
    let mut tokens: Vec<u32> = logits.iter().map(|row| argmax(row.last().unwrap())).collect();
    let mut greedy: Vec<Vec<u32>> = tokens.iter().map(|&t| vec![t]).collect();
    for _ in 1..20 {
        let step = model.forward_batch_last(&BatchInput::step(&tokens), &mut cache).unwrap();
        tokens = step.iter().map(|row| argmax(row)).collect();
        greedy.iter_mut().zip(&tokens).for_each(|(g, &t)| g.push(t));
    }
    let want: Vec<Vec<u32>> = batch["greedy"].as_array().unwrap().iter().map(ids).collect();
    assert_eq!(greedy, want, "{name} batch greedy tokens");
}

macro_rules! tiny_model_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let (model, expected) = load(stringify!($name));
            check_single_prompts(&model, &expected, stringify!($name));
            check_batch(&model, &expected, stringify!($name));
        }
    )*};
}

tiny_model_tests!(llama3, llama3_bf16, llama_tied, qwen2, mistral, phi3, llama_linear, llama_dynamic, llama_tied_q8_0, llama3_gguf, qwen2_gguf, phi3_q8_0);
