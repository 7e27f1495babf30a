//! A render request and the argument handling of transformers' `apply_chat_template` around the
//! Jinja render: `None` keys dropped, reasoning fields aliased, `continue_final_message`'s marker and
//! cut, and the `ValueError`s it raises.

use std::borrow::Cow;

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
pub(crate) const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Whether `key` is one of [`REASONING_FIELDS`]; the length decides for almost every key (`role`,
/// `content`, `tool_calls`, ...) without comparing text.
fn is_reasoning_field(key: &str) -> bool {
    matches!(key.len(), 8 | 9 | 17) && REASONING_FIELDS.contains(&key)
}

/// The checked and normalised inputs of one render.
pub(crate) struct Prepared<'r> {
    /// The messages that had to be rewritten (reasoning fields aliased, the continued one marked,
    /// `null` keys dropped), by position; every other message is used as the request has it (its
    /// `null` keys are skipped when it is read). Copying only these keeps a `continue_final_message`
    /// render from deep-copying the whole conversation.
    pub edits: Vec<(usize, Json)>,
    /// The final message marked for `continue_final_message` (kept apart from `edits`: a vector
    /// for it would be an allocation per render).
    pub marked_final: Option<Json>,
    /// The text of the continued message, when `continue_final_message` is set: the request's own
    /// text where it can be, not a copy.
    pub continued: Option<Cow<'r, str>>,
}

impl Prepared<'_> {
    /// The messages as the template sees them: the request's, with the edits in place. Fills
    /// `buf`'s inline room when they fit (no allocation per render).
    #[inline]
    pub(crate) fn messages<'r>(&'r self, original: &'r [Json], buf: &'r mut MessageRefs<'r>) -> &'r [&'r Json] {
        let refs: &mut [&'r Json] = if original.len() <= buf.inline.len() {
            let refs = &mut buf.inline[..original.len()];
            for (slot, m) in refs.iter_mut().zip(original) {
                *slot = m;
            }
            refs
        } else {
            buf.heap = original.iter().collect();
            &mut buf.heap
        };
        for (i, m) in &self.edits {
            refs[*i] = m;
        }
        if let (Some(m), Some(last)) = (&self.marked_final, refs.last_mut()) {
            *last = m;
        }
        refs
    }
}

impl Drop for Prepared<'_> {
    #[inline]
    fn drop(&mut self) {
        // Tested before anything moves: most renders have no copy to keep.
        if self.marked_final.is_some() {
            if let Some(Json::Object(copy)) = self.marked_final.take() {
                crate::continuation::keep_spare(copy);
            }
        }
    }
}

/// Room for the references [`Prepared::messages`] returns.
pub(crate) struct MessageRefs<'r> {
    inline: [&'r Json; 16],
    heap: Vec<&'r Json>,
}

impl MessageRefs<'_> {
    pub(crate) fn new() -> Self {
        static NULL: Json = Json::Null;
        MessageRefs { inline: [&NULL; 16], heap: Vec::new() }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> TemplateError {
    TemplateError::InvalidRequest(msg.into())
}

/// Applies `apply_chat_template`'s checks and rewrites, in its order. `mentions` says whether the
/// selected template's text contains a name (the continued field must appear in it).
pub(crate) fn prepare<'r>(
    req: &'r ChatRequest,
    mentions: &dyn Fn(&str) -> bool,
) -> Result<Prepared<'r>, TemplateError> {
    if req.messages.is_empty() {
        return Err(invalid("Cannot apply chat template to an empty conversation. Provide at least one message."));
    }
    let mut any_reasoning = false;
    for m in &req.messages {
        let Json::Object(obj) = m else {
            return Err(invalid(format!("Chat messages should be dicts, but got {m}.")));
        };
        any_reasoning |= has_reasoning(obj);
    }
    // A match rather than `!=`: the derived comparison is a call.
    if !matches!(req.continue_final_message, ContinueFinal::No) && req.add_generation_prompt {
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
    let field = match &req.continue_final_message {
        ContinueFinal::No => None,
        ContinueFinal::Content => Some("content"),
        ContinueFinal::Field(f) => Some(f.as_str()),
    };
    let mut edits = Vec::new();
    let objects = req.messages.iter().filter_map(Json::as_object);
    let last = req.messages.len() - 1;
    // The messages with a reasoning field (rare), but the continued one, which is handled below.
    if any_reasoning {
        for (i, obj) in objects.enumerate().filter(|&(i, obj)| has_reasoning(obj) && !(i == last && field.is_some())) {
            edits.push((i, Json::Object(alias_reasoning(without_nulls(obj)))));
        }
    }
    let Some(field) = field else {
        return Ok(Prepared { edits, marked_final: None, continued: None });
    };
    let Some(Json::Object(final_message)) = req.messages.last() else {
        unreachable!("the messages were checked to be a non-empty list of objects");
    };
    let (marked, continued) = crate::continuation::continue_final(final_message, field, mentions)?;
    Ok(Prepared { edits, marked_final: Some(Json::Object(marked)), continued: Some(continued) })
}

