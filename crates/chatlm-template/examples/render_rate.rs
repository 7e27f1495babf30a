//! In-process render rate of `ChatTemplate::render` over every successful case of
//! `chat_templates/golden.jsonl` (the workload of `scripts/bench/template.py`, without JSON I/O or
//! process start). Every render is checked against transformers' text before timing starts.
//!
//! ```sh
//! cargo run --release -p chatlm-template --example render_rate -- [--passes 20] [--trials 5] [--per-template] [--minijinja] [--only TEMPLATE] [FIXTURES]
//! ```
//!
//! `--minijinja` times the reference renderer only (no fast path); `--per-template` also says which
//! path each template takes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use chatlm_template::{select_template, ChatRequest, ChatTemplate, Renderer};
use chatlm_tokenizer::ChatTemplateSource;
use serde_json::{Map, Value};

#[path = "../tests/common/golden_line.rs"]
mod golden_line;
use golden_line::request_from_line;

fn main() {
    let mut passes = 20usize;
    let mut per_template = false;
    let mut trials = 5usize;
    let mut renderer = Renderer::Auto;
    let mut only: Option<String> = None;
    let mut dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--passes" => passes = args.next().and_then(|n| n.parse().ok()).expect("--passes N"),
            "--trials" => trials = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).expect("--trials N"),
            "--per-template" => per_template = true,
            "--minijinja" => renderer = Renderer::Minijinja,
            "--only" => only = Some(args.next().expect("--only TEMPLATE")),
            other => dir = PathBuf::from(other),
        }
    }
    let dir = dir.join("chat_templates");
    let entries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("templates.json")).expect("templates.json")).unwrap();
    let mut sources = HashMap::new();
    for e in &entries {
        let source = match &e["chat_template"] {
            Value::String(s) => ChatTemplateSource::Single(s.clone()),
            Value::Array(items) => ChatTemplateSource::Named(
                items.iter().map(|i| (i["name"].as_str().unwrap().into(), i["template"].as_str().unwrap().into())).collect(),
            ),
            _ => panic!("bad chat_template"),
        };
        let mut tokens = Map::new();
        for k in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            if let Some(v) = e.get(k).filter(|v| !v.is_null()) {
                tokens.insert(k.to_string(), v.clone());
            }
        }
        sources.insert(e["name"].as_str().unwrap().to_string(), (source, tokens));
    }
    let golden = std::fs::read_to_string(dir.join("golden.jsonl")).expect("golden.jsonl");
    // Compiled once per distinct source; cases refer to them by index, so the timed loop does no
    // lookups of its own.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut compiled: Vec<ChatTemplate> = Vec::new();
    // (template name, compiled index, request, expected text)
    let mut cases: Vec<(String, usize, ChatRequest, String)> = Vec::new();
    for raw in golden.lines() {
        let line: Value = serde_json::from_str(raw).unwrap();
        let Some(expected) = line["expected"].as_str() else { continue };
        let name = line["template"].as_str().unwrap().to_string();
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let (source, tokens) = &sources[&name];
        let req = request_from_line(&line, tokens);
        let src = select_template(source, None, req.tools.is_some()).unwrap().to_string();
        let at = *index.entry(src.clone()).or_insert_with(|| {
            compiled.push(ChatTemplate::new(src.as_str()).unwrap());
            compiled.len() - 1
        });
        assert_eq!(render(&compiled[at], &req, renderer).text, expected, "{name}/{}", line["case"]);
        cases.push((name, at, req, expected.to_string()));
    }
    // The best of several trials: on a shared machine the fastest trial is the least disturbed one.
    let mut times = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..trials {
        let t0 = Instant::now();
        bytes = 0;
        for _ in 0..passes {
            for (_, at, req, _) in &cases {
                bytes += render(&compiled[*at], req, renderer).text.len();
            }
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let (took, median) = (times[0], times[times.len() / 2]);
    let n = (cases.len() * passes) as f64;
    println!(
        "{n} renders ({} cases x {passes}), best of {trials}: {took:.3} s, {:.0} renders/s, {:.2} us/render \
         (median {:.2} us), {:.0} MB/s of prompt",
        cases.len(),
        n / took,
        took / n * 1e6,
        median / n * 1e6,
        bytes as f64 / took / 1e6
    );
    if per_template {
        // (renders, seconds, template index, cases that fall back to minijinja)
        let mut by_name: HashMap<&str, (usize, f64, usize, usize)> = HashMap::new();
        for (name, at, req, _) in &cases {
            let t = Instant::now();
            for _ in 0..passes {
                std::hint::black_box(render(&compiled[*at], req, renderer));
            }
            let e = by_name.entry(name).or_default();
            e.0 += passes;
            e.1 += t.elapsed().as_secs_f64();
            e.2 = *at;
            e.3 += usize::from(compiled[*at].render_with(req, Renderer::Fast).ok().flatten().is_none());
        }
        let mut rows: Vec<_> = by_name.into_iter().collect();
        rows.sort_by(|a, b| (b.1 .1 / b.1 .0 as f64).total_cmp(&(a.1 .1 / a.1 .0 as f64)));
        for (name, (count, secs, at, fell_back)) in rows {
            let path = match (compiled[at].uses_fast_path(), fell_back) {
                (false, _) => "minijinja".to_string(),
                (true, 0) => "fast".to_string(),
                (true, n) => format!("fast ({n} cases fall back)"),
            };
            let us = secs / count as f64 * 1e6;
            println!("{us:>9.2} us/render  {:>5.1}% of time  {name:<36} {path}", secs / took * 100.0);
        }
    }
}

fn render(tpl: &ChatTemplate, req: &ChatRequest, renderer: Renderer) -> chatlm_template::Rendered {
    tpl.render_with(req, renderer).unwrap().unwrap()
}
