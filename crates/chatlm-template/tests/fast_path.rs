//! Differential tests of the fast renderer against minijinja (the reference): the golden corpus,
//! randomized and edge-case requests over every golden template, and the resource limits. Any
//! difference in text, generation spans or error is a failure; so is a golden template that no
//! longer takes the fast path, or a golden case that newly falls back to minijinja.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use chatlm_template::{
    select_template, ChatRequest, ChatTemplate, ContinueFinal, DateTime, Limits, Rendered, Renderer, TemplateError,
};
use chatlm_tokenizer::ChatTemplateSource;
use serde_json::{json, Map, Value};

#[path = "common/golden_line.rs"]
mod golden_line;
use golden_line::request_from_line;

/// Golden templates rendered by minijinja only (they use something the fast renderer does not).
const MINIJINJA_TEMPLATES: [&str; 0] = [];

/// Successful golden cases of fast-path templates that still fall back to minijinja at render time.
const FALLBACK_CASES: [&str; 0] = [];

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("CHATLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures")));
    dir.join("chat_templates/golden.jsonl").exists().then(|| dir.join("chat_templates"))
}

struct Template {
    source: ChatTemplateSource,
    tokens: Map<String, Value>,
}

fn load_templates(dir: &std::path::Path) -> BTreeMap<String, Template> {
    let text = std::fs::read_to_string(dir.join("templates.json")).expect("templates.json");
    let list: Vec<Value> = serde_json::from_str(&text).expect("templates.json is JSON");
    let mut out = BTreeMap::new();
    for t in list {
        let source = match &t["chat_template"] {
            Value::String(s) => ChatTemplateSource::Single(s.clone()),
            Value::Array(items) => ChatTemplateSource::Named(
                items
                    .iter()
                    .map(|i| (i["name"].as_str().unwrap().into(), i["template"].as_str().unwrap().into()))
                    .collect(),
            ),
            other => panic!("bad chat_template {other}"),
        };
        let mut tokens = Map::new();
        for k in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                tokens.insert(k.to_string(), v.clone());
            }
        }
        out.insert(t["name"].as_str().unwrap().to_string(), Template { source, tokens });
    }
    out
}

/// A render's observable result: text and spans, or the error's kind and message.
fn outcome(r: Result<Option<Rendered>, TemplateError>) -> Result<Rendered, String> {
    match r {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("no render".into()),
        Err(e) => Err(format!("{}: {e}", e.kind())),
    }
}

/// Renders with minijinja and with the default renderer and checks they agree; returns whether the
/// fast path itself rendered it.
fn check(tpl: &ChatTemplate, req: &ChatRequest, what: &str) -> bool {
    let reference = outcome(tpl.render_with(req, Renderer::Minijinja));
    let auto = outcome(tpl.render_with(req, Renderer::Auto));
    assert_eq!(auto, reference, "{what}");
    match tpl.render_with(req, Renderer::Fast) {
        Ok(Some(fast)) => {
            assert_eq!(Ok(fast), reference, "{what}: the fast path rendered something else");
            true
        }
        _ => false,
    }
}

