//! Operators of the fast renderer: arithmetic, comparison, `~`, `in` and slicing, as minijinja
//! computes them for the value kinds that occur; unusual operand mixes give up.

use std::rc::Rc;

use super::ast::*;
use super::eval::{Vm, ITEM};
use super::value::{Bail, OrBail, Value, R};

impl<'a> Vm<'a> {
    pub(super) fn binop(&mut self, op: BinOp, l: Value<'a>, r: Value<'a>) -> R<Value<'a>> {
        use Value::{Float, Int};
        Ok(match (op, &l, &r) {
            (BinOp::Eq, ..) => Value::Bool(l.equals(&r)?),
            (BinOp::Ne, ..) => Value::Bool(!l.equals(&r)?),
            (BinOp::In, ..) => Value::Bool(self.contains(&r, &l)?),
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
                Value::Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            (BinOp::Add | BinOp::Concat, ..) => {
                let mut s = String::new();
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
                    return Ok(Float(a + b));
                }
                self.spend_bytes(s.len())?;
                Value::String(Rc::new(s))
            }
            (BinOp::Sub | BinOp::Mul | BinOp::Div, ..) => {
                let (a, b) = (as_f64(&l).or_bail()?, as_f64(&r).or_bail()?);
                match op {
                    BinOp::Sub => Float(a - b),
                    BinOp::Mul => Float(a * b),
                    _ if b != 0.0 => Float(a / b),
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
                let items = container.items()?;
                self.spend(items.len() as i64 * ITEM)?;
                for item in &items {
                    if item.equals(needle)? {
                        return Ok(true);
                    }
                }
                Ok(false)
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
        if step == 1 {
            let (s, e) = (start as usize, stop.max(start) as usize);
            match obj {
                Value::Arr(a) => return Ok(Value::Arr(&a[s..e])),
                Value::Msgs(a) => return Ok(Value::Msgs(&a[s..e])),
                _ => {}
            }
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
        Value::Int(i) => {
            use std::fmt::Write;
            let _ = write!(out, "{i}");
        }
        Value::Undefined => {}
        _ => return false,
    }
    true
}

fn as_f64(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}
