//! `tojson`: Python's `json.dumps` of template values, as [`crate::pyfmt::json_dumps`] writes it.
//! The request's JSON (tool schemas, arguments, messages) is written straight from its
//! `serde_json` form, without making a template value of every node on the way.

use std::fmt::Write;

use serde_json::{Map, Value as Json};

use super::value::{from_json, Bail, OrBail, Value, R};
use crate::pyfmt::{json_str, py_float};

/// `json.dumps` options, as [`crate::pyfmt::JsonOptions`] (the separators borrowed).
pub(super) struct JsonDump<'o> {
    pub ensure_ascii: bool,
    pub indent: Option<String>,
    pub item_sep: &'o str,
    pub key_sep: &'o str,
    pub sort_keys: bool,
}

impl JsonDump<'_> {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    /// Writes `v` the way [`crate::pyfmt::json_dumps`] does.
    pub(super) fn write(&self, v: &Value<'_>, level: usize, out: &mut String) -> R<()> {
        match v {
            Value::Arr(a) => return self.write_seq(a.iter().map(|j| (j, false)), level, out),
            Value::Msgs(a) => return self.write_seq(a.iter().map(|j| (*j, true)), level, out),
            Value::Obj(o) if !self.sort_keys => return self.write_map(o, false, level, out),
            Value::Msg(o) if !self.sort_keys => return self.write_map(o, true, level, out),
            _ => {}
        }
        match v {
            Value::None => out.push_str("null"),
            Value::Bool(b) => out.push_str(if b.get() { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&py_float(f.get(), true)),
            Value::Str(_) | Value::String(_) => json_str(v.as_str().unwrap_or_default(), self.ensure_ascii, out),
            Value::Arr(_) | Value::Msgs(_) | Value::List(_) | Value::Tuple(_) => {
                out.push('[');
                let mut first = true;
                v.for_each_item(|item| {
                    if !std::mem::take(&mut first) {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(item, level + 1, out)
                })?;
                if !first {
                    self.newline(level, out);
                }
                out.push(']');
            }
            Value::Obj(_) | Value::Msg(_) | Value::Dict(_) if !self.sort_keys => {
                out.push('{');
                let mut first = true;
                v.for_each_pair(|k, item| {
                    if !std::mem::take(&mut first) {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    json_str(k, self.ensure_ascii, out);
                    out.push_str(self.key_sep);
                    self.write(item, level + 1, out)
                })?;
                if !first {
                    self.newline(level, out);
                }
                out.push('}');
            }
            Value::Obj(_) | Value::Msg(_) | Value::Dict(_) => {
                // sort_keys: keys are strings (see `for_each_pair`), ordered like minijinja's.
                let mut pairs = v.pairs()?;
                if pairs.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if pairs.iter().any(|(k, _)| k.as_str().is_none()) {
                    return Err(Bail);
                }
                pairs.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
                out.push('{');
                for (i, (k, item)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    json_str(k.as_str().or_bail()?, self.ensure_ascii, out);
                    out.push_str(self.key_sep);
                    self.write(item, level + 1, out)?;
                }
                self.newline(level, out);
                out.push('}');
            }
            Value::Undefined | Value::Ns(_) | Value::Func => return Err(Bail),
        }
        Ok(())
    }

    /// A JSON value of the request (`hide_null`: a message, whose `null` keys are hidden), written
    /// as [`JsonDump::write`] writes the template value it stands for.
    fn write_json(&self, j: &Json, hide_null: bool, level: usize, out: &mut String) -> R<()> {
        match j {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::String(s) => json_str(s, self.ensure_ascii, out),
            Json::Array(a) => return self.write_seq(a.iter().map(|j| (j, false)), level, out),
            Json::Object(o) if !self.sort_keys => return self.write_map(o, hide_null, level, out),
            // Numbers and sorted maps as template values: the one conversion used everywhere.
            _ => return self.write(&from_json(j, hide_null)?, level, out),
        }
        Ok(())
    }

    fn write_seq<'j>(&self, items: impl Iterator<Item = (&'j Json, bool)>, level: usize, out: &mut String) -> R<()> {
        out.push('[');
        let mut first = true;
        for (item, hide_null) in items {
            if !std::mem::take(&mut first) {
                out.push_str(self.item_sep);
            }
            self.newline(level + 1, out);
            self.write_json(item, hide_null, level + 1, out)?;
        }
        if !first {
            self.newline(level, out);
        }
        out.push(']');
        Ok(())
    }

    fn write_map(&self, o: &Map<String, Json>, hide_null: bool, level: usize, out: &mut String) -> R<()> {
        out.push('{');
        let mut first = true;
        for (k, item) in o.iter().filter(|(_, v)| !(hide_null && v.is_null())) {
            if !std::mem::take(&mut first) {
                out.push_str(self.item_sep);
            }
            self.newline(level + 1, out);
            json_str(k, self.ensure_ascii, out);
            out.push_str(self.key_sep);
            self.write_json(item, false, level + 1, out)?;
        }
        if !first {
            self.newline(level, out);
        }
        out.push('}');
        Ok(())
    }
}