#[test]
fn golden_cases_render_identically_on_the_fast_path() {
    let Some(dir) = fixtures() else {
        println!("skipped: fixtures not found");
        return;
    };
    let templates = load_templates(&dir);
    let mut compiled: HashMap<String, ChatTemplate> = HashMap::new();
    let mut slow_templates = BTreeSet::new();
    let mut fallbacks = BTreeSet::new();
    let golden = std::fs::read_to_string(dir.join("golden.jsonl")).expect("golden.jsonl");
    for raw in golden.lines() {
        let line: Value = serde_json::from_str(raw).unwrap();
        let name = line["template"].as_str().unwrap();
        let case = format!("{name}/{}", line["case"].as_str().unwrap());
        let t = &templates[name];
        let req = request_from_line(&line, &t.tokens);
        let Ok(src) = select_template(&t.source, None, req.tools.is_some()) else {
            continue;
        };
        let tpl = compiled.entry(src.to_string()).or_insert_with(|| ChatTemplate::new(src).unwrap());
        if !tpl.uses_fast_path() {
            slow_templates.insert(name.to_string());
            continue;
        }
        let fast = check(tpl, &req, &case);
        if !fast && line["expected"].is_string() {
            fallbacks.insert(case);
        }
    }
    assert_eq!(slow_templates, MINIJINJA_TEMPLATES.iter().map(|s| s.to_string()).collect(), "templates on minijinja");
    assert_eq!(fallbacks, FALLBACK_CASES.iter().map(|s| s.to_string()).collect(), "golden cases that fall back");
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TEXTS: [&str; 14] = [
    "Hello, how are you?",
    "",
    "  padded text \n\n",
    "한국어 텍스트와 이모지 😀",
    "<think>\nreasoning here\n</think>\n\nthe answer",
    "{{ not jinja }} {% if x %} {# c #}",
    "line one\nline two\r\nline three",
    "it's \"quoted\" \\ back\\slash\ttab",
    "\u{1c}separators\u{1f} and \u{2028} breaks\u{85}",
    "<tool_response>\n42\n</tool_response>",
    "1e-05 None True [1, 2]",
    "x",
    "ends with newline\n",
    "ÉÀÇ ünïcödé ΣΑΣ",
];

fn tool_schema(name: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": "Gets the weather.\n  Be nice.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city"},
            "days": {"type": "integer", "description": "How many days", "enum": [1, 2, 3]},
            "units": {"type": ["string", "null"], "description": "Units"},
            "flags": {"type": "array", "items": {"type": "boolean"}, "description": "Flags"}},
        "required": ["city"]}, "return": {"type": "number", "description": "Degrees"}}})
}

fn random_message(rng: &mut Rng, role: &str) -> Value {
    let content = match rng.below(10) {
        0 => Value::Null,
        1 => json!([{"type": "text", "text": *rng.pick(&TEXTS)}]),
        _ => Value::String(rng.pick(&TEXTS).to_string()),
    };
    let mut m = json!({"role": role, "content": content});
    let obj = m.as_object_mut().unwrap();
    match role {
        "assistant" if rng.chance(30) => {
            let args =
                if rng.chance(50) { json!({"city": "Paris", "days": 2}) } else { json!("{\"city\": \"Paris\"}") };
            let call = if rng.chance(80) {
                json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}})
            } else {
                json!({"name": "get_weather", "arguments": args})
            };
            obj.insert("tool_calls".into(), json!([call]));
            if rng.chance(50) {
                obj.insert("content".into(), Value::Null);
            }
        }
        "assistant" if rng.chance(20) => {
            obj.insert("reasoning_content".into(), json!("Thinking it over."));
        }
        "tool" => {
            obj.insert("name".into(), json!("get_weather"));
            obj.insert("tool_call_id".into(), json!("call_1"));
        }
        _ => {}
    }
    if rng.chance(15) {
        obj.insert("extra".into(), Value::Null);
    }
    m
}

fn random_request(rng: &mut Rng) -> ChatRequest {
    let mut messages = Vec::new();
    if rng.chance(40) {
        messages.push(random_message(rng, "system"));
    }
    let turns = rng.below(5) + usize::from(messages.is_empty());
    for i in 0..turns {
        let role = match rng.below(10) {
            0 => "tool",
            1 => "system",
            2..=5 => "user",
            _ if i % 2 == 0 => "user",
            _ => "assistant",
        };
        messages.push(random_message(rng, role));
    }
    let mut req = ChatRequest::new(messages);
    if rng.chance(30) {
        req.tools = Some((0..rng.below(3)).map(|i| tool_schema(["get_weather", "search"][i % 2])).collect());
    }
    if rng.chance(10) {
        req.documents = Some(vec![json!({"title": "Doc", "text": "Some text."})]);
    }
    match rng.below(3) {
        0 => req.add_generation_prompt = true,
        1 if rng.chance(50) => req.continue_final_message = ContinueFinal::Content,
        _ => {}
    }
    if rng.chance(30) {
        req.kwargs.insert("enable_thinking".into(), json!(rng.chance(50)));
    }
    if rng.chance(10) {
        req.kwargs.insert("date_string".into(), json!("01 Jan 2026"));
    }
    req.now = DateTime::parse("2025-03-09T14:05:00");
    req
}

