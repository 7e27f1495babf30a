//! Writing `{{ … }}` output: values and string concatenations go straight to the output, piece by
//! piece, without building the concatenated string first.

use super::ast::*;
use super::eval::{Vm, STEP};
use super::value::{Bail, OrBail, Value, R};

impl<'a> Vm<'a> {
    /// `{{ e }}`: string concatenations are written piece by piece instead of being built first.
    pub(super) fn emit(&mut self, e: &'a Expr, out: &mut String) -> R<()> {
        match e {
            Expr::Var(s) => {
                self.spend(STEP)?;
                return self.lookup_ref(*s).write_to(out);
            }
            Expr::StrConcat(_) | Expr::Filter(Filter::Trim, ..) | Expr::Method(Method::Strip, ..)
                if self.emit_str(e, out)? =>
            {
                return Ok(());
            }
            Expr::Bin(BinOp::Add | BinOp::Concat, ..) => {
                let mark = out.len();
                if self.emit_str(e, out)? {
                    return Ok(());
                }
                out.truncate(mark);
            }
            Expr::CallMacro(s, args) => return self.call_macro(*s, args, out),
            // `{{ message.content }}`: written from the request's JSON in place.
            Expr::Attr(obj, name) if matches!(**obj, Expr::Var(_)) => {
                let Expr::Var(s) = **obj else { return Err(Bail) };
                if let Some(done) = self.lookup_ref(s).with_attr(name, |v| v.write_to(out)) {
                    self.spend(STEP)?;
                    return done;
                }
            }
            Expr::Filter(Filter::ToJson, x, args) => {
                let v = self.eval(x)?;
                return self.tojson_into(&v, args, out);
            }
            _ => {}
        }
        let v = self.eval(e)?;
        v.write_to(out)
    }

    /// Writes a string concatenation piece by piece; every piece must be a string (else the sum
    /// fails in minijinja, and the fast path gives up).
    pub(super) fn emit_concat(&mut self, pieces: &'a [Piece], out: &mut String) -> R<()> {
        for p in pieces {
            let e = match p {
                Piece::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Piece::Attr(s, k, e) => match self.copy_attr(*s, k, out) {
                    Some(done) => {
                        if done? {
                            continue;
                        }
                        return Err(Bail);
                    }
                    None => e,
                },
                Piece::AttrTrim(s, k, e) => {
                    // A JSON string is borrowed from the request, so it outlives the lookup.
                    let text = |v: &Value<'a>| Ok(match *v {
                        Value::Str(t) => Some(t),
                        _ => None,
                    });
                    match self.lookup_ref(*s).with_attr(k, text) {
                        Some(Ok(Some(text))) => {
                            // Charged as `emit_str` charges `x.k|trim`: the lookup, then the bytes.
                            self.spend(STEP)?;
                            self.spend_bytes(text.len())?;
                            out.push_str(super::builtins::strip(text, None, true, true));
                            continue;
                        }
                        _ => e,
                    }
                }
                Piece::Expr(e) => e,
            };
            self.emit_piece(e, out)?;
        }
        Ok(())
    }

    fn emit_piece(&mut self, e: &'a Expr, out: &mut String) -> R<()> {
        if self.emit_str(e, out)? {
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Writes `e` if it evaluates to a string; `false` (with `out` partly written) if it does not.
    pub(super) fn emit_str(&mut self, e: &'a Expr, out: &mut String) -> R<bool> {
        match e {
            Expr::Str(s) => {
                out.push_str(s);
                Ok(true)
            }
            Expr::StrConcat(parts) => {
                for p in parts {
                    // Half the parts are literals: copied here rather than through a call.
                    match p {
                        Expr::Str(s) => out.push_str(s),
                        p if !self.emit_str(p, out)? => return Err(Bail),
                        _ => {}
                    }
                }
                Ok(true)
            }
            Expr::Bin(BinOp::Add, l, r) => Ok(self.emit_str(l, out)? && self.emit_str(r, out)?),
            Expr::Bin(BinOp::Concat, l, r) => Ok(self.emit_display(l, out)? && self.emit_display(r, out)?),
            Expr::CallMacro(s, args) => self.call_macro(*s, args, out).map(|_| true),
            Expr::Filter(Filter::ToJson, x, args) => {
                let v = self.eval(x)?;
                self.tojson_into(&v, args, out).map(|_| true)
            }
            // `x|trim` / `x.strip()` (no arguments) written straight from `x`: no new string.
            Expr::Filter(Filter::Trim, x, args) | Expr::Method(Method::Strip, x, args)
                if args.pos.is_empty() && args.kw.is_empty() =>
            {
                let v = self.eval(x)?;
                let Some(text) = v.as_str() else {
                    // `trim` (not `strip()`) of a list or map: see the filter.
                    if !matches!(e, Expr::Filter(..)) {
                        return Err(Bail);
                    }
                    let v = self.filter(Filter::Trim, v, args)?;
                    out.push_str(v.as_str().or_bail()?);
                    return Ok(true);
                };
                self.spend_bytes(text.len())?;
                out.push_str(super::builtins::strip(text, None, true, true));
                Ok(true)
            }
            Expr::Var(s) => {
                self.spend(STEP)?;
                Ok(match self.lookup_ref(*s).as_str() {
                    Some(text) => {
                        out.push_str(text);
                        true
                    }
                    None => false,
                })
            }
            // `message.content` in a concatenation: copied from the request's JSON in place.
            Expr::Attr(obj, name) if matches!(**obj, Expr::Var(_)) => {
                let Expr::Var(s) = **obj else { return Err(Bail) };
                match self.copy_attr(s, name, out) {
                    Some(done) => done,
                    None => self.emit_value(e, out),
                }
            }
            _ => self.emit_value(e, out),
        }
    }

    /// `x.k` of a JSON object copied from the request in place: whether it was a string (`None`:
    /// `x` is not a JSON object, ask the general path).
    #[inline(always)]
    fn copy_attr(&mut self, s: Sym, k: &str, out: &mut String) -> Option<R<bool>> {
        let copied = match self.lookup_ref(s).attr_json(k)? {
            Some(serde_json::Value::String(text)) => {
                out.push_str(text);
                true
            }
            _ => false,
        };
        Some(self.spend(STEP).map(|()| copied))
    }

    /// Writes `e` if it evaluates to a string; `false` if it does not.
    fn emit_value(&mut self, e: &'a Expr, out: &mut String) -> R<bool> {
        match self.eval(e)? {
            Value::Str(s) => {
                out.push_str(s);
                Ok(true)
            }
            Value::String(s) => {
                out.push_str(&s);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// One side of `~`: strings, integers and undefined print as minijinja's `Display` does.
    pub(super) fn emit_display(&mut self, e: &'a Expr, out: &mut String) -> R<bool> {
        if let Expr::Bin(BinOp::Add | BinOp::Concat, ..) = e {
            return self.emit_str(e, out);
        }
        let v = self.eval(e)?;
        Ok(super::ops::display(&v, out))
    }
}
