//! `chatlm template`: single conversations from files, `--tokenize`, `--template`, `--jsonl` (the
//! whole golden corpus end to end, bad lines among good ones), and clear errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    dir.join("chat_templates/golden.jsonl").exists().then_some(dir)
}

fn chatlm(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .arg("template")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatlm runs");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_string();
    // Feed stdin from a thread: a large input must not deadlock against a full stdout pipe.
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn reference() -> Value {
    serde_json::from_str(include_str!("../../chatlm-template/tests/data/template_tokenize.json")).unwrap()
}

fn tmp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatlm-template-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn renders_and_tokenizes_the_korean_tutorial_like_transformers() {
    let Some(dir) = fixtures() else {
        println!("skipped: fixtures not found");
        return;
    };
    let data = reference();
    let case = data["cases"].as_array().unwrap().iter().find(|c| c["name"] == "llama3_korean_tutorial").unwrap();
    let tok = dir.join("tokenizers/llama3");
    let tok = tok.to_str().unwrap();
    let messages = serde_json::to_string(&case["messages"]).unwrap();
    let out = chatlm(&["--tokenizer", tok, "--messages", "-"], &messages);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Exactly the prompt: no added newline.
    assert_eq!(String::from_utf8(out.stdout).unwrap(), case["text"].as_str().unwrap());
    let file = tmp("ko.json", &messages);
    let out = chatlm(&["--tokenizer", tok, "--messages", file.to_str().unwrap(), "--tokenize"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ids: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids, case["ids"]);
    assert_eq!(ids.as_array().map(Vec::len), Some(45), "the tutorial's conversation is 45 ids");
    // With the generation prompt.
    let gen = data["cases"].as_array().unwrap().iter().find(|c| c["name"] == "llama3_korean_tutorial_gen").unwrap();
    let out = chatlm(&["--tokenizer", tok, "--messages", "-", "--add-generation-prompt"], &messages);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), gen["text"].as_str().unwrap());
}

#[test]
fn template_file_tools_and_kwargs() {
    let tpl = tmp(
        "t.jinja",
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{{ tools|tojson }} {{ greeting }} {{ strftime_now('%Y') }}",
    );
    let tools = tmp("tools.json", r#"[{"name": "f"}]"#);
    let out = chatlm(
        &[
            "--template",
            tpl.to_str().unwrap(),
            "--messages",
            "-",
            "--tools",
            tools.to_str().unwrap(),
            "--kwarg",
            "greeting=\"hé\"",
            "--now",
            "2024-01-02T03:04:05",
        ],
        r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "[user] hi\n[{\"name\": \"f\"}] hé 2024");
}

#[test]
fn errors_are_clear_and_never_panic() {
    let msgs = r#"[{"role": "user", "content": "hi"}]"#;
    let out = chatlm(&["--tokenizer", "/nonexistent/tok", "--messages", "-"], msgs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent/tok") && !err.contains("panicked"), "{err}");
    let bad = tmp("bad.jinja", "line one\n{% for m in messages %}{{ m.content }");
    let out = chatlm(&["--template", bad.to_str().unwrap(), "--messages", "-"], msgs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("line 2"), "{err}");
    let raising = tmp("raise.jinja", "{{ raise_exception('Conversation roles must alternate') }}");
    let out = chatlm(&["--template", raising.to_str().unwrap(), "--messages", "-"], msgs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Conversation roles must alternate"), "{err}");
    let out = chatlm(&["--template", raising.to_str().unwrap(), "--messages", "-"], "not json");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
}

#[test]
fn jsonl_answers_every_line() {
    let tpl = "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' ~ m.role) }}{% endif %}{{ bos_token }}{{ m.content }}{% endfor %}";
    let lines = [
        json!({"chat_template": tpl, "messages": [{"role": "user", "content": "a"}], "special_tokens": {"bos_token": "<s>"}}),
        json!({"chat_template": tpl, "messages": [{"role": "narrator", "content": "b"}]}),
        json!("not an object"),
        json!({"chat_template": tpl}),
        json!({"chat_template": "{% if %}", "messages": [{"role": "user", "content": "a"}]}),
        json!({"chat_template": "{{ messages[0].content.nope() }}", "messages": [{"role": "user", "content": "a"}]}),
        json!({"chat_template": tpl, "messages": [{"role": "user", "content": "a"}], "continue_final_message": true, "add_generation_prompt": true}),
        json!({"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}], "messages": [{"role": "user", "content": "a"}], "tools": []}),
        json!({"chat_template": tpl, "messages": [{"role": "user", "content": "z"}], "tokenize": true}),
    ];
    let mut input: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    input.push_str("{broken json\n");
    let out = chatlm(&["--jsonl"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 10);
    assert_eq!(answers[0], json!({"text": "<s>a"}));
    assert_eq!(answers[1], json!({"error": {"kind": "raise_exception", "message": "bad role narrator"}}));
    for i in [2, 3, 4, 6, 8, 9] {
        assert_eq!(answers[i]["error"]["kind"], "invalid_request", "line {}: {}", i + 1, answers[i]);
    }
    assert_eq!(answers[5]["error"]["kind"], "render", "{}", answers[5]);
    assert_eq!(answers[7], json!({"text": "T"}));
}

/// The whole golden corpus through `--jsonl`: same texts, same error kinds.
#[test]
fn jsonl_reproduces_the_golden_corpus() {
    let Some(dir) = fixtures() else {
        println!("skipped: fixtures not found");
        return;
    };
    let templates: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("chat_templates/templates.json")).unwrap()).unwrap();
    let golden: Vec<Value> = std::fs::read_to_string(dir.join("chat_templates/golden.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut input = String::new();
    for g in &golden {
        let t = templates.iter().find(|t| t["name"] == g["template"]).unwrap();
        let mut special = serde_json::Map::new();
        for k in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            if !t[k].is_null() {
                special.insert(k.into(), t[k].clone());
            }
        }
        let req = json!({
            "chat_template": t["chat_template"], "messages": g["messages"], "tools": g["tools"],
            "documents": g["documents"], "add_generation_prompt": g["add_generation_prompt"],
            "continue_final_message": g["continue_final_message"], "special_tokens": special,
            "kwargs": g["extra_kwargs"], "now": g["now"],
        });
        input.push_str(&req.to_string());
        input.push('\n');
    }
    let out = chatlm(&["--jsonl"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), golden.len());
    for (i, (g, a)) in golden.iter().zip(&answers).enumerate() {
        match g.get("error") {
            None => assert_eq!(a["text"], g["expected"], "line {}", i + 1),
            Some(e) => {
                let kind = match e["origin"].as_str().unwrap() {
                    "raise_exception" => "raise_exception",
                    "transformers" => "invalid_request",
                    _ => "render",
                };
                assert_eq!(a["error"]["kind"], kind, "line {}: {a}", i + 1);
                if kind == "raise_exception" {
                    assert_eq!(a["error"]["message"], e["message"], "line {}", i + 1);
                }
            }
        }
    }
}
