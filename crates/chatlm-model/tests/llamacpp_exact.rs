//! With [`Numerics::LlamaCpp`], chatlm computes llama.cpp's logits bit for bit on the real
//! SmolLM2 GGUF (`CHATLM_SMOLLM2`, Q4_1; the Q8_0 and F16 files too when they lie beside it).
//!
//! The reference (`scripts/reference/generate_llamacpp.py`, llama-cpp-python 0.3.36) holds,
//! for eight chats, llama.cpp's greedy run with stop tokens ignored (through the answer and
//! 48 tokens past its stop token) and llama.cpp's top-4 logits at every step. Here the
//! same prompt is prefilled in one batch and the run decoded greedily one token at a time, as
//! llama.cpp did; every step must pick llama.cpp's token, and the four logits must be
//! llama.cpp's to the bit. So the greedy answers are equal through their stop tokens and
//! well beyond.
//!
//! llama.cpp's arithmetic depends on its build, so there is a reference per build (its
//! `system_info` is in the file): `generate_llamacpp_<quant>.json` from llama.cpp built for
//! x86-64 with AVX-512, where ggml sums f16 dot products in 16 lanes, checked with
//! [`Numerics::LlamaCppAvx512`]; `generate_llamacpp_<quant>.avx2.json` from a build for AVX2
//! without AVX-512 (8 lanes, another `expf`), checked with [`Numerics::LlamaCppAvx2`].
//! chatlm reproduces either build's arithmetic on any CPU (its SIMD kernels where the CPU
//! has them, the lane-by-lane Rust elsewhere), so the test runs everywhere.

use std::path::{Path, PathBuf};

use chatlm_model::{LoadOptions, Model, ModelSource, Numerics};
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn argmax(v: &[f32]) -> u32 {
    // The first of equal maxima, as numpy's argsort(-logits, kind="stable") picks.
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Runs every chat of `reference` on `gguf` in `numerics` and returns the number of steps
/// checked.
fn check_file(gguf: &Path, reference: &Value, numerics: Numerics) -> usize {
    let source = ModelSource::resolve(gguf.to_str().unwrap()).unwrap();
    let mut model = Model::from_source(&source, &LoadOptions::default()).unwrap();
    model.set_numerics(numerics).unwrap();
    let stop_ids = ids(&reference["stop_ids"]);
    let mut steps = 0;
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let run = ids(&case["long_ids"]);
        let tops = case["long_top"].as_array().unwrap();
        let mut cache = model.new_cache(1, prompt.len() + run.len()).unwrap();
        let mut logits = model.forward_last(&prompt, &mut cache).unwrap();
        for (k, (&want, top)) in run.iter().zip(tops).enumerate() {
            for pair in top.as_array().unwrap() {
                let (id, theirs) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
                assert_eq!(
                    logits[id].to_bits(),
                    theirs.to_bits(),
                    "{} ({numerics:?}): chat {n}, step {k}: logit of token {id} is {} where llama.cpp has {theirs}",
                    gguf.display(),
                    logits[id]
                );
            }
            assert_eq!(argmax(&logits), want, "{} ({numerics:?}): chat {n}, step {k}", gguf.display());
            steps += 1;
            if k + 1 < run.len() {
                logits = model.forward_last(&[want], &mut cache).unwrap();
            }
        }
        // The answer is the run through its first stop token (or the whole run).
        let answer = ids(&case["answer_ids"]);
        let through_stop = run.iter().position(|t| stop_ids.contains(t)).map_or(run.len(), |i| i + 1);
        assert_eq!(&run[..through_stop], &answer[..], "chat {n}");
    }
    steps
}

/// The reference of `quant` made by the llama.cpp build named by `suffix` (`""` for AVX-512),
/// if there is one.
fn reference(quant: &str, suffix: &str) -> Option<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../chatlm-cli/tests/data/generate_llamacpp_{quant}{suffix}.json"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// Checks each GGUF beside `$CHATLM_SMOLLM2` that has a reference of this build.
fn check_build(numerics: Numerics, suffix: &str, avx512: bool) {
    let Some(q4_1) = std::env::var_os("CHATLM_SMOLLM2").map(PathBuf::from).filter(|p| p.is_file()) else {
        println!("skipped: CHATLM_SMOLLM2 not set or not a file");
        return;
    };
    for quant in ["Q4_1", "Q8_0", "F16"] {
        let file = q4_1.with_file_name(format!("SmolLM2-135M-Instruct.{quant}.gguf"));
        let Some(reference) = reference(quant, suffix) else {
            assert_ne!(quant, "Q4_1", "the Q4_1 reference of each build is in the repository");
            println!("{quant}: skipped (no {numerics:?} reference)");
            continue;
        };
        let info = reference["system_info"].as_str().unwrap();
        assert!(info.contains("AVX2 = 1") && info.contains("AVX512 = 1") == avx512, "{quant}{suffix}: made by another build ({info})");
        if !file.is_file() {
            println!("{quant}: skipped ({} not found)", file.display());
            continue;
        }
        let steps = check_file(&file, &reference, numerics);
        println!("{quant}: {steps} steps equal to llama.cpp ({numerics:?}) bit for bit");
    }
}

#[test]
fn greedy_runs_and_logits_equal_llamacpp_avx512_bit_for_bit() {
    check_build(Numerics::LlamaCppAvx512, "", true);
}

#[test]
fn greedy_runs_and_logits_equal_llamacpp_avx2_bit_for_bit() {
    check_build(Numerics::LlamaCppAvx2, ".avx2", false);
}

#[test]
fn unsupported_models_are_refused_with_a_reason() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let Some(qwen) = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("qwen2"))) else {
        panic!("tests/data holds the tiny Qwen2 model");
    };
    let mut model = Model::from_source(&ModelSource::resolve(qwen.to_str().unwrap()).unwrap(), &LoadOptions::default()).unwrap();
    let err = model.set_numerics(Numerics::LlamaCpp).unwrap_err().to_string();
    assert!(err.contains("llama.cpp numerics") && err.contains("Qwen2"), "{err}");
    assert_eq!(model.numerics(), Numerics::Native);
    assert_eq!("llamacpp".parse::<Numerics>(), Ok(Numerics::LlamaCpp));
    assert_eq!("llamacpp-avx2".parse::<Numerics>(), Ok(Numerics::LlamaCppAvx2));
    assert_eq!("llamacpp-avx512".parse::<Numerics>(), Ok(Numerics::LlamaCppAvx512));
    assert!("fast".parse::<Numerics>().is_err());
}
