//! GGUF vocabulary import on SmolLM2-135M-Instruct against HF transformers (its GGUF converter with
//! the pre-tokenizer of SmolLM2's tokenizer.json restored; see the script)
//! (tests/data/gguf_smollm2_*.json*, from scripts/reference/gguf_smollm2_ids.py).

use chatlm_tokenizer::gguf_vocab::GgufTokenizerParts;
use serde_json::Value;

fn smollm2() -> Option<GgufTokenizerParts> {
    let path = std::env::var("CHATLM_SMOLLM2").ok().filter(|p| std::path::Path::new(p).exists());
    let Some(path) = path else {
        println!("skipped: CHATLM_SMOLLM2 not set or missing");
        return None;
    };
    Some(GgufTokenizerParts::from_path(path).unwrap())
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn corpus_ids_equal_transformers() {
    let Some(parts) = smollm2() else { return };
    let lines: Vec<Value> = include_str!("data/gguf_smollm2_ids.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 200);
    let mut mismatches = Vec::new();
    for row in &lines {
        let text = row["text"].as_str().unwrap();
        for (key, special) in [("ids", true), ("ids_no_special", false)] {
            let got = parts.tokenizer.encode(text, special).unwrap().get_ids().to_vec();
            if got != ids(&row[key]) {
                mismatches.push(format!("{text:?} special={special}: got {got:?}, want {:?}", ids(&row[key])));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} of {} differ:\n{}", mismatches.len(), 2 * lines.len(), mismatches.join("\n"));
}

#[test]
fn special_tokens_stop_ids_and_template_match() {
    let Some(parts) = smollm2() else { return };
    let meta: Value = serde_json::from_str(include_str!("data/gguf_smollm2_template.json")).unwrap();
    assert_eq!(parts.model, "gpt2");
    assert_eq!(parts.pre.as_deref(), Some("smollm"));
    assert_eq!(parts.bos_token.as_deref(), meta["bos_token"].as_str());
    assert_eq!(parts.eos_token.as_deref(), meta["eos_token"].as_str());
    assert_eq!(parts.unk_token.as_deref(), meta["unk_token"].as_str());
    assert_eq!(parts.pad_token.as_deref(), meta["pad_token"].as_str());
    assert_eq!(parts.vocab_size as u64, meta["vocab_size"].as_u64().unwrap());
    assert_eq!(parts.tokenizer.get_vocab_size(true) as u64, meta["len"].as_u64().unwrap());
    let im_end = meta["im_end_id"].as_u64().unwrap() as u32;
    assert!(parts.stop_token_ids.contains(&im_end), "{:?}", parts.stop_token_ids);
    assert_eq!(parts.tokenizer.token_to_id("<|im_end|>"), Some(im_end));
    assert_eq!(parts.chat_template.as_deref(), meta["chat_template"].as_str());
    for render in meta["renders"].as_array().unwrap() {
        let text = render["text"].as_str().unwrap();
        let got = parts.tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(got, ids(&render["ids"]), "{text:?}");
        // Special tokens decode back to their text; skipped they vanish.
        assert_eq!(parts.tokenizer.decode(&got, false).unwrap(), text);
        assert!(!parts.tokenizer.decode(&got, true).unwrap().contains("<|im_"));
    }
}