fn golden_templates() -> Vec<(String, ChatTemplate, Map<String, Value>)> {
    let Some(dir) = fixtures() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, t) in load_templates(&dir) {
        for tools in [false, true] {
            if let Ok(src) = select_template(&t.source, None, tools) {
                if tools && matches!(t.source, ChatTemplateSource::Single(_)) {
                    continue;
                }
                out.push((name.clone(), ChatTemplate::new(src).unwrap(), t.tokens.clone()));
            }
        }
    }
    out
}

#[test]
fn randomized_requests_render_identically() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut renders, mut fast) = (0, 0);
    for (name, tpl, tokens) in golden_templates() {
        for i in 0..60 {
            let mut req = random_request(&mut rng);
            req.special_tokens = tokens.clone();
            renders += 1;
            fast += usize::from(check(&tpl, &req, &format!("{name} #{i}: {req:?}")));
        }
    }
    // The test must exercise the fast path, not just the fallback.
    assert!(renders == 0 || fast * 3 > renders, "{fast} of {renders} renders on the fast path");
}

#[test]
fn edge_requests_render_identically() {
    let huge = "big ".repeat(300_000);
    let mut cases: Vec<ChatRequest> = vec![
        ChatRequest::new(vec![]),
        ChatRequest::new(vec![json!({"role": "user", "content": null})]),
        ChatRequest::new(vec![json!({"role": "user"})]),
        ChatRequest::new(vec![json!({"role": "user", "content": huge})]),
        ChatRequest::new(vec![json!({"role": "assistant", "content": "prefill"})]),
        ChatRequest::new(vec![json!("not an object")]),
        ChatRequest::new(vec![json!({"role": "user", "content": 12345678901234567890u64})]),
        ChatRequest::new(vec![json!({"role": "user", "content": 2.5}), json!({"role": "user", "content": true})]),
        // Content parts, which `content|trim` prints minijinja's way: quotes, escapes, controls.
        ChatRequest::new(vec![
            json!({"role": "system", "content": [{"type": "text", "text": "it's \"q\" \\ \u{1}\u{85}\u{2028}é"}]}),
            json!({"role": "user", "content": [{"type": "text", "text": " a\n\t", "n": 1.0e20, "i": -3, "z": null}, {"b": [false, 0.1]}]}),
        ]),
    ];
    let mut cont = ChatRequest::new(vec![
        json!({"role": "user", "content": "Hi"}),
        json!({"role": "assistant", "content": "Hel"}),
    ]);
    cont.continue_final_message = ContinueFinal::Content;
    cases.push(cont);
    let mut shadow = ChatRequest::new(vec![json!({"role": "user", "content": "Hi"})]);
    shadow.kwargs.insert("strftime_now".into(), json!("not a function"));
    shadow.kwargs.insert("loop".into(), json!(1));
    cases.push(shadow);
    for (name, tpl, tokens) in golden_templates() {
        for (i, req) in cases.iter().enumerate() {
            let mut req = req.clone();
            req.special_tokens = tokens.clone();
            req.now = DateTime::parse("2025-03-09T14:05:00");
            check(&tpl, &req, &format!("{name} edge #{i}"));
            req.add_generation_prompt = !req.add_generation_prompt && req.continue_final_message == ContinueFinal::No;
            check(&tpl, &req, &format!("{name} edge #{i} (generation prompt flipped)"));
        }
    }
}

