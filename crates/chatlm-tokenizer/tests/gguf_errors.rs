//! GGUF vocabularies that must be refused with a clear error, and tiny hand-made ones that must
//! work (built with chatlm-gguf's writer).

use chatlm_gguf::{GgufError, GgufFile, GgufWriter, MetadataValue, ValueType};
use chatlm_tokenizer::gguf_vocab::{GgufTokenizerParts, GgufVocabError};

/// A byte-level vocabulary: single letters, "Ġ", one merge, and two control tokens.
fn bpe_writer(pre: Option<&str>) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama");
    w.add_metadata("tokenizer.ggml.model", "gpt2");
    if let Some(pre) = pre {
        w.add_metadata("tokenizer.ggml.pre", pre);
    }
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["<|end|>", "<|start|>", "a", "b", "Ġ", "ab", "Ġa"]));
    let types = [3, 3, 1, 1, 1, 1, 1].map(MetadataValue::I32).to_vec();
    w.add_metadata("tokenizer.ggml.token_type", MetadataValue::array(ValueType::I32, types));
    w.add_metadata("tokenizer.ggml.merges", MetadataValue::string_array(["a b", "Ġ a"]));
    w.add_metadata("tokenizer.ggml.bos_token_id", MetadataValue::U32(1));
    w.add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(0));
    w.add_metadata("tokenizer.ggml.add_bos_token", true);
    w.add_metadata("tokenizer.chat_template", "{{ messages }}");
    w
}

fn build(w: &GgufWriter) -> Result<GgufTokenizerParts, GgufVocabError> {
    GgufTokenizerParts::from_gguf(&GgufFile::from_bytes(w.to_bytes())?)
}

#[test]
fn tiny_bpe_vocab_works() {
    let parts = build(&bpe_writer(Some("gpt-2"))).unwrap();
    let enc = parts.tokenizer.encode("ab a<|end|>", true).unwrap();
    assert_eq!(enc.get_ids(), &[1, 5, 6, 0]);
    assert_eq!(parts.tokenizer.encode("ab a", false).unwrap().get_ids(), &[5, 6]);
    assert_eq!(parts.tokenizer.decode(&[1, 5, 6, 0], true).unwrap(), "ab a");
    assert_eq!((parts.bos_token.as_deref(), parts.eos_token.as_deref()), (Some("<|start|>"), Some("<|end|>")));
    assert_eq!(parts.stop_token_ids, vec![0]);
    assert_eq!(parts.chat_template.as_deref(), Some("{{ messages }}"));
}

#[test]
fn wrong_magic_is_a_gguf_error() {
    let mut bytes = bpe_writer(Some("gpt-2")).to_bytes();
    bytes[0] = b'X';
    let err = GgufFile::from_bytes(bytes).map(|f| GgufTokenizerParts::from_gguf(&f)).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { .. }));
    let path = std::env::temp_dir().join(format!("chatlm-gguf-vocab-magic-{}.gguf", std::process::id()));
    std::fs::write(&path, b"GGMLxxxxxxxxxxxxxxxxxxxxxxxx").unwrap();
    let err = GgufTokenizerParts::from_path(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(err, GgufVocabError::Gguf(GgufError::BadMagic { .. })), "{err}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

#[test]
fn truncated_metadata_is_an_error_naming_the_key() {
    let bytes = bpe_writer(Some("gpt-2")).to_bytes();
    let needle = "Ġ a".as_bytes();
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap() + 2;
    let err = GgufFile::from_bytes(bytes[..at].to_vec()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
}

#[test]
fn unknown_or_missing_pre_is_refused_by_name() {
    for (pre, shown) in [(Some("gpt-5-turbo"), "gpt-5-turbo"), (None, "<missing>"), (Some("default"), "default")] {
        match build(&bpe_writer(pre)) {
            Err(GgufVocabError::UnknownPre { pre, model, known }) => {
                assert_eq!((pre.as_str(), model.as_str()), (shown, "gpt2"));
                assert!(known.contains("llama-bpe") && known.contains("smollm"));
            }
            other => panic!("{pre:?}: {other:?}"),
        }
    }
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "llama");
    w.add_metadata("tokenizer.ggml.pre", "qwen2");
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["<unk>"]));
    assert!(matches!(build(&w), Err(GgufVocabError::UnknownPre { pre, .. }) if pre == "qwen2"));
}

