//! Operators of the fast renderer: arithmetic, comparison, `~`, `in` and slicing, as minijinja
//! computes them for the value kinds that occur; unusual operand mixes give up.

use std::rc::Rc;

use super::ast::*;
use super::eval::{Vm, ITEM};
use super::value::{Bail, OrBail, Value, R};

impl<'a> Vm<'a> {
    /// A dict display `{k: v, ...}`: string keys, the last of equal keys wins.
    pub(super) fn dict(&mut self, items: &'a [(Expr, Expr)]) -> R<Value<'a>> {
        self.spend(items.len() as i64 * ITEM)?;
        let mut pairs: Vec<(Value<'a>, Value<'a>)> = Vec::with_capacity(items.len());
        for (k, v) in items {
            let k = self.eval(k)?;
            let v = self.eval(v)?;
            let key = k.as_str().or_bail()?;
            match pairs.iter_mut().find(|(x, _)| x.as_str() == Some(key)) {
                Some(slot) => slot.1 = v,
                None => pairs.push((k, v)),
            }
        }
        Ok(Value::Dict(Rc::new(pairs)))
    }

    pub(super) fn binop(&mut self, op: BinOp, l: Value<'a>, r: Value<'a>) -> R<Value<'a>> {
        use Value::Int;
        Ok(match (op, &l, &r) {
            (BinOp::Eq, ..) => Value::bool(l.equals(&r)?),
            (BinOp::Ne, ..) => Value::bool(!l.equals(&r)?),
            (BinOp::In, ..) => Value::bool(self.contains(&r, &l)?),
            (BinOp::Add, Int(a), Int(b)) => Int(a.checked_add(*b).or_bail()?),
            (BinOp::Sub, Int(a), Int(b)) => Int(a.checked_sub(*b).or_bail()?),
            (BinOp::Mul, Int(a), Int(b)) => Int(a.checked_mul(*b).or_bail()?),
            (BinOp::FloorDiv, Int(a), Int(b)) if *b > 0 && *a >= 0 => Int(a / b),
            (BinOp::Rem, Int(a), Int(b)) if *b > 0 && *a >= 0 => Int(a % b),
            (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, ..) => {
                let ord = match (&l, &r) {
                    (Int(a), Int(b)) => a.cmp(b),
                    _ => match (l.as_str(), r.as_str()) {
                        (Some(a), Some(b)) => a.cmp(b),
                        _ => {
                            let (a, b) = (as_f64(&l).or_bail()?, as_f64(&r).or_bail()?);
                            a.partial_cmp(&b).or_bail()?
                        }
                    },
                };
                Value::bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            (BinOp::Add | BinOp::Concat, ..) => {
                let mut s = String::with_capacity(super::eval::SCRATCH);
                let ok = if op == BinOp::Add {
                    match (l.as_str(), r.as_str()) {
                        (Some(a), Some(b)) => {
                            s.reserve(a.len() + b.len());
                            s.push_str(a);
                            s.push_str(b);
                            true
                        }
                        _ => false,
                    }
                } else {
                    display(&l, &mut s) && display(&r, &mut s)
                };
                if !ok {
                    let (a, b) = (as_f64(&l).or_bail()?, as_f64(&r).or_bail()?);
                    if op == BinOp::Concat || matches!((&l, &r), (Int(_), Int(_))) {
                        return Err(Bail);
                    }
                    return Ok(Value::float(a + b));
                }
                self.spend_bytes(s.len())?;
                Value::String(Rc::new(s))
            }
            (BinOp::Sub | BinOp::Mul | BinOp::Div, ..) => {
                let (a, b) = (as_f64(&l).or_bail()?, as_f64(&r).or_bail()?);
                match op {
                    BinOp::Sub => Value::float(a - b),
                    BinOp::Mul => Value::float(a * b),
                    _ if b != 0.0 => Value::float(a / b),
                    _ => return Err(Bail),
                }
            }
            _ => return Err(Bail),
        })
    }

    /// `needle in container`.
    pub(super) fn contains(&mut self, container: &Value<'a>, needle: &Value<'a>) -> R<bool> {
        match container {
            Value::Undefined => Ok(false),
            Value::Str(_) | Value::String(_) => {
                let hay = container.as_str().unwrap_or_default();
                self.spend_bytes(hay.len())?;
                Ok(hay.contains(needle.as_str().or_bail()?))
            }
            Value::Obj(_) | Value::Msg(_) | Value::Dict(_) => {
                Ok(!matches!(container.get_attr(needle.as_str().or_bail()?)?, Value::Undefined))
            }
            Value::Arr(_) | Value::Msgs(_) | Value::List(_) | Value::Tuple(_) => {
                self.spend(container.len()? as i64 * ITEM)?;
                // Visited in place (no list built); every item still converts, as when listing them.
                let mut found = false;
                container.for_each_item(|item| {
                    found = found || item.equals(needle)?;
                    Ok(())
                })?;
                Ok(found)
            }
            _ => Err(Bail),
        }
    }

    pub(super) fn slice(&mut self, obj: Value<'a>, [start, stop, step]: [Option<i64>; 3]) -> R<Value<'a>> {
        let len = obj.len()? as i64;
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(Bail);
        }
        // Python's slice.indices().
        let clamp = |i: i64, lo: i64, hi: i64| if i < 0 { (i + len).max(lo) } else { i.min(hi) };
        let (lo, hi) = if step > 0 { (0, len) } else { (-1, len - 1) };
        let start = start.map_or(if step > 0 { 0 } else { len - 1 }, |i| clamp(i, lo, hi));
        let stop = stop.map_or(if step > 0 { len } else { -1 }, |i| clamp(i, lo, hi));
        // All of a request's sequence is the sequence itself (values hold no borrowed part of one:
        // see `Value`).
        if step == 1 && start <= 0 && stop >= len && matches!(obj, Value::Arr(_) | Value::Msgs(_)) {
            return Ok(obj);
        }
        let mut picked = Vec::new();
        let mut i = start;
        while (step > 0 && i < stop) || (step < 0 && i > stop) {
            picked.push(obj.index(i)?);
            i += step;
        }
        self.spend(picked.len() as i64 * ITEM)?;
        Ok(Value::List(Rc::new(picked)))
    }
}

/// minijinja's `Display` of a value, for `~`: only the kinds that print the same as in Python.
pub(super) fn display(v: &Value<'_>, out: &mut String) -> bool {
    match v {
        Value::Str(s) => out.push_str(s),
        Value::String(s) => out.push_str(s),
        Value::Int(i) => crate::pyfmt::push_int(*i, out),
        Value::Undefined => {}
        _ => return false,
    }
    true
}

fn as_f64(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(f.get()),
        _ => None,
    }
}

