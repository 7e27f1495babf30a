//! A render request and the argument handling of transformers' `apply_chat_template` around the
//! Jinja render: `None` keys dropped, reasoning fields aliased, `continue_final_message`'s marker and
//! cut, and the `ValueError`s it raises.

use serde_json::{Map, Value as Json};

use crate::clock::DateTime;
use crate::TemplateError;

/// `continue_final_message`: leave the last message open so the model continues it (a "prefill").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ContinueFinal {
    /// Close the last message normally (the default).
    #[default]
    No,
    /// Continue the final message's `content` (`continue_final_message=True`).
    Content,
    /// Continue this field of the final message (`continue_final_message="reasoning_content"`).
    Field(String),
}

/// Everything one render needs besides the template: the arguments of `apply_chat_template`.
///
/// ```
/// use chatlm_template::ChatRequest;
/// use serde_json::json;
/// let mut req = ChatRequest::new(vec![json!({"role": "user", "content": "Hi"})]);
/// req.add_generation_prompt = true;
/// req.set_special_token("bos_token", "<s>");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The conversation: JSON objects with at least `role`; keys whose value is `null` are dropped
    /// before rendering (transformers 5).
    pub messages: Vec<Json>,
    /// Tool JSON schemas (`tools=`); the template sees `none` when absent.
    pub tools: Option<Vec<Json>>,
    /// RAG documents (`documents=`); the template sees `none` when absent.
    pub documents: Option<Vec<Json>>,
    /// Append the header that starts an assistant turn.
    pub add_generation_prompt: bool,
    /// Leave the final message open (see [`ContinueFinal`]).
    pub continue_final_message: ContinueFinal,
    /// Template variables from the tokenizer: `bos_token`, `eos_token`, `pad_token`, ...
    pub special_tokens: Map<String, Json>,
    /// Extra template variables (`**kwargs`: `enable_thinking`, `date_string`, ...). They override
    /// special tokens of the same name.
    pub kwargs: Map<String, Json>,
    /// The clock `strftime_now` reads; `None` means this machine's current UTC time.
    pub now: Option<DateTime>,
}

impl ChatRequest {
    /// A request for these messages with every option at its transformers default.
    pub fn new(messages: Vec<Json>) -> ChatRequest {
        ChatRequest { messages, ..ChatRequest::default() }
    }

    /// Sets a special-token variable such as `bos_token`.
    pub fn set_special_token(&mut self, name: &str, token: &str) {
        self.special_tokens.insert(name.to_string(), Json::String(token.to_string()));
    }
}

/// Names `render_jinja_template` binds itself: a kwarg with one of them is a `TypeError` in Python.
const RESERVED: [&str; 8] = [
    "messages",
    "tools",
    "documents",
    "add_generation_prompt",
    "continue_final_message",
    "chat_template",
    "return_assistant_tokens_mask",
    "conversations",
];

/// The reasoning field names, the first being what templates read (transformers' `_REASONING_FIELDS`).
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// The text transformers appends to the continued message to find it again after rendering.
pub(crate) const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// The checked and normalised inputs of one render.
pub(crate) struct Prepared {
    /// The rewritten messages, or `None` when the request's own messages can be used as they are
    /// (minus their `null` keys, which the conversion to template values skips).
    pub messages: Option<Vec<Json>>,
    /// The text of the continued message, when `continue_final_message` is set.
    pub continued: Option<String>,
}