/// `tojson` with each of its options, on request JSON (tools, messages with hidden `null`s) and on
/// template values, where keys and values need every kind of escape: byte-identical to minijinja
/// (whose `json.dumps` is checked against Python), and rendered on the fast path.
#[test]
fn tojson_options_render_identically() {
    let odd = "q\"b\\c\n\t\u{1}\u{7f}é€😀";
    let tool = json!({"type": "function", "function": {"name": "f", "description": odd,
        "parameters": {"type": "object", "properties": {
            odd: {"type": "string", "enum": ["a", odd, "", "ü"], "description": ""},
            "n": {"type": "integer", "minimum": -12345678901234i64, "maximum": 9007199254740993u64, "default": 0},
            "x": {"type": "number", "default": 2.5, "big": 1.0e20, "small": 1.0e-7, "neg": -0.0},
            "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": [[], {}, [null, true, false]]}}}}}}}}}},
            "empty": {}, "none": null, "long key beyond sixteen bytes": "a value beyond sixteen bytes"},
        "required": [odd, "n"]}}});
    let mut req = ChatRequest::new(vec![
        json!({"role": "user", "content": odd, "extra": null}),
        json!({"role": "assistant", "content": null, "tool_calls": [{"type": "function",
            "function": {"name": "f", "arguments": {"n": 1, odd: [odd, -1.5, null]}}}]}),
    ]);
    req.tools = Some(vec![tool.clone(), json!({"type": "function", "function": {"name": "g", "parameters": {}}})]);
    let options = [
        "",
        "(ensure_ascii=true)",
        "(indent=2)",
        "(indent=4, ensure_ascii=true)",
        "(indent='\\t')",
        "(indent=0)",
        "(separators=(',', ':'))",
        "(indent=2, separators=(', ', ' = '))",
        "(sort_keys=true)",
        "(sort_keys=true, indent=1)",
    ];
    for opts in options {
        let src = format!(
            "{{% for t in tools %}}{{{{ t|tojson{opts} }}}}|{{{{ t.function.parameters|tojson{opts} }}}}|{{% endfor %}}\
             {{{{ messages|tojson{opts} }}}}|{{% for m in messages %}}{{{{ m|tojson{opts} }}}}{{% endfor %}}|\
             {{{{ {{'k': [1, 'v\\n', none, {{'é': 2.0}}], 'z': {{}}, 'a': []}}|tojson{opts} }}}}{{{{ 'x'|tojson{opts} }}}}"
        );
        let tpl = ChatTemplate::new(src.as_str()).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(check(&tpl, &req, &src), "fell back: {src}");
    }
}

/// Over the limits the render fails exactly as minijinja fails, whichever path started it.
#[test]
fn limits_are_reported_as_minijinja_reports_them() {
    let messages: Vec<Value> = (0..3000).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect();
    let req = ChatRequest::new(messages);
    let runaway = "{% for a in messages %}{% for b in messages %}{{ a.role }}{% endfor %}{% endfor %}";
    let tpl = ChatTemplate::new(runaway).unwrap();
    assert!(tpl.uses_fast_path());
    assert!(!check(&tpl, &req, "runaway loop"));
    assert!(matches!(tpl.render(&req), Err(TemplateError::LimitExceeded(_))));
    let chatml = ChatTemplate::with_limits(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
        Limits { max_output_bytes: 1000, ..Limits::default() },
    )
    .unwrap();
    assert!(!check(&chatml, &req, "output limit"));
    let small = ChatRequest::new(vec![json!({"role": "user", "content": "Hi"})]);
    assert!(check(&chatml, &small, "under the output limit"));
    for fuel in [10, 50, 100, 200, 400, 1000] {
        let tpl = ChatTemplate::with_limits(runaway, Limits { fuel, ..Limits::default() }).unwrap();
        check(&tpl, &small, &format!("fuel {fuel}"));
    }
}

