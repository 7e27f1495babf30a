//! `chatlm generate` on the real SmolLM2-135M-Instruct GGUF files against llama.cpp
//! (llama-cpp-python, same file, greedy): `scripts/reference/generate_llamacpp.py` wrote
//! `tests/data/generate_llamacpp_<quant>.json`.
//!
//! Each chat is generated with stop tokens ignored for as long as llama.cpp's run, so one
//! process checks both the answer (through its stop token) and the longer continuation.
//! On the f16 file every answer must equal llama.cpp's through its stop token (measured: all 8,
//! and the 48 tokens past it as well). On the Q4_1/Q8_0 files, where both engines quantize
//! activations to 8 bits and round differently, the tokens may differ; then
//! the first differing step must be a near-tie in llama.cpp's own
//! logits: our token among its top candidates, less than `NEAR_TIE` below its choice. The
//! measured scale of that noise: llama.cpp itself moves this model's logits by up to 1.0
//! (0.2 RMS) when only its KV cache goes from f16 to f32, and its own greedy answers change
//! with it (`answer_ids_f32_kv` in the data).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Largest llama.cpp logit gap (its top token minus ours) accepted at a divergence.
const NEAR_TIE: f64 = 0.35;

fn model_dir() -> Option<PathBuf> {
    let path = std::env::var_os("CHATLM_SMOLLM2")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf")))?;
    path.is_file().then(|| path.parent().map(Path::to_path_buf)).flatten()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// The answer part of a stop-ignored run: through the first stop id.
fn through_stop(run: &[u64], stops: &[u64]) -> Vec<u64> {
    match run.iter().position(|t| stops.contains(t)) {
        Some(i) => run[..=i].to_vec(),
        None => run.to_vec(),
    }
}

struct Outcome {
    answers_equal: usize,
    runs_equal: usize,
    cases: usize,
    /// Answers of llama.cpp with an f32 KV cache equal to its own f16-KV answers.
    llama_self_equal: usize,
}

/// `exact_answers`: every answer must equal llama.cpp's through its stop token (f16 weights,
/// no 8-bit activations); otherwise a first difference may fall on a near-tie.
fn check_file(data: &Path, dir: &Path, exact_answers: bool) -> Option<Outcome> {
    if !data.is_file() {
        println!("skipped: no reference data {}", data.display());
        return None;
    }
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(data).unwrap()).unwrap();
    let gguf = dir.join(reference["gguf"].as_str().unwrap());
    if !gguf.is_file() {
        println!("skipped {}: {} not found", data.display(), gguf.display());
        return None;
    }
    let stops = ids(&reference["stop_ids"]);
    let mut outcome = Outcome { answers_equal: 0, runs_equal: 0, cases: 0, llama_self_equal: 0 };
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let want_run = ids(&case["long_ids"]);
        let want_answer = ids(&case["answer_ids"]);
        let messages = std::env::temp_dir().join(format!("chatlm-smollm2-{}-{n}.json", std::process::id()));
        std::fs::write(&messages, case["messages"].to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_chatlm"))
            .args(["generate", "--model", gguf.to_str().unwrap(), "--messages", messages.to_str().unwrap()])
            .args(["--ignore-eos", "--json", "--max-new-tokens", &want_run.len().to_string()])
            .output()
            .unwrap();
        std::fs::remove_file(&messages).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            got["prompt_tokens"].as_u64().unwrap() as usize,
            case["prompt_ids"].as_array().unwrap().len(),
            "case {n}: the chat template + tokenizer give another prompt length than transformers"
        );
        let llama_f32_kv = ids(&case["answer_ids_f32_kv"]);
        outcome.llama_self_equal += usize::from(llama_f32_kv == want_answer);
        let got_run = ids(&got["ids"]);
        let got_answer = through_stop(&got_run, &stops);
        outcome.cases += 1;
        outcome.answers_equal += usize::from(got_answer == want_answer);
        outcome.runs_equal += usize::from(got_run == want_run);
        if exact_answers {
            assert_eq!(got_answer, want_answer, "case {n} ({}): answer differs from llama.cpp's", case["messages"]);
        }
        let Some(k) = got_run.iter().zip(&want_run).position(|(a, b)| a != b) else {
            assert_eq!(got_run.len(), want_run.len(), "case {n}");
            continue;
        };
        let top = case["long_top"][k].as_array().unwrap();
        let logit = |id: u64| top.iter().find(|p| p[0].as_u64() == Some(id)).map(|p| p[1].as_f64().unwrap());
        let best = top[0][1].as_f64().unwrap();
        let ours = logit(got_run[k]);
        let gap = ours.map(|l| best - l);
        println!(
            "{}: case {n} diverges at token {k} ({} in the answer): llama.cpp {} vs chatlm {}, llama.cpp logit gap {gap:?}",
            reference["gguf"], if k < want_answer.len() { "inside" } else { "after the stop token" },
            want_run[k], got_run[k]
        );
        assert!(
            gap.is_some_and(|g| g < NEAR_TIE),
            "case {n} ({}): token {k} is {} but llama.cpp picks {} with top {top:?}: not a near-tie",
            case["messages"], got_run[k], want_run[k]
        );
    }
    println!(
        "{}: {}/{} answers equal llama.cpp's through the stop token, {}/{} whole stop-ignored runs; \
         for scale, llama.cpp with an f32 KV cache equals its own f16-KV answers in {}/{}",
        reference["gguf"], outcome.answers_equal, outcome.cases, outcome.runs_equal, outcome.cases,
        outcome.llama_self_equal, outcome.cases
    );
    Some(outcome)
}

