//! Python's text forms of template values: `str()`/`repr()` (what Jinja prints for a list, a dict,
//! `None` or `True`) and `json.dumps` (transformers' `tojson` filter).
//!
//! minijinja prints values the Rust/JSON way (`["a"]`, `none`, `true`); chat templates were written
//! against Python, and models were trained on what Python printed, so every place a value becomes text
//! goes through here.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

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

/// Whether Python's `str.isprintable()` holds for `c` (approximated by the categories that occur in
/// practice: controls, format characters, separators other than the ASCII space, surrogates/unassigned
/// cannot occur in a Rust `str`).
fn py_printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20
        || (0x7f..=0xa0).contains(&u)
        || u == 0xad
        || u == 0x1680
        || u == 0x180e
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x2064).contains(&u)
        || (0x2066..=0x206f).contains(&u)
        || u == 0x3000
        || u == 0xfeff
        || (0xfff9..=0xfffb).contains(&u)
        || (0xe000..=0xf8ff).contains(&u)
        || (0xf0000..).contains(&u))
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub(crate) fn repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    // Runs of plain printable ASCII are copied whole; everything else goes through the checks.
    let mut run = 0;
    for (i, c) in s.char_indices() {
        if (' '..='~').contains(&c) && c != '\\' && c != quote {
            continue;
        }
        out.push_str(&s[run..i]);
        run = i + c.len_utf8();
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c => {
                let u = c as u32;
                if u <= 0xff {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u <= 0xffff {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
        }
    }
    out.push_str(&s[run..]);
    out.push(quote);
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

/// A JSON string literal as Python's `json` module writes it.
pub(crate) fn json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    // Runs of characters that need no escape are copied whole (the common case is all of them).
    // Without `ensure_ascii` only ASCII bytes are ever escaped, so bytes can be tested directly.
    if !ensure_ascii {
        let bytes = s.as_bytes();
        let mut run = 0;
        let mut i = 0;
        loop {
            i = next_json_escape(bytes, i);
            if i == bytes.len() {
                break;
            }
            let b = bytes[i];
            out.push_str(&s[run..i]);
            run = i + 1;
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                b => out.push_str(&format!("\\u{b:04x}")),
            }
            i += 1;
        }
        out.push_str(&s[run..]);
        out.push('"');
        return;
    }
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let plain = c >= ' ' && c != '"' && c != '\\' && (c as u32) <= 0x7f;
        if plain {
            continue;
        }
        out.push_str(&s[run..i]);
        run = i + c.len_utf8();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
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

/// The index of the first byte at or after `from` that a JSON string must escape (a control
/// character, `"` or `\\`), or `bytes.len()`.
///
/// Why eight bytes at a time: `tojson` of tool schemas and long contents is mostly plain text, and
/// a byte loop with three compares per byte was a visible share of such renders. The word tests are
/// the classic "has a zero / has a byte below n" bit tricks: a borrow can only mark bytes above a
/// true hit, so the lowest marked byte is always exact.
fn next_json_escape(bytes: &[u8], from: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (LO * u64::from(b'"'));
        let backslash = x ^ (LO * u64::from(b'\\'));
        let hits = ((x.wrapping_sub(LO * 0x20) & !x)
            | (quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash))
            & HI;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() {
        let b = bytes[i];
        if b < b' ' || b == b'"' || b == b'\\' {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod escape_scan_tests {
    use super::next_json_escape;

    #[test]
    fn word_scan_agrees_with_a_byte_loop() {
        let naive = |b: &[u8], from: usize| {
            (from..b.len()).find(|&i| b[i] < b' ' || b[i] == b'"' || b[i] == b'\\').unwrap_or(b.len())
        };
        // Every special byte at every position of a 19-byte buffer, over plain, high and edge bytes.
        for fill in [b'a', 0x80, 0xff, b' ', b'!', b'#', b'[', b']', 0x21, 0x7f] {
            for special in [0u8, 0x1f, b'\n', b'"', b'\\'] {
                for pos in 0..19 {
                    let mut buf = vec![fill; 19];
                    buf[pos] = special;
                    for from in 0..19 {
                        assert_eq!(next_json_escape(&buf, from), naive(&buf, from), "{fill} {special} {pos} {from}");
                    }
                }
                let buf = vec![fill; 19];
                assert_eq!(next_json_escape(&buf, 0), 19);
            }
        }
    }
}
