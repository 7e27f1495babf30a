//! Behaviour beyond the golden corpus: bad input (syntax errors, raising templates, huge messages,
//! runaway templates, filesystem access), the environment's Python semantics, built-ins, selection
//! and family recognition.

use std::time::{Duration, Instant};

use chatlm_template::{
    chatml_with_tokens, recognise, select_template, ChatRequest, ChatTemplate, ContinueFinal, DateTime, Limits,
    TemplateError, CHATML,
};
use chatlm_tokenizer::ChatTemplateSource;
use serde_json::{json, Value};

fn user(text: &str) -> ChatRequest {
    ChatRequest::new(vec![json!({"role": "user", "content": text})])
}

fn render(src: &str, req: &ChatRequest) -> Result<String, TemplateError> {
    Ok(ChatTemplate::new(src)?.render(req)?.text)
}

#[test]
fn syntax_errors_have_line_and_column() {
    let err = ChatTemplate::new("{% for m in messages %}\n  {{ m.content }}\n  {{ m.role + }}\n{% endfor %}").unwrap_err();
    match err {
        TemplateError::Syntax { line, column, ref message } => {
            assert_eq!(line, 3, "{err}");
            assert!((10..=16).contains(&column), "column {column}: {err}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let err = ChatTemplate::new("{% if x %}never closed").unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
    assert_eq!(err.kind(), "invalid_request");
    // Unknown tags and a misplaced endgeneration are syntax errors too.
    assert!(matches!(ChatTemplate::new("{% frobnicate %}"), Err(TemplateError::Syntax { line: 1, .. })));
    assert!(matches!(ChatTemplate::new("a\n{% endgeneration %}"), Err(TemplateError::Syntax { line: 2, .. })));
}

#[test]
fn unknown_role_is_rejected_with_the_templates_message() {
    // The role check of Llama 2 / Mistral-style templates.
    let src = "{% for m in messages %}{% if m.role not in ['user', 'assistant', 'system'] %}\
               {{ raise_exception('Unknown role: ' ~ m.role) }}{% endif %}{{ m.content }}{% endfor %}";
    let mut req = user("hi");
    req.messages.push(json!({"role": "narrator", "content": "Meanwhile..."}));
    let err = render(src, &req).unwrap_err();
    assert!(matches!(&err, TemplateError::Raised { message } if message == "Unknown role: narrator"), "{err:?}");
    assert_eq!(err.kind(), "raise_exception");
    assert_eq!(err.to_string(), "Unknown role: narrator");
    assert_eq!(render(src, &user("hi")).unwrap(), "hi");
}

#[test]
fn ten_megabyte_message_renders_and_is_bounded_by_the_output_limit() {
    let big = "가나다라 abc ".repeat(10 * 1024 * 1024 / 16);
    let req = user(&big);
    let start = Instant::now();
    let out = render(CHATML, &req).unwrap();
    assert_eq!(out.len(), big.len() + "<|im_start|>user\n<|im_end|>\n".len());
    assert!(start.elapsed() < Duration::from_secs(20), "10 MB render took {:?}", start.elapsed());
    let small = Limits { max_output_bytes: 1 << 20, ..Limits::default() };
    let err = ChatTemplate::with_limits(CHATML, small).unwrap().render(&req).unwrap_err();
    assert!(matches!(err, TemplateError::LimitExceeded(_)), "{err:?}");
    assert_eq!(err.kind(), "render");
}

#[test]
fn runaway_templates_are_stopped() {
    let start = Instant::now();
    let looping = "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}";
    let err = render(looping, &user("x")).unwrap_err();
    assert!(matches!(err, TemplateError::LimitExceeded(_)), "{err:?}");
    // Output that doubles each round runs out of fuel (memory) long before it exhausts the machine.
    let doubling = "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    let err = render(doubling, &user("x")).unwrap_err();
    assert!(matches!(err, TemplateError::LimitExceeded(_)), "{err:?}");
    let recursive = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let err = render(recursive, &user("x")).unwrap_err();
    assert!(matches!(err, TemplateError::LimitExceeded(_) | TemplateError::Render { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(30), "limits took {:?}", start.elapsed());
}

#[test]
fn templates_cannot_reach_the_filesystem() {
    for src in ["{% include '/etc/passwd' %}", "{% import '/etc/hosts' as h %}", "{% extends 'Cargo.toml' %}"] {
        let err = render(src, &user("x")).unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }), "{src}: {err:?}");
    }
}

#[test]
fn python_semantics() {
    let mut req = user("Hi");
    req.tools = Some(vec![json!({"name": "f", "x": [1, 2.5, true, null, "it's"]})]);
    req.now = DateTime::parse("2025-03-09T14:05:00");
    let out = render(
        "{{ tools }}|{{ tools|string }}|{{ tools[0]|tojson }}|{{ tools[0]|tojson(indent=2) }}|{{ none }}|{{ true }}\
         |{{ strftime_now('%d %B %Y') }}|{{ '  a b  '.strip().upper() }}|{{ 'x,y'.split(',') }}|{{ 'é<>&'|tojson }}",
        &req,
    )
    .unwrap();
    assert_eq!(
        out,
        "[{'name': 'f', 'x': [1, 2.5, True, None, \"it's\"]}]|[{'name': 'f', 'x': [1, 2.5, True, None, \"it's\"]}]\
         |{\"name\": \"f\", \"x\": [1, 2.5, true, null, \"it's\"]}|{\n  \"name\": \"f\",\n  \"x\": [\n    1,\n    2.5,\n    true,\n    null,\n    \"it's\"\n  ]\n}\
         |None|True|09 March 2025|A B|['x', 'y']|\"é<>&\""
    );
    // Loop controls, namespace, dict, trim_blocks/lstrip_blocks.
    let src = "{% set ns = namespace(n=0) %}\n  {% for i in range(10) %}\n{% if i == 3 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}\n{% endfor %}\n{{ ns.n }} {{ dict(a=1)|tojson }}";
    assert_eq!(render(src, &req).unwrap(), "3 {\"a\": 1}");
    // None keys are dropped: `content is defined` is false.
    let req = ChatRequest::new(vec![json!({"role": "assistant", "content": null})]);
    assert_eq!(render("{{ messages[0].content is defined }}", &req).unwrap(), "False");
}

#[test]
fn continue_final_message_rules() {
    let tpl = ChatTemplate::new(CHATML).unwrap();
    let mut req = ChatRequest::new(vec![
        json!({"role": "user", "content": "Capital of France?"}),
        json!({"role": "assistant", "content": "The capital is "}),
    ]);
    req.continue_final_message = ContinueFinal::Content;
    // The trailing space was kept by the template, so the text ends right at the marker.
    assert_eq!(
        tpl.render(&req).unwrap().text,
        "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nThe capital is "
    );
    req.add_generation_prompt = true;
    assert!(matches!(tpl.render(&req), Err(TemplateError::InvalidRequest(_))));
    req.add_generation_prompt = false;
    req.continue_final_message = ContinueFinal::Field("reasoning_content".into());
    let err = tpl.render(&req).unwrap_err();
    assert!(err.to_string().contains("has no \"reasoning_content\""), "{err}");
    // A template that drops the final message cannot be continued.
    let dropping = ChatTemplate::new("{{ messages[0].content }}").unwrap();
    req.continue_final_message = ContinueFinal::Content;
    let err = dropping.render(&req).unwrap_err();
    assert!(err.to_string().contains("does not appear in the chat"), "{err}");
    assert!(matches!(tpl.render(&ChatRequest::default()), Err(TemplateError::InvalidRequest(_))));
}

#[test]
fn generation_spans_are_byte_and_char_ranges() {
    let src = "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}{% endgeneration %}\n{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}";
    let req = ChatRequest::new(vec![
        json!({"role": "user", "content": "안녕"}),
        json!({"role": "assistant", "content": "반가워요 👋"}),
    ]);
    let tpl = ChatTemplate::new(src).unwrap();
    assert!(tpl.has_generation_blocks());
    let r = tpl.render(&req).unwrap();
    // trim_blocks eats the newline after `{% endgeneration %}`, as in jinja2.
    assert_eq!(r.text, "U: 안녕\nA: 반가워요 👋");
    assert_eq!(r.generation_spans.len(), 1);
    assert_eq!(&r.text[r.generation_spans[0].clone()], "반가워요 👋");
    assert_eq!(r.generation_char_spans(), vec![9..15]);
    // Reserved marker characters in the input are refused, not silently mis-tracked.
    let bad = ChatRequest::new(vec![json!({"role": "assistant", "content": "x\u{FDD0}"})]);
    assert!(matches!(tpl.render(&bad), Err(TemplateError::InvalidRequest(_))));
}

fn fixture_templates() -> Option<Vec<Value>> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures").into());
    let text = std::fs::read_to_string(dir.join("chat_templates/templates.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn template_text(t: &Value) -> String {
    match &t["chat_template"] {
        Value::String(s) => s.clone(),
        Value::Array(list) => list[0]["template"].as_str().unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

#[test]
fn builtins_match_the_tutorial_templates() {
    assert_eq!(recognise(CHATML), Some("chatml"));
    let Some(list) = fixture_templates() else {
        println!("skipped: fixtures not found");
        return;
    };
    let find = |name: &str| list.iter().find(|t| t["name"] == name).map(template_text).unwrap();
    assert_eq!(CHATML, find("chatml-dolphin-2.5-mixtral"));
    assert_eq!(chatml_with_tokens("<|im_start|>", "</s>"), find("tutorial-chatml-eos-s"));
}

#[test]
fn recognises_fixture_families() {
    let Some(list) = fixture_templates() else {
        println!("skipped: fixtures not found");
        return;
    };
    let expected = [
        ("llama-2-7b-chat", Some("llama2")),
        ("llama-3-8b-instruct", Some("llama3")),
        ("llama-3.1-8b-instruct", Some("llama3")),
        ("llama-3.2-3b-instruct", Some("llama3")),
        ("trl-llama3-training", Some("llama3")),
        ("mistral-7b-instruct-v0.1", Some("mistral")),
        ("mistral-7b-instruct-v0.3", Some("mistral")),
        ("mixtral-8x7b-instruct-v0.1", Some("mistral")),
        ("zephyr-7b-beta", Some("zephyr")),
        ("chatml-dolphin-2.5-mixtral", Some("chatml")),
        ("tutorial-chatml-eos-s", Some("chatml")),
        ("phi-3-mini-4k-instruct", Some("phi3")),
        ("phi-4", Some("phi4")),
        ("qwen2.5-instruct", Some("qwen")),
        ("smollm2-instruct", Some("smollm2")),
        ("gemma-it", Some("gemma")),
        ("gemma-3-it", Some("gemma")),
        ("deepseek-v3", Some("deepseek")),
        ("command-r-named", Some("command-r")),
        ("granite-3.0-2b-instruct", Some("granite")),
        ("gpt-oss-20b", Some("gpt-oss")),
        ("chatglm3-6b", Some("chatglm")),
        ("openchat-3.5-0106", Some("openchat")),
    ];
    for (name, family) in expected {
        let t = list.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("{name} not in fixtures"));
        assert_eq!(recognise(&template_text(t)), family, "{name}");
    }
}

#[test]
fn named_template_selection() {
    let named = ChatTemplateSource::Named(vec![("default".into(), "D".into()), ("tool_use".into(), "T".into())]);
    assert_eq!(select_template(&named, None, false).unwrap(), "D");
    assert_eq!(select_template(&named, None, true).unwrap(), "T");
    assert_eq!(select_template(&named, Some("tool_use"), false).unwrap(), "T");
    assert!(select_template(&named, Some("rag"), false).is_err());
    let no_default = ChatTemplateSource::Named(vec![("rag".into(), "R".into())]);
    let err = select_template(&no_default, None, false).unwrap_err();
    assert!(err.to_string().contains("no default specified"), "{err}");
    assert_eq!(chatlm_template::template_names(&named), ["default", "tool_use"]);
}

#[test]
fn template_from_file() {
    let dir = std::env::temp_dir().join(format!("chatlm-template-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.jinja");
    std::fs::write(&path, "{{ messages[0].content }}!\n").unwrap();
    assert_eq!(ChatTemplate::from_file(&path).unwrap().render(&user("hey")).unwrap().text, "hey!");
    let err = ChatTemplate::from_file(dir.join("missing.jinja")).unwrap_err();
    assert!(err.to_string().contains("missing.jinja"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
