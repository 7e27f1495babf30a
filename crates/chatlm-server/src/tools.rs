//! Tool calls: OpenAI's message shapes into what chat templates read, and a model's answer
//! back into `message.tool_calls`, for the common formats — Hermes/Qwen `<tool_call>{json}</tool_call>`,
//! Mistral `[TOOL_CALLS][{json}, ...]`, and Llama 3.1's bare JSON object
//! `{"name": ..., "parameters": ...}` (after an optional `<|python_tag|>`).

use serde_json::{json, Map, Value};

/// One parsed call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The function's name.
    pub name: String,
    /// Its arguments as a JSON object.
    pub arguments: Value,
}

/// The answer split into text and calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Text outside the calls (`None` when there is none).
    pub content: Option<String>,
    /// The calls, in order.
    pub calls: Vec<ToolCall>,
}

/// Assistant `tool_calls` as templates expect them: `function.arguments` parsed from
/// OpenAI's JSON string into an object (what transformers' templates iterate over).
pub fn template_message(mut message: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
        for call in calls {
            if let Some(Value::String(args)) = call.pointer("/function/arguments").cloned() {
                if let Ok(parsed) = serde_json::from_str::<Value>(&args) {
                    if let Some(f) = call.get_mut("function").and_then(Value::as_object_mut) {
                        f.insert("arguments".into(), parsed);
                    }
                }
            }
        }
    }
    message
}

/// Finds tool calls in `text` (decoded with special tokens kept); `None` when it holds none.
pub fn parse(text: &str) -> Option<Parsed> {
    parse_hermes(text).or_else(|| parse_mistral(text)).or_else(|| parse_llama_json(text))
}

fn call_from(value: &Value) -> Option<ToolCall> {
    let obj = value.as_object()?;
    let name = obj.get("name")?.as_str()?.to_string();
    let arguments = match obj.get("arguments").or_else(|| obj.get("parameters")) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    };
    Some(ToolCall { name, arguments })
}

fn content_of(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn parse_hermes(text: &str) -> Option<Parsed> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let first = text.find(OPEN)?;
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(at) = rest.find(OPEN) {
        let body = &rest[at + OPEN.len()..];
        let (inner, next) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            None => (body, ""), // the answer stopped before the closing tag
        };
        calls.push(call_from(&serde_json::from_str(inner.trim()).ok()?)?);
        rest = next;
    }
    Some(Parsed { content: content_of(&text[..first]), calls })
}

fn parse_mistral(text: &str) -> Option<Parsed> {
    const TAG: &str = "[TOOL_CALLS]";
    let at = text.find(TAG)?;
    let body = text[at + TAG.len()..].trim();
    let value: Value = serde_json::Deserializer::from_str(body).into_iter::<Value>().next()?.ok()?;
    let calls = match &value {
        Value::Array(list) => list.iter().map(call_from).collect::<Option<Vec<_>>>()?,
        other => vec![call_from(other)?],
    };
    Some(Parsed { content: content_of(&text[..at]), calls })
}

fn parse_llama_json(text: &str) -> Option<Parsed> {
    let body = text.trim();
    let body = body.strip_prefix("<|python_tag|>").unwrap_or(body).trim();
    if !body.starts_with('{') {
        return None;
    }
    // Llama 3.1 may put several calls one after another, separated by `;`.
    let mut calls = Vec::new();
    for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let value: Value = serde_json::from_str(part).ok()?;
        let obj = value.as_object()?;
        if !(obj.contains_key("parameters") || obj.contains_key("arguments")) {
            return None;
        }
        calls.push(call_from(&value)?);
    }
    (!calls.is_empty()).then_some(Parsed { content: None, calls })
}

/// The calls in OpenAI's shape (`arguments` as a JSON string), with fresh ids.
pub fn openai_calls(calls: &[ToolCall], id_prefix: &str) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let arguments = match &c.arguments {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            json!({"id": format!("call_{id_prefix}{i}"), "type": "function", "function": {"name": c.name, "arguments": arguments}})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_parse() {
        let h = parse("Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>").unwrap();
        assert_eq!(h.content.as_deref(), Some("Let me check."));
        assert_eq!(h.calls, vec![ToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) }]);
        let m = parse("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": \"{}\"}]").unwrap();
        assert_eq!(m.calls.len(), 2);
        assert_eq!(m.calls[1].arguments, json!({}));
        let l = parse("<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}").unwrap();
        assert_eq!((l.content, l.calls[0].name.as_str()), (None, "f"));
        assert_eq!(parse("Just text {not json}"), None);
        assert_eq!(parse("{\"answer\": 42}"), None, "a JSON answer is not a call");
        assert_eq!(parse("<tool_call>not json</tool_call>"), None);
    }

    #[test]
    fn string_arguments_become_objects_for_the_template() {
        let m = json!({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]});
        let out = template_message(m.as_object().unwrap().clone());
        assert_eq!(out["tool_calls"][0]["function"]["arguments"], json!({"a": 1}));
    }
}
