//! How close our logits are to llama.cpp's on the SmolLM2 GGUF files, step by step.
//!
//! `cargo run --release -p chatlm-model --example llamacpp_parity -- MODEL REFERENCE_JSON`
//!
//! `REFERENCE_JSON` is one of `crates/chatlm-cli/tests/data/generate_llamacpp_<quant>.json`
//! (made by `scripts/reference/generate_llamacpp.py`): per chat, the prompt ids, llama.cpp's
//! greedy run (`long_ids`) and its top-4 `(id, logit)` at every step (`long_top`). Here the
//! model is fed llama.cpp's own tokens (prompt as one prefill, then one token at a time, as
//! the reference did), so every step is compared on the same prefix: the mean and largest
//! |Δlogit| over those top-4 entries, and how many steps pick the same argmax. Greedy
//! equality is a yes/no verdict; this shows how far the numerics are from llama.cpp's.
//!
//! The same steps also run on the file's blocks expanded to f32 (`LoadOptions::dequantize`,
//! the exact value of the quantized model, as transformers computes it): the distance of each
//! engine from that exact value says whether one of them is off, or both carry the same amount
//! of 8-bit activation noise, only different noise.

use chatlm_model::{LoadOptions, Model, ModelSource};
use serde_json::Value;

fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model_path), Some(reference)) = (args.get(1), args.get(2)) else {
        return Err("usage: llamacpp_parity MODEL REFERENCE_JSON".into());
    };
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(reference)?)?;
    let source = ModelSource::resolve(model_path)?;
    let model = Model::from_source(&source, &LoadOptions::default())?;
    let exact = Model::from_source(&source, &LoadOptions { dequantize: true, ..LoadOptions::default() })?;
    let (mut sum, mut count, mut worst, mut same, mut steps) = (0f64, 0usize, 0f64, 0usize, 0usize);
    // Mean |Δlogit| over the same entries: llama.cpp vs exact, chatlm vs exact.
    let (mut llama_exact, mut ours_exact) = (0f64, 0f64);
    for (n, case) in reference["cases"].as_array().ok_or("no cases")?.iter().enumerate() {
        let ids = |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
        let prompt = ids(&case["prompt_ids"]);
        let run = ids(&case["long_ids"]);
        let tops = case["long_top"].as_array().ok_or("no long_top")?;
        let mut cache = model.new_cache(1, prompt.len() + run.len() + 1)?;
        let mut exact_cache = exact.new_cache(1, prompt.len() + run.len() + 1)?;
        let mut logits = model.forward_last(&prompt, &mut cache)?;
        let mut exact_logits = exact.forward_last(&prompt, &mut exact_cache)?;
        let (mut case_sum, mut case_worst, mut first_diff) = (0f64, 0f64, None);
        for (k, top) in tops.iter().enumerate() {
            let top = top.as_array().unwrap();
            for pair in top {
                let id = pair[0].as_u64().unwrap() as usize;
                let llama = pair[1].as_f64().unwrap();
                let d = (logits[id] as f64 - llama).abs();
                llama_exact += (exact_logits[id] as f64 - llama).abs();
                ours_exact += (exact_logits[id] as f64 - logits[id] as f64).abs();
                case_sum += d;
                case_worst = case_worst.max(d);
                count += 1;
            }
            let want = top[0][0].as_u64().unwrap() as usize;
            if argmax(&logits) == want {
                same += 1;
            } else if first_diff.is_none() {
                first_diff = Some(k);
            }
            steps += 1;
            if k + 1 < run.len() {
                logits = model.forward_last(&[run[k]], &mut cache)?;
                exact_logits = exact.forward_last(&[run[k]], &mut exact_cache)?;
            }
        }
        println!(
            "case {n}: mean |dlogit| {:.4}, max {:.4}, first argmax difference at step {first_diff:?} of {}",
            case_sum / (tops.len() * 4) as f64,
            case_worst,
            tops.len()
        );
        sum += case_sum;
        worst = worst.max(case_worst);
    }
    println!(
        "all: mean |dlogit| {:.4}, max {:.4}, same argmax {same}/{steps} steps",
        sum / count as f64,
        worst
    );
    println!(
        "distance from the exact f32 expansion: llama.cpp {:.4}, chatlm {:.4} (mean |dlogit|)",
        llama_exact / count as f64,
        ours_exact / count as f64
    );
    Ok(())
}
