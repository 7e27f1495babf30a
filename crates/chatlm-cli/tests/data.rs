//! `chatlm data` end to end: prepare (Parquet round trip through Python `datasets`, bad input reported by
//! row, atomic output, input never overwritten), collate and pack against the reference outputs, tokenizer fix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixtures() -> Option<PathBuf> {
    let p = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"));
    p.join("tokenizers").is_dir().then_some(p)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chatlm-data-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn chatlm(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sin = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        sin.write_all(s.as_bytes()).unwrap();
    }
    drop(sin);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn python_with(modules: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success())
}

const ROWS: &str = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
{"messages": [{"role": "user", "content": "안녕"}, {"role": "assistant", "content": "안녕하세요"}]}
{"conversations": [{"from": "user", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}
"#;

#[test]
fn prepare_parquet_round_trips_through_datasets() {
    let Some(fx) = fixtures() else { return eprintln!("skipped: fixtures not found") };
    let d = tmpdir("pq");
    let input = d.join("in.jsonl");
    std::fs::write(&input, ROWS.replace("\"gpt\"", "\"assistant\"")).unwrap();
    let tok = fx.join("tokenizers/llama3");
    let out = d.join("out.parquet");
    let (rc, _, err) = chatlm(
        &["data", "prepare", input.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--output", out.to_str().unwrap(),
          "--pack", "bfd", "--seq-length", "64"],
        None,
    );
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("rows in 3"), "{err}");
    // Our own reader reads it back.
    let rows: Vec<_> = chatlm_data::RecordReader::open(&out).unwrap().map(|r| r.unwrap().1).collect();
    assert!(!rows.is_empty());
    let jsonl = d.join("out.jsonl");
    let (rc, _, err) = chatlm(
        &["data", "prepare", input.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--output", jsonl.to_str().unwrap(),
          "--pack", "bfd", "--seq-length", "64", "--jsonl"],
        None,
    );
    assert_eq!(rc, 0, "{err}");
    if !python_with("datasets") {
        return eprintln!("skipped: Python `datasets` not installed (Parquet round trip)");
    }
    let script = format!(
        "import json, datasets\nds = datasets.load_dataset('parquet', data_files={:?}, split='train')\n\
         want = [json.loads(l) for l in open({:?})]\n\
         assert ds.column_names == ['input_ids', 'labels', 'seq_lengths'], ds.column_names\n\
         assert ds.to_list() == want, (ds.to_list(), want)\n\
         ds.to_parquet({:?})\nprint('ok', len(ds))",
        out.to_str().unwrap(),
        jsonl.to_str().unwrap(),
        d.join("back.parquet").to_str().unwrap()
    );
    let o = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // ...and what Python wrote back reads the same here.
    let back: Vec<_> = chatlm_data::RecordReader::open(&d.join("back.parquet")).unwrap().map(|r| r.unwrap().1).collect();
    assert_eq!(back, rows);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_rows_are_reported_by_number_and_nothing_is_half_written() {
    let Some(fx) = fixtures() else { return eprintln!("skipped: fixtures not found") };
    let d = tmpdir("bad");
    let tok = fx.join("tokenizers/llama3");
    let input = d.join("in.jsonl");
    let bad = format!(
        "{}{}\n{}\n{}\n",
        ROWS,
        r#"{"text": "no messages here"}"#,
        r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
        "{not json"
    );
    std::fs::write(&input, bad).unwrap();
    let out = d.join("out.parquet");
    std::fs::write(&out, b"previous").unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec!["data", "prepare", input.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--output", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        chatlm(&a, None)
    };
    let (rc, _, err) = run(&[]);
    assert_ne!(rc, 0);
    assert!(err.contains("row 4") && err.contains("messages"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous", "failed run must leave the old output untouched");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2, "no temporary files left behind");
    let (rc, _, err) = run(&["--skip-invalid"]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("row 4:") && err.contains("row 5:") && err.contains("unknown role") && err.contains("row 6:") && err.contains("invalid JSON"), "{err}");
    assert!(err.contains("rows in 6 / out 3"), "{err}");
    // Over-long rows: counted when truncated, reported by number with --truncation error.
    let (rc, _, err) = run(&["--skip-invalid", "--max-length", "12"]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("tokens 36;") && err.contains("rows truncated 3"), "{err}");
    let (rc, _, err) = run(&["--skip-invalid", "--max-length", "12", "--truncation", "error"]);
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("tokens, over the limit of 12"), "{err}");
    // Never overwrite the input.
    let (rc, _, err) = chatlm(
        &["data", "prepare", input.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--output", input.to_str().unwrap()],
        None,
    );
    assert_ne!(rc, 0);
    assert!(err.contains("refusing"), "{err}");
    // A Parquet file whose text column is not text (`input_ids` is a list of integers).
    let (rc, _, err) = chatlm(
        &["data", "prepare", out.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(),
          "--output", d.join("x.jsonl").to_str().unwrap(), "--format", "text", "--text-field", "input_ids"],
        None,
    );
    assert_ne!(rc, 0, "{err}");
    assert!(err.contains("column `input_ids` has type List") && err.contains("expected a string"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

fn reference(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatlm-data/tests/data").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn collate_cli_matches_reference_batches() {
    let Some(fx) = fixtures() else { return eprintln!("skipped: fixtures not found") };
    for (file, only) in [("collators.json", None), ("completion_only.json", Some("completion-only"))] {
        let refs = reference(file);
        for case in refs["cases"].as_array().unwrap() {
            let tok = fx.join("tokenizers").join(case["tokenizer"].as_str().unwrap());
            let stdin: String = case["rows"].as_array().unwrap().iter().map(|r| format!("{r}\n")).collect();
            let collator = only.unwrap_or_else(|| case["collator"].as_str().unwrap());
            let (rc, out, err) = chatlm(
                &["data", "collate", "--collator", collator, "--tokenizer", tok.to_str().unwrap(), "--options", &case["options"].to_string()],
                Some(&stdin),
            );
            assert_eq!(rc, 0, "{}: {err}", case["name"]);
            let got: serde_json::Value = serde_json::from_str(&out).unwrap();
            for (k, v) in case["expected"].as_object().unwrap() {
                assert_eq!(&got[k], v, "{}: {k}", case["name"]);
            }
            if case.get("warnings").is_some_and(|w| !w.as_array().unwrap().is_empty()) {
                assert!(err.contains("Could not find"), "{}: {err}", case["name"]);
            }
        }
    }
}

#[test]
fn pack_cli_matches_trl_docstring() {
    let refs = reference("pack.json");
    for case in refs["cases"].as_array().unwrap().iter().filter(|c| c.get("rows").is_some()) {
        let rows = &case["rows"];
        let n = rows["input_ids"].as_array().unwrap().len();
        let stdin: String = (0..n)
            .map(|i| format!("{{\"input_ids\": {}, \"attention_mask\": {}}}\n", rows["input_ids"][i], rows["attention_mask"][i]))
            .collect();
        let (rc, out, err) = chatlm(&["data", "pack", "--strategy", case["strategy"].as_str().unwrap(), "--seq-length", "4"], Some(&stdin));
        assert_eq!(rc, 0, "{err}");
        let got: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for (k, col) in case["expected"].as_object().unwrap() {
            let g: Vec<_> = got.iter().map(|r| r[k].clone()).collect();
            assert_eq!(&serde_json::Value::Array(g), col, "{}: {k}", case["name"]);
        }
    }
}

#[test]
fn tokenizer_fix_gives_distinct_pad_and_loads_in_transformers() {
    let Some(fx) = fixtures() else { return eprintln!("skipped: fixtures not found") };
    let d = tmpdir("tok");
    let out = d.join("fixed");
    let tok = fx.join("tokenizers/llama2");
    let (rc, _, err) = chatlm(
        &["data", "tokenizer", "--tokenizer", tok.to_str().unwrap(), "--output", out.to_str().unwrap(), "--add-special-token", "<|response|>"],
        None,
    );
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("pad: None -> Some(\"<unk>\")"), "{err}");
    assert!(err.contains("len(tokenizer) = 32001") && err.contains("32064"), "{err}");
    let t = chatlm_tokenizer::Tokenizer::from_pretrained(&out).unwrap();
    assert_eq!(t.pad_token_id(), Some(0));
    assert_eq!(t.token_to_id("<|response|>"), Some(32000));
    assert!(t.chat_template().is_some());
    if !python_with("transformers") {
        return eprintln!("skipped: Python transformers not installed (load check)");
    }
    let script = format!(
        "from transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained({:?})\n\
         assert t.pad_token == '<unk>' and t.pad_token_id != t.eos_token_id\nassert len(t) == 32001, len(t)\n\
         print(t.apply_chat_template([{{'role': 'user', 'content': 'hi'}}], tokenize=False))",
        out.to_str().unwrap()
    );
    let o = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "<s>user\nhi</s>\n\n");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn prepare_formatting_and_response_template_match_completion_only_collator() {
    let Some(fx) = fixtures() else { return eprintln!("skipped: fixtures not found") };
    let refs = reference("completion_only.json");
    let case = refs["cases"].as_array().unwrap().iter().find(|c| c["name"] == "llama3/qa-response-string").unwrap().clone();
    let d = tmpdir("fmt");
    let input = d.join("qa.jsonl");
    // The tutorial's "### Question: ... ### Answer: ..." formatting of the first two reference texts.
    std::fs::write(
        &input,
        "{\"q\": \"What is the capital of France?\", \"a\": \"Paris.\"}\n{\"q\": \"한국의 수도는 어디인가요?\", \"a\": \"서울입니다.\"}\n",
    )
    .unwrap();
    let out = d.join("out.jsonl");
    let tok = fx.join("tokenizers/llama3");
    let (rc, _, err) = chatlm(
        &["data", "prepare", input.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--output", out.to_str().unwrap(),
          "--formatting", "### Question: {q}\n ### Answer: {a}", "--response-template", " ### Answer:", "--labels", "pad-value"],
        None,
    );
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("PAD == EOS and --labels pad-value"), "{err}");
    let got: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, g) in got.iter().enumerate() {
        let ids = g["input_ids"].as_array().unwrap();
        assert_eq!(ids, case["rows"][i]["input_ids"].as_array().unwrap(), "row {i} ids");
        let want: Vec<_> = case["expected"]["labels"][i].as_array().unwrap()[..ids.len()].to_vec();
        assert_eq!(g["labels"].as_array().unwrap(), &want, "row {i} labels");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn explicit_prompt_completion_format_accepts_conversational_rows_and_global_packing() {
    let Some(fx) = fixtures() else { return eprintln!("skipped: fixtures not found") };
    let d = tmpdir("pc");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatlm-data/tests/data/prepare_inputs/conv_pc.jsonl");
    let tok = fx.join("tokenizers/phi3");
    let out = d.join("o.jsonl");
    let (rc, _, err) = chatlm(
        &["data", "prepare", input.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--output", out.to_str().unwrap(),
          "--format", "prompt-completion", "--pack", "bfd-split", "--seq-length", "16", "--pack-scope", "global"],
        None,
    );
    assert_eq!(rc, 0, "{err}");
    assert!(err.contains("ConversationalPromptCompletion"), "{err}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.iter().all(|r| r["input_ids"].as_array().unwrap().len() <= 16));
    let total: usize = rows.iter().map(|r| r["seq_lengths"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).sum::<usize>()).sum();
    let tokens: usize = rows.iter().map(|r| r["input_ids"].as_array().unwrap().len()).sum();
    assert_eq!(total, tokens);
    let _ = std::fs::remove_dir_all(&d);
}
