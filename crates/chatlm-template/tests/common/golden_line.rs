//! A `chat_templates/golden.jsonl` line as a [`ChatRequest`], shared by the golden test and the
//! render-rate example.

use chatlm_template::{ChatRequest, ContinueFinal, DateTime};
use serde_json::Value;

/// Builds the request a golden line describes.
pub fn request_from_line(line: &Value, tokens: &serde_json::Map<String, Value>) -> ChatRequest {
    let list = |v: &Value| v.as_array().cloned();
    ChatRequest {
        messages: list(&line["messages"]).expect("messages"),
        tools: list(&line["tools"]),
        documents: list(&line["documents"]),
        add_generation_prompt: line["add_generation_prompt"].as_bool().unwrap_or(false),
        continue_final_message: match &line["continue_final_message"] {
            Value::Bool(true) => ContinueFinal::Content,
            Value::String(s) => ContinueFinal::Field(s.clone()),
            _ => ContinueFinal::No,
        },
        special_tokens: tokens.clone(),
        kwargs: line["extra_kwargs"].as_object().cloned().unwrap_or_default(),
        now: line["now"].as_str().and_then(DateTime::parse),
    }
}