/// Whether a message has a reasoning field that is not `null` (one that transformers aliases). A
/// scan of the (few) keys: a map lookup per field would hash three times per message.
pub(crate) fn has_reasoning(message: &Map<String, Json>) -> bool {
    message.iter().any(|(k, v)| is_reasoning_field(k) && !v.is_null())
}

/// A copy of a message without its `null` keys. Cloning a map copies its index as it is;
/// collecting the entries again would hash every key.
pub(crate) fn without_nulls(message: &Map<String, Json>) -> Map<String, Json> {
    let mut copy = message.clone();
    if copy.values().any(Json::is_null) {
        copy.retain(|_, v| !v.is_null());
    }
    copy
}

/// transformers' `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`.
pub(crate) fn alias_reasoning(message: Map<String, Json>) -> Map<String, Json> {
    // Most messages have no reasoning field: one scan of the keys says so without hashing.
    if !message.keys().any(|k| is_reasoning_field(k)) {
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

/// Whether any string in the value contains a generation marker character.
pub(crate) fn json_has_marker(v: &Json) -> bool {
    match v {
        Json::String(s) => crate::generation::contains_marker(s),
        Json::Array(a) => a.iter().any(json_has_marker),
        // Strings, most of the values, are tested here rather than in a call.
        Json::Object(o) => o.iter().any(|(k, v)| {
            crate::generation::contains_marker(k)
                || match v {
                    Json::String(s) => crate::generation::contains_marker(s),
                    Json::Array(_) | Json::Object(_) => json_has_marker(v),
                    _ => false,
                }
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuation::CONTINUE_TAG;

    #[test]
    fn the_length_check_lets_every_reasoning_field_through() {
        for f in REASONING_FIELDS {
            assert!(is_reasoning_field(f), "{f}");
        }
        for k in ["content", "role", "thinkin", "reasoning_contents", "reasoninG"] {
            assert!(!is_reasoning_field(k), "{k}");
        }
    }

    #[test]
    fn only_rewritten_messages_are_copied() {
        let mut req = ChatRequest::new(vec![
            serde_json::json!({"role": "user", "content": "a", "x": null}),
            serde_json::json!({"role": "assistant", "content": "b", "thinking": "t"}),
            serde_json::json!({"role": "user", "content": "c"}),
            serde_json::json!({"role": "assistant", "content": "d", "y": null}),
        ]);
        req.continue_final_message = ContinueFinal::Content;
        let prepared = prepare(&req, &|_| true).unwrap();
        assert_eq!(prepared.edits.iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
        assert_eq!(prepared.continued.as_deref(), Some("d"));
        let mut buf = MessageRefs::new();
        let seen = prepared.messages(&req.messages, &mut buf);
        assert!(std::ptr::eq(seen[0], &req.messages[0]) && std::ptr::eq(seen[2], &req.messages[2]));
        assert_eq!(seen[1]["reasoning_content"], "t");
        assert_eq!(*seen[3], serde_json::json!({"role": "assistant", "content": format!("d{CONTINUE_TAG}")}));
    }

    #[test]
    fn long_conversations_are_seen_whole() {
        let messages: Vec<Json> =
            (0..40).map(|i| serde_json::json!({"role": "user", "content": i.to_string()})).collect();
        let mut req = ChatRequest::new(messages);
        req.continue_final_message = ContinueFinal::Content;
        let prepared = prepare(&req, &|_| true).unwrap();
        let mut buf = MessageRefs::new();
        let seen = prepared.messages(&req.messages, &mut buf);
        assert_eq!(seen.len(), 40);
        assert!(seen[..39].iter().zip(&req.messages).all(|(a, b)| std::ptr::eq(*a, b)));
        assert_eq!(seen[39]["content"], format!("39{CONTINUE_TAG}"));
    }
}
