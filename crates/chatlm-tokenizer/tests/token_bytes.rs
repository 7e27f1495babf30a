//! `Tokenizer::token_bytes` on every fixture tokenizer (and SmolLM2's GGUF when
//! `CHATLM_SMOLLM2` is set): the bytes of an id are the text `decode` gives for it, and the
//! bytes of an encoded text, concatenated, are that text.

mod common;

use chatlm_tokenizer::{TokenBytes, Tokenizer};
use serde_json::Value;

const FIXTURES: [&str; 7] = ["gpt2", "opt", "llama3", "qwen2", "llama2", "phi3", "kobart"];

fn corpus() -> Vec<String> {
    let corpus: Value = serde_json::from_str(&std::fs::read_to_string(common::data("corpus.json")).expect("corpus.json")).expect("json");
    corpus["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text").to_owned()).collect()
}

/// Whether the decoder drops the space a SentencePiece text starts with (`Strip`, Metaspace).
fn strips_leading_space(tok: &Tokenizer) -> bool {
    let decoder = serde_json::to_string(&tok.inner().get_decoder()).unwrap_or_default();
    decoder.contains("Strip") || decoder.contains("Metaspace")
}

/// `decode` of `ids` equals the concatenated bytes (as lossy UTF-8), up to the leading space
/// SentencePiece decoders strip.
fn same_text(decoded: &str, bytes: &[u8], strip: bool) -> bool {
    let text = String::from_utf8_lossy(bytes);
    decoded == text || (strip && text.strip_prefix(' ') == Some(decoded))
}

fn check(name: &str, tok: &Tokenizer, texts: &[String]) -> Vec<String> {
    let table = tok.token_bytes().unwrap_or_else(|e| panic!("{name}: {e}"));
    let strip = strips_leading_space(tok);
    let mut failures = Vec::new();
    assert!(table.len() >= tok.len(), "{name}: {} entries for {} tokens", table.len(), tok.len());
    let mut special = 0;
    for (id, entry) in table.iter().enumerate() {
        let Some(TokenBytes { bytes, special: is_special }) = entry else {
            failures.push(format!("{name}: id {id} has no bytes"));
            continue;
        };
        let decoded = tok.decode(&[id as u32], false).unwrap();
        if *is_special {
            special += 1;
            if decoded.as_bytes() != bytes.as_slice() {
                failures.push(format!("{name}: special id {id}: {decoded:?} vs {bytes:?}"));
            }
        } else if !same_text(&decoded, bytes, strip) {
            failures.push(format!("{name}: id {id} ({:?}): decode {decoded:?}, bytes {bytes:?}", tok.id_to_token(id as u32)));
        }
    }
    let specials = tok.special_token_ids();
    if special != specials.len() {
        failures.push(format!("{name}: {special} ids marked special, the tokenizer has {}", specials.len()));
    }
    for text in texts {
        let ids = tok.encode(text, false).unwrap();
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| table[id as usize].as_ref().map(|t| t.bytes.clone()).unwrap_or_default()).collect();
        let decoded = tok.decode(&ids, false).unwrap();
        if !same_text(&decoded, &bytes, strip) {
            failures.push(format!("{name}: {text:?}: decode {decoded:?}, bytes {:?}", String::from_utf8_lossy(&bytes)));
        }
    }
    failures
}

#[test]
fn fixture_token_bytes_match_decode() {
    let Some(fixtures) = common::fixtures() else { return };
    let texts = corpus();
    let mut failures = Vec::new();
    for name in FIXTURES {
        let tok = Tokenizer::from_pretrained(fixtures.join("tokenizers").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        failures.extend(check(name, &tok, &texts));
    }
    let shown: Vec<&String> = failures.iter().take(20).collect();
    assert!(failures.is_empty(), "{} failures, first ones:\n{shown:#?}", failures.len());
}

#[test]
fn smollm2_gguf_token_bytes_match_decode() {
    let path = std::env::var("CHATLM_SMOLLM2").ok().filter(|p| std::path::Path::new(p).exists());
    let Some(path) = path else {
        println!("skipped: CHATLM_SMOLLM2 not set or missing");
        return;
    };
    let tok = Tokenizer::from_gguf(&path).unwrap();
    let failures = check("smollm2", &tok, &corpus());
    assert!(failures.is_empty(), "{} failures:\n{:#?}", failures.len(), &failures[..failures.len().min(20)]);
    let table = tok.token_bytes().unwrap();
    let im_end = tok.token_to_id("<|im_end|>").unwrap() as usize;
    assert_eq!(table[im_end], Some(TokenBytes { bytes: b"<|im_end|>".to_vec(), special: true }));
    let world = tok.token_to_id("Ġworld").unwrap() as usize;
    assert_eq!(table[world], Some(TokenBytes { bytes: b" world".to_vec(), special: false }));
}
