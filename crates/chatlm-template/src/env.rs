//! The Jinja environment of transformers' `apply_chat_template`, rebuilt on minijinja.
//!
//! transformers renders with `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[AssistantTracker, loopcontrols])` plus the globals `raise_exception`, `strftime_now`,
//! `dict`, `namespace` and its own `tojson`. Everything a template can observe is reproduced here;
//! what minijinja does differently from Python (printing values, `string`, `tojson`, string methods)
//! is overridden.

use std::cell::Cell;

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::clock::DateTime;
use crate::generation::{GEN_END, GEN_FILTER, GEN_START};
use crate::pyfmt::{json_dumps, py_str, JsonOptions};
use crate::Limits;

thread_local! {
    /// The clock of the render running on this thread, read by `strftime_now`. A thread-local keeps
    /// it out of the template's variables (a template cannot see or overwrite it).
    static NOW: Cell<Option<DateTime>> = const { Cell::new(None) };
}

/// Sets this thread's render clock until the guard drops.
pub(crate) struct ClockGuard(Option<DateTime>);

impl ClockGuard {
    pub(crate) fn set(now: Option<DateTime>) -> ClockGuard {
        ClockGuard(NOW.with(|c| c.replace(now)))
    }
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        NOW.with(|c| c.set(self.0));
    }
}

/// What `raise_exception` leaves in the error chain, so a render error can be told apart from the
/// template's own deliberate failure.
#[derive(Debug)]
pub(crate) struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: Option<Value>) -> Result<Value, Error> {
    let mut text = String::new();
    if let Some(m) = &message {
        py_str(m, &mut text)?;
    }
    Err(Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
}

fn strftime_now(format: &str) -> String {
    let now = NOW.with(|c| c.get()).unwrap_or_else(DateTime::now_utc);
    now.strftime(format)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, which
/// is Python's `json.dumps`: `", "`/`": "` separators, no HTML escaping, non-ASCII kept.
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    // Positional arguments follow the Python signature (so `x|tojson(4)` sets ensure_ascii, as in HF).
    let mut slots: [Option<Value>; 4] = Default::default();
    for (i, a) in args.iter().enumerate() {
        if i >= 4 {
            return Err(Error::new(ErrorKind::TooManyArguments, "tojson takes at most 4 arguments"));
        }
        slots[i] = Some(a.clone());
    }
    for (i, name) in ["ensure_ascii", "indent", "separators", "sort_keys"].iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            slots[i] = Some(v);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = slots;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
        Some(v) if v.is_integer() => Some(" ".repeat(v.as_i64().unwrap_or(0).clamp(0, 64) as usize)),
        Some(v) => return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: bad indent {v}"))),
    };
    let separators = match separators {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let items: Vec<Value> = v.try_iter()?.collect();
            match items.as_slice() {
                [a, b] => Some((a.to_string(), b.to_string())),
                _ => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair")),
            }
        }
    };
    let opts = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent,
        separators,
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    };
    Ok(Value::from(json_dumps(value, &opts)?))
}

/// Python's `str()`, which Jinja's `string` filter is.
fn string(value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    let mut s = String::new();
    py_str(value, &mut s)?;
    Ok(Value::from(s))
}

/// Python's `str.splitlines()` (line boundaries: `\n \r \r\n \v \f \x1c-\x1e \x85 \u2028 \u2029`).
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if is_break {
            lines.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = chars.peek() {
                    chars.next();
                    next = j + 1;
                }
            }
            start = next;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// jinja2's `indent(width=4, first=False, blank=False)`, including its quirk of appending a newline
/// before splitting (so `'{\n'|indent` keeps its newline, where minijinja's drops it).
fn indent(value: &Value, width: Option<Value>, first: Option<bool>, blank: Option<bool>, kwargs: Kwargs) -> Result<String, Error> {
    let width = kwargs.get::<Option<Value>>("width")?.or(width);
    let first = kwargs.get::<Option<bool>>("first")?.or(first).unwrap_or(false);
    let blank = kwargs.get::<Option<bool>>("blank")?.or(blank).unwrap_or(false);
    kwargs.assert_all_used()?;
    let indention = match &width {
        None => "    ".to_string(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().to_string(),
        Some(w) => " ".repeat(w.as_i64().unwrap_or(4).clamp(0, 1024) as usize),
    };
    let mut text = String::new();
    py_str(value, &mut text)?;
    Ok(indent_text(&text, &indention, first, blank))
}

/// The text part of [`indent`] (shared with the fast renderer).
pub(crate) fn indent_text(text: &str, indention: &str, first: bool, blank: bool) -> String {
    let mut text = text.to_string();
    text.push('\n');
    let lines = py_splitlines(&text);
    let mut rv = String::with_capacity(text.len() + lines.len() * indention.len());
    if blank {
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                rv.push('\n');
                rv.push_str(indention);
            }
            rv.push_str(line);
        }
    } else {
        let mut it = lines.iter();
        rv.push_str(it.next().copied().unwrap_or_default());
        let rest: Vec<&&str> = it.collect();
        if !rest.is_empty() {
            rv.push('\n');
            for (i, line) in rest.iter().enumerate() {
                if i > 0 {
                    rv.push('\n');
                }
                if !line.is_empty() {
                    rv.push_str(indention);
                }
                rv.push_str(line);
            }
        }
    }
    if first {
        rv.insert_str(0, indention);
    }
    rv
}

/// The iterable of every `for` loop passes through here (see [`crate::forloop`]): Python cannot
/// iterate `None`.
fn iterable(value: Value) -> Result<Value, Error> {
    if value.is_none() {
        return Err(Error::new(ErrorKind::InvalidOperation, "'NoneType' object is not iterable"));
    }
    Ok(value)
}

/// Wraps a `{% generation %}` body in markers; [`crate::generation`] turns them into spans.
fn generation_marker(body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 6);
    s.push(GEN_START);
    s.push_str(body);
    s.push(GEN_END);
    s
}

fn syntax() -> minijinja::syntax::SyntaxConfig {
    let mut b = minijinja::syntax::SyntaxConfig::builder();
    // jinja2 drops a single trailing newline of the template (keep_trailing_newline=False).
    b.trim_blocks(true).lstrip_blocks(true).keep_trailing_newline(false);
    // The default delimiters always build; fall back to the default config just in case.
    b.build().unwrap_or_default()
}

/// The environment every chat template is compiled in. It has no loader, so `include`, `import` and
/// `extends` can only name templates that do not exist: a template never reaches the filesystem.
pub(crate) fn environment(limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(syntax());
    // jinja2's default Undefined: printing or iterating an undefined value is fine, using it is not.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.recursion);
    // No auto-escaping: chat prompts are not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        let r = match value.kind() {
            ValueKind::String => out.write_str(value.as_str().unwrap_or_default()),
            ValueKind::Undefined => Ok(()),
            _ => {
                let mut s = String::new();
                py_str(value, &mut s)?;
                out.write_str(&s)
            }
        };
        r.map_err(|_| Error::from(ErrorKind::WriteFailure))
    });
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_filter("string", string);
    env.add_filter("indent", indent);
    env.add_filter(GEN_FILTER, generation_marker);
    env.add_filter(crate::forloop::ITER_FILTER, iterable);
    env
}
