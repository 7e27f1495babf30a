//! Our 8-bit activation path is as accurate as llama.cpp's, on the real SmolLM2 GGUF
//! (`CHATLM_SMOLLM2`; the Q8_0 file is used too when it lies beside it).
//!
//! Both engines quantize activations to 8 bits for Q4_1/Q8_0 products, each with its own
//! rounding, and on this 135M model that noise alone can turn greedy choices (see
//! `crates/chatlm-cli/tests/generate_smollm2.rs`). So rather than token equality, this test
//! feeds llama.cpp's own greedy tokens (`scripts/reference/generate_llamacpp.py`, same file)
//! to the model and compares, step by step, the logits of llama.cpp's top-4 candidates:
//! chatlm on the blocks, llama.cpp, and the exact value of the quantized model (its blocks
//! expanded to f32, as transformers computes it). chatlm must be no farther from the exact
//! value than llama.cpp is, and pick llama.cpp's token at almost every step.
//! (`examples/llamacpp_parity.rs` prints the same figures over the whole runs.)

mod common;

use std::path::{Path, PathBuf};

use chatlm_model::{LoadOptions, Model, ModelSource};
use common::argmax;
use serde_json::Value;

/// Steps compared per chat (the prompt's last position, then one per fed token).
const STEPS: usize = 32;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

struct Distances {
    ours_llama: f64,
    llama_exact: f64,
    ours_exact: f64,
    same_argmax: usize,
    steps: usize,
}

fn distances(gguf: &Path, reference: &Value) -> Distances {
    let source = ModelSource::resolve(gguf.to_str().unwrap()).unwrap();
    let model = Model::from_source(&source, &LoadOptions::default()).unwrap();
    let exact = Model::from_source(&source, &LoadOptions { dequantize: true, ..LoadOptions::default() }).unwrap();
    let mut d = Distances { ours_llama: 0.0, llama_exact: 0.0, ours_exact: 0.0, same_argmax: 0, steps: 0 };
    let mut entries = 0usize;
    for case in reference["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let run = ids(&case["long_ids"]);
        let tops = case["long_top"].as_array().unwrap();
        let steps = STEPS.min(tops.len());
        let mut cache = model.new_cache(1, prompt.len() + steps).unwrap();
        let mut exact_cache = exact.new_cache(1, prompt.len() + steps).unwrap();
        let mut ours = model.forward_last(&prompt, &mut cache).unwrap();
        let mut truth = exact.forward_last(&prompt, &mut exact_cache).unwrap();
        for (k, top) in tops[..steps].iter().enumerate() {
            let top = top.as_array().unwrap();
            for pair in top {
                let (id, llama) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
                d.ours_llama += (ours[id] as f64 - llama).abs();
                d.llama_exact += (truth[id] as f64 - llama).abs();
                d.ours_exact += (ours[id] as f64 - truth[id] as f64).abs();
                entries += 1;
            }
            d.same_argmax += usize::from(argmax(&ours) as u64 == top[0][0].as_u64().unwrap());
            d.steps += 1;
            if k + 1 < steps {
                ours = model.forward_last(&[run[k]], &mut cache).unwrap();
                truth = exact.forward_last(&[run[k]], &mut exact_cache).unwrap();
            }
        }
    }
    d.ours_llama /= entries as f64;
    d.llama_exact /= entries as f64;
    d.ours_exact /= entries as f64;
    d
}

#[test]
fn eight_bit_activations_are_as_accurate_as_llamacpp() {
    let Some(q4_1) = std::env::var_os("CHATLM_SMOLLM2").map(PathBuf::from).filter(|p| p.is_file()) else {
        println!("skipped: CHATLM_SMOLLM2 not set or not a file");
        return;
    };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatlm-cli/tests/data");
    for quant in ["Q4_1", "Q8_0"] {
        let gguf = q4_1.with_file_name(format!("SmolLM2-135M-Instruct.{quant}.gguf"));
        if !gguf.is_file() {
            println!("skipped {quant}: {} not found (scripts/bench/model_convert.py makes it)", gguf.display());
            continue;
        }
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(data.join(format!("generate_llamacpp_{quant}.json"))).unwrap(),
        )
        .unwrap();
        let d = distances(&gguf, &reference);
        println!(
            "{quant}: mean |Δlogit| chatlm–llama.cpp {:.4}; from the exact f32 value: llama.cpp {:.4}, chatlm {:.4}; \
             same argmax {}/{}",
            d.ours_llama, d.llama_exact, d.ours_exact, d.same_argmax, d.steps
        );
        assert!(
            d.ours_exact <= 1.3 * d.llama_exact,
            "{quant}: chatlm is {:.4} from the exact value, llama.cpp {:.4}",
            d.ours_exact,
            d.llama_exact
        );
        // Two engines with independent noise of that size land about √2 times it apart.
        assert!(d.ours_llama <= 1.6 * d.llama_exact, "{quant}: {:.4} from llama.cpp", d.ours_llama);
        // Measured 93–97% with the AVX-512 kernels (16 and 32 steps, whole runs); other kernels sum in
        // another order and land elsewhere in the same noise.
        assert!(d.same_argmax * 100 >= d.steps * 85, "{quant}: {}/{} same argmax", d.same_argmax, d.steps);
    }
}
