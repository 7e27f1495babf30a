//! Conformance: every line of `chat_templates/golden.jsonl` (transformers 5.23's own
//! `apply_chat_template` renders of 40 real templates) must come out identical: the text byte for
//! byte, errors as errors (`raise_exception` ones with the template's message), generation spans equal.

use std::collections::HashMap;
use std::path::PathBuf;

use chatlm_template::{ChatTemplate, TemplateError};
use chatlm_tokenizer::ChatTemplateSource;
use serde_json::Value;

#[path = "common/golden_line.rs"]
mod golden_line;
use golden_line::request_from_line;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    dir.join("chat_templates/golden.jsonl").exists().then_some(dir)
}

struct Entry {
    source: ChatTemplateSource,
    tokens: serde_json::Map<String, Value>,
}

fn load_templates(dir: &std::path::Path) -> HashMap<String, Entry> {
    let text = std::fs::read_to_string(dir.join("chat_templates/templates.json")).expect("templates.json");
    let list: Vec<Value> = serde_json::from_str(&text).expect("templates.json is JSON");
    let mut out = HashMap::new();
    for t in list {
        let name = t["name"].as_str().expect("name").to_string();
        let source = match &t["chat_template"] {
            Value::String(s) => ChatTemplateSource::Single(s.clone()),
            Value::Array(items) => ChatTemplateSource::Named(
                items
                    .iter()
                    .map(|i| (i["name"].as_str().unwrap().to_string(), i["template"].as_str().unwrap().to_string()))
                    .collect(),
            ),
            other => panic!("{name}: bad chat_template {other}"),
        };
        let mut tokens = serde_json::Map::new();
        for k in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                tokens.insert(k.to_string(), v.clone());
            }
        }
        out.insert(name, Entry { source, tokens });
    }
    out
}

#[test]
fn golden_renders_match_transformers() {
    let Some(dir) = fixtures() else {
        println!("skipped: fixtures not found");
        return;
    };
    let templates = load_templates(&dir);
    let mut compiled: HashMap<(String, String), ChatTemplate> = HashMap::new();
    let golden = std::fs::read_to_string(dir.join("chat_templates/golden.jsonl")).expect("golden.jsonl");
    let (mut total, mut failures) = (0, Vec::new());
    for (n, raw) in golden.lines().enumerate() {
        let line: Value = serde_json::from_str(raw).expect("golden line is JSON");
        total += 1;
        let name = line["template"].as_str().unwrap().to_string();
        let entry = &templates[&name];
        let id = format!("line {} {}/{}", n + 1, name, line["case"].as_str().unwrap());
        let req = request_from_line(&line, &entry.tokens);
        let result = chatlm_template::select_template(&entry.source, None, req.tools.is_some()).and_then(|src| {
            let key = (name.clone(), src.to_string());
            if !compiled.contains_key(&key) {
                compiled.insert(key.clone(), ChatTemplate::new(src)?);
            }
            compiled[&key].render(&req)
        });
        match (&line.get("error"), result) {
            (Some(err), Ok(r)) => failures.push(format!("{id}: expected error {err}, got {:?}", r.text)),
            (Some(err), Err(e)) => {
                let origin = err["origin"].as_str().unwrap();
                let message = err["message"].as_str().unwrap();
                match (origin, &e) {
                    ("raise_exception", TemplateError::Raised { message: m }) if m == message => {}
                    ("transformers", TemplateError::InvalidRequest(m)) if m == message => {}
                    ("render", TemplateError::Render { .. }) => {}
                    _ => failures.push(format!("{id}: expected {origin} error {message:?}, got {e:?}")),
                }
            }
            (None, Err(e)) => failures.push(format!("{id}: unexpected error {e}")),
            (None, Ok(r)) => {
                let expected = line["expected"].as_str().unwrap();
                if r.text != expected {
                    failures.push(format!("{id}: text differs\n  expected {expected:?}\n  got      {:?}", r.text));
                    continue;
                }
                if let Some(spans) = line.get("generation_byte_spans") {
                    let want: Vec<(usize, usize)> = serde_json::from_value(spans.clone()).unwrap();
                    let got: Vec<(usize, usize)> = r.generation_spans.iter().map(|s| (s.start, s.end)).collect();
                    let want_chars: Vec<(usize, usize)> =
                        serde_json::from_value(line["generation_spans"].clone()).unwrap();
                    let got_chars: Vec<(usize, usize)> =
                        r.generation_char_spans().iter().map(|s| (s.start, s.end)).collect();
                    if got != want || got_chars != want_chars {
                        failures.push(format!("{id}: spans {got:?} / {got_chars:?}, expected {want:?} / {want_chars:?}"));
                    }
                }
            }
        }
    }
    for f in failures.iter().take(40) {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} of {total} golden lines differ", failures.len());
    assert_eq!(total, 1052, "golden.jsonl should have 1,052 lines");
    println!("{total}/{total} golden lines match");
}
