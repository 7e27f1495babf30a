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

/// Whether `key` is one of [`REASONING_FIELDS`]; the length decides for almost every key (`role`,
/// `content`, `tool_calls`, ...) without comparing text.
fn is_reasoning_field(key: &str) -> bool {
    matches!(key.len(), 8 | 9 | 17) && REASONING_FIELDS.contains(&key)
}

/// The text transformers appends to the continued message to find it again after rendering.
pub(crate) const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// The checked and normalised inputs of one render.
pub(crate) struct Prepared {
    /// The messages that had to be rewritten (reasoning fields aliased, the continued one marked,
    /// `null` keys dropped), by position; every other message is used as the request has it (its
    /// `null` keys are skipped when it is read). Copying only these keeps a `continue_final_message`
    /// render from deep-copying the whole conversation.
    pub edits: Vec<(usize, Json)>,
    /// The text of the continued message, when `continue_final_message` is set.
    pub continued: Option<String>,
}

impl Prepared {
    /// The messages as the template sees them: the request's, with the edits in place. Fills
    /// `buf`'s inline room when they fit (no allocation per render).
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
        refs
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
        needs_rewrite |= obj.iter().any(|(k, v)| is_reasoning_field(k) && !v.is_null());
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
        return Ok(Prepared { edits: Vec::new(), continued: None });
    }
    // Copies of the messages that change, without `null` keys, reasoning aliased, ready for the
    // continue tag. Cloning a map copies its index as it is; collecting the entries again would
    // hash every key.
    let last = req.messages.len() - 1;
    let continues = req.continue_final_message != ContinueFinal::No;
    let mut edits: Vec<(usize, Map<String, Json>)> = Vec::new();
    for (i, obj) in req.messages.iter().enumerate().filter_map(|(i, m)| Some((i, m.as_object()?))) {
        if !(i == last && continues || obj.iter().any(|(k, v)| is_reasoning_field(k) && !v.is_null())) {
            continue;
        }
        let mut copy = obj.clone();
        if copy.values().any(Json::is_null) {
            copy.retain(|_, v| !v.is_null());
        }
        edits.push((i, alias_reasoning(copy)));
    }
    let final_message = edits.last_mut().filter(|(i, _)| *i == last).map(|(_, m)| m);
    let continued = match (&req.continue_final_message, final_message) {
        (ContinueFinal::No, _) => None,
        (ContinueFinal::Content, Some(m)) => Some(mark_final(m, "content", mentions)?),
        (ContinueFinal::Field(f), Some(m)) => Some(mark_final(m, f, mentions)?),
        (_, None) => return Err(invalid("continue_final_message is set but the conversation is empty!")),
    };
    Ok(Prepared { edits: edits.into_iter().map(|(i, m)| (i, Json::Object(m))).collect(), continued })
}

/// transformers' `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`.
fn alias_reasoning(message: Map<String, Json>) -> Map<String, Json> {
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

/// Appends the continue tag to the final message's field; returns the continued text.
fn mark_final(
    last: &mut Map<String, Json>,
    field: &str,
    mentions: &dyn Fn(&str) -> bool,
) -> Result<String, TemplateError> {
    // The common case, a text field the template mentions: marked in place, no copy of the text or
    // the key (the general path below gives the same message).
    if !REASONING_FIELDS.contains(&field) && mentions(field) {
        if let Some((_, Json::String(text))) = last.iter_mut().find(|(k, _)| *k == field) {
            let mut marked = String::with_capacity(text.len() + CONTINUE_TAG.len());
            marked.push_str(text);
            marked.push_str(CONTINUE_TAG);
            return Ok(std::mem::replace(text, marked));
        }
    }
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
    let last_tag = rfind_near_end(rendered, tag);
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

/// `hay.rfind(needle)` for an ASCII needle that is usually near the end (the continue tag): a
/// backward scan finds it within a few bytes, where setting up a general substring search costs
/// more than the search. (At most `needle.len()` comparisons per byte in the worst case.)
fn rfind_near_end(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    // An ASCII needle only matches at character boundaries.
    (0..=h.len().checked_sub(n.len())?).rev().find(|&i| h[i] == first && h[i..].starts_with(n))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backward_search_finds_the_last_match() {
        for (hay, needle) in
            [("abcabc", "bc"), ("abc", "abcd"), ("", "a"), ("xxCONTINUExxCONT", "CONTINUE"), ("é€CAT", "CAT")]
        {
            assert_eq!(rfind_near_end(hay, needle), hay.rfind(needle), "{hay} {needle}");
        }
    }

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
        assert_eq!(prepared.edits.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 3]);
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