/// minijinja's `Display` of a list or map, which filters expecting a string (`trim`) see when
/// given one: Rust's debug list/map syntax around minijinja's `Debug` of each item (not the
/// Python `repr` the crate prints for `{{ list }}`).
pub(super) fn container_display(v: &Value<'_>, out: &mut String) -> R<()> {
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push_str(", ");
        }
    };
    match v {
        // (A tuple prints as one in minijinja; not needed here.)
        Value::Arr(_) | Value::Msgs(_) | Value::List(_) => {
            out.push('[');
            v.for_each_item(|item| {
                sep(out);
                debug(item, out)
            })?;
            out.push(']');
        }
        Value::Obj(_) | Value::Msg(_) | Value::Dict(_) => {
            out.push('{');
            v.for_each_pair(|k, item| {
                sep(out);
                debug_str(k, out);
                out.push_str(": ");
                debug(item, out)
            })?;
            out.push('}');
        }
        _ => return Err(Bail),
    }
    Ok(())
}

/// minijinja's `Debug` of a value inside a container.
fn debug(v: &Value<'_>, out: &mut String) -> R<()> {
    use std::fmt::Write;
    match v {
        Value::None => out.push_str("None"),
        Value::Bool(b) => out.push_str(if b.get() { "True" } else { "False" }),
        Value::Int(i) => crate::pyfmt::push_int(*i, out),
        Value::Float(f) => {
            let _ = write!(out, "{:?}", f.get());
        }
        Value::Str(_) | Value::String(_) => debug_str(v.as_str().unwrap_or_default(), out),
        _ => return container_display(v, out),
    }
    Ok(())
}

/// minijinja's `Debug` of a string: Python-like quotes, escapes for quotes, backslashes, `\n \r \t`
/// and other control characters (`\xNN`, `\uNNNN`, `\UNNNNNNNN`).
fn debug_str(s: &str, out: &mut String) {
    use std::fmt::Write;
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '\'' if quote == '\'' => "\\'",
            '"' if quote == '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() => "",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        last = i + c.len_utf8();
        let code = c as u32;
        let _ = match escaped {
            "" if code <= 0xff => write!(out, "\\x{code:02x}"),
            "" if code <= 0xffff => write!(out, "\\u{code:04x}"),
            "" => write!(out, "\\U{code:08x}"),
            e => out.write_str(e),
        };
    }
    out.push_str(&s[last..]);
    out.push(quote);
}
