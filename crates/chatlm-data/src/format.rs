//! Dataset formats, detected like TRL: `is_conversational`, `is_conversational_from_value`
//! (ShareGPT `conversations` with `from`/`value`), prompt/completion, plain `text`, already tokenized.

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// The format of a dataset's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// `messages`: a list of `{role, content}` (ShareGPT `conversations` are converted to this).
    Messages,
    /// `prompt` + `completion`, both strings.
    PromptCompletion,
    /// `prompt` + `completion`, both message lists.
    ConversationalPromptCompletion,
    /// A `text` column (or the configured text field).
    Text,
    /// Already tokenized: `input_ids` (and optionally `labels` / `completion_mask` / `assistant_masks`).
    Tokenized,
}

impl DataFormat {
    /// Parse the CLI's `--format` (`auto` gives `None`).
    pub fn parse(s: &str) -> Result<Option<Self>> {
        Ok(Some(match s {
            "auto" => return Ok(None),
            "messages" => DataFormat::Messages,
            "prompt-completion" => DataFormat::PromptCompletion,
            "text" => DataFormat::Text,
            "tokenized" => DataFormat::Tokenized,
            _ => return Err(DataError::option("format", format!("unknown format {s:?}"))),
        }))
    }
}

/// TRL's `is_conversational`: one of prompt/chosen/rejected/completion/messages holds a list whose first
/// item is an object with `role`.
pub fn is_conversational(row: &Map<String, Value>) -> bool {
    ["prompt", "chosen", "rejected", "completion", "messages"].iter().any(|k| {
        row.get(*k)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("role"))
    })
}

/// TRL's `is_conversational_from_value`: `conversations` with `from` and `value`.
pub fn is_conversational_from_value(row: &Map<String, Value>) -> bool {
    row.get("conversations")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("from") && m.contains_key("value"))
}

/// TRL's `maybe_convert_to_chatml`: `from` → `role`, `value` → `content`, `conversations` → `messages`;
/// additionally ShareGPT's `human` / `gpt` become `user` / `assistant`.
pub fn convert_to_chatml(row: &mut Map<String, Value>) {
    for key in ["prompt", "completion", "chosen", "rejected", "messages", "conversations"] {
        if let Some(Value::Array(msgs)) = row.get_mut(key) {
            for m in msgs.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(v) = m.remove("from") {
                    // ShareGPT dumps say `human`/`gpt`; TRL passes them through verbatim and most chat templates
                    // then render a bogus role, so they are mapped to the roles templates know.
                    let v = match v.as_str() {
                        Some("human") => Value::from("user"),
                        Some("gpt") => Value::from("assistant"),
                        _ => v,
                    };
                    m.insert("role".into(), v);
                }
                if let Some(v) = m.remove("value") {
                    m.insert("content".into(), v);
                }
            }
        }
    }
    if let Some(v) = row.remove("conversations") {
        row.insert("messages".into(), v);
    }
}

/// Detect the format of a (first) row, the way `SFTTrainer._prepare_dataset` branches.
pub fn detect(row: &Map<String, Value>, text_field: &str) -> Result<DataFormat> {
    if row.contains_key("input_ids") {
        return Ok(DataFormat::Tokenized);
    }
    if is_conversational_from_value(row) {
        return Ok(DataFormat::Messages);
    }
    if row.contains_key("prompt") {
        return Ok(if is_conversational(row) { DataFormat::ConversationalPromptCompletion } else { DataFormat::PromptCompletion });
    }
    if is_conversational(row) {
        return Ok(DataFormat::Messages);
    }
    if row.contains_key(text_field) {
        return Ok(DataFormat::Text);
    }
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    Err(DataError::features(format!(
        "cannot tell the dataset format from columns {keys:?}: expected `messages`, `conversations`, \
         `prompt`+`completion`, `{text_field}` or `input_ids`"
    )))
}

/// The tutorial's `format_dataset`: prompt/completion strings → a user/assistant `messages` list.
pub fn prompt_completion_to_messages(row: &Map<String, Value>) -> Result<Vec<Value>> {
    let get = |k: &str| -> Result<Value> {
        match row.get(k) {
            Some(Value::String(s)) => Ok(serde_json::json!({"role": if k == "prompt" { "user" } else { "assistant" }, "content": s})),
            _ => Err(DataError::features(format!("`{k}` is missing or not a string"))),
        }
    };
    Ok(vec![get("prompt")?, get("completion")?])
}

/// Roles chat templates know. Anything else is reported with the row number.
pub const KNOWN_ROLES: [&str; 7] = ["system", "user", "assistant", "tool", "developer", "function", "ipython"];

/// Check a message list: objects with a known string `role`.
pub fn validate_messages(msgs: &Value, key: &str) -> std::result::Result<Vec<Value>, String> {
    let arr = msgs.as_array().ok_or_else(|| format!("`{key}` is not a list of messages"))?;
    if arr.is_empty() {
        return Err(format!("`{key}` is empty"));
    }
    for (i, m) in arr.iter().enumerate() {
        let obj = m.as_object().ok_or_else(|| format!("`{key}[{i}]` is not an object"))?;
        match obj.get("role").and_then(Value::as_str) {
            Some(r) if KNOWN_ROLES.contains(&r) => {}
            Some(r) => return Err(format!("`{key}[{i}]` has unknown role {r:?} (known: {})", KNOWN_ROLES.join(", "))),
            None => return Err(format!("`{key}[{i}]` has no string `role`")),
        }
    }
    Ok(arr.clone())
}

/// Fill a formatting template (`"### Question: {question}\n### Answer: {answer}"`) from a row: each
/// `{column}` is replaced by the column's text; `{{` and `}}` are literal braces.
pub fn apply_formatting(template: &str, row: &Map<String, Value>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("unmatched `}` in formatting template".into());
        }
        let end = tail.find('}').ok_or("unclosed `{` in formatting template")?;
        let name = &tail[1..end];
        match row.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => return Err(format!("formatting template needs column `{name}`")),
            Some(v) => out.push_str(&v.to_string()),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