fn invalid(msg: impl Into<String>) -> TemplateError {
    TemplateError::InvalidRequest(msg.into())
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators 0x1C..=0x1F.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Applies `apply_chat_template`'s checks and rewrites, in its order. `mentions` says whether the
/// selected template's text contains a name (the continued field must appear in it).
pub(crate) fn prepare(req: &ChatRequest, mentions: &dyn Fn(&str) -> bool) -> Result<Prepared, TemplateError> {
    if req.messages.is_empty() {
        return Err(invalid("Cannot apply chat template to an empty conversation. Provide at least one message."));
    }
    let mut needs_rewrite = req.continue_final_message != ContinueFinal::No;
    for m in &req.messages {
        let Json::Object(obj) = m else {
            return Err(invalid(format!("Chat messages should be dicts, but got {m}.")));
        };
        // A scan of the (few) keys: a map lookup per field would hash three times per message.
        needs_rewrite |= obj.iter().any(|(k, v)| !v.is_null() && REASONING_FIELDS.contains(&k.as_str()));
    }
    if req.continue_final_message != ContinueFinal::No && req.add_generation_prompt {
        return Err(invalid(
            "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message when you want the model to continue the final message, and add_generation_prompt when you want to add a header that will prompt it to start a new assistant message instead.",
        ));
    }
    for key in req.kwargs.keys() {
        if RESERVED.contains(&key.as_str()) {
            return Err(invalid(format!("template keyword argument `{key}` collides with an argument of apply_chat_template")));
        }
    }
    if let Some(tools) = &req.tools {
        if tools.iter().any(|t| !t.is_object()) {
            return Err(invalid(
                "Tools should either be a JSON schema, or a callable function with type hints and a docstring suitable for auto-conversion to a schema.",
            ));
        }
    }
    if let Some(docs) = &req.documents {
        if docs.iter().any(|d| !d.is_object()) {
            return Err(invalid("Documents should be a list of dicts with 'title' and 'text' keys!"));
        }
    }
    if !needs_rewrite {
        return Ok(Prepared { messages: None, continued: None });
    }
    // Copies without `null` keys, reasoning aliased, ready for the continue tag. Cloning a map
    // copies its index as it is; collecting the entries again would hash every key.
    let mut messages: Vec<Map<String, Json>> = req
        .messages
        .iter()
        .filter_map(Json::as_object)
        .map(|obj| {
            let mut copy = obj.clone();
            if copy.values().any(Json::is_null) {
                copy.retain(|_, v| !v.is_null());
            }
            copy
        })
        .map(alias_reasoning)
        .collect();
    let continued = match &req.continue_final_message {
        ContinueFinal::No => None,
        ContinueFinal::Content => Some(mark_final(&mut messages, "content", mentions)?),
        ContinueFinal::Field(f) => Some(mark_final(&mut messages, f, mentions)?),
    };
    Ok(Prepared { messages: Some(messages.into_iter().map(Json::Object).collect()), continued })
}

/// transformers' `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`.
fn alias_reasoning(message: Map<String, Json>) -> Map<String, Json> {
    // Most messages have no reasoning field: one scan of the keys says so without hashing.
    if !message.keys().any(|k| REASONING_FIELDS.contains(&k.as_str())) {
        return message;
    }
    let Some(reasoning) = REASONING_FIELDS.iter().find_map(|k| message.get(*k).filter(|v| !v.is_null()).cloned())
    else {
        return message;
    };
    let mut out = Map::with_capacity(message.len() + 2);
    out.insert("thinking".to_string(), reasoning.clone());
    for (k, v) in message {
        out.insert(k, v);
    }
    out.insert("reasoning_content".to_string(), reasoning);
    out
}

/// Appends the continue tag to the final message's field; returns the continued text.
fn mark_final(messages: &mut [Map<String, Json>], field: &str, mentions: &dyn Fn(&str) -> bool) -> Result<String, TemplateError> {
    let Some(last) = messages.last_mut() else {
        return Err(invalid("continue_final_message is set but the conversation is empty!"));
    };
    let Some(final_value) = last.get(field).cloned() else {
        return Err(invalid(format!(
            "continue_final_message is set but the final message has no \"{field}\" to continue!"
        )));
    };
    let continue_fields: Vec<String> = if REASONING_FIELDS.contains(&field) {
        REASONING_FIELDS.iter().filter(|f| last.get(**f) == Some(&final_value)).map(|f| f.to_string()).collect()
    } else {
        vec![field.to_string()]
    };
    if !continue_fields.iter().any(|f| mentions(f)) {
        return Err(invalid(format!(
            "continue_final_message is set to \"{field}\" but this is not an accepted field in the chat_template"
        )));
    }
    if let Json::Array(blocks) = final_value {
        // The last text block of a list-of-parts content is continued.
        let mut blocks = blocks;
        for block in blocks.iter_mut().rev() {
            if let Json::Object(b) = block {
                if let Some(Json::String(text)) = b.get("text").cloned() {
                    b.insert("text".to_string(), Json::String(format!("{text}{CONTINUE_TAG}")));
                    last.insert(field.to_string(), Json::Array(blocks));
                    return Ok(text);
                } else if b.contains_key("text") {
                    return Err(invalid("continue_final_message: the final text block's \"text\" is not a string"));
                }
            }
        }
        return Err(invalid(
            "continue_final_message is set but we could not find any text to continue in the final message!",
        ));
    }
    let Json::String(text) = &final_value else {
        return Err(invalid(format!(
            "continue_final_message: the final message's \"{field}\" is not a string or a list of content parts"
        )));
    };
    for f in &continue_fields {
        last.insert(f.clone(), Json::String(format!("{text}{CONTINUE_TAG}")));
    }
    Ok(text.clone())
}

/// Cuts the rendered text at the continue tag (transformers' rule); returns the new length.
pub(crate) fn cut_at_tag(rendered: &str, continued: &str) -> Result<usize, TemplateError> {
    let tag = py_strip(CONTINUE_TAG);
    let final_text = py_strip(continued);
    // One search instead of three: the final text almost always sits right before the (last) tag,
    // which proves it appears; only otherwise is the whole output searched for it.
    let last_tag = rendered.rfind(tag);
    let text_appears = |loc: usize| rendered[..loc].ends_with(final_text) || rendered.contains(final_text);
    let Some(loc) = last_tag.filter(|&loc| text_appears(loc)) else {
        return Err(invalid(format!(
            "continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure they are compatible.Final message to continue: {final_text}\nRendered chat:\n{rendered}"
        )));
    };
    if rendered[loc..].starts_with(CONTINUE_TAG) {
        Ok(loc)
    } else {
        // The template trimmed the message: the trailing spacing went with it.
        Ok(py_rstrip(&rendered[..loc]).len())
    }
}

/// Whether any string in the value contains a generation marker character.
pub(crate) fn json_has_marker(v: &Json) -> bool {
    match v {
        Json::String(s) => crate::generation::contains_marker(s),
        Json::Array(a) => a.iter().any(json_has_marker),
        Json::Object(o) => o.iter().any(|(k, v)| crate::generation::contains_marker(k) || json_has_marker(v)),
        _ => false,
    }
}

/// Whether the request carries a generation marker character anywhere.
pub(crate) fn request_has_marker(req: &ChatRequest) -> bool {
    req.messages.iter().any(json_has_marker)
        || req.tools.iter().flatten().any(json_has_marker)
        || req.documents.iter().flatten().any(json_has_marker)
        || req.special_tokens.values().any(json_has_marker)
        || req.kwargs.values().any(json_has_marker)
}
