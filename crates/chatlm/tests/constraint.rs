//! Structured output with llguidance: on the tiny random Llama of the model crate's tests
//! (always: grammar over its `<tN>` tokens, schema errors) and on SmolLM2-135M-Instruct
//! (`CHATLM_SMOLLM2` = its Q4_1 GGUF; skipped when unset): JSON mode, a JSON schema and a
//! forced tool call give parseable output that ends when the JSON is complete, through the
//! pipeline and through the batcher.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chatlm::{
    json_constraint, lark_constraint, tool_call_constraint, BatchOptions, Batcher, Engine, Error, Event, FinishReason,
    GenerationConfig, GenerationOutput, LoadSpec, Pipeline, Prompt, Request,
};
use serde_json::{json, Value};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf/model.gguf");

fn tiny() -> Pipeline {
    Pipeline::load(&LoadSpec { model: Some(TINY.into()), ..Default::default() }).unwrap()
}

/// SmolLM2, loaded once for all tests of this file (`None` after printing the skip line).
fn smollm2() -> Option<Arc<Engine>> {
    static ENGINE: OnceLock<Option<Arc<Engine>>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = std::env::var("CHATLM_SMOLLM2").ok().filter(|p| std::path::Path::new(p).is_file())?;
            Some(Arc::new(Engine::load(&LoadSpec { model: Some(path), ..Default::default() }).unwrap()))
        })
        .clone()
        .or_else(|| {
            println!("skipped: CHATLM_SMOLLM2 not set or missing (the SmolLM2-135M-Instruct Q4_1 GGUF)");
            None
        })
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens: Some(max_new_tokens), ..Default::default() }
}

fn run(engine: &Arc<Engine>, prompt: impl Into<Prompt>, config: &GenerationConfig, constraint: Box<dyn chatlm::Constraint>) -> GenerationOutput {
    let mut pipe = Pipeline::new(Arc::clone(engine), false);
    let mut streamed = String::new();
    let out = pipe.generate_constrained(prompt, config, constraint, &AtomicBool::new(false), |p| streamed.push_str(p)).unwrap();
    assert_eq!(streamed, out.text, "the stream and the output differ");
    println!("{} tokens, {:?}: {}", out.completion_tokens, out.finish_reason, out.text);
    out
}

#[test]
fn tiny_model_follows_a_lark_grammar_and_ends_when_complete() {
    let mut pipe = tiny();
    let constraint = lark_constraint(pipe.engine(), r#"start: "<t5>" ("<t7>" | "<t9>") "<t5>""#).unwrap();
    let out = pipe
        .generate_constrained(Prompt::Ids(vec![1, 5, 9]), &greedy(20), constraint, &AtomicBool::new(false), |_| {})
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.ids.len(), 3, "{out:?}");
    assert_eq!((out.ids[0], out.ids[2]), (5, 5));
    assert!([7, 9].contains(&out.ids[1]), "{out:?}");
}

#[test]
fn bad_schemas_and_grammars_are_invalid_input() {
    let pipe = tiny();
    let engine = pipe.engine();
    for schema in [json!({"type": "nonsense"}), json!({"$ref": "#/$defs/missing"}), json!([1, 2])] {
        let err = json_constraint(engine, Some(&schema)).err().expect("rejected");
        assert!(matches!(err, Error::InvalidInput(ref m) if m.starts_with("invalid JSON schema: ") && m.len() > 22), "{schema}: {err}");
        assert!(err.is_invalid_request());
    }
    // Local references compile (llguidance is built without remote `$ref` resolution).
    let with_defs = json!({"type": "object", "properties": {"p": {"$ref": "#/$defs/point"}},
        "$defs": {"point": {"type": "array", "items": {"type": "number"}}}});
    assert!(json_constraint(engine, Some(&with_defs)).is_ok());
    let err = lark_constraint(engine, "start: undefined_rule").err().expect("rejected");
    assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("undefined_rule")), "{err}");
    let tools = [json!({"type": "function", "function": {"name": "f"}})];
    let err = tool_call_constraint(engine, &tools, Some("g")).err().expect("rejected");
    assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("\"g\"")), "{err}");
}

#[test]
fn json_mode_gives_a_json_object() {
    let Some(engine) = smollm2() else { return };
    let constraint = json_constraint(&engine, None).unwrap();
    let out = run(&engine, "Describe a cat (name, color, age) as JSON.", &greedy(128), constraint);
    assert_eq!(out.finish_reason, FinishReason::Stop, "{:?}", out.text);
    let value: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {:?}", out.text));
    assert!(value.is_object(), "{value}");
    // The answer ends with the object: no stop id was needed after it.
    assert!(!engine.stop_ids().contains(out.ids.last().unwrap()), "{:?}", out.ids);
}

