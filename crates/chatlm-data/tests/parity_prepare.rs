//! End-to-end preparation against TRL's `SFTTrainer._prepare_dataset` (scripts/reference/data_prepare.py).

use std::path::PathBuf;

use chatlm_data::{ExampleSink, LossMode, OutputKind, PackScope, PrepareConfig, Preparer, RecordReader, Strategy, Truncation};
use chatlm_template::ChatTemplate;
use chatlm_tokenizer::Tokenizer;
use serde_json::Value;

fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    p.join("tokenizers").is_dir().then_some(p)
}

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(p)
}

fn config(c: &Value) -> PrepareConfig {
    let mut cfg = PrepareConfig { chunk_rows: 3, ..PrepareConfig::default() };
    cfg.max_length = c["max_length"].as_u64().map(|x| x as usize);
    if c["packing"].as_bool() == Some(true) {
        cfg.pack = Some(Strategy::parse(c["packing_strategy"].as_str().unwrap()).unwrap());
        cfg.seq_length = cfg.max_length;
        cfg.max_length = None;
        cfg.scope = PackScope::Batch(1000);
    }
    if c["truncation_mode"].as_str() == Some("keep_end") {
        cfg.truncation = Truncation::KeepEnd;
    }
    if c["completion_only_loss"].as_bool() == Some(false) {
        cfg.loss = Some(LossMode::All);
    }
    if c["assistant_only_loss"].as_bool() == Some(true) {
        cfg.loss = Some(LossMode::Assistant);
    }
    cfg
}

#[test]
fn prepare_matches_sft_trainer() {
    let Some(fx) = fixtures() else {
        eprintln!("skipped: fixtures not found");
        return;
    };
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(data("prepare.json")).unwrap()).unwrap();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    let dir = std::env::temp_dir().join(format!("chatlm-data-prep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut toks = std::collections::HashMap::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let tname = case["tokenizer"].as_str().unwrap();
        let tok = toks
            .entry(tname.to_string())
            .or_insert_with(|| Tokenizer::from_pretrained(fx.join("tokenizers").join(tname)).unwrap());
        // Assistant-loss cases run twice: with the {% generation %} template TRL used, and with the stock
        // template (no generation blocks), where the prefix-rendering fallback must find the same tokens.
        let templates: Vec<Option<ChatTemplate>> = match case["config"]["template"].as_str() {
            Some(t) => vec![Some(ChatTemplate::from_file(data(&format!("prepare_inputs/{t}"))).unwrap()), None],
            None => vec![None],
        };
        for template in templates {
            let which = if template.is_some() { "generation template" } else { "tokenizer template" };
            let prep = Preparer::new(tok, template, config(&case["config"])).unwrap();
            let input = data(&format!("prepare_inputs/{}", case["input"].as_str().unwrap()));
            let out = dir.join("out.jsonl");
            let mut sink = ExampleSink::create(&out, OutputKind::Jsonl).unwrap();
            prep.run(&input, RecordReader::open(&input).unwrap(), &mut sink, &|_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
            sink.finish().unwrap();
            let got: Vec<Value> =
                std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let want = case["expected"].as_object().unwrap();
            for (k, col) in want {
                let col = col.as_array().unwrap();
                assert_eq!(got.len(), col.len(), "{name} ({which}): rows");
                for (i, (g, w)) in got.iter().zip(col).enumerate() {
                    assert_eq!(&g[k], w, "{name} ({which}): row {i} column {k}");
                }
            }
            for g in &got {
                assert_eq!(g.as_object().unwrap().len(), want.len(), "{name}: columns");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
