//! Malformed files give typed errors that name the file (and line/column for JSON).

mod common;

use chatlm_tokenizer::{Tokenizer, TokenizerError};

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chatlm-tok-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[test]
fn truncated_tokenizer_json_reports_file_line_and_column() {
    let Some(fixtures) = common::fixtures() else { return };
    let full = std::fs::read(fixtures.join("tokenizers/gpt2/tokenizer.json")).expect("read");
    let dir = scratch("trunc");
    std::fs::write(dir.join("tokenizer.json"), &full[..full.len() / 2]).expect("write");
    let err = Tokenizer::from_pretrained(&dir).expect_err("truncated");
    assert!(matches!(err, TokenizerError::Json { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("tokenizer.json") && msg.contains("line"), "{msg}");
}

#[test]
fn valid_json_that_is_not_a_tokenizer() {
    let dir = scratch("notok");
    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {"type": "BPE", "vocab": 3}}"#).expect("write");
    let err = Tokenizer::from_pretrained(&dir).expect_err("not a tokenizer");
    assert!(matches!(err, TokenizerError::Load { .. }), "{err:?}");
}

#[test]
fn malformed_config_names_the_key() {
    let Some(fixtures) = common::fixtures() else { return };
    let dir = scratch("config");
    std::fs::copy(fixtures.join("tokenizers/gpt2/tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"padding_side": "middle"}"#).expect("write");
    let err = Tokenizer::from_pretrained(&dir).expect_err("bad side");
    assert!(err.to_string().contains("padding_side"), "{err}");
    std::fs::write(dir.join("tokenizer_config.json"), "{\n  \"bos_token\": ,\n}").expect("write");
    let err = Tokenizer::from_pretrained(&dir).expect_err("bad json");
    assert!(err.to_string().contains("tokenizer_config.json") && err.to_string().contains("line 2"), "{err}");
}

#[test]
fn missing_files_and_unknown_sources() {
    let dir = scratch("empty");
    assert!(matches!(Tokenizer::from_pretrained(&dir), Err(TokenizerError::MissingTokenizerJson { .. })));
    std::fs::write(dir.join("tokenizer.model"), b"spm").expect("write");
    let err = Tokenizer::from_pretrained(&dir).expect_err("spm only");
    assert!(err.to_string().contains("tokenizer.model"), "{err}");
    assert!(matches!(Tokenizer::from_pretrained(dir.join("nope")), Err(TokenizerError::Io { .. })));
    std::fs::write(dir.join("weights.bin"), b"hello").expect("write");
    assert!(matches!(Tokenizer::from_pretrained(dir.join("weights.bin")), Err(TokenizerError::UnknownSource { .. })));
}

#[test]
fn gguf_with_wrong_magic_or_truncated_metadata() {
    let dir = scratch("gguf");
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUX\x03\0\0\0").expect("write");
    let err = Tokenizer::from_pretrained(&bad).expect_err("magic");
    assert!(matches!(err, TokenizerError::Gguf { .. }) && err.to_string().contains("bad.gguf"), "{err}");
    let mut header = b"GGUF".to_vec();
    header.extend(3u32.to_le_bytes());
    header.extend(0u64.to_le_bytes());
    header.extend(5u64.to_le_bytes()); // five metadata entries promised, none present
    let truncated = dir.join("trunc.gguf");
    std::fs::write(&truncated, header).expect("write");
    let err = Tokenizer::from_pretrained(&truncated).expect_err("truncated");
    assert!(matches!(err, TokenizerError::Gguf { .. }), "{err:?}");
}

#[test]
fn decoding_an_id_outside_the_vocabulary() {
    let Some(fixtures) = common::fixtures() else { return };
    let tok = Tokenizer::from_pretrained(fixtures.join("tokenizers/gpt2")).expect("load");
    assert!(matches!(tok.decode(&[50257], false), Err(TokenizerError::UnknownId { id: 50257, len: 50257 })));
}