#[test]
fn json_schema_gives_its_keys_and_types() {
    let Some(engine) = smollm2() else { return };
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]});
    let constraint = json_constraint(&engine, Some(&schema)).unwrap();
    let out = run(&engine, "Invent a person. Answer with their name and age.", &greedy(128), constraint);
    assert_eq!(out.finish_reason, FinishReason::Stop, "{:?}", out.text);
    let value: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {:?}", out.text));
    assert!(value["name"].is_string() && value["age"].is_i64(), "{value}");
}

#[test]
fn sampled_json_still_parses() {
    let Some(engine) = smollm2() else { return };
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "population": {"type": "integer"}},
        "required": ["city", "population"], "additionalProperties": false});
    for seed in [1, 2, 3] {
        let config = GenerationConfig { do_sample: true, temperature: 1.0, top_p: 0.95, seed, ..greedy(128) };
        let out = run(&engine, "Name a big city and its population.", &config, json_constraint(&engine, Some(&schema)).unwrap());
        assert_eq!(out.finish_reason, FinishReason::Stop, "seed {seed}: {:?}", out.text);
        let value: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", out.text));
        assert!(value["city"].is_string() && value["population"].is_i64(), "seed {seed}: {value}");
    }
}

fn tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
        json!({"type": "function", "function": {"name": "get_time", "description": "Current time in a time zone",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}),
    ]
}

/// The call inside a Hermes `<tool_call>` block.
fn parse_call(text: &str) -> Value {
    let inner = text
        .strip_prefix("<tool_call>\n")
        .and_then(|t| t.strip_suffix("\n</tool_call>"))
        .unwrap_or_else(|| panic!("not a <tool_call> block: {text:?}"));
    serde_json::from_str(inner).unwrap_or_else(|e| panic!("{e}: {inner:?}"))
}

/// A conversation offering `tools` in the Hermes system prompt (SmolLM2's template has no
/// tools section of its own).
fn tool_prompt(question: &str) -> Prompt {
    let listed: Vec<String> = tools().iter().map(|t| t["function"].to_string()).collect();
    let system = format!(
        "You are a function calling AI model. You may call one of these functions:\n<tools>\n{}\n</tools>\nFor a call, return a JSON object with the function name and arguments within <tool_call></tool_call> tags.",
        listed.join("\n")
    );
    Prompt::Messages(vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": question})])
}

#[test]
fn forced_tool_call_is_a_hermes_block_with_a_listed_name() {
    let Some(engine) = smollm2() else { return };
    let out = run(&engine, tool_prompt("What is the weather like in Paris?"), &greedy(128), tool_call_constraint(&engine, &tools(), None).unwrap());
    assert_eq!(out.finish_reason, FinishReason::Stop, "{:?}", out.text);
    let call = parse_call(&out.text);
    let name = call["name"].as_str().unwrap_or_default();
    assert!(["get_weather", "get_time"].contains(&name), "{call}");
    let key = if name == "get_weather" { "city" } else { "timezone" };
    assert!(call["arguments"][key].is_string(), "{call}");

    let only = tool_call_constraint(&engine, &tools(), Some("get_time")).unwrap();
    let call = parse_call(&run(&engine, tool_prompt("What time is it in Tokyo?"), &greedy(128), only).text);
    assert_eq!(call["name"], "get_time");
    assert!(call["arguments"]["timezone"].is_string(), "{call}");
}

#[test]
fn batcher_applies_a_request_constraint() {
    let Some(engine) = smollm2() else { return };
    let batcher = Batcher::start(Arc::clone(&engine), BatchOptions { slots: 2, queue: 4, context: 1024, prompt_cache: true });
    // Closed to other keys: the answer is short whatever the model would add.
    let schema = json!({"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"], "additionalProperties": false});
    let (tx, rx) = mpsc::channel();
    for (i, constrained) in [(0usize, true), (1, false)] {
        let prompt = engine.prompt_ids(&Prompt::from("Is the sky blue? Answer in JSON.")).unwrap();
        let tx = tx.clone();
        batcher
            .submit(Request {
                prompt,
                config: greedy(64),
                ignore_eos: false,
                logprobs: None,
                constraint: constrained.then(|| json_constraint(&engine, Some(&schema)).unwrap()),
                cancel: Arc::new(AtomicBool::new(false)),
                sink: Box::new(move |event| tx.send((i, event)).is_ok()),
            })
            .unwrap();
    }
    drop(tx);
    let mut outputs = [None, None];
    while let Ok((i, event)) = rx.recv_timeout(Duration::from_secs(300)) {
        match event {
            Event::Done(out) => outputs[i] = Some(out),
            Event::Failed(e) => panic!("request {i} failed: {e}"),
            _ => {}
        }
    }
    let [Some(constrained), Some(free)] = outputs else { panic!("a request did not finish") };
    let value: Value = serde_json::from_str(&constrained.text).unwrap_or_else(|e| panic!("{e}: {:?}", constrained.text));
    assert!(value["answer"].is_boolean(), "{value}");
    assert_eq!(constrained.finish_reason, FinishReason::Stop);
    // The unconstrained request beside it answers freely (not the same text).
    assert_ne!(free.text, constrained.text);
}
