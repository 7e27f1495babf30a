//! The hand-written encode path against the `tokenizers` pipeline it replaces, on random text
//! built to hit every branch (added tokens inside words, odd whitespace, marks, digits, the
//! contraction rules), on the conformance corpus, and on the same texts in batch.

mod common;

use chatlm_tokenizer::{LoadOptions, Tokenizer};
use serde_json::Value;

/// Which fixtures must take the fast path (the byte-level BPE ones); the SentencePiece ones
/// (llama2, phi3, kobart) must not.
const FAST: &[&str] = &["gpt2", "llama3", "opt", "qwen2"];
const NOT_FAST: &[&str] = &["llama2", "phi3", "kobart"];

const PIECES: &[&str] = &[
    "the", " The", "cat", "'s", "'S", "'ll", "'Re", "'x", " don't", "I'M", "123", "4567", " 89", "٣٤", "½", "x²",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u{a0}", "\u{3000}", "\u{2028}", ".", "...", "!?", " (", ")",
    "\"", "#", "—", "한국어", " 배가", "고프다", "日本語", "ア", "é", "e\u{301}", "\u{301}", "नमस्ते", "😀", "👩‍💻", "🇰🇷",
    "<|eot_id|>", "<|begin_of_text|>", "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|eot", "</s>", "<s>",
    "<|start_header_id|>user<|end_header_id|>", "ſ", "'ſ", "İ", "Å", "Ω", "\u{feff}", "\u{200b}", "\u{0}", "\u{7f}",
];

fn random_texts(seed: u64, count: usize) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count)
        .map(|_| {
            let len = (next() % 16) as usize;
            (0..len).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect()
        })
        .collect()
}

fn corpus_texts() -> Vec<String> {
    let corpus: Value =
        serde_json::from_str(&std::fs::read_to_string(common::data("corpus.json")).expect("corpus.json")).expect("json");
    corpus["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text").to_owned()).collect()
}

fn check(name: &str, tok: &Tokenizer, texts: &[String], failures: &mut Vec<String>) {
    for text in texts {
        for add in [true, false] {
            let fast = tok.encode(text, add).expect("encode");
            let reference = tok.encode_reference(text, add).expect("encode");
            if fast != reference {
                failures.push(format!("{name} add={add} {text:?}:\n  fast      {fast:?}\n  reference {reference:?}"));
            }
        }
    }
    let batch = tok.encode_batch(texts, true).expect("batch");
    for (text, ids) in texts.iter().zip(batch) {
        if ids != tok.encode_reference(text, true).expect("encode") {
            failures.push(format!("{name} batch {text:?}"));
        }
    }
}

#[test]
fn fast_path_equals_the_tokenizers_pipeline_on_every_byte_level_fixture() {
    let Some(fixtures) = common::fixtures() else { return };
    let mut texts = random_texts(7, 3000);
    texts.extend(corpus_texts());
    let mut failures = Vec::new();
    for name in FAST {
        let dir = fixtures.join("tokenizers").join(name);
        for options in [LoadOptions::default(), LoadOptions::tokenizer_json_as_is()] {
            let tok = Tokenizer::from_pretrained_with(&dir, options).expect("load");
            assert!(tok.has_fast_encode(), "{name} should take the fast path");
            check(name, &tok, &texts, &mut failures);
        }
    }
    for name in NOT_FAST {
        let tok = Tokenizer::from_pretrained(fixtures.join("tokenizers").join(name)).expect("load");
        assert!(!tok.has_fast_encode(), "{name} is not byte-level BPE");
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures[..failures.len().min(20)].join("\n"));
}

#[test]
fn fast_path_follows_added_tokens() {
    let Some(fixtures) = common::fixtures() else { return };
    let mut tok = Tokenizer::from_pretrained(fixtures.join("tokenizers/llama3")).expect("load");
    let text = "say <|response|> and <think>now</think>";
    let before = tok.encode(text, false).unwrap();
    tok.add_special_tokens(&["<|response|>"]).unwrap();
    tok.add_tokens(&["<think>", "</think>"]).unwrap();
    assert!(tok.has_fast_encode());
    let after = tok.encode(text, false).unwrap();
    assert_ne!(before, after);
    assert_eq!(after, tok.encode_reference(text, false).unwrap());
    assert!(after.contains(&tok.token_to_id("<|response|>").unwrap()));
}

#[test]
fn fast_path_equals_the_pipeline_for_the_smollm2_gguf() {
    let path = std::env::var_os("CHATLM_SMOLLM2_GGUF").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if !path.is_file() {
        println!("skipped: SmolLM2 GGUF not found at {} (scripts/fetch-smollm2.sh)", path.display());
        return;
    }
    let tok = Tokenizer::from_pretrained(&path).expect("load");
    assert!(tok.has_fast_encode());
    let mut texts = random_texts(11, 3000);
    texts.extend(corpus_texts());
    let mut failures = Vec::new();
    check("smollm2", &tok, &texts, &mut failures);
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures[..failures.len().min(20)].join("\n"));
}
