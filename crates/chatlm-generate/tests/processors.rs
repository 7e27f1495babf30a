//! Processors against transformers' own (tests/data/processors.json from
//! scripts/reference/generate_processors.py).

use chatlm_generate::{processors, GenerationConfig};
use serde_json::Value;

fn row(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::NEG_INFINITY, |f| f as f32)).collect()
}

fn param(p: &Value, key: &str) -> Option<f64> {
    p.get(key).and_then(Value::as_f64)
}

#[test]
fn processors_match_transformers() {
    let data: Value = serde_json::from_str(include_str!("data/processors.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    for case in cases {
        let mut logits = row(&case["logits"]);
        let expected = row(&case["expected"]);
        let ids: Vec<u32> = case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let p = &case["params"];
        let keep = param(p, "min_tokens_to_keep").unwrap_or(1.0) as usize;
        match case["kind"].as_str().unwrap() {
            "repetition_penalty" => processors::repetition_penalty(&mut logits, &ids, param(p, "penalty").unwrap() as f32).unwrap(),
            "temperature" => processors::temperature(&mut logits, param(p, "temperature").unwrap() as f32),
            "top_k" => processors::top_k(&mut logits, param(p, "top_k").unwrap() as usize, keep),
            "top_p" => processors::top_p(&mut logits, param(p, "top_p").unwrap() as f32, keep),
            "min_p" => processors::min_p(&mut logits, param(p, "min_p").unwrap() as f32, keep),
            "chain" => {
                let cfg = GenerationConfig {
                    do_sample: true,
                    repetition_penalty: param(p, "repetition_penalty").unwrap() as f32,
                    temperature: param(p, "temperature").unwrap() as f32,
                    top_k: Some(param(p, "top_k").unwrap() as usize),
                    top_p: param(p, "top_p").unwrap() as f32,
                    min_p: param(p, "min_p").map(|v| v as f32),
                    ..Default::default()
                };
                cfg.process(&mut logits, &ids, ids.len()).unwrap();
            }
            other => panic!("unknown kind {other}"),
        }
        for (i, (got, want)) in logits.iter().zip(&expected).enumerate() {
            let ctx = format!("{} {} {} index {i}: got {got}, want {want}", case["name"], case["kind"], p);
            if want.is_infinite() {
                assert_eq!(got, want, "{ctx}");
            } else {
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{ctx}");
            }
        }
    }
}

#[test]
fn invalid_parameters_are_named() {
    let cases: Vec<(GenerationConfig, &str)> = vec![
        (GenerationConfig { top_p: 1.5, ..Default::default() }, "`top_p` = 1.5"),
        (GenerationConfig { top_p: 0.0, ..Default::default() }, "`top_p` = 0"),
        (GenerationConfig { temperature: -0.5, ..Default::default() }, "`temperature` = -0.5"),
        (GenerationConfig { min_p: Some(2.0), ..Default::default() }, "`min_p` = 2"),
        (GenerationConfig { repetition_penalty: 0.0, ..Default::default() }, "`repetition_penalty` = 0"),
        (GenerationConfig { max_new_tokens: Some(0), ..Default::default() }, "`max_new_tokens` = 0"),
    ];
    for (cfg, needle) in cases {
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(msg.contains(needle), "{msg}");
    }
    assert!(GenerationConfig::default().validate().is_ok());
}

#[test]
fn repetition_penalty_rejects_out_of_vocab_ids() {
    let mut l = vec![0.0; 4];
    let err = processors::repetition_penalty(&mut l, &[9], 1.2).unwrap_err();
    assert!(err.to_string().contains("token id 9"), "{err}");
}
