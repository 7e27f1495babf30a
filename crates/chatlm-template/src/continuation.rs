//! `continue_final_message`: the final message marked with transformers' tag, and the rendered
//! text cut where the tag lands.

use std::borrow::Cow;
use std::cell::Cell;

use serde_json::{Map, Value as Json};

use crate::request::{alias_reasoning, has_reasoning, invalid, without_nulls, REASONING_FIELDS};
use crate::TemplateError;

/// The text transformers appends to the continued message to find it again after rendering.
pub(crate) const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// The tag as transformers searches for it, `CONTINUE_TAG.strip()`.
const TAG_WORD: &str = "CONTINUE_FINAL_MESSAGE_TAG";

thread_local! {
    /// The copy of the last continued message, for the next render on this thread to overwrite:
    /// with the same keys (the usual case), continuing a message then allocates nothing. A fresh
    /// copy and its release are about a dozen allocations and frees, a sixth of such a render.
    static SPARE: Cell<Option<Map<String, Json>>> = const { Cell::new(None) };
}

/// The most text a spare copy keeps allocated between renders.
const SPARE_BYTES: usize = 16 << 10;

/// Makes `dst` a copy of `src` without its `null` keys, reusing `dst`'s allocations where it has
/// the same keys in the same order (its index then stays valid as it is).
fn copy_into(dst: &mut Map<String, Json>, src: &Map<String, Json>) {
    if dst.len() == src.len() && dst.keys().eq(src.keys()) {
        for (d, s) in dst.values_mut().zip(src.values()) {
            match (d, s) {
                (Json::String(d), Json::String(s)) => d.clone_from(s),
                (d, s) => *d = s.clone(),
            }
        }
    } else {
        dst.clone_from(src);
    }
    if dst.values().any(Json::is_null) {
        dst.retain(|_, v| !v.is_null());
    }
}

/// Keeps a continued message's copy for the next render on this thread, when it is small.
pub(crate) fn keep_spare(copy: Map<String, Json>) {
    let bytes = copy.iter().try_fold(0, |sum, (k, v)| match v {
        Json::String(s) => Some(sum + k.capacity() + s.capacity()),
        Json::Array(_) | Json::Object(_) => None,
        _ => Some(sum + k.capacity()),
    });
    if copy.len() <= 16 && bytes.is_some_and(|b| b <= SPARE_BYTES) {
        // During the thread's teardown there is nowhere to keep it.
        let _ = SPARE.try_with(|s| s.set(Some(copy)));
    }
}

/// The final message as rendered with `continue_final_message` (`null` keys dropped, reasoning
/// aliased, the continue tag appended) and the text it continues.
pub(crate) fn continue_final<'r>(
    last: &'r Map<String, Json>,
    field: &str,
    mentions: &dyn Fn(&str) -> bool,
) -> Result<(Map<String, Json>, Cow<'r, str>), TemplateError> {
    // The common case, a text field the template mentions in a message without reasoning: the
    // request's text is the continued text (no copy of it), and the copy holds the marked one. The
    // general path gives the same message.
    if !REASONING_FIELDS.contains(&field) && mentions(field) && !has_reasoning(last) {
        if let Some((_, Json::String(text))) = last.iter().find(|(k, _)| *k == field) {
            let mut marked = SPARE.try_with(Cell::take).ok().flatten().unwrap_or_default();
            copy_into(&mut marked, last);
            if let Some((_, Json::String(copy))) = marked.iter_mut().find(|(k, _)| *k == field) {
                copy.push_str(CONTINUE_TAG);
            }
            return Ok((marked, Cow::Borrowed(text)));
        }
    }
    let mut marked = alias_reasoning(without_nulls(last));
    let text = mark_final(&mut marked, field, mentions)?;
    Ok((marked, Cow::Owned(text)))
}