fn data(quant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/generate_llamacpp_{quant}.json"))
}

#[test]
fn smollm2_greedy_matches_llamacpp_up_to_near_ties() {
    let Some(dir) = model_dir() else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        return;
    };
    for (quant, exact_answers) in [("Q4_1", false), ("Q8_0", false), ("F16", true)] {
        check_file(&data(quant), &dir, exact_answers);
    }
}

/// With `--numerics llamacpp-avx512` (the build that made the reference) every answer equals
/// llama.cpp's token for token through its stop token, on every file (the logits themselves
/// are checked bit for bit, with the long runs, in chatlm-model's `tests/llamacpp_exact.rs`).
#[test]
fn llamacpp_numerics_give_llamacpps_answers() {
    let Some(dir) = model_dir() else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        return;
    };
    for quant in ["Q4_1", "Q8_0", "F16"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(data(quant)).unwrap()).unwrap();
        let gguf = dir.join(reference["gguf"].as_str().unwrap());
        if !gguf.is_file() {
            println!("skipped {quant}: {} not found", gguf.display());
            continue;
        }
        for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
            let want = ids(&case["answer_ids"]);
            let messages = std::env::temp_dir().join(format!("chatlm-smollm2-exact-{}-{n}.json", std::process::id()));
            std::fs::write(&messages, case["messages"].to_string()).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_chatlm"))
                .args(["generate", "--model", gguf.to_str().unwrap(), "--messages", messages.to_str().unwrap()])
                .args(["--numerics", "llamacpp-avx512", "--json", "--max-new-tokens", &want.len().to_string()])
                .output()
                .unwrap();
            std::fs::remove_file(&messages).unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let got: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(ids(&got["ids"]), want, "{quant} case {n} ({})", case["messages"]);
            assert_eq!(got["finish_reason"], case["finish_reason"], "{quant} case {n}");
        }
        println!("{quant}: all {} answers equal llama.cpp's", reference["cases"].as_array().unwrap().len());
    }
}

/// `bench` runs the model in llama.cpp's numerics as `generate` does (the model it covers).
#[test]
fn bench_takes_llamacpp_numerics() {
    let Some(dir) = model_dir() else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        return;
    };
    let gguf = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .args(["bench", "--model", gguf.to_str().unwrap(), "--numerics", "llamacpp-avx2"])
        .args(["--prompt-tokens", "16", "--gen-tokens", "4", "--runs", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(got["prefill_tok_s"].as_f64().unwrap() > 0.0 && got["decode_tok_s"].as_f64().unwrap() > 0.0, "{got}");
}

/// On the f16 GGUF, and on Q4_1 computed like transformers (`--dequantize`), the answer is the
/// expected sentence. On Q4_1/Q8_0 blocks the first token is a near-tie that the 8-bit
/// activations of the quantized products tip to "L'" — in llama.cpp as in chatlm (see the
/// reference data); the exact f32 expansion of Q4_1 picks "The" by 0.08.
#[test]
fn capital_of_france() {
    let Some(dir) = model_dir() else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        return;
    };
    for (file, extra) in [("SmolLM2-135M-Instruct.F16.gguf", None), ("SmolLM2-135M-Instruct.Q4_1.gguf", Some("--dequantize"))] {
        let gguf = dir.join(file);
        if !gguf.is_file() {
            println!("skipped: {} not found", gguf.display());
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_chatlm"))
            .args(["generate", "--model", gguf.to_str().unwrap(), "--prompt", "What is the capital of France?", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (got["text"].as_str(), got["finish_reason"].as_str()),
            (Some("The capital of France is Paris."), Some("stop")),
            "{file} {extra:?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn default_model_comes_from_the_cache() {
    let Some(dir) = model_dir() else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        return;
    };
    let cache = std::env::temp_dir().join(format!("chatlm-default-{}", std::process::id()));
    std::fs::create_dir_all(cache.join("models")).unwrap();
    let link = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"), &link).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .args(["generate", "--prompt", "What is 12 times 7?", "--max-new-tokens", "4", "--json"])
        .env("CHATLM_CACHE", &cache)
        .env("CHATLM_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("fetching"), "{stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["completion_tokens"], 4);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let Some(dir) = model_dir() else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        return;
    };
    let gguf = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let run = |seed: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_chatlm"))
            .args(["generate", "--model", gguf.to_str().unwrap(), "--prompt", "Write a haiku about the sea."])
            .args(["--temperature", "1.0", "--top-p", "0.95", "--seed", seed, "--max-new-tokens", "24", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["ids"].clone()
    };
    let a = run("11");
    assert_eq!(a, run("11"));
    assert_ne!(a, run("12"));
}