#[test]
fn unknown_model_is_refused_by_name() {
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "rwkv");
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["a"]));
    let err = build(&w).unwrap_err();
    assert!(matches!(&err, GgufVocabError::UnknownModel { model } if model == "rwkv"));
    assert!(err.to_string().contains("\"rwkv\""));
}

#[test]
fn disagreeing_array_lengths_are_refused() {
    // Scores are only read for SentencePiece vocabularies; token types always are.
    let mut spm = GgufWriter::new();
    spm.add_metadata("tokenizer.ggml.model", "llama");
    spm.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["<unk>", "a", "b"]));
    spm.add_metadata("tokenizer.ggml.scores", MetadataValue::array(ValueType::F32, vec![MetadataValue::F32(0.0); 2]));
    match build(&spm) {
        Err(GgufVocabError::LengthMismatch { key, len: 2, expected: 3 }) => assert_eq!(key, "tokenizer.ggml.scores"),
        other => panic!("{other:?}"),
    }
    let mut bad_types = GgufWriter::new();
    bad_types.add_metadata("tokenizer.ggml.model", "gpt2");
    bad_types.add_metadata("tokenizer.ggml.pre", "gpt-2");
    bad_types.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["a", "b"]));
    bad_types.add_metadata("tokenizer.ggml.token_type", MetadataValue::array(ValueType::I32, vec![MetadataValue::I32(1)]));
    match build(&bad_types) {
        Err(GgufVocabError::LengthMismatch { key, len: 1, expected: 2 }) => assert_eq!(key, "tokenizer.ggml.token_type"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_ids_merges_and_types_are_refused() {
    let mut w = bpe_writer(Some("gpt-2"));
    w.add_metadata("tokenizer.ggml.padding_token_id", MetadataValue::U32(70));
    assert!(matches!(build(&w), Err(GgufVocabError::IdOutOfRange { id: 70, vocab_size: 7, .. })));

    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "gpt2");
    w.add_metadata("tokenizer.ggml.pre", "gpt-2");
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(["a", "b"]));
    w.add_metadata("tokenizer.ggml.merges", MetadataValue::string_array(["a b", "ab"]));
    assert!(matches!(build(&w), Err(GgufVocabError::BadMerge { index: 1, .. })));

    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "gpt2");
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::U32(3));
    assert!(matches!(build(&w), Err(GgufVocabError::WrongType { .. })));

    let w = GgufWriter::new();
    assert!(matches!(build(&w), Err(GgufVocabError::Gguf(GgufError::MissingKey { .. }))));
}

#[test]
fn tiny_sentencepiece_vocab_with_byte_fallback() {
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "llama");
    w.add_metadata("tokenizer.ggml.pre", "default");
    let mut tokens = vec!["<unk>".to_owned(), "<s>".to_owned(), "</s>".to_owned()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(["▁", "h", "i", "▁h", "▁hi"].map(str::to_owned));
    let mut types = vec![2, 3, 3];
    types.extend([6; 256]);
    types.extend([1; 5]);
    let mut scores = vec![0.0f32; 259];
    scores.extend([-1.0, -2.0, -3.0, -4.0, -5.0]);
    w.add_metadata("tokenizer.ggml.tokens", MetadataValue::string_array(tokens));
    w.add_metadata("tokenizer.ggml.token_type", MetadataValue::array(ValueType::I32, types.into_iter().map(MetadataValue::I32).collect()));
    w.add_metadata("tokenizer.ggml.scores", MetadataValue::array(ValueType::F32, scores.into_iter().map(MetadataValue::F32).collect()));
    w.add_metadata("tokenizer.ggml.bos_token_id", MetadataValue::U32(1));
    w.add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(2));
    w.add_metadata("tokenizer.ggml.unknown_token_id", MetadataValue::U32(0));
    let parts = build(&w).unwrap();
    // No add_bos_token key: SentencePiece vocabularies add BOS, as in llama.cpp and transformers.
    assert!(parts.add_bos_token);
    let ids = parts.tokenizer.encode("hi h!", true).unwrap().get_ids().to_vec();
    // "▁hi", "▁h", then "!" through byte fallback (0x21 → id 3 + 0x21).
    assert_eq!(ids, vec![1, 263, 262, 3 + 0x21]);
    assert_eq!(parts.tokenizer.decode(&ids, true).unwrap(), "hi h!");
}
