//! The tokenize glue against transformers (`scripts/reference/template_tokenize.py` →
//! `tests/data/template_tokenize.json`): ids with no second BOS — including the Korean Llama 3
//! tutorial conversation, 45 ids `[128000, 128006, 9125, 128007, 271, 65895, …]`, and two published
//! variants of it whose notebooks printed their ids — and assistant masks from
//! `{% generation %}` spans on byte-level BPE (llama3, qwen2, gpt2) and SentencePiece (phi3).

use std::path::PathBuf;

use chatlm_template::{apply_chat_template, ApplyOptions, ChatRequest, ChatTemplate};
use chatlm_tokenizer::Tokenizer;
use serde_json::Value;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    dir.join("tokenizers").is_dir().then_some(dir)
}

#[test]
fn ids_and_masks_match_transformers() {
    let Some(dir) = fixtures() else {
        println!("skipped: fixtures not found");
        return;
    };
    let data: Value =
        serde_json::from_str(include_str!("data/template_tokenize.json")).expect("reference data is JSON");
    let templates: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("chat_templates/templates.json")).expect("templates.json"),
    )
    .expect("templates.json is JSON");
    let cases = data["cases"].as_array().expect("cases");
    assert!(cases.len() >= 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let tok = Tokenizer::from_pretrained(dir.join("tokenizers").join(case["tokenizer"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let src = &case["template"];
        let template = if let Some(fixture) = src.get("fixture_template").and_then(Value::as_str) {
            let t = templates.iter().find(|t| t["name"] == fixture).expect("fixture template");
            ChatTemplate::new(t["chat_template"].as_str().unwrap()).unwrap()
        } else if let Some(inline) = src.get("inline").and_then(Value::as_str) {
            ChatTemplate::new(inline).unwrap()
        } else {
            ChatTemplate::for_tokenizer(&tok, None, false).unwrap()
        };
        let mut req = ChatRequest::new(case["messages"].as_array().unwrap().clone());
        req.add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
        let want_mask = case.get("assistant_masks").is_some();
        let opts = ApplyOptions { tokenize: true, return_assistant_tokens_mask: want_mask };
        let applied = apply_chat_template(&tok, &template, &req, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(applied.text, case["text"].as_str().unwrap(), "{name}: text");
        let want_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(applied.ids.as_deref(), Some(want_ids.as_slice()), "{name}: ids");
        if want_mask {
            let want: Vec<u8> = serde_json::from_value(case["assistant_masks"].clone()).unwrap();
            assert_eq!(applied.assistant_masks.as_deref(), Some(want.as_slice()), "{name}: assistant mask");
        }
        if name == "llama3_korean_tutorial" {
            // The tutorial's 45 ids and prefix; exactly one BOS.
            assert_eq!(want_ids.len(), 45, "{name}: the tutorial's conversation is 45 ids");
            assert_eq!(&want_ids[..6], &[128000, 128006, 9125, 128007, 271, 65895]);
            assert_eq!(want_ids.iter().filter(|&&i| i == 128000).count(), 1);
        }
        if let Some(published) = case.get("published_ids") {
            // Ids a public notebook printed from transformers for the same conversation.
            let published: Vec<u32> = serde_json::from_value(published.clone()).unwrap();
            assert_eq!(applied.ids.as_deref(), Some(published.as_slice()), "{name}: published ids");
        }
    }
}
