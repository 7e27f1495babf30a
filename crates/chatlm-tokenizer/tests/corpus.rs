//! Conformance: every fixture tokenizer against transformers on a multilingual corpus
//! (expected values: tests/data/corpus.json, from scripts/reference/tokenizer_corpus.py).

mod common;

use chatlm_tokenizer::Tokenizer;
use serde_json::Value;

fn load(fixtures: &std::path::Path, name: &str) -> Tokenizer {
    let dir = fixtures.join("tokenizers").join(name);
    Tokenizer::from_pretrained(&dir).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn every_fixture_matches_transformers_on_the_corpus() {
    let Some(fixtures) = common::fixtures() else { return };
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(common::data("corpus.json")).expect("corpus.json")).expect("json");
    let texts: Vec<&str> = expected["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text")).collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, want) in expected["tokenizers"].as_object().expect("tokenizers") {
        let tok = load(&fixtures, name);
        let meta = |what: &str, ok: bool, detail: String| {
            if ok { None } else { Some(format!("{name}: {what}: {detail}")) }
        };
        failures.extend(meta("len", tok.len() as u64 == want["len"], format!("{} vs {}", tok.len(), want["len"])));
        failures.extend(meta(
            "vocab_size",
            tok.vocab_size() as u64 == want["vocab_size"],
            format!("{} vs {}", tok.vocab_size(), want["vocab_size"]),
        ));
        let mut special_ids = tok.all_special_ids();
        special_ids.sort_unstable();
        special_ids.dedup();
        failures.extend(meta(
            "all_special_ids",
            special_ids == ids(&want["all_special_ids"]),
            format!("{special_ids:?} vs {}", want["all_special_ids"]),
        ));
        for (role, token) in want["special_tokens"].as_object().expect("map") {
            let ours = tok.special_tokens().get(role);
            failures.extend(meta(role, ours == token.as_str(), format!("{ours:?} vs {token}")));
        }
        failures.extend(meta(
            "padding_side",
            tok.padding_side().as_str() == want["padding_side"],
            format!("{:?}", tok.padding_side()),
        ));
        let max_len = tok.model_max_length().map(|m| m as u64);
        failures.extend(meta("model_max_length", want["model_max_length"].as_u64() == max_len, format!("{max_len:?}")));

        for (text, row) in texts.iter().zip(want["rows"].as_array().expect("rows")) {
            checked += 1;
            let with = tok.encode(text, true).expect("encode");
            let without = tok.encode(text, false).expect("encode");
            let tokens = tok.tokenize(text).expect("tokenize");
            let mut check = |what: &str, ok: bool, ours: String, theirs: &Value| {
                if !ok {
                    failures.push(format!("{name} {what} {text:?}:\n  ours   {ours}\n  theirs {theirs}"));
                }
            };
            check("ids", with == ids(&row["ids"]), format!("{with:?}"), &row["ids"]);
            check("ids_no_special", without == ids(&row["ids_no_special"]), format!("{without:?}"), &row["ids_no_special"]);
            let want_tokens: Vec<&str> = row["tokens"].as_array().expect("tokens").iter().filter_map(Value::as_str).collect();
            check("tokens", tokens == want_tokens, format!("{tokens:?}"), &row["tokens"]);
            let want_ids = ids(&row["ids"]);
            let decoded = tok.decode(&want_ids, false).expect("decode");
            check("decode", decoded == row["decoded"], format!("{decoded:?}"), &row["decoded"]);
            let decoded_skip = tok.decode(&want_ids, true).expect("decode");
            check("decode skip", decoded_skip == row["decoded_skip"], format!("{decoded_skip:?}"), &row["decoded_skip"]);
        }
    }
    assert!(checked > 500, "corpus too small: {checked}");
    assert!(failures.is_empty(), "{} mismatches vs transformers:\n{}", failures.len(), failures[..failures.len().min(25)].join("\n"));
}

/// With `LoadOptions::tokenizer_json_as_is` every fixture equals the `tokenizers` library.
#[test]
fn tokenizer_json_as_is_matches_the_tokenizers_library() {
    let Some(fixtures) = common::fixtures() else { return };
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(common::data("corpus.json")).expect("corpus.json")).expect("json");
    let texts: Vec<&str> = expected["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text")).collect();
    let mut failures = Vec::new();
    for (name, want) in expected["tokenizers"].as_object().expect("tokenizers") {
        let dir = fixtures.join("tokenizers").join(name);
        let tok = Tokenizer::from_pretrained_with(&dir, chatlm_tokenizer::LoadOptions::tokenizer_json_as_is()).expect("load");
        for (text, row) in texts.iter().zip(want["rows"].as_array().expect("rows")) {
            let ids = tok.encode(text, false).expect("encode");
            if ids != self::ids(&row["raw_ids_no_special"]) {
                failures.push(format!("{name} {text:?}: {ids:?} vs {}", row["raw_ids_no_special"]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The seed examples of the issue, spelled out so a reader sees them.
#[test]
fn seed_examples() {
    let Some(fixtures) = common::fixtures() else { return };
    let llama3 = load(&fixtures, "llama3");
    assert_eq!(
        llama3.encode("오늘은 배가 너무 고프다", true).unwrap(),
        [128000, 58368, 105622, 34804, 74769, 20565, 109748, 46230, 58260, 63644, 13447]
    );
    let phi3 = load(&fixtures, "phi3");
    assert_eq!(phi3.encode("Let's tokenize this sentence!", true).unwrap(), [2803, 29915, 29879, 5993, 675, 445, 10541, 29991]);
}
