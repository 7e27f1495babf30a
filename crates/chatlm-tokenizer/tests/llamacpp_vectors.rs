//! llama.cpp's own tokenizer test vectors (fixtures/llamacpp-vocab: 5 vocabularies × 46 texts,
//! HF `encode(text, add_special_tokens=False)` ids) against the matching fixture tokenizers.
//! Those ids come from tokenizer.json as the `tokenizers` library reads it (transformers 4); for
//! the two SentencePiece vocabularies transformers 5 differs on leading spaces (see
//! `LoadOptions`), so they load with `LoadOptions::tokenizer_json_as_is()`.

mod common;

use chatlm_tokenizer::{LoadOptions, Tokenizer};

const PAIRS: [(&str, &str); 5] =
    [("llama-bpe", "llama3"), ("phi-3", "phi3"), ("gpt-2", "gpt2"), ("llama-spm", "llama2"), ("qwen2", "qwen2")];

#[test]
fn all_llamacpp_vectors_match() {
    let Some(fixtures) = common::fixtures() else { return };
    let mut total = 0;
    let mut failures = Vec::new();
    for (vocab, fixture) in PAIRS {
        let base = fixtures.join("llamacpp-vocab").join(format!("ggml-vocab-{vocab}.gguf"));
        let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).expect(".inp");
        let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect(".out");
        let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        if texts.last() == Some(&"") {
            texts.pop();
        }
        let expected: Vec<Vec<u32>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|x| x.parse().expect("id")).collect())
            .collect();
        assert_eq!(texts.len(), expected.len(), "{vocab}: inp/out length");
        let tok = Tokenizer::from_pretrained_with(fixtures.join("tokenizers").join(fixture), LoadOptions::tokenizer_json_as_is())
            .expect("load");
        for (text, want) in texts.iter().zip(&expected) {
            total += 1;
            let ids = tok.encode(text, false).expect("encode");
            if &ids != want {
                failures.push(format!("{vocab}/{fixture} {text:?}: ours {ids:?} llama.cpp {want:?}"));
            }
        }
    }
    assert_eq!(total, 230);
    assert!(failures.is_empty(), "{} of {total} differ:\n{}", failures.len(), failures.join("\n"));
}
