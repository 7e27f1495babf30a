//! The real SmolLM2-135M-Instruct Q4_1 GGUF (path in `CHATLM_SMOLLM2`) against transformers'
//! output on the same file (`scripts/reference/model_smollm2.py`).

mod common;

use chatlm_model::{LoadOptions, Model, ModelSource};
use common::argmax;

#[test]
fn smollm2_gguf_greedy_matches_transformers() {
    let Some(path) = std::env::var_os("CHATLM_SMOLLM2").filter(|p| std::path::Path::new(p).is_file()) else {
        println!("skipped: CHATLM_SMOLLM2 not set or not a file");
        return;
    };
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::data_dir("smollm2_gguf_expected.json")).unwrap(),
    )
    .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    let source = ModelSource::resolve(path.to_str().unwrap()).unwrap();
    let model = Model::from_source(&source, &LoadOptions::default()).unwrap();
    let prompt = ids(&expected["prompt_ids"]);
    let want = ids(&expected["greedy"]);
    let mut cache = model.new_cache(1, prompt.len() + want.len()).unwrap();
    let logits = model.forward_last(&prompt, &mut cache).unwrap();
    for pair in expected["top"].as_array().unwrap() {
        let (id, value) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
        assert!((logits[id] - value).abs() < 1e-2, "logit of {id}: {} vs transformers {value}", logits[id]);
    }
    let mut next = argmax(&logits);
    let mut greedy = vec![next];
    while greedy.len() < want.len() {
        next = argmax(&model.forward_last(&[next], &mut cache).unwrap());
        greedy.push(next);
    }
    assert_eq!(greedy, want);
}
