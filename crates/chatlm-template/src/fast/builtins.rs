//! Filters, tests, methods and functions of the fast renderer: the ones chat templates use, each
//! doing exactly what the crate's minijinja environment does (minijinja's builtins, the
//! `pycompat` string/dict methods, and the crate's own `tojson`, `string`, `indent`), bailing on
//! arguments or values outside the common cases.

use std::cell::RefCell;
use std::rc::Rc;

use super::ast::{Args, Filter, Func, Method, Test};
use super::eval::{Vm, ITEM};
use super::json::JsonDump;
use super::value::{Bail, OrBail, Value, R};

/// `sub` (a part of `whole`'s text) as a value: `whole` itself when it is all of it (nothing was
/// stripped, say), else a new string (a value holds no borrowed part of a text; see [`Value`]).
fn substr<'a>(whole: &Value<'a>, sub: &str) -> Value<'a> {
    if whole.as_str().is_some_and(|w| w.len() == sub.len()) {
        return whole.clone();
    }
    Value::String(Rc::new(sub.to_string()))
}

/// Evaluated positional arguments: most calls have none or one, which need no allocation.
enum ArgVals<'a> {
    None,
    One(Value<'a>),
    Many(Vec<Value<'a>>),
}

impl<'a> std::ops::Deref for ArgVals<'a> {
    type Target = [Value<'a>];

    fn deref(&self) -> &[Value<'a>] {
        match self {
            ArgVals::None => &[],
            ArgVals::One(v) => std::slice::from_ref(v),
            ArgVals::Many(v) => v,
        }
    }
}

impl<'a> Vm<'a> {
    fn args(&mut self, args: &'a Args) -> R<ArgVals<'a>> {
        Ok(match &*args.pos {
            [] => ArgVals::None,
            [a] => ArgVals::One(self.eval(a)?),
            many => ArgVals::Many(many.iter().map(|a| self.eval(a)).collect::<R<_>>()?),
        })
    }

    fn no_kwargs(args: &Args) -> R<()> {
        if args.kw.is_empty() {
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// The receiver of a string filter or method, charged for its bytes as minijinja does.
    fn input_str<'v>(&mut self, v: &'v Value<'a>) -> R<&'v str> {
        let s = v.as_str().or_bail()?;
        self.spend_bytes(s.len())?;
        Ok(s)
    }

    fn new_string(&mut self, s: String) -> R<Value<'a>> {
        self.spend_bytes(s.len())?;
        Ok(Value::String(Rc::new(s)))
    }

    pub(super) fn filter(&mut self, f: Filter, v: Value<'a>, args: &'a Args) -> R<Value<'a>> {
        if f == Filter::ToJson {
            return self.tojson(&v, args);
        }
        if f == Filter::Indent {
            return self.indent(&v, args);
        }
        Self::no_kwargs(args)?;
        let a = self.args(args)?;
        let arg_str = |i: usize| a.get(i).map(|x| x.as_str().or_bail()).transpose();
        Ok(match (f, a.len()) {
            (Filter::Trim, 0 | 1) => {
                let chars = arg_str(0)?;
                // `content|trim` of a list of content parts: minijinja trims its display.
                if v.is_seq() || v.is_map() {
                    let mut text = String::new();
                    super::ops::container_display(&v, &mut text)?;
                    self.spend_bytes(text.len())?;
                    return self.new_string(strip(&text, chars, true, true).to_string());
                }
                let s = self.input_str(&v)?;
                substr(&v, strip(s, chars, true, true))
            }
            (Filter::Length, 0) => match &v {
                Value::Undefined => Value::Int(0),
                Value::Str(_) | Value::String(_) => Value::Int(self.input_str(&v)?.chars().count() as i64),
                _ => Value::Int(v.len()? as i64),
            },
            (Filter::Items, 0) => match &v {
                Value::Undefined => Value::List(Rc::new(Vec::new())),
                _ => self.pairs_list(&v)?,
            },
            (Filter::Str, 0) => match &v {
                Value::Str(_) | Value::String(_) => v,
                _ => {
                    let mut s = String::new();
                    v.write_to(&mut s)?;
                    self.new_string(s)?
                }
            },
            (Filter::Join, 0 | 1) => {
                let sep = arg_str(0)?.unwrap_or("");
                let items = v.items()?;
                if !v.is_seq() {
                    return Err(Bail);
                }
                self.spend(items.len() as i64 * ITEM)?;
                let mut s = String::with_capacity(super::eval::SCRATCH);
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(sep);
                    }
                    match item {
                        Value::Int(n) => crate::pyfmt::push_int(*n, &mut s),
                        _ => s.push_str(item.as_str().or_bail()?),
                    }
                }
                self.new_string(s)?
            }
            (Filter::Select | Filter::Reject, 1..) => {
                let test = Test::from_name(a[0].as_str().or_bail()?).or_bail()?;
                self.select(&v, None, test, &a[1..], f == Filter::Reject)?
            }
            (Filter::SelectAttr | Filter::RejectAttr, 2..) => {
                let attr = a[0].as_str().or_bail()?;
                if attr.contains('.') {
                    return Err(Bail);
                }
                let test = Test::from_name(a[1].as_str().or_bail()?).or_bail()?;
                self.select(&v, Some(attr), test, &a[2..], f == Filter::RejectAttr)?
            }
            (Filter::List, 0) => match &v {
                Value::Undefined
                | Value::Arr(_)
                | Value::Msgs(_)
                | Value::List(_)
                | Value::Tuple(_)
                | Value::Obj(_)
                | Value::Msg(_)
                | Value::Dict(_) => {
                    let items = v.items()?;
                    self.spend(items.len() as i64 * ITEM)?;
                    Value::List(Rc::new(items))
                }
                _ => return Err(Bail),
            },
            (Filter::Default, 0..=2) => {
                let lax = match a.get(1) {
                    Some(Value::Bool(b)) => b.get(),
                    None => false,
                    Some(_) => return Err(Bail),
                };
                if matches!(v, Value::Undefined) || (lax && !v.truthy()?) {
                    a.first().cloned().unwrap_or(Value::Str(&super::value::EMPTY))
                } else {
                    v
                }
            }
            (Filter::First | Filter::Last, 0) => match &v {
                Value::Undefined => v,
                _ if v.is_seq() => {
                    let n = v.len()? as i64;
                    if n == 0 {
                        Value::Undefined
                    } else {
                        v.index(if f == Filter::First { 0 } else { n - 1 })?
                    }
                }
                _ => return Err(Bail),
            },
            (Filter::Upper | Filter::Lower, 0) => {
                let s = self.input_str(&v)?;
                let s = if f == Filter::Upper { s.to_uppercase() } else { s.to_lowercase() };
                self.new_string(s)?
            }
            (Filter::Title, 0) => {
                let s = title(self.input_str(&v)?)?;
                self.new_string(s)?
            }
            (Filter::Replace, 2) => {
                let (from, to) = (arg_str(0)?.or_bail()?, arg_str(1)?.or_bail()?);
                let s = self.input_str(&v)?;
                if from.is_empty() {
                    return Err(Bail);
                }
                let s = s.replace(from, to);
                self.new_string(s)?
            }
            (Filter::Safe, 0) if v.as_str().is_some() => v,
            (Filter::NotNone, 0) if !matches!(v, Value::None) => v,
            _ => return Err(Bail),
        })
    }

    fn pairs_list(&mut self, v: &Value<'a>) -> R<Value<'a>> {
        let pairs = v.pairs()?;
        self.spend(pairs.len() as i64 * ITEM * 2)?;
        Ok(Value::List(Rc::new(pairs.into_iter().map(|(k, v)| Value::Tuple(Rc::new(vec![k, v]))).collect())))
    }

    fn select(
        &mut self,
        v: &Value<'a>,
        attr: Option<&str>,
        test: Test,
        targs: &[Value<'a>],
        invert: bool,
    ) -> R<Value<'a>> {
        if !v.is_seq() && !matches!(v, Value::Undefined) {
            return Err(Bail);
        }
        let items = v.items()?;
        self.spend(items.len() as i64 * ITEM)?;
        let mut kept = Vec::new();
        for item in items {
            let probe = match attr {
                Some(a) => item.get_attr(a)?,
                None => item.clone(),
            };
            if self.test_values(test, &probe, targs)? != invert {
                kept.push(item);
            }
        }
        Ok(Value::List(Rc::new(kept)))
    }

    pub(super) fn test(&mut self, t: Test, v: &Value<'a>, args: &'a Args) -> R<bool> {
        Self::no_kwargs(args)?;
        let a = self.args(args)?;
        self.test_values(t, v, &a)
    }

    fn test_values(&mut self, t: Test, v: &Value<'a>, a: &[Value<'a>]) -> R<bool> {
        let one = || match a {
            [x] => Ok(x),
            _ => Err(Bail),
        };
        Ok(match t {
            Test::Eq => v.equals(one()?)?,
            Test::Ne => !v.equals(one()?)?,
            Test::In => {
                let container = one()?.clone();
                self.contains(&container, v)?
            }
            _ if a.is_empty() => kind_test(t, v)?,
            _ => return Err(Bail),
        })
    }
}

/// The tests that only look at the value's kind (no arguments).
pub(super) fn kind_test(t: Test, v: &Value<'_>) -> R<bool> {
    {
        Ok(match t {
            Test::Defined => !matches!(v, Value::Undefined),
            Test::Undefined => matches!(v, Value::Undefined),
            Test::None => matches!(v, Value::None),
            Test::Str => v.as_str().is_some(),
            Test::Number => matches!(v, Value::Int(_) | Value::Float(_) | Value::Bool(_)),
            Test::Integer => match v {
                Value::Bool(_) => return Err(Bail),
                _ => matches!(v, Value::Int(_)),
            },
            Test::Float => matches!(v, Value::Float(_)),
            Test::Boolean => matches!(v, Value::Bool(_)),
            Test::True => matches!(v, Value::Bool(b) if b.get()),
            Test::False => matches!(v, Value::Bool(b) if !b.get()),
            Test::Mapping => match v {
                Value::Ns(_) | Value::Func => return Err(Bail),
                _ => v.is_map(),
            },
            Test::Iterable => match v {
                Value::Undefined | Value::None | Value::Ns(_) | Value::Func => return Err(Bail),
                _ => v.as_str().is_some() || v.is_seq() || v.is_map(),
            },
            Test::Sequence => matches!(v, Value::Undefined) || v.is_seq(),
            Test::Odd | Test::Even => match v {
                Value::Int(i) => (i % 2 != 0) == (t == Test::Odd),
                _ => return Err(Bail),
            },
            Test::Eq | Test::Ne | Test::In => return Err(Bail),
        })
    }
}

impl<'a> Vm<'a> {
    pub(super) fn method(&mut self, m: Method, v: Value<'a>, args: &'a Args) -> R<Value<'a>> {
        Self::no_kwargs(args)?;
        let a = self.args(args)?;
        let opt_str = |i: usize| match a.get(i) {
            None | Some(Value::None) => Ok(None),
            Some(x) => x.as_str().map(Some).or_bail(),
        };
        if v.is_map() {
            return Ok(match (m, a.len()) {
                (Method::Items, 0) => self.pairs_list(&v)?,
                (Method::Keys, 0) => Value::List(Rc::new(v.items()?)),
                (Method::Values, 0) => Value::List(Rc::new(v.pairs()?.into_iter().map(|p| p.1).collect())),
                (Method::Get, 1 | 2) => match v.get_attr(a[0].as_str().or_bail()?)? {
                    Value::Undefined => a.get(1).cloned().unwrap_or(Value::None),
                    found => found,
                },
                _ => return Err(Bail),
            });
        }
        let s = self.input_str(&v)?;
        Ok(match (m, a.len()) {
            (Method::Strip | Method::LStrip | Method::RStrip, 0 | 1) => {
                let chars = opt_str(0)?;
                substr(&v, strip(s, chars, m != Method::RStrip, m != Method::LStrip))
            }
            (Method::Split, 0 | 1) => {
                let parts: Vec<&str> = match opt_str(0)? {
                    None => s.split_whitespace().collect(),
                    Some("") => return Err(Bail),
                    Some(sep) => s.split(sep).collect(),
                };
                self.spend(parts.len() as i64 * ITEM)?;
                Value::List(Rc::new(parts.into_iter().map(|p| substr(&v, p)).collect()))
            }
            (Method::StartsWith | Method::EndsWith, 1) => {
                let hit = |p: &str| {
                    if m == Method::StartsWith {
                        s.starts_with(p)
                    } else {
                        s.ends_with(p)
                    }
                };
                match &a[0] {
                    x if x.as_str().is_some() => Value::bool(hit(x.as_str().unwrap_or_default())),
                    x if x.is_seq() => {
                        let mut any = false;
                        for p in x.items()? {
                            any |= hit(p.as_str().or_bail()?);
                        }
                        Value::bool(any)
                    }
                    _ => return Err(Bail),
                }
            }
            (Method::Upper | Method::Lower, 0) => {
                let s = if m == Method::Upper { s.to_uppercase() } else { s.to_lowercase() };
                self.new_string(s)?
            }
            (Method::Title, 0) => {
                let s = title(s)?;
                self.new_string(s)?
            }
            (Method::Replace, 2) => {
                let (from, to) = (opt_str(0)?.or_bail()?, opt_str(1)?.or_bail()?);
                if from.is_empty() {
                    return Err(Bail);
                }
                let s = s.replace(from, to);
                self.new_string(s)?
            }
            _ => return Err(Bail),
        })
    }

    pub(super) fn call(&mut self, f: Func, args: &'a Args) -> R<Value<'a>> {
        match f {
            Func::RaiseException => Err(Bail),
            Func::StrftimeNow => {
                Self::no_kwargs(args)?;
                let a = self.args(args)?;
                let [fmt] = &*a else {
                    return Err(Bail);
                };
                let now = self.now.unwrap_or_else(crate::clock::DateTime::now_utc);
                let s = now.strftime(fmt.as_str().or_bail()?);
                self.new_string(s)
            }
            Func::Namespace => {
                if !args.pos.is_empty() {
                    return Err(Bail);
                }
                let mut attrs: Vec<(&'a str, Value<'a>)> = Vec::with_capacity(args.kw.len());
                for (k, e) in &args.kw {
                    let v = self.eval(e)?;
                    attrs.push((k, v));
                }
                Ok(Value::Ns(Rc::new(RefCell::new(attrs))))
            }
        }
    }

    /// The crate's `tojson(ensure_ascii, indent, separators, sort_keys)` (Python's `json.dumps`).
    fn tojson(&mut self, v: &Value<'a>, args: &'a Args) -> R<Value<'a>> {
        let mut out = String::with_capacity(super::eval::SCRATCH);
        self.tojson_into(v, args, &mut out)?;
        Ok(Value::String(Rc::new(out)))
    }

    /// Python-style binding of a call's arguments to the parameters `names`: positional ones in
    /// order, then keywords by name; too many or unknown ones hand the render to minijinja.
    fn bind_args<const N: usize>(&mut self, args: &'a Args, names: [&str; N]) -> R<[Option<Value<'a>>; N]> {
        let mut slots: [Option<Value<'a>>; N] = std::array::from_fn(|_| None);
        if args.pos.len() > N {
            return Err(Bail);
        }
        for (i, e) in args.pos.iter().enumerate() {
            slots[i] = Some(self.eval(e)?);
        }
        for (k, e) in &args.kw {
            let i = names.iter().position(|n| **n == **k).or_bail()?;
            slots[i] = Some(self.eval(e)?);
        }
        Ok(slots)
    }

    /// `tojson`, appended to `out` (charged for what it writes).
    pub(super) fn tojson_into(&mut self, v: &Value<'a>, args: &'a Args, out: &mut String) -> R<()> {
        // `x|tojson`, by far the commonest call: the default options, no arguments to match.
        if args.pos.is_empty() && args.kw.is_empty() {
            let start = out.len();
            JsonDump::new(false, None, ", ", ": ", false).write(v, 0, out)?;
            return self.spend_bytes(out.len() - start);
        }
        let [ensure_ascii, indent, separators, sort_keys] =
            self.bind_args(args, ["ensure_ascii", "indent", "separators", "sort_keys"])?;
        let flag = |x: Option<Value<'a>>| x.map_or(Ok(false), |x| x.truthy());
        let indent = match indent {
            None | Some(Value::None) => None,
            Some(Value::Int(n)) => Some(" ".repeat(n.clamp(0, 64) as usize)),
            Some(x) => Some(x.as_str().or_bail()?.to_string()),
        };
        let seps = match separators {
            None | Some(Value::None) => None,
            Some(x) => {
                let items = x.items()?;
                match items.as_slice() {
                    [a, b] => Some((a.as_str().or_bail()?.to_string(), b.as_str().or_bail()?.to_string())),
                    _ => return Err(Bail),
                }
            }
        };
        let (item_sep, key_sep) = match &seps {
            Some((i, k)) => (i.as_str(), k.as_str()),
            None if indent.is_some() => (",", ": "),
            None => (", ", ": "),
        };
        let w = JsonDump::new(flag(ensure_ascii)?, indent.as_deref(), item_sep, key_sep, flag(sort_keys)?);
        let start = out.len();
        w.write(v, 0, out)?;
        self.spend_bytes(out.len() - start)
    }

    /// The crate's `indent(width=4, first=False, blank=False)`.
    fn indent(&mut self, v: &Value<'a>, args: &'a Args) -> R<Value<'a>> {
        let [width, first, blank] = self.bind_args(args, ["width", "first", "blank"])?;
        let flag = |x: Option<Value<'a>>| match x {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b.get()),
            Some(_) => Err(Bail),
        };
        let indention = match width {
            None => "    ".to_string(),
            Some(Value::Int(n)) => " ".repeat(n.clamp(0, 1024) as usize),
            Some(x) => x.as_str().or_bail()?.to_string(),
        };
        let mut text = String::new();
        v.write_to(&mut text)?;
        self.spend_bytes(text.len())?;
        let s = crate::env::indent_text(&text, &indention, flag(first)?, flag(blank)?);
        self.new_string(s)
    }
}

/// minijinja's `title` for ASCII text (its Unicode case rules are left to it).
fn title(s: &str) -> R<String> {
    if !s.is_ascii() {
        return Err(Bail);
    }
    let mut out = String::with_capacity(s.len());
    let mut capitalize = true;
    for c in s.chars() {
        if matches!(c, '-' | '(' | '{' | '[' | '<') || c.is_whitespace() {
            out.push(c);
            capitalize = true;
        } else if capitalize {
            out.push(c.to_ascii_uppercase());
            capitalize = false;
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    Ok(out)
}

/// minijinja's `trim` / pycompat's `strip`: Unicode whitespace, or the given characters.
pub(super) fn strip<'s>(s: &'s str, chars: Option<&str>, start: bool, end: bool) -> &'s str {
    match chars {
        None => match (start, end) {
            (true, true) => s.trim(),
            (true, false) => s.trim_start(),
            _ => s.trim_end(),
        },
        Some(chars) => {
            let set = |c: char| chars.contains(c);
            match (start, end) {
                (true, true) => s.trim_matches(set),
                (true, false) => s.trim_start_matches(set),
                _ => s.trim_end_matches(set),
            }
        }
    }
}
