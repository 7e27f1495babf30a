//! `tojson`: Python's `json.dumps` of template values, as [`crate::pyfmt::json_dumps`] writes it.
//! The request's JSON (tool schemas, arguments, messages) is written straight from its
//! `serde_json` form, without making a template value of every node on the way.

use serde_json::{Map, Value as Json};

use super::value::{from_json, Bail, OrBail, Value, R};
use crate::escape::json_key;
use crate::pyfmt::{json_str, push_int, py_float};

/// `json.dumps` options, as [`crate::pyfmt::JsonOptions`] (the separators borrowed).
pub(super) struct JsonDump<'o> {
    ensure_ascii: bool,
    /// With an indent: a line break followed by the indent [`NEWLINE_LEVELS`] times, so that the
    /// break before an item at one of those levels is one copy of a prefix of it.
    newline: Option<String>,
    indent_len: usize,
    item_sep: &'o str,
    key_sep: &'o str,
    sort_keys: bool,
    /// The default separators `", "` and `": "` without an indent (`x|tojson`): written as the
    /// constants they are, which are copied by a store where the separators of the options need
    /// a call of `memcpy` each.
    plain: bool,
}

/// Nesting levels whose line breaks are prepared (tool schemas rarely nest deeper).
const NEWLINE_LEVELS: usize = 8;

impl<'o> JsonDump<'o> {
    pub(super) fn new(ensure_ascii: bool, indent: Option<&str>, item_sep: &'o str, key_sep: &'o str, sort_keys: bool) -> Self {
        let newline = indent.map(|indent| {
            let mut nl = String::with_capacity(1 + NEWLINE_LEVELS * indent.len());
            nl.push('\n');
            for _ in 0..NEWLINE_LEVELS {
                nl.push_str(indent);
            }
            nl
        });
        let indent_len = indent.map_or(0, str::len);
        let plain = indent.is_none() && item_sep == ", " && key_sep == ": ";
        JsonDump { ensure_ascii, newline, indent_len, item_sep, key_sep, sort_keys, plain }
    }

    /// The line break and indent before an item at `level`, if indenting. (The check is inlined
    /// into every caller: most dumps do not indent, and a call per item was a visible cost.)
    #[inline(always)]
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(nl) = &self.newline {
            self.line_break(nl, level, out);
        }
    }

    /// What goes before an item of a list or map: the item separator unless it is the first,
    /// and the line break when indenting.
    #[inline(always)]
    fn before_item(&self, first: bool, level: usize, out: &mut String) {
        // (Each push a copy of its own constant: one `push_str` of either would be a `memcpy` call.)
        if first {
        } else if self.plain {
            out.push_str(", ");
        } else {
            out.push_str(self.item_sep);
        }
        self.newline(level, out);
    }

    /// A key of a map and the separator after it.
    #[inline(always)]
    fn key(&self, k: &str, out: &mut String) {
        if self.plain {
            json_key(k, self.ensure_ascii, out);
        } else {
            json_str(k, self.ensure_ascii, out);
            out.push_str(self.key_sep);
        }
    }

    fn line_break(&self, nl: &str, level: usize, out: &mut String) {
        if level <= NEWLINE_LEVELS {
            out.push_str(&nl[..1 + level * self.indent_len]);
        } else {
            out.push_str(nl);
            for _ in NEWLINE_LEVELS..level {
                out.push_str(&nl[1..1 + self.indent_len]);
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
            Value::None => out.push_str("null"),
            Value::Bool(b) => out.push_str(if b.get() { "true" } else { "false" }),
            Value::Int(i) => push_int(*i, out),
            Value::Float(f) => out.push_str(&py_float(f.get(), true)),
            Value::Str(s) => json_str(s, self.ensure_ascii, out),
            Value::String(s) => json_str(s, self.ensure_ascii, out),
            Value::List(_) | Value::Tuple(_) => {
                out.push('[');
                let mut first = true;
                v.for_each_item(|item| {
                    self.before_item(std::mem::take(&mut first), level + 1, out);
                    self.write(item, level + 1, out)
                })?;
                if !first {
                    self.newline(level, out);
                }
                out.push(']');
            }
            Value::Dict(_) if !self.sort_keys => {
                out.push('{');
                let mut first = true;
                v.for_each_pair(|k, item| {
                    self.before_item(std::mem::take(&mut first), level + 1, out);
                    self.key(k, out);
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
                    self.before_item(i == 0, level + 1, out);
                    self.key(k.as_str().or_bail()?, out);
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
            Json::Number(n) => match n.as_i64() {
                Some(i) => push_int(i, out),
                // As `from_json` reads them: other floats, and integers beyond i64 hand over.
                None if n.is_f64() => out.push_str(&py_float(n.as_f64().or_bail()?, true)),
                None => return Err(Bail),
            },
            Json::Array(a) => return self.write_seq(a.iter().map(|j| (j, false)), level, out),
            Json::Object(o) if !self.sort_keys => return self.write_map(o, hide_null, level, out),
            // Sorted maps as template values: the one conversion used everywhere.
            _ => return self.write(&from_json(j, hide_null)?, level, out),
        }
        Ok(())
    }

    /// An item of a request array or object: strings, most of a schema's values, are written
    /// here rather than through a call of [`JsonDump::write_json`] each.
    #[inline(always)]
    fn write_item(&self, j: &Json, hide_null: bool, level: usize, out: &mut String) -> R<()> {
        match j {
            Json::String(s) => {
                json_str(s, self.ensure_ascii, out);
                Ok(())
            }
            _ => self.write_json(j, hide_null, level, out),
        }
    }

    fn write_seq<'j>(&self, items: impl Iterator<Item = (&'j Json, bool)>, level: usize, out: &mut String) -> R<()> {
        out.push('[');
        let mut first = true;
        for (item, hide_null) in items {
            self.before_item(std::mem::take(&mut first), level + 1, out);
            self.write_item(item, hide_null, level + 1, out)?;
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
            self.before_item(std::mem::take(&mut first), level + 1, out);
            self.key(k, out);
            self.write_item(item, false, level + 1, out)?;
        }
        if !first {
            self.newline(level, out);
        }
        out.push('}');
        Ok(())
    }
}
