//! Readers (JSONL, JSON, CSV, Parquet) with row numbers, the atomic sink, format detection, hygiene.

use std::path::PathBuf;

use chatlm_data::format::{detect, is_conversational};
use chatlm_data::{DataError, DataFormat, Example, ExampleSink, OutputKind, RecordReader};
use serde_json::{json, Value};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chatlm-data-io-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read(p: &std::path::Path) -> Vec<Result<(usize, Value), String>> {
    RecordReader::open(p).unwrap().map(|r| r.map(|(n, m)| (n, Value::Object(m))).map_err(|e| e.to_string())).collect()
}

#[test]
fn jsonl_rows_are_numbered_by_line() {
    let d = tmp("jsonl");
    let p = d.join("a.jsonl");
    std::fs::write(&p, "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n[1]\n{bad\n").unwrap();
    let r = read(&p);
    assert_eq!(r[0], Ok((1, json!({"text": "a"}))));
    assert_eq!(r[1], Ok((3, json!({"text": "b"}))));
    assert!(r[2].as_ref().unwrap_err().contains("row 4: line is JSON but not an object"));
    assert!(r[3].as_ref().unwrap_err().contains("row 5: invalid JSON"));
}

#[test]
fn csv_with_quotes_newlines_and_json_cells() {
    let d = tmp("csv");
    let p = d.join("a.csv");
    std::fs::write(&p, "prompt,completion,input_ids\r\n\"Hi, \"\"you\"\"\",\"line1\nline2\",\"[1, 2]\"\nplain,x,y\nshort\n").unwrap();
    let r = read(&p);
    assert_eq!(r[0], Ok((1, json!({"prompt": "Hi, \"you\"", "completion": "line1\nline2", "input_ids": [1, 2]}))));
    assert_eq!(r[1], Ok((2, json!({"prompt": "plain", "completion": "x", "input_ids": "y"}))));
    assert!(r[2].as_ref().unwrap_err().contains("row 3: line 5: 1 fields, header has 3"), "{:?}", r[2]);
}

#[test]
fn json_array_and_columns() {
    let d = tmp("json");
    let a = d.join("a.json");
    std::fs::write(&a, r#"[{"text": "x"}, {"text": "y"}]"#).unwrap();
    assert_eq!(read(&a).len(), 2);
    let b = d.join("b.json");
    std::fs::write(&b, r#"{"text": ["x", "y", "z"], "id": [1, 2, 3]}"#).unwrap();
    let r = read(&b);
    assert_eq!(r[2], Ok((3, json!({"text": "z", "id": 3}))));
    let c = d.join("c.json");
    std::fs::write(&c, r#"{"text": ["x"], "id": [1, 2]}"#).unwrap();
    assert!(matches!(RecordReader::open(&c), Err(DataError::Input { .. })));
    assert!(RecordReader::open(&d.join("x.txt")).is_err());
}

#[test]
fn parquet_sink_is_atomic_and_reads_back() {
    let d = tmp("pq");
    let p = d.join("o.parquet");
    let rows: Vec<Example> = (0..2500)
        .map(|i| Example::from_ids((0..(i % 7) as i64).collect()).with("labels", vec![-100; i % 7]).with("seq_lengths", vec![(i % 7) as i64]))
        .collect();
    {
        let mut s = ExampleSink::create(&p, OutputKind::Parquet).unwrap();
        s.write(rows[..1000].to_vec()).unwrap();
        // dropped unfinished: nothing appears, the temp file is removed
    }
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    let mut s = ExampleSink::create(&p, OutputKind::Parquet).unwrap();
    s.write(rows[..1000].to_vec()).unwrap();
    s.write(rows[1000..].to_vec()).unwrap();
    assert!(s.write(vec![Example::from_ids(vec![1])]).is_err(), "columns may not change");
    s.finish().unwrap();
    let back: Vec<Example> = RecordReader::open(&p).unwrap().map(|r| Example::from_json(&r.unwrap().1).unwrap()).collect();
    assert_eq!(back, rows);
    let r = RecordReader::open(&p).unwrap();
    let schema = r.schema().unwrap();
    assert!(chatlm_data::io::check_schema(&p, schema, "text").is_ok());
    let e = chatlm_data::io::check_schema(&p, schema, "labels").unwrap_err().to_string();
    assert!(e.contains("column `labels`") && e.contains("expected a string"), "{e}");
    assert!(chatlm_data::check_not_input(&p, &[&p]).is_err());
}

#[test]
fn format_detection_follows_trl() {
    let m = |v: Value| v.as_object().unwrap().clone();
    let msgs = m(json!({"messages": [{"role": "user", "content": "x"}]}));
    assert!(is_conversational(&msgs));
    assert_eq!(detect(&msgs, "text").unwrap(), DataFormat::Messages);
    assert_eq!(detect(&m(json!({"conversations": [{"from": "human", "value": "x"}]})), "text").unwrap(), DataFormat::Messages);
    assert_eq!(detect(&m(json!({"prompt": "a", "completion": "b"})), "text").unwrap(), DataFormat::PromptCompletion);
    assert_eq!(
        detect(&m(json!({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]})), "text").unwrap(),
        DataFormat::ConversationalPromptCompletion
    );
    assert_eq!(detect(&m(json!({"text": "a"})), "text").unwrap(), DataFormat::Text);
    assert_eq!(detect(&m(json!({"input_ids": [1]})), "text").unwrap(), DataFormat::Tokenized);
    assert!(detect(&m(json!({"foo": 1})), "text").unwrap_err().to_string().contains("foo"));
    let mut sg = m(json!({"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}));
    chatlm_data::format::convert_to_chatml(&mut sg);
    assert_eq!(Value::Object(sg), json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}));
    let f = chatlm_data::format::apply_formatting("### Question: {q}\n### Answer: {a} {{x}}", &m(json!({"q": "Why?", "a": "Because."}))).unwrap();
    assert_eq!(f, "### Question: Why?\n### Answer: Because. {x}");
    assert!(chatlm_data::format::apply_formatting("{missing}", &m(json!({}))).is_err());
}

#[test]
fn hygiene_picks_a_pad_that_is_not_eos() {
    let fx = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    if !fx.join("tokenizers").is_dir() {
        return eprintln!("skipped: fixtures not found");
    }
    let opts = chatlm_data::HygieneOptions::default();
    let mut phi3 = chatlm_tokenizer::Tokenizer::from_pretrained(fx.join("tokenizers/phi3")).unwrap();
    let r = chatlm_data::fix_tokenizer(&mut phi3, &opts).unwrap();
    assert!(r.pad_was_eos);
    assert_eq!(r.pad_after.as_deref(), Some("<unk>"));
    assert_eq!((r.len, r.embedding_rows), (32011, 32064));
    let mut l3 = chatlm_tokenizer::Tokenizer::from_pretrained(fx.join("tokenizers/llama3")).unwrap();
    let r = chatlm_data::fix_tokenizer(&mut l3, &opts).unwrap();
    assert_eq!(r.pad_after.as_deref(), Some(chatlm_data::hygiene::DEFAULT_PAD));
    assert_eq!((r.added, r.len, r.embedding_rows), (1, 128257, 128320));
    assert_ne!(l3.pad_token_id(), l3.eos_token_id());
    let bad = chatlm_data::HygieneOptions { pad_token: Some("<|end_of_text|>".into()), ..Default::default() };
    assert!(chatlm_data::fix_tokenizer(&mut l3, &bad).is_err());
}