/// Each construct the fast renderer supports, checked against minijinja on a few requests; every
/// template here must compile for the fast path.
#[test]
fn constructs_render_identically() {
    let templates = [
        "{% macro f(a, b='x', c=none) %}[{{ a }}|{{ b }}|{{ c }}]{% endmacro %}{{ f(1) }}{{ f(2, 'y') }}{{ f(3, c=4) }}{{ f(b=5, a=6) }}",
        "{% macro t(x) %}{% if x is mapping %}{{ t(x.v) }}{% else %}{{ x }}{% endif %}{% endmacro %}{{ t({'v': {'v': 'deep'}}) }}",
        "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role %}{% endfor %}{{ ns.n }}:{{ ns.s }}",
        "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ loop.first }}{{ loop.last }}{{ loop.revindex }} {% else %}none{% endfor %}",
        "{% for m in messages[1:] %}{{ m.role }}{% endfor %}|{% for m in messages[::-1] %}{{ m.role }}{% endfor %}|{{ messages[-1].role }}|{{ messages[:1]|length }}",
        "{% for k, v in messages[0]|items %}{{ k }}={{ v }};{% endfor %}{% for k in messages[0] %}{{ k }},{% endfor %}",
        "{{ messages[0].content|trim|upper }}{{ messages[0].content.strip().lower() }}{{ 'a,b,,c'.split(',') }}{{ ' x y '.split() }}",
        "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}{{ messages|map(attribute='role')|join('+') if false else '' }}",
        "{{ messages|rejectattr('role', 'equalto', 'user')|list }}{{ [1, 2, 3]|join('-') }}{{ [3, 1]|first }}{{ [3, 1]|last }}",
        "{{ messages[0]|tojson }}{{ messages[0]|tojson(indent=2) }}{{ {'b': 1, 'a': [1.5, none, true]}|tojson(sort_keys=true) }}",
        "{{ messages[0] }}{{ [1, 'a', none, true, 2.5, {'k': 'v'}] }}{{ (1, 2) }}{{ none }}{{ undefined_var }}{{ 2.0 if false else 0.1 }}",
        "{{ 'x' in 'xyz' }}{{ 'role' in messages[0] }}{{ 2 in [1, 2] }}{{ 'q' not in 'abc' }}{{ messages[0].role is string }}{{ nothing is defined }}",
        "{{ 7 // 2 }}{{ 7 % 3 }}{{ 7 / 2 }}{{ 2 * 3 }}{{ -4 + 1 }}{{ 1.5 + 1 }}{{ 3 > 2 }}{{ 'a' < 'b' }}{{ 10 - 3 - 2 }}",
        "{{ 'a' ~ -7 ~ 0 ~ 9223372036854775807 ~ (-9223372036854775807 - 1) }}{{ [10, -2, 0]|join(',') }}{{ [-1, 20]|trim }}{{ {'k': -3}|trim }}",
        "{{ 'a' ~ 1 ~ 'b' }}{{ 'x' + 'y' + messages[0].role }}{{ (messages|length) + 1 }}{{ messages[0].role + '!' if true }}",
        "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set s %}block {{ a }}{% endset %}{{ s|length }}{{ s }}",
        "{{ messages[0].get('role') }}{{ messages[0].get('nope', 'dflt') }}{{ messages[0].keys()|list }}{{ messages[0].items()|list|length }}",
        "{{ 'Hello World'.startswith('Hell') }}{{ 'Hello'.endswith(('x', 'lo')) }}{{ 'a-b'.replace('-', '+') }}{{ 'ab'|replace('a', 'c') }}",
        "{{ x|default('d') }}{{ ''|default('e', true) }}{{ 'hello world'.title() }}{{ 'Hi'|length }}{{ 3 is odd }}{{ 4 is even }}",
        "{{- '  a  ' -}} | {%- if true -%}  b  {%- endif -%} |\n  {% if true %}\n  c\n  {% endif %}\n{# note #}  d",
        "{{ strftime_now('%Y-%m-%d %H:%M') }}{% if strftime_now is defined %}yes{% endif %}{{ bos_token }}{{ eos_token is none }}",
        "{% generation %}{{ messages[0].role }}{% endgeneration %} and {% generation %}b{% endgeneration %}",
        "{{ tools is none }}{{ documents is none }}{% for t in tools or [] %}{{ t.function.name }}{% endfor %}",
        "{{ 'a' ~ nothing ~ 'b' }}{% for x in nothing %}a{% else %}b{% endfor %}{{ nothing|length }}{{ nothing|default(1) }}",
        "{% if messages[0].role is defined and not (messages[0].extra is defined) or false %}y{% endif %}{{ {'a': 1, 'a': 2} }}",
        "{{ messages|trim }}|{{ messages[0]|trim }}|{{ 'a' + messages|trim + 'b' }}|{{ [' a\\n\\tb\\\\ ', \"it's\", 'say \"x\"', 1, 2.5, 100000000000000000000.0, none, true, {'k': [0.1]}]|trim }}|{{ [' x ']|trim('[') }}",
        "{% for m in messages %}{% if m.extra %}E{% endif %}{% if m.extra is defined %}D{% endif %}{% if m.content is string %}S{% endif %}{% if m.nope is undefined and m.role %}U{% endif %}{% if loop.first %}F{% endif %}{% if not loop.last %},{% endif %}{% endfor %}",
        "{%+ if true %}  x{%+ endif %}\n  {{+ 'y' }}\r\n{#- c -#}\n z {{ -1 }}{{ 1.0 }}{{ 10 / 4 }}{{ [1, 2] == [1, 2] }}{{ (1, 2) == [1, 2] }}",
        // Concatenation pieces and `x.k == 'lit'` on namespaces, dicts and messages.
        "{% set ns = namespace(r='user') %}{% set d = {'role': 'user'} %}{% for m in messages %}{{ '<' + ns.r + '|' + d.role + '|' + m.role + '>' }}{% if ns.r == 'user' %}N{% endif %}{% if d.role != 'x' %}D{% endif %}{% if m.role == 'user' %}U{% elif m['role'] != 'system' %}A{% endif %}{{ m.role == 'system' }}{% endfor %}",
        "{% for m in messages %}{{ '[' + m.content|trim + '|' + m.content.strip() + '|' + m['role'] + ']' }}{% endfor %}",
        // Root-frame sets, loop frames that do not leak, macros beside them.
        "{% set r = messages[0] %}{{ '(' + r.role + ')' }}{{ r.role == 'system' }}{% for m in messages %}{% set r = m %}{% set y = 1 %}{% endfor %}{{ r.role }}{{ y is defined }}{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}{% macro f(v) %}{{ v }}{% endmacro %}{{ f(x) }}",
    ];
    let requests = [
        ChatRequest::new(vec![
            json!({"role": "system", "content": "  Sys prompt  "}),
            json!({"role": "user", "content": "Hi there", "extra": null}),
            json!({"role": "assistant", "content": "Hello!"}),
        ]),
        ChatRequest::new(vec![json!({"role": "user", "content": "Ünïcödé ΣΑΣ 😀 \"q\" 'a'"})]),
    ];
    for src in templates {
        let tpl = ChatTemplate::new(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(tpl.uses_fast_path(), "not on the fast path: {src}");
        for (i, req) in requests.iter().enumerate() {
            let mut req = req.clone();
            req.set_special_token("bos_token", "<s>");
            req.special_tokens.insert("eos_token".into(), Value::Null);
            req.now = DateTime::parse("2025-03-09T14:05:00");
            assert!(check(&tpl, &req, &format!("{src} / request {i}")), "fell back: {src} / request {i}");
        }
    }
}

/// The shortcuts for concatenation pieces and `x.k == 'lit'` meet values they do not handle
/// (content parts, numbers, missing keys, `null`): the render still agrees with minijinja, on the
/// fast path or off it.
#[test]
fn piece_and_comparison_shortcuts_agree_on_unusual_values() {
    let templates = [
        "{% for m in messages %}{{ '<' + m.content|trim + '>' }}{% endfor %}",
        "{% for m in messages %}{{ '<' + m.content + '>' }}{% endfor %}",
        "{% for m in messages %}{% if m.content == 'x' %}X{% elif m.content != 'y' %}Y{% endif %}{% endfor %}",
        "{% for m in messages %}{{ m.content == 'x' }}{{ m.content != 'x' }}{% endfor %}",
        "{% for m in messages %}{{ '<' + m.nope + '>' }}{% endfor %}",
    ];
    let contents = [
        json!([{"type": "text", "text": " hi "}]),
        json!(5),
        json!(2.5),
        json!(null),
        json!({"k": "v"}),
        json!(" x "),
        json!("x"),
    ];
    for src in templates {
        let tpl = ChatTemplate::new(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(tpl.uses_fast_path(), "not on the fast path: {src}");
        for c in &contents {
            let req = ChatRequest::new(vec![json!({"role": "user", "content": c})]);
            check(&tpl, &req, &format!("{src} / content {c}"));
        }
    }
}

/// A compiled template is shared by threads (the CLI's workers do): the fast path keeps no state
/// between renders except an output-size hint.
#[test]
fn shared_templates_render_identically_on_many_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ChatTemplate>();
    let Some((_, tpl, tokens)) = golden_templates().into_iter().find(|(name, ..)| name == "qwen3") else { return };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (tpl, tokens) = (&tpl, &tokens);
            s.spawn(move || {
                let mut rng = Rng(0x1234_5678 + t);
                for i in 0..50 {
                    let mut req = random_request(&mut rng);
                    req.special_tokens = tokens.clone();
                    check(tpl, &req, &format!("thread {t} #{i}"));
                }
            });
        }
    });
}
