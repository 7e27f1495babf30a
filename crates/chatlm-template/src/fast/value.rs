//! The fast renderer's values: borrowed straight from the request's JSON and the program's
//! literals, so a render converts nothing up front.
//!
//! Every operation here mirrors what minijinja (with this crate's environment) does for the same
//! values, or gives up with [`Bail`] when the case is unusual enough not to be worth reproducing.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Map, Value as Json};

use crate::pyfmt::{push_int, py_float, repr_str};

/// "Render this with minijinja instead": the fast path met something it does not vouch for.
#[derive(Debug)]
pub(super) struct Bail;

pub(super) type R<T> = Result<T, Bail>;

/// `None` → [`Bail`].
pub(super) trait OrBail<T> {
    fn or_bail(self) -> R<T>;
}

impl<T> OrBail<T> for Option<T> {
    fn or_bail(self) -> R<T> {
        self.ok_or(Bail)
    }
}

/// A template value in two words, a tag and one integer or pointer word: a pair of scalars, which
/// `eval` returns in two registers. (A larger value, or one with a `bool` or `f64` field, is an
/// aggregate returned through memory, and the caller's wide reload of the callee's narrower stores
/// stalls store forwarding: that copy was the largest single cost of a render.) So borrowed texts
/// and slices are thin references to the `String`, `Vec` or slice that holds them.
#[derive(Debug, Clone)]
pub(super) enum Value<'a> {
    Undefined,
    None,
    Bool(Flag),
    Int(i64),
    Float(F64),
    /// A text of the request (string, key) or of the template (literal).
    Str(&'a String),
    /// A JSON array of the request. (A slice of one is a [`Value::List`].)
    Arr(&'a Vec<Json>),
    /// The messages: objects whose `null` keys transformers drops. By reference: the request's own
    /// messages, and copies of the few a request rewrites. (A slice of them is a [`Value::List`].)
    Msgs(&'a &'a [&'a Json]),
    /// A JSON object of the request.
    Obj(&'a Map<String, Json>),
    /// A message: its `null` keys are hidden. (Separate variants rather than a flag keep every
    /// variant's fields word-aligned, which makes moving values cheap.)
    Msg(&'a Map<String, Json>),
    /// A global function read as a variable (`strftime_now is defined`).
    Func,
    // The variants holding an `Rc` come last: dropping any other value is one comparison.
    /// A string built while rendering (an `Rc<String>` keeps the built buffer: no copy into a new
    /// allocation as `Rc<str>` would need).
    String(Rc<String>),
    List(Rc<Vec<Value<'a>>>),
    Tuple(Rc<Vec<Value<'a>>>),
    /// A dict built by the template, string keys in insertion order.
    Dict(Rc<Vec<(Value<'a>, Value<'a>)>>),
    Ns(Rc<RefCell<Vec<(&'a str, Value<'a>)>>>),
}

/// A `bool` as a word (see [`Value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flag(u64);

impl Flag {
    #[inline]
    pub(super) fn get(self) -> bool {
        self.0 != 0
    }
}

/// An `f64` as a word (see [`Value`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct F64(u64);

impl F64 {
    #[inline]
    pub(super) fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// The empty text, for defaults.
pub(super) static EMPTY: String = String::new();

/// A JSON value as a template value (`msg`: an object is a message).
#[inline]
pub(super) fn from_json(j: &Json, msg: bool) -> R<Value<'_>> {
    Ok(match j {
        Json::Null => Value::None,
        Json::Bool(b) => Value::bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None if n.is_f64() => Value::float(n.as_f64().or_bail()?),
            None => return Err(Bail),
        },
        Json::String(s) => Value::Str(s),
        Json::Array(a) => Value::Arr(a),
        Json::Object(o) if msg => Value::Msg(o),
        Json::Object(o) => Value::Obj(o),
    })
}

/// Objects up to this size are searched by a scan, which beats hashing the key.
const SCAN: usize = 16;

/// String equality for the short keys and literals of template data (`role`, `content`, `user`):
/// up to 16 bytes compared as two overlapping words, cheaper than a byte loop or a `memcmp` call.
#[inline]
pub(super) fn key_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // The words at the start and at the end cover every byte of a text of `W..=2 * W` bytes.
    fn words<const W: usize>(a: &[u8], b: &[u8]) -> bool {
        let word = |s: &[u8], at: usize| <[u8; W]>::try_from(&s[at..at + W]).ok();
        let last = a.len() - W;
        word(a, 0) == word(b, 0) && word(a, last) == word(b, last)
    }
    match n {
        0..=3 => a == b,
        4..=8 => words::<4>(a, b),
        9..=16 => words::<8>(a, b),
        _ => a == b,
    }
}

#[inline(always)]
fn obj_get<'a>(o: &'a Map<String, Json>, hide_null: bool, key: &str) -> Option<&'a Json> {
    let v = if o.len() <= SCAN { o.iter().find(|(k, _)| key_eq(k, key)).map(|(_, v)| v) } else { o.get(key) };
    v.filter(|v| !(hide_null && v.is_null()))
}

impl<'a> Value<'a> {
    #[inline]
    pub(super) fn bool(b: bool) -> Value<'a> {
        Value::Bool(Flag(u64::from(b)))
    }

    #[inline]
    pub(super) fn float(f: f64) -> Value<'a> {
        Value::Float(F64(f.to_bits()))
    }

    #[inline]
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn is_seq(&self) -> bool {
        matches!(self, Value::Arr(_) | Value::Msgs(_) | Value::List(_) | Value::Tuple(_))
    }

    pub(super) fn is_map(&self) -> bool {
        matches!(self, Value::Obj(_) | Value::Msg(_) | Value::Dict(_))
    }

    /// Python truthiness (minijinja's `is_true`).
    #[inline]
    pub(super) fn truthy(&self) -> R<bool> {
        Ok(match self {
            Value::Undefined | Value::None => false,
            Value::Bool(b) => b.get(),
            Value::Int(i) => *i != 0,
            Value::Float(f) => f.get() != 0.0,
            Value::Str(_) | Value::String(_) => !self.as_str().unwrap_or_default().is_empty(),
            Value::Ns(_) | Value::Func => return Err(Bail),
            _ => self.len()? > 0,
        })
    }

    /// Number of items of a sequence or map.
    pub(super) fn len(&self) -> R<usize> {
        Ok(match self {
            Value::Arr(a) => a.len(),
            Value::Msgs(a) => a.len(),
            Value::List(l) | Value::Tuple(l) => l.len(),
            Value::Msg(o) => o.values().filter(|v| !v.is_null()).count(),
            Value::Obj(o) => o.len(),
            Value::Dict(d) => d.len(),
            _ => return Err(Bail),
        })
    }

    /// `value.name` / `value["name"]` on a map or namespace; a missing key is undefined.
    #[inline]
    pub(super) fn get_attr(&self, name: &str) -> R<Value<'a>> {
        match self {
            Value::Obj(o) | Value::Msg(o) => match obj_get(o, matches!(self, Value::Msg(_)), name) {
                Some(j) => from_json(j, false),
                None => Ok(Value::Undefined),
            },
            Value::Dict(d) => Ok(d
                .iter()
                .find(|(k, _)| k.as_str().is_some_and(|k| key_eq(k, name)))
                .map_or(Value::Undefined, |(_, v)| v.clone())),
            Value::Ns(ns) => {
                Ok(ns.borrow().iter().find(|(k, _)| key_eq(k, name)).map_or(Value::Undefined, |(_, v)| v.clone()))
            }
            _ => Err(Bail),
        }
    }

    /// `self.name == lit` for a JSON object, as [`Value::get_attr`] then a comparison would say,
    /// without building the attribute's value (`None`: not a JSON object, ask the general path).
    #[inline(always)]
    pub(super) fn attr_eq_str(&self, name: &str, lit: &str) -> Option<R<bool>> {
        Some(match self.attr_json(name)? {
            Some(Json::String(s)) => Ok(key_eq(s, lit)),
            // Undefined compared with a string is minijinja's to report (or not).
            None => Err(Bail),
            // Other values are unequal to a string, once they convert at all.
            Some(j) => from_json(j, false).map(|_| false),
        })
    }

    /// `self.name` of a JSON object, read in place for `f` (`None`: not a JSON object).
    #[inline]
    pub(super) fn with_attr<T>(&self, name: &str, f: impl FnOnce(&Value<'a>) -> R<T>) -> Option<R<T>> {
        Some(match self.attr_json(name)? {
            // Strings, most attributes, without the general conversion (and the drop of its result).
            Some(Json::String(s)) => f(&Value::Str(s)),
            Some(j) => from_json(j, false).and_then(|v| f(&v)),
            None => f(&Value::Undefined),
        })
    }

    /// `self.name` of a JSON object as it is in the request: `None` when `self` is not a JSON
    /// object, `Some(None)` when the key is missing (or hidden: `null` in a message).
    #[inline(always)]
    pub(super) fn attr_json(&self, name: &str) -> Option<Option<&'a Json>> {
        let (Value::Obj(o) | Value::Msg(o)) = self else { return None };
        Some(obj_get(o, matches!(self, Value::Msg(_)), name))
    }

    /// Item `i` of a sequence, negative from the end; out of range is undefined.
    pub(super) fn index(&self, i: i64) -> R<Value<'a>> {
        let len = self.len()? as i64;
        let i = if i < 0 { i + len } else { i };
        if !(0..len).contains(&i) {
            return Ok(Value::Undefined);
        }
        let i = i as usize;
        match self {
            Value::Arr(a) => from_json(&a[i], false),
            Value::Msgs(a) => from_json(a[i], true),
            Value::List(l) | Value::Tuple(l) => Ok(l[i].clone()),
            _ => Err(Bail),
        }
    }

    /// `value[key]`.
    pub(super) fn get_item(&self, key: &Value<'a>) -> R<Value<'a>> {
        match (self, key) {
            (Value::Obj(_) | Value::Msg(_) | Value::Dict(_) | Value::Ns(_), k) => self.get_attr(k.as_str().or_bail()?),
            (_, Value::Int(i)) if self.is_seq() => self.index(*i),
            _ => Err(Bail),
        }
    }

    /// The items a `for` loop visits: sequence items, map keys; undefined is empty.
    pub(super) fn items(&self) -> R<Vec<Value<'a>>> {
        match self {
            Value::Undefined => Ok(Vec::new()),
            Value::Arr(a) => a.iter().map(|j| from_json(j, false)).collect(),
            Value::Msgs(a) => a.iter().map(|j| from_json(j, true)).collect(),
            Value::List(l) | Value::Tuple(l) => Ok(l.as_ref().clone()),
            Value::Obj(o) | Value::Msg(o) => {
                let hide = matches!(self, Value::Msg(_));
                Ok(o.iter().filter(|(_, v)| !(hide && v.is_null())).map(|(k, _)| Value::Str(k)).collect())
            }
            Value::Dict(d) => Ok(d.iter().map(|(k, _)| k.clone()).collect()),
            _ => Err(Bail),
        }
    }

    /// A map's (key, value) pairs in order.
    pub(super) fn pairs(&self) -> R<Vec<(Value<'a>, Value<'a>)>> {
        match self {
            Value::Obj(o) | Value::Msg(o) => {
                let hide = matches!(self, Value::Msg(_));
                o.iter()
                    .filter(|(_, v)| !(hide && v.is_null()))
                    .map(|(k, v)| Ok((Value::Str(k), from_json(v, false)?)))
                    .collect()
            }
            Value::Dict(d) => Ok(d.as_ref().clone()),
            _ => Err(Bail),
        }
    }

    /// Calls `f` on each item of a sequence, in order, without collecting them.
    pub(super) fn for_each_item(&self, mut f: impl FnMut(&Value<'a>) -> R<()>) -> R<()> {
        match self {
            Value::Arr(a) => a.iter().try_for_each(|j| f(&from_json(j, false)?)),
            Value::Msgs(a) => a.iter().try_for_each(|j| f(&from_json(j, true)?)),
            Value::List(l) | Value::Tuple(l) => l.iter().try_for_each(f),
            _ => Err(Bail),
        }
    }

    /// Calls `f` on each (key, value) of a map, in order, without collecting them.
    pub(super) fn for_each_pair(&self, mut f: impl FnMut(&str, &Value<'a>) -> R<()>) -> R<()> {
        match self {
            Value::Obj(o) | Value::Msg(o) => {
                let hide = matches!(self, Value::Msg(_));
                o.iter().filter(|(_, v)| !(hide && v.is_null())).try_for_each(|(k, v)| f(k, &from_json(v, false)?))
            }
            Value::Dict(d) => d.iter().try_for_each(|(k, v)| f(k.as_str().or_bail()?, v)),
            _ => Err(Bail),
        }
    }

    /// minijinja's `==` for the value kinds that occur; unusual mixes bail.
    pub(super) fn equals(&self, other: &Value<'a>) -> R<bool> {
        use Value::*;
        Ok(match (self, other) {
            (Undefined | Ns(_) | Func, _) | (_, Undefined | Ns(_) | Func) => return Err(Bail),
            (Bool(_), Int(_) | Float(_)) | (Int(_) | Float(_), Bool(_)) => return Err(Bail),
            (None, None) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Int(a), Float(b)) | (Float(b), Int(a)) => (*a as f64) == b.get(),
            (Float(a), Float(b)) => a.get() == b.get(),
            (Tuple(_), Arr(_) | Msgs(_) | List(_)) | (Arr(_) | Msgs(_) | List(_), Tuple(_)) => false,
            (Obj(a), Obj(b)) | (Msg(a), Msg(b)) if std::ptr::eq(*a, *b) => true,
            _ if self.as_str().is_some() || other.as_str().is_some() => self.as_str() == other.as_str(),
            _ if self.is_seq() && other.is_seq() => {
                let (a, b) = (self.items()?, other.items()?);
                if a.len() != b.len() {
                    return Ok(false);
                }
                for (x, y) in a.iter().zip(&b) {
                    if !x.equals(y)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ if self.is_map() && other.is_map() => {
                if self.len()? != other.len()? {
                    return Ok(false);
                }
                for (k, v) in self.pairs()? {
                    let w = other.get_attr(k.as_str().or_bail()?)?;
                    if matches!(w, Undefined) || !v.equals(&w)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }

    /// What the environment's formatter prints for `{{ value }}` (Python's `str()`).
    #[inline]
    pub(super) fn write_to(&self, out: &mut String) -> R<()> {
        match self {
            Value::Str(s) => out.push_str(s),
            Value::String(s) => out.push_str(s),
            Value::Undefined => {}
            _ => self.repr(out)?,
        }
        Ok(())
    }

    /// Python's `repr()` (as [`crate::pyfmt::py_repr`] writes it).
    pub(super) fn repr(&self, out: &mut String) -> R<()> {
        match self {
            Value::Undefined => {}
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if b.get() { "True" } else { "False" }),
            Value::Int(i) => push_int(*i, out),
            Value::Float(f) => out.push_str(&py_float(f.get(), false)),
            Value::Str(s) => repr_str(s, out),
            Value::String(s) => repr_str(s, out),
            Value::Arr(a) => repr_seq(a.iter().map(|j| (j, false)), out)?,
            Value::Msgs(a) => repr_seq(a.iter().map(|j| (*j, true)), out)?,
            Value::Obj(o) => repr_map(o, false, out)?,
            Value::Msg(o) => repr_map(o, true, out)?,
            Value::List(l) | Value::Tuple(l) => {
                out.push('[');
                for (i, item) in l.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.repr(out)?;
                }
                out.push(']');
            }
            Value::Dict(d) => {
                out.push('{');
                for (i, (k, v)) in d.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr_str(k.as_str().or_bail()?, out);
                    out.push_str(": ");
                    v.repr(out)?;
                }
                out.push('}');
            }
            Value::Ns(_) | Value::Func => return Err(Bail),
        }
        Ok(())
    }
}

/// `repr()` of a JSON value of the request, as [`Value::repr`] writes the value [`from_json`] makes
/// of it (`hide_null`: a message), but walked directly: printing a message or a tool call this way
/// saves a conversion and a closure call per node.
fn repr_json(j: &Json, hide_null: bool, out: &mut String) -> R<()> {
    match j {
        Json::Null => out.push_str("None"),
        Json::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Json::String(s) => repr_str(s, out),
        Json::Array(a) => repr_seq(a.iter().map(|j| (j, false)), out)?,
        Json::Object(o) => repr_map(o, hide_null, out)?,
        Json::Number(_) => from_json(j, false)?.repr(out)?,
    }
    Ok(())
}

/// An item of a request array or object: strings are written here rather than through a call of
/// [`repr_json`] each.
#[inline(always)]
fn repr_item(j: &Json, hide_null: bool, out: &mut String) -> R<()> {
    match j {
        Json::String(s) => {
            repr_str(s, out);
            Ok(())
        }
        _ => repr_json(j, hide_null, out),
    }
}

fn repr_seq<'j>(items: impl Iterator<Item = (&'j Json, bool)>, out: &mut String) -> R<()> {
    out.push('[');
    for (i, (item, hide_null)) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        repr_item(item, hide_null, out)?;
    }
    out.push(']');
    Ok(())
}

fn repr_map(o: &Map<String, Json>, hide_null: bool, out: &mut String) -> R<()> {
    out.push('{');
    let mut first = true;
    for (k, v) in o.iter().filter(|(_, v)| !(hide_null && v.is_null())) {
        if !std::mem::take(&mut first) {
            out.push_str(", ");
        }
        repr_str(k, out);
        out.push_str(": ");
        repr_item(v, false, out)?;
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_eq_is_string_equality() {
        // Every length class, and texts differing in their first, middle or last byte.
        let texts = "|a|ab|abc|role|rolf|content|contenu|assistant|assistanT|reasoning_content|reasoning_contenT|\
            tool_call_id|tool_call_ie|0123456789abcdef|0123456789abcdeF|x123456789abcdef|ç|çç";
        let texts: Vec<&str> = texts.split('|').collect();
        for &a in &texts {
            for &b in &texts {
                assert_eq!(key_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// Two words, so that `eval` returns its result in registers (see [`Value`]).
    #[test]
    fn a_value_is_two_words() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
        assert_eq!(std::mem::size_of::<R<Value>>(), 16);
    }
}
