//! `chatlm tokenize`, `decode` and `inspect` on the fixture tokenizers.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn tokenizer(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    let path = dir.join("tokenizers").join(name);
    if path.is_dir() {
        Some(path)
    } else {
        println!("skipped: fixtures not found");
        None
    }
}

fn chatlm(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatlm runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json stdout")
}

#[test]
fn tokenize_korean_llama3() {
    let Some(dir) = tokenizer("llama3") else { return };
    let dir = dir.to_str().expect("utf8 path");
    let out = chatlm(&["tokenize", "--tokenizer", dir, "오늘은 배가 너무 고프다"], "");
    assert_eq!(
        stdout_json(&out),
        serde_json::json!([128000, 58368, 105622, 34804, 74769, 20565, 109748, 46230, 58260, 63644, 13447])
    );
    let out = chatlm(&["tokenize", "--tokenizer", dir, "--no-special-tokens", "--tokens", "Hello world"], "");
    assert_eq!(stdout_json(&out), serde_json::json!([[9906, "Hello"], [1917, "Ġworld"]]));
}

#[test]
fn tokenize_jsonl_lines() {
    let Some(dir) = tokenizer("phi3") else { return };
    let input = "{\"text\": \"Let's tokenize this sentence!\"}\n\n{\"text\": \"<|user|>\", \"add_special_tokens\": false}\n";
    let out = chatlm(&["tokenize", "--tokenizer", dir.to_str().expect("path"), "--jsonl"], input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("line")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["ids"], serde_json::json!([2803, 29915, 29879, 5993, 675, 445, 10541, 29991]));
    assert_eq!(lines[1]["ids"], serde_json::json!([32010]));
}

#[test]
fn decode_with_and_without_special_tokens() {
    let Some(dir) = tokenizer("llama3") else { return };
    let dir = dir.to_str().expect("path");
    let out = chatlm(&["decode", "--tokenizer", dir, "128000", "9906", "1917", "128009"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<|begin_of_text|>Hello world<|eot_id|>");
    let out = chatlm(&["decode", "--tokenizer", dir, "--skip-special-tokens", "128000", "9906", "1917"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello world");
    let out = chatlm(&["decode", "--tokenizer", dir, "999999"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("999999"));
}

#[test]
fn inspect_reports_stop_ids_and_template() {
    let Some(dir) = tokenizer("llama3") else { return };
    let out = chatlm(&["inspect", "--json", dir.to_str().expect("path")], "");
    let summary = stdout_json(&out);
    let stops: Vec<u64> = summary["stop_tokens"].as_array().expect("stops").iter().map(|s| s["id"].as_u64().expect("id")).collect();
    assert_eq!(stops, [128001, 128009]);
    assert_eq!(summary["len"], 128256);
    assert_eq!(summary["vocab_size"], 128000);
    assert_eq!(summary["chat_template"]["recognised"], "llama3");
    let readable = chatlm(&["inspect", dir.to_str().expect("path")], "");
    let text = String::from_utf8_lossy(&readable.stdout);
    assert!(text.contains("<|eot_id|> = 128009") && text.contains("llama3"), "{text}");
}

#[test]
fn bad_paths_fail_cleanly() {
    let out = chatlm(&["tokenize", "--tokenizer", "/nonexistent/tok", "hi"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/tok") && !err.contains("panicked"), "{err}");
    let Some(dir) = tokenizer("gpt2") else { return };
    let out = chatlm(&["tokenize", "--tokenizer", dir.to_str().expect("path"), "--jsonl"], "{\"txt\": 1}\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