/// Appends the continue tag to the final message's field; returns the continued text.
fn mark_final(
    last: &mut Map<String, Json>,
    field: &str,
    mentions: &dyn Fn(&str) -> bool,
) -> Result<String, TemplateError> {
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
    let final_text = py_strip(continued);
    // One search instead of three: the final text almost always sits right before the (last) tag,
    // which proves it appears; only otherwise is the whole output searched for it.
    let last_tag = rfind_near_end(rendered, TAG_WORD);
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

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators 0x1C..=0x1F.
fn py_strip(s: &str) -> &str {
    // Text nearly always starts and ends with a visible ASCII character: then there is nothing to
    // strip, and no character needs decoding.
    let visible = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x7f).contains(b));
    if visible(s.as_bytes().first()) && visible(s.as_bytes().last()) {
        return s;
    }
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{prepare, ContinueFinal, MessageRefs};
    use crate::ChatRequest;

    #[test]
    fn strip_is_pythons() {
        assert_eq!(py_strip(CONTINUE_TAG), TAG_WORD);
        for (s, stripped) in [
            ("abc", "abc"),
            ("a b", "a b"),
            (" a\t", "a"),
            ("\u{1c}a\u{1f}", "a"),
            ("\u{a0}a\u{3000}", "a"),
            ("é x", "é x"),
            ("", ""),
            ("  ", ""),
            ("~", "~"),
            ("!\n", "!"),
        ] {
            assert_eq!(py_strip(s), stripped, "{s:?}");
        }
    }

    #[test]
    fn the_backward_search_finds_the_last_match() {
        for (hay, needle) in
            [("abcabc", "bc"), ("abc", "abcd"), ("", "a"), ("xxCONTINUExxCONT", "CONTINUE"), ("é€CAT", "CAT")]
        {
            assert_eq!(rfind_near_end(hay, needle), hay.rfind(needle), "{hay} {needle}");
        }
    }

    /// The final message and text `prepare` gives for continuing `message`'s `field`.
    fn continued(message: Json, field: ContinueFinal) -> Result<(Json, String), TemplateError> {
        let mut req = ChatRequest::new(vec![serde_json::json!({"role": "user", "content": "q"}), message]);
        req.continue_final_message = field;
        let prepared = prepare(&req, &|_| true)?;
        let mut buf = MessageRefs::new();
        let seen = prepared.messages(&req.messages, &mut buf);
        assert!(std::ptr::eq(seen[0], &req.messages[0]));
        Ok((seen[1].clone(), prepared.continued.as_deref().unwrap().to_string()))
    }

    #[test]
    fn continued_copies_follow_the_general_rules_whatever_the_spare_held() {
        // In a row on one thread: the spare copy of each render has the keys of the one before or not.
        let messages = [
            serde_json::json!({"role": "assistant", "content": "a"}),
            serde_json::json!({"role": "assistant", "content": "longer text é"}),
            serde_json::json!({"role": "assistant", "content": ""}),
            serde_json::json!({"content": "c", "role": "assistant"}),
            serde_json::json!({"role": "assistant", "content": "d", "x": null, "n": 1}),
            serde_json::json!({"role": "assistant", "content": "d", "x": null, "n": 1}),
            serde_json::json!({"role": "assistant", "content": "e", "thinking": null}),
            serde_json::json!({"role": null, "content": "f", "tool_calls": [{"a": "b"}]}),
            serde_json::json!({"role": "assistant", "content": "g", "tool_calls": [{"a": "b"}]}),
            serde_json::json!({"role": "assistant", "content": "h", "thinking": "t"}),
            serde_json::json!({"role": "assistant", "content": "i"}),
            serde_json::json!({"role": 7, "content": "j"}),
            serde_json::json!({"role": "assistant", "content": "x".repeat(SPARE_BYTES)}),
            serde_json::json!({"role": "assistant", "content": "k"}),
        ];
        for m in messages {
            let mut expected = alias_reasoning(without_nulls(m.as_object().unwrap()));
            let text = mark_final(&mut expected, "content", &|_| true).unwrap();
            let got = continued(m.clone(), ContinueFinal::Content).unwrap();
            assert_eq!(got, (Json::Object(expected), text), "{m}");
        }
    }

    #[test]
    fn continuing_reasoning_or_parts_takes_the_general_path() {
        let (m, text) =
            continued(serde_json::json!({"role": "assistant", "content": "c", "thinking": "t"}), ContinueFinal::Content)
                .unwrap();
        assert_eq!((m["content"].as_str(), m["reasoning_content"].as_str()), (Some("cCONTINUE_FINAL_MESSAGE_TAG "), Some("t")));
        assert_eq!(text, "c");
        let field = ContinueFinal::Field("reasoning_content".into());
        let (m, text) = continued(serde_json::json!({"role": "assistant", "thinking": "t", "x": null}), field).unwrap();
        let marked = format!("t{CONTINUE_TAG}");
        assert_eq!(m, serde_json::json!({"thinking": marked, "role": "assistant", "reasoning_content": marked}));
        assert_eq!(text, "t");
        let parts = serde_json::json!([{"type": "text", "text": "p"}, {"type": "image"}]);
        let (m, text) =
            continued(serde_json::json!({"role": "assistant", "content": parts}), ContinueFinal::Content).unwrap();
        assert_eq!(m["content"][0]["text"], format!("p{CONTINUE_TAG}"));
        assert_eq!(text, "p");
        let missing = continued(serde_json::json!({"role": "assistant", "content": null}), ContinueFinal::Content);
        assert!(matches!(missing, Err(TemplateError::InvalidRequest(e)) if e.contains("no \"content\" to continue")));
    }
}
