//! Vocab-only GGUFs of the fixture tokenizers (llama3, qwen2, gpt2, llama2), written by
//! scripts/reference/gguf_vocab_fixtures.py the way llama.cpp's converter writes them, must tokenize
//! like HF: llama.cpp's own test vectors (fixtures/llamacpp-vocab, HF ids) and the fixture's
//! tokenizer.json on the SmolLM2 multilingual corpus. The GGUFs are megabytes, so they are generated
//! into a temp dir; the test skips when python3 or its `gguf`/`transformers`/`sentencepiece` is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use chatlm_tokenizer::gguf_vocab::GgufTokenizerParts;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    dir.join("tokenizers").is_dir().then_some(dir)
}

/// Runs the reference script; `None` when Python or one of its packages is missing.
fn generate(fixtures: &Path) -> Option<PathBuf> {
    let out = std::env::temp_dir().join(format!("chatlm-gguf-fixtures-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/reference/gguf_vocab_fixtures.py");
    let run = Command::new("python3").arg(script).arg(&out).arg(fixtures).output();
    match run {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("ModuleNotFoundError") => None,
        Ok(o) => panic!("{script} failed:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => None,
    }
}

fn vectors(fixtures: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = fixtures.join("llamacpp-vocab");
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), ids.len());
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

fn corpus() -> Vec<String> {
    include_str!("data/gguf_smollm2_ids.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn fixture_vocabularies_from_gguf_match_hf() {
    let Some(fixtures) = fixtures() else {
        println!("skipped: fixtures not found");
        return;
    };
    let Some(out) = generate(&fixtures) else {
        println!("skipped: python3 with gguf, transformers and sentencepiece not available");
        return;
    };
    let corpus = corpus();
    let mut report = Vec::new();
    for (name, vector_name, model) in [("llama3", "llama-bpe", "gpt2"), ("qwen2", "qwen2", "gpt2"), ("gpt2", "gpt-2", "gpt2"), ("llama2", "llama-spm", "llama")] {
        let parts = GgufTokenizerParts::from_path(out.join(format!("{name}.gguf"))).unwrap();
        assert_eq!(parts.model, model);
        let reference = tokenizers::Tokenizer::from_file(fixtures.join("tokenizers").join(name).join("tokenizer.json")).unwrap();
        let mut bad = 0;
        let vectors = vectors(&fixtures, vector_name);
        for (text, want) in &vectors {
            let got = parts.tokenizer.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            if &got != want {
                bad += 1;
                report.push(format!("{name} vector {text:?}: got {got:?}, want {want:?}"));
            }
        }
        // Llama 2's tokenizer.json marks <s>/</s>/<unk> `normalized: true`, so HF matches them after
        // the "▁" escaping and eats the spaces around them; a GGUF does not record that flag and
        // llama.cpp matches them in the raw text. Texts spelling them out are left out for SPM.
        let specials: Vec<&str> = [&parts.bos_token, &parts.eos_token, &parts.unk_token].into_iter().flatten().map(String::as_str).collect();
        let mut compared = vectors.len();
        for text in &corpus {
            if model == "llama" && specials.iter().any(|s| text.contains(s)) {
                continue;
            }
            compared += 1;
            let got = parts.tokenizer.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            let want = reference.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            if got != want {
                bad += 1;
                report.push(format!("{name} corpus {text:?}: got {got:?}, want {want:?}"));
            }
        }
        println!("{name}: {} of {compared} texts equal", compared - bad);
    }
    std::fs::remove_dir_all(&out).unwrap();
    assert!(report.is_empty(), "{} mismatches:\n{}", report.len(), report.join("\n"));
}
