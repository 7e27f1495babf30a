//! Request lines of `chatlm template --jsonl`, parsed for speed but answered exactly as a plain
//! `serde_json::Value` parse of the line would be.
//!
//! A line usually repeats the same `chat_template` (up to tens of kilobytes of escaped JSON). Its
//! raw JSON text is kept as it is in the line and is the key of the compiled-template cache, so a
//! known template is never decoded again. Everything else is parsed field by field into JSON values.
//! Whatever this direct parse cannot vouch for (not an object, malformed JSON, a key given twice, a
//! template that does not decode) goes through the plain parse instead, so errors keep their text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{invalid, LineError};

/// A line's `chat_template`; `K` is what the caller's cache holds for a known one.
pub(super) enum LineTemplate<'a, K> {
    /// Raw JSON text the caller's cache already knows, and its cache entry.
    Known(&'a str, K),
    /// Raw JSON text seen for the first time, and its decoded value.
    New(&'a str, Value),
    /// A value from the plain parse (no raw text to key a cache with).
    Parsed(Value),
}

/// The fields of a request line; `null` means absent for every field.
pub(super) struct LineFields<'a, K> {
    pub chat_template: Option<LineTemplate<'a, K>>,
    pub tokenizer: Option<Value>,
    pub messages: Option<Value>,
    pub tools: Option<Value>,
    pub documents: Option<Value>,
    pub add_generation_prompt: Option<Value>,
    pub continue_final_message: Option<Value>,
    pub special_tokens: Option<Value>,
    pub kwargs: Option<Value>,
    pub now: Option<Value>,
    pub tokenize: Option<Value>,
    pub return_assistant_tokens_mask: Option<Value>,
}

impl<K> Default for LineFields<'_, K> {
    fn default() -> Self {
        LineFields {
            chat_template: None,
            tokenizer: None,
            messages: None,
            tools: None,
            documents: None,
            add_generation_prompt: None,
            continue_final_message: None,
            special_tokens: None,
            kwargs: None,
            now: None,
            tokenize: None,
            return_assistant_tokens_mask: None,
        }
    }
}

impl<K> LineFields<'_, K> {
    /// The slot of a field other than `chat_template`.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value>> {
        Some(match key {
            "tokenizer" => &mut self.tokenizer,
            "messages" => &mut self.messages,
            "tools" => &mut self.tools,
            "documents" => &mut self.documents,
            "add_generation_prompt" => &mut self.add_generation_prompt,
            "continue_final_message" => &mut self.continue_final_message,
            "special_tokens" => &mut self.special_tokens,
            "kwargs" => &mut self.kwargs,
            "now" => &mut self.now,
            "tokenize" => &mut self.tokenize,
            "return_assistant_tokens_mask" => &mut self.return_assistant_tokens_mask,
            _ => return None,
        })
    }
}

/// Parses one request line; `known` looks a template's raw JSON text up in the caller's cache.
pub(super) fn parse_line<'a, K>(
    line: &'a str,
    mut known: impl FnMut(&str) -> Option<K>,
) -> Result<LineFields<'a, K>, LineError> {
    if line.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(line);
        if let Ok(Direct { mut fields, raw_template }) = Direct::<K>::deserialize(&mut de) {
            if de.end().is_ok() {
                match raw_template.map(str::trim).filter(|t| *t != "null") {
                    None => return Ok(fields),
                    Some(raw) => {
                        if let Some(entry) = known(raw) {
                            fields.chat_template = Some(LineTemplate::Known(raw, entry));
                            return Ok(fields);
                        }
                        if let Ok(v) = serde_json::from_str::<Value>(raw) {
                            fields.chat_template = Some(LineTemplate::New(raw, v));
                            return Ok(fields);
                        }
                    }
                }
            }
        }
    }
    plain_parse(line)
}

/// The reference behaviour: the whole line as one JSON value.
fn plain_parse<K>(line: &str) -> Result<LineFields<'_, K>, LineError> {
    let req: Value = serde_json::from_str(line).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = req else {
        return Err(invalid("a request line must be a JSON object"));
    };
    let mut fields = LineFields::default();
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        if k == "chat_template" {
            fields.chat_template = Some(LineTemplate::Parsed(v));
        } else if let Some(slot) = fields.slot(&k) {
            *slot = Some(v);
        }
    }
    Ok(fields)
}

/// The direct parse's result: the fields, and the template's raw text.
struct Direct<'a, K> {
    fields: LineFields<'a, K>,
    raw_template: Option<&'a str>,
}

impl<'de, K> Deserialize<'de> for Direct<'de, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DirectVisitor(std::marker::PhantomData))
    }
}

struct DirectVisitor<K>(std::marker::PhantomData<K>);

impl<'de, K> Visitor<'de> for DirectVisitor<K> {
    type Value = Direct<'de, K>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Direct<'de, K>, A::Error> {
        let mut out = Direct { fields: LineFields::default(), raw_template: None };
        let mut seen_template = false;
        let mut seen = Vec::with_capacity(12);
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key == "chat_template" {
                // A key given twice: leave last-one-wins and its validation to the plain parse.
                if std::mem::replace(&mut seen_template, true) {
                    return Err(de::Error::custom("duplicate key"));
                }
                out.raw_template = Some(map.next_value::<&'de RawValue>()?.get());
            } else if let Some(slot) = out.fields.slot(&key) {
                if seen.contains(&key) {
                    return Err(de::Error::custom("duplicate key"));
                }
                *slot = map.next_value::<Option<Value>>()?;
                seen.push(key);
            } else {
                // Unknown keys are ignored, but validated as strictly as the plain parse does.
                map.next_value::<Value>()?;
            }
        }
        Ok(out)
    }
}

/// An object key, borrowed from the line when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line answers as the plain parse does, whichever path reads it.
    #[test]
    fn direct_parse_equals_plain_parse() {
        let lines = [
            r#"{"chat_template": "T\n\u00e9", "messages": [{"role": "user"}], "x": {"deep": [1]}, "now": null}"#,
            r#"  {"messages": [], "messages": [1], "chat_template": "A"}"#,
            r#"{"chat_template": "A", "chat_template": [1]}"#,
            r#"{"chat_template": [{"name": "default", "template": "D"}], "tools": []}"#,
            r#"{"chat_template": 1e400}"#,
            r#"{"chat_template": "x", "n": 1e400}"#,
            r#"{"chat_template": "\ud800"}"#,
            r#"{"chat_template": null, "tokenize": true} x"#,
            r#"[null, null]"#,
            r#"{"chat_\u0074emplate": "T"}"#,
        ];
        for line in lines {
            let summary = |r: Result<LineFields<()>, LineError>| match r {
                Err(e) => format!("error {}", e.message),
                Ok(f) => {
                    let t = match f.chat_template {
                        None => "none".to_string(),
                        Some(LineTemplate::Known(..)) => "known".to_string(),
                        Some(LineTemplate::New(_, v) | LineTemplate::Parsed(v)) => v.to_string(),
                    };
                    format!("{t} {:?} {:?} {:?} {:?}", f.messages, f.tools, f.now, f.tokenize)
                }
            };
            assert_eq!(summary(parse_line(line, |_| None)), summary(plain_parse(line)), "{line}");
        }
        let known = parse_line(r#"{"chat_template": "T"}"#, |raw| (raw == r#""T""#).then_some(7));
        assert!(matches!(known, Ok(LineFields { chat_template: Some(LineTemplate::Known(r#""T""#, 7)), .. })));
    }
}
