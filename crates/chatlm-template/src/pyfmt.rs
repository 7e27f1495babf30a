//! Python's text forms of template values: `str()`/`repr()` (what Jinja prints for a list, a dict,
//! `None` or `True`) and `json.dumps` (transformers' `tojson` filter).
//!
//! minijinja prints values the Rust/JSON way (`["a"]`, `none`, `true`); chat templates were written
//! against Python, and models were trained on what Python printed, so every place a value becomes text
//! goes through here.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

pub(crate) use crate::escape::{json_str, repr_str};

/// Python's `str(value)`: strings as they are, everything else as [`repr`].
pub fn py_str(value: &Value, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        // Jinja's Undefined prints as nothing.
        ValueKind::Undefined => {}
        _ => py_repr(value, out)?,
    }
    Ok(())
}

/// Python's `repr(value)` for the JSON-like values templates see.
pub fn py_repr(value: &Value, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => number(value, out, false),
        ValueKind::String => repr_str(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, (key, item)) in map_pairs(value)?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&key, out)?;
                out.push_str(": ");
                py_repr(&item, out)?;
            }
            out.push('}');
        }
        // Namespaces, macros, bytes: no Python equivalent worth imitating; minijinja's own form.
        _ => out.push_str(&value.to_string()),
    }
    Ok(())
}

/// A map's entries in order, read in one pass (a lookup per key would cost a hash or a scan each).
fn map_pairs(value: &Value) -> Result<impl Iterator<Item = (Value, Value)>, Error> {
    value
        .as_object()
        .and_then(|o| o.try_iter_pairs())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "cannot iterate the entries of this map"))
}

/// A number as Python prints it; `json` selects `json.dumps`' spelling of the non-finite floats.
fn number(value: &Value, out: &mut String, json: bool) {
    if value.is_integer() {
        match i128::try_from(value.clone()) {
            Ok(i) => out.push_str(&i.to_string()),
            Err(_) => out.push_str(&value.to_string()),
        }
        return;
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    out.push_str(&py_float(f, json));
}

/// An integer in decimal, as Python and `{}` print it. (The formatting machinery behind `write!`
/// costs several times this digit loop, and integers are printed in every tool-use render.)
pub(crate) fn push_int(i: i64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    let mut n = i.unsigned_abs();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.reserve(21 - k);
    if i < 0 {
        out.push('-');
    }
    for &d in &digits[k..] {
        out.push(char::from(d));
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for exponents in `-4..16`,
/// otherwise scientific with a signed two-digit exponent (`1e-05`, `1e+16`).
pub fn py_float(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        return match (f > 0.0, json) {
            (true, true) => "Infinity",
            (false, true) => "-Infinity",
            (true, false) => "inf",
            (false, false) => "-inf",
        }
        .to_string();
    }
    // `{:e}` gives the shortest round-trip digits as `d.ddde±x`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut s = String::new();
    if negative {
        s.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            s.push_str("0.");
            s.push_str(&"0".repeat((-exp - 1) as usize));
            s.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                s.push_str(&digits);
                s.push_str(&"0".repeat(int_len - digits.len()));
                s.push_str(".0");
            } else {
                s.push_str(&digits[..int_len]);
                s.push('.');
                s.push_str(&digits[int_len..]);
            }
        }
    } else {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    }
    s
}

/// The options of Python's `json.dumps` that transformers' `tojson` filter exposes.
#[derive(Debug, Clone, Default)]
pub struct JsonOptions {
    /// Escape non-ASCII as `\uXXXX` (transformers' default: false).
    pub ensure_ascii: bool,
    /// Pretty-print with this indent string (Python: an int n means n spaces).
    pub indent: Option<String>,
    /// `(item_separator, key_separator)`; default `(", ", ": ")`, or `(",", ": ")` with an indent.
    pub separators: Option<(String, String)>,
    /// Sort object keys.
    pub sort_keys: bool,
}

/// Python's `json.dumps(value, **options)`.
pub fn json_dumps(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let (item_sep, key_sep) = match &opts.separators {
        Some((i, k)) => (i.as_str(), k.as_str()),
        None if opts.indent.is_some() => (",", ": "),
        None => (", ", ": "),
    };
    let mut out = String::new();
    let w = JsonWriter { opts, item_sep, key_sep };
    w.write(value, 0, &mut out)?;
    Ok(out)
}

struct JsonWriter<'a> {
    opts: &'a JsonOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl JsonWriter<'_> {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(indent) = &self.opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    fn write(&self, value: &Value, level: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => number(value, out, true),
            ValueKind::String => json_str(value.as_str().unwrap_or_default(), self.opts.ensure_ascii, out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(item, level + 1, out)?;
                }
                self.newline(level, out);
                out.push(']');
            }
            ValueKind::Map => {
                let mut pairs: Vec<(Value, Value)> = map_pairs(value)?.collect();
                if pairs.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.opts.sort_keys {
                    // Keys are unique, so ordering the pairs by key orders the keys.
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                out.push('{');
                for (i, (key, item)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    // json.dumps turns non-string keys into their JSON spelling.
                    match key.kind() {
                        ValueKind::String => json_str(key.as_str().unwrap_or_default(), self.opts.ensure_ascii, out),
                        ValueKind::Number | ValueKind::Bool | ValueKind::None => {
                            let mut k = String::new();
                            self.write(key, level, &mut k)?;
                            json_str(&k, self.opts.ensure_ascii, out);
                        }
                        other => {
                            return Err(Error::new(
                                ErrorKind::InvalidOperation,
                                format!("tojson: keys must be str, int, float, bool or None, not {other}"),
                            ))
                        }
                    }
                    out.push_str(self.key_sep);
                    self.write(item, level + 1, out)?;
                }
                self.newline(level, out);
                out.push('}');
            }
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: object of type {other} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (123456.789, "123456.789"),
            (-2.5e-7, "-2.5e-07"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
        ] {
            assert_eq!(py_float(f, false), s, "{f}");
        }
    }

    #[test]
    fn integers_like_display() {
        let mut cases = vec![0, 1, -1, 9, 10, -10, 99, 100, 12345, i64::MAX, i64::MIN, i64::MIN + 1];
        cases.extend((0..19).flat_map(|e| [10i64.pow(e) - 1, 10i64.pow(e), -(10i64.pow(e))]));
        for i in cases {
            let mut s = String::from("x");
            push_int(i, &mut s);
            assert_eq!(s, format!("x{i}"));
        }
    }

    #[test]
    fn repr_and_json() {
        let v = Value::from(minijinja::value::Serde(serde_json::json!({"a": [1, "it's", null, true, 2.5], "é": {}})));
        let mut s = String::new();
        py_repr(&v, &mut s).unwrap();
        assert_eq!(s, r#"{'a': [1, "it's", None, True, 2.5], 'é': {}}"#);
        let j = json_dumps(&v, &JsonOptions::default()).unwrap();
        assert_eq!(j, r#"{"a": [1, "it's", null, true, 2.5], "é": {}}"#);
        let j = json_dumps(&v, &JsonOptions { indent: Some("  ".into()), ..Default::default() }).unwrap();
        assert_eq!(j, "{\n  \"a\": [\n    1,\n    \"it's\",\n    null,\n    true,\n    2.5\n  ],\n  \"é\": {}\n}");
        let j = json_dumps(&Value::from("<é>\u{1}"), &JsonOptions { ensure_ascii: true, ..Default::default() }).unwrap();
        assert_eq!(j, "\"<\\u00e9>\\u0001\"");
    }
}
