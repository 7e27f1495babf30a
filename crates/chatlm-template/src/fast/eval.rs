//! The interpreter: statements and expressions over [`Value`]s, scoped like minijinja (a frame per
//! `for` loop that lives for the whole loop, a frame per macro call, none for `if` or set blocks).
//!
//! Work is bounded: every statement, expression, loop item and produced byte costs fuel, priced
//! well above what minijinja charges for the same work, so the fast path runs out first and hands
//! the render to minijinja, which reports the limit exactly as it always does.

use std::rc::Rc;

use super::ast::*;
use super::value::{from_json, Bail, OrBail, Value, R};
use super::Program;
use crate::clock::DateTime;

/// Fuel prices, in minijinja's units (64 per instruction, 1 per byte, 32 per visited item): one
/// node here is at most a few instructions there, every byte and item is priced far higher.
const STEP: i64 = 8 * 64;
pub(super) const BYTE: i64 = 32;
pub(super) const ITEM: i64 = 64;

/// Macro nesting the fast path allows (the native stack grows with it); deeper goes to minijinja.
const MAX_MACRO_DEPTH: usize = 48;

/// The name of a macro argument while the call's arguments are being evaluated.
const PENDING: Sym = Sym::MAX;

/// Loop nesting the fast path allows.
const MAX_LOOPS: usize = 8;

pub(super) struct Vm<'a> {
    pub prog: &'a Program,
    pub globals: Vec<Value<'a>>,
    locals: Vec<(Sym, Value<'a>)>,
    /// Start of the current frame in `locals` (where `set` stores).
    frame: usize,
    /// Where lookups stop (a macro body does not see its caller's variables).
    floor: usize,
    /// (index, length) of the enclosing loops, innermost at `depth - 1` (no allocation: deeper
    /// nesting than this is left to minijinja).
    loops: [(usize, usize); MAX_LOOPS],
    loop_depth: usize,
    /// Which macros have been defined so far (by number; templates with more are not compiled).
    macro_defined: u64,
    /// Literal dicts already built this render, by expression address (they are immutable).
    consts: Vec<(*const Expr, Value<'a>)>,
    /// Byte ranges of the output written inside `{% generation %}` bodies, as they close.
    pub spans: Vec<std::ops::Range<usize>>,
    /// Nesting of captures (set blocks, macro bodies), whose text may never reach the output.
    capturing: usize,
    fuel: i64,
    depth: usize,
    max_depth: usize,
    max_out: usize,
    pub now: Option<DateTime>,
}

impl<'a> Vm<'a> {
    pub(super) fn new(
        prog: &'a Program,
        globals: Vec<Value<'a>>,
        fuel: u64,
        recursion: usize,
        max_out: usize,
    ) -> Vm<'a> {
        Vm {
            prog,
            globals,
            locals: Vec::with_capacity(16),
            frame: 0,
            floor: 0,
            loops: [(0, 0); MAX_LOOPS],
            loop_depth: 0,
            macro_defined: 0,
            consts: Vec::new(),
            spans: Vec::new(),
            capturing: 0,
            fuel: i64::try_from(fuel.saturating_mul(64)).unwrap_or(i64::MAX),
            depth: 0,
            max_depth: recursion.min(MAX_MACRO_DEPTH),
            max_out,
            now: None,
        }
    }

    pub(super) fn spend(&mut self, units: i64) -> R<()> {
        self.fuel -= units;
        if self.fuel < 0 {
            Err(Bail)
        } else {
            Ok(())
        }
    }

    /// Charges for a string (or output) of `len` bytes.
    pub(super) fn spend_bytes(&mut self, len: usize) -> R<()> {
        self.spend((len as i64).saturating_mul(BYTE))
    }

    fn lookup(&self, s: Sym) -> Value<'a> {
        self.lookup_ref(s).clone()
    }

    #[inline]
    fn lookup_ref(&self, s: Sym) -> &Value<'a> {
        for (k, v) in self.locals[self.floor..].iter().rev() {
            if *k == s {
                return v;
            }
        }
        &self.globals[s as usize]
    }

    #[inline]
    fn set(&mut self, s: Sym, v: Value<'a>) {
        match self.locals[self.frame..].iter_mut().rev().find(|(k, _)| *k == s) {
            Some(slot) => slot.1 = v,
            None => self.locals.push((s, v)),
        }
    }

    fn bind(&mut self, t: &Target, v: Value<'a>) -> R<()> {
        match t {
            Target::Name(s) => self.set(*s, v),
            Target::Tuple(names) => {
                let items = if v.is_seq() {
                    v.items()?
                } else {
                    return Err(Bail);
                };
                if items.len() != names.len() {
                    return Err(Bail);
                }
                for (s, item) in names.iter().zip(items) {
                    self.set(*s, item);
                }
            }
        }
        Ok(())
    }

    pub(super) fn exec(&mut self, stmts: &'a [Stmt], out: &mut String) -> R<()> {
        for stmt in stmts {
            self.spend(STEP)?;
            if out.len() > self.max_out {
                return Err(Bail);
            }
            match stmt {
                Stmt::Text(t) => out.push_str(t),
                Stmt::Emit(e) => self.emit(e, out)?,
                Stmt::If(branches, else_body) => {
                    let mut body = else_body;
                    for (cond, b) in branches {
                        if self.truthy(cond)? {
                            body = b;
                            break;
                        }
                    }
                    self.exec(body, out)?;
                }
                Stmt::For(f) => self.for_loop(f, out)?,
                Stmt::Set(t, e) => {
                    let v = self.eval(e)?;
                    self.bind(t, v)?;
                }
                Stmt::SetAttr(ns, attr, e) => {
                    let v = self.eval(e)?;
                    let Value::Ns(ns) = self.lookup(*ns) else {
                        return Err(Bail);
                    };
                    let mut ns = ns.borrow_mut();
                    match ns.iter_mut().find(|(k, _)| *k == &**attr) {
                        Some(slot) => slot.1 = v,
                        None => ns.push((attr, v)),
                    }
                }
                Stmt::SetBlock(s, body) => {
                    let mut buf = String::new();
                    self.capturing += 1;
                    self.exec(body, &mut buf)?;
                    self.capturing -= 1;
                    self.spend_bytes(buf.len())?;
                    self.set(*s, Value::String(Rc::new(buf)));
                }
                Stmt::Macro(i) => self.macro_defined |= 1 << i,
                // The span is recorded directly (minijinja's path marks the text and finds the
                // marks afterwards); inside a capture, where the text goes is minijinja's business.
                Stmt::Generation(body) => {
                    if self.capturing > 0 {
                        return Err(Bail);
                    }
                    let start = out.len();
                    self.exec(body, out)?;
                    self.spans.push(start..out.len());
                }
            }
        }
        Ok(())
    }

    fn for_loop(&mut self, f: &'a ForLoop, out: &mut String) -> R<()> {
        let (mut items, len) = match (&f.filter, self.pairs_source(f)) {
            (None, Some(map)) => {
                let map = self.eval(map)?;
                let len = map.len()?;
                (LoopItems::pairs(map)?, len)
            }
            (None, None) => {
                let v = self.eval(&f.iter)?;
                match v {
                    Value::Arr(a) => (LoopItems::Arr(a.iter(), false), a.len()),
                    Value::Msgs(a) => (LoopItems::Arr(a.iter(), true), a.len()),
                    Value::List(l) | Value::Tuple(l) => {
                        let len = l.len();
                        (LoopItems::Shared(l, 0), len)
                    }
                    v => {
                        let items = v.items()?;
                        let len = items.len();
                        (LoopItems::Vals(items.into_iter()), len)
                    }
                }
            }
            (Some(_), _) => {
                let items = self.filtered_items(f)?;
                let len = items.len();
                (LoopItems::Vals(items.into_iter()), len)
            }
        };
        self.spend(len as i64 * ITEM)?;
        let (saved_frame, base) = (self.frame, self.locals.len());
        self.frame = base;
        if self.loop_depth == MAX_LOOPS {
            return Err(Bail);
        }
        let level = self.loop_depth;
        self.loops[level] = (0, len);
        self.loop_depth += 1;
        let mut i = 0;
        while let Some((a, b)) = items.next()? {
            self.spend(STEP)?;
            self.loops[level].0 = i;
            match (b, &f.target) {
                (None, t) => self.bind(t, a)?,
                (Some(b), Target::Tuple(names)) if names.len() == 2 => {
                    self.set(names[0], a);
                    self.set(names[1], b);
                }
                _ => return Err(Bail),
            }
            self.exec(&f.body, out)?;
            i += 1;
        }
        self.loop_depth -= 1;
        self.locals.truncate(base);
        self.frame = saved_frame;
        if len == 0 {
            self.exec(&f.else_body, out)?;
        }
        Ok(())
    }

    /// For `for k, v in m|items` (or `m.items()`), the map expression: its pairs are visited
    /// without building a tuple each (the `_it` check around it cannot fail: `items` gives a list).
    fn pairs_source(&self, f: &'a ForLoop) -> Option<&'a Expr> {
        let Target::Tuple(names) = &f.target else { return None };
        let mut e = &f.iter;
        if let Expr::Filter(Filter::NotNone, inner, args) = e {
            if args.pos.is_empty() && args.kw.is_empty() {
                e = inner;
            }
        }
        match e {
            Expr::Filter(Filter::Items, map, args) | Expr::Method(Method::Items, map, args)
                if names.len() == 2 && args.pos.is_empty() && args.kw.is_empty() =>
            {
                Some(map)
            }
            _ => None,
        }
    }

    /// The items of a loop with an `if` filter: evaluated with the target bound, outside the loop.
    fn filtered_items(&mut self, f: &'a ForLoop) -> R<Vec<Value<'a>>> {
        let items = self.eval(&f.iter)?.items()?;
        self.spend(items.len() as i64 * ITEM)?;
        let (saved_frame, base) = (self.frame, self.locals.len());
        self.frame = base;
        let mut kept = Vec::with_capacity(items.len());
        if let Some(cond) = &f.filter {
            for item in items {
                self.bind(&f.target, item.clone())?;
                if self.eval(cond)?.truthy()? {
                    kept.push(item);
                }
            }
        }
        self.locals.truncate(base);
        self.frame = saved_frame;
        Ok(kept)
    }

    /// Whether `e` is true, reading a plain variable in place.
    fn truthy(&mut self, e: &'a Expr) -> R<bool> {
        match e {
            Expr::Var(s) => {
                self.spend(STEP)?;
                self.lookup_ref(*s).truthy()
            }
            _ => self.eval(e)?.truthy(),
        }
    }

    /// `{{ e }}`: string concatenations are written piece by piece instead of being built first.
    fn emit(&mut self, e: &'a Expr, out: &mut String) -> R<()> {
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
            Expr::Filter(Filter::ToJson, x, args) => {
                let v = self.eval(x)?;
                return self.tojson_into(&v, args, out);
            }
            _ => {}
        }
        let v = self.eval(e)?;
        v.write_to(out)
    }

    /// Writes `e` if it evaluates to a string; `false` (with `out` partly written) if it does not.
    fn emit_str(&mut self, e: &'a Expr, out: &mut String) -> R<bool> {
        match e {
            Expr::Str(s) => {
                out.push_str(s);
                Ok(true)
            }
            Expr::StrConcat(parts) => {
                for p in parts {
                    if !self.emit_str(p, out)? {
                        return Err(Bail);
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
                let Some(text) = v.as_str() else { return Err(Bail) };
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
            _ => match self.eval(e)? {
                Value::Str(s) => {
                    out.push_str(s);
                    Ok(true)
                }
                Value::String(s) => {
                    out.push_str(&s);
                    Ok(true)
                }
                _ => Ok(false),
            },
        }
    }

    /// One side of `~`: strings, integers and undefined print as minijinja's `Display` does.
    fn emit_display(&mut self, e: &'a Expr, out: &mut String) -> R<bool> {
        if let Expr::Bin(BinOp::Add | BinOp::Concat, ..) = e {
            return self.emit_str(e, out);
        }
        let v = self.eval(e)?;
        Ok(display(&v, out))
    }

    /// Evaluates an expression. The commonest nodes are handled here, small enough to inline into
    /// callers; the rest in [`Vm::eval_node`].
    #[inline]
    pub(super) fn eval(&mut self, e: &'a Expr) -> R<Value<'a>> {
        self.spend(STEP)?;
        match e {
            Expr::Str(s) => Ok(Value::Str(s)),
            Expr::Var(s) => Ok(self.lookup(*s)),
            _ => self.eval_node(e),
        }
    }

    #[inline(never)]
    fn eval_node(&mut self, e: &'a Expr) -> R<Value<'a>> {
        Ok(match e {
            Expr::Str(s) => Value::Str(s),
            Expr::Int(i) => Value::Int(*i),
            Expr::Float(f) => Value::Float(*f),
            Expr::Bool(b) => Value::Bool(*b),
            Expr::None => Value::None,
            Expr::Var(s) => self.lookup(*s),
            Expr::LoopAttr(a) => {
                let (i, len) = *self.loops[..self.loop_depth].last().or_bail()?;
                match a {
                    LoopAttr::Index => Value::Int(i as i64 + 1),
                    LoopAttr::Index0 => Value::Int(i as i64),
                    LoopAttr::RevIndex => Value::Int((len - i) as i64),
                    LoopAttr::RevIndex0 => Value::Int((len - i - 1) as i64),
                    LoopAttr::First => Value::Bool(i == 0),
                    LoopAttr::Last => Value::Bool(i + 1 == len),
                    LoopAttr::Length => Value::Int(len as i64),
                }
            }
            // The common `name.attr` reads the variable in place.
            Expr::Attr(obj, name) => match &**obj {
                Expr::Var(s) => self.lookup_ref(*s).get_attr(name)?,
                obj => self.eval(obj)?.get_attr(name)?,
            },
            Expr::Item(obj, key) => {
                let obj = self.eval(obj)?;
                let key = self.eval(key)?;
                obj.get_item(&key)?
            }
            Expr::Slice(bounds, obj) => {
                let obj = self.eval(obj)?;
                let mut b = [None, None, None];
                for (slot, e) in b.iter_mut().zip(bounds.iter()) {
                    if let Some(e) = e {
                        *slot = match self.eval(e)? {
                            Value::Int(i) => Some(i),
                            Value::None => None,
                            _ => return Err(Bail),
                        };
                    }
                }
                self.slice(obj, b)?
            }
            Expr::List(items) | Expr::Tuple(items) => {
                self.spend(items.len() as i64 * ITEM)?;
                let vals = items.iter().map(|i| self.eval(i)).collect::<R<Vec<_>>>()?;
                if matches!(e, Expr::List(_)) {
                    Value::List(Rc::new(vals))
                } else {
                    Value::Tuple(Rc::new(vals))
                }
            }
            // A dict of literals (a lookup table in a macro, say) is built once per render.
            Expr::Dict(items) if items.iter().all(|(k, v)| is_literal(k) && is_literal(v)) => {
                let at: *const Expr = e;
                match self.consts.iter().find(|(p, _)| *p == at) {
                    Some((_, v)) => v.clone(),
                    None => {
                        let v = self.dict(items)?;
                        self.consts.push((at, v.clone()));
                        v
                    }
                }
            }
            Expr::Dict(items) => self.dict(items)?,
            Expr::StrConcat(_) => {
                let mut s = String::new();
                self.emit_str(e, &mut s)?;
                self.spend_bytes(s.len())?;
                Value::String(Rc::new(s))
            }
            Expr::Not(x) => Value::Bool(!self.truthy(x)?),
            Expr::Neg(x) => match self.eval(x)? {
                Value::Int(i) => Value::Int(i.checked_neg().or_bail()?),
                Value::Float(f) => Value::Float(-f),
                _ => return Err(Bail),
            },
            Expr::Bin(BinOp::And, l, r) => {
                let l = self.eval(l)?;
                if l.truthy()? {
                    self.eval(r)?
                } else {
                    l
                }
            }
            Expr::Bin(BinOp::Or, l, r) => {
                let l = self.eval(l)?;
                if l.truthy()? {
                    l
                } else {
                    self.eval(r)?
                }
            }
            // `x == "literal"`, the most common comparison, without building the literal.
            Expr::Bin(op @ (BinOp::Eq | BinOp::Ne), l, r) if matches!(**r, Expr::Str(_)) => {
                let Expr::Str(lit) = &**r else { return Err(Bail) };
                let equal = match self.eval(l)? {
                    Value::Str(s) => super::value::key_eq(s, lit),
                    Value::String(s) => super::value::key_eq(&s, lit),
                    Value::Undefined | Value::Ns(_) | Value::Func => return Err(Bail),
                    _ => false,
                };
                Value::Bool(equal == (*op == BinOp::Eq))
            }
            Expr::Bin(op, l, r) => {
                let l = self.eval(l)?;
                let r = self.eval(r)?;
                self.binop(*op, l, r)?
            }
            Expr::Cond(c) => {
                let (cond, yes, no) = &**c;
                if self.eval(cond)?.truthy()? {
                    self.eval(yes)?
                } else {
                    match no {
                        Some(no) => self.eval(no)?,
                        None => Value::Undefined,
                    }
                }
            }
            Expr::Filter(f, x, args) => {
                let v = self.eval(x)?;
                self.filter(*f, v, args)?
            }
            // Argument-free tests of a variable look at it in place.
            Expr::Test(t, x, args) if args.pos.is_empty() && args.kw.is_empty() && matches!(**x, Expr::Var(_)) => {
                let Expr::Var(s) = **x else { return Err(Bail) };
                Value::Bool(super::builtins::kind_test(*t, self.lookup_ref(s))?)
            }
            Expr::Test(t, x, args) => {
                let v = self.eval(x)?;
                Value::Bool(self.test(*t, &v, args)?)
            }
            Expr::Method(m, x, args) => {
                let v = self.eval(x)?;
                self.method(*m, v, args)?
            }
            Expr::Call(f, args) => self.call(*f, args)?,
            Expr::CallMacro(s, args) => {
                let mut buf = String::new();
                self.call_macro(*s, args, &mut buf)?;
                self.spend_bytes(buf.len())?;
                Value::String(Rc::new(buf))
            }
        })
    }

    fn dict(&mut self, items: &'a [(Expr, Expr)]) -> R<Value<'a>> {
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

    fn binop(&mut self, op: BinOp, l: Value<'a>, r: Value<'a>) -> R<Value<'a>> {
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

    fn slice(&mut self, obj: Value<'a>, [start, stop, step]: [Option<i64>; 3]) -> R<Value<'a>> {
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

    fn call_macro(&mut self, s: Sym, args: &'a Args, out: &mut String) -> R<()> {
        let id = self.prog.macro_of_sym[s as usize].or_bail()?;
        if self.macro_defined & (1 << id) == 0 || self.locals[self.floor..].iter().any(|(k, _)| *k == s) {
            return Err(Bail);
        }
        let m = &self.prog.macros[id];
        if args.pos.len() > m.params.len() {
            return Err(Bail);
        }
        // Arguments are evaluated in the caller's scope straight onto the stack, under a name no
        // lookup matches until the macro's frame starts.
        let base = self.locals.len();
        for a in &args.pos {
            let v = self.eval(a)?;
            self.locals.push((PENDING, v));
        }
        for _ in args.pos.len()..m.params.len() {
            self.locals.push((PENDING, Value::Undefined));
        }
        for (name, a) in &args.kw {
            let i = m.params.iter().position(|(p, _)| *self.prog.syms[*p as usize] == **name).or_bail()?;
            if i < args.pos.len() || args.kw.iter().filter(|(k, _)| k == name).count() > 1 {
                return Err(Bail);
            }
            let v = self.eval(a)?;
            self.locals[base + i].1 = v;
        }
        for (i, (p, default)) in m.params.iter().enumerate() {
            let slot = &mut self.locals[base + i];
            slot.0 = *p;
            let given = i < args.pos.len() || args.kw.iter().any(|(k, _)| *self.prog.syms[*p as usize] == **k);
            if !given {
                // Only literal defaults: when other expressions are evaluated is minijinja's business.
                slot.1 = match default {
                    None => Value::Undefined,
                    Some(Expr::Str(s)) => Value::Str(s),
                    Some(Expr::Int(n)) => Value::Int(*n),
                    Some(Expr::Float(f)) => Value::Float(*f),
                    Some(Expr::Bool(b)) => Value::Bool(*b),
                    Some(Expr::None) => Value::None,
                    Some(_) => return Err(Bail),
                };
            }
        }
        self.depth += 1;
        self.capturing += 1;
        if self.depth > self.max_depth {
            return Err(Bail);
        }
        let saved = (self.frame, self.floor);
        (self.frame, self.floor) = (base, base);
        self.exec(&m.body, out)?;
        self.locals.truncate(base);
        (self.frame, self.floor) = saved;
        self.depth -= 1;
        self.capturing -= 1;
        Ok(())
    }
}

/// What a loop visits: an item, or a (key, value) pair of `items`.
enum LoopItems<'a> {
    Arr(std::slice::Iter<'a, serde_json::Value>, bool),
    Vals(std::vec::IntoIter<Value<'a>>),
    Shared(Rc<Vec<Value<'a>>>, usize),
    Obj(serde_json::map::Iter<'a>, bool),
    Dict(Rc<Vec<(Value<'a>, Value<'a>)>>, usize),
}

impl<'a> LoopItems<'a> {
    fn pairs(map: Value<'a>) -> R<LoopItems<'a>> {
        match map {
            Value::Obj(o) => Ok(LoopItems::Obj(o.iter(), false)),
            Value::Msg(o) => Ok(LoopItems::Obj(o.iter(), true)),
            Value::Dict(d) => Ok(LoopItems::Dict(d, 0)),
            _ => Err(Bail),
        }
    }

    fn next(&mut self) -> R<Option<(Value<'a>, Option<Value<'a>>)>> {
        Ok(match self {
            LoopItems::Arr(it, msg) => match it.next() {
                Some(j) => Some((from_json(j, *msg)?, None)),
                None => None,
            },
            LoopItems::Vals(it) => it.next().map(|v| (v, None)),
            LoopItems::Shared(l, i) => {
                let item = l.get(*i).cloned();
                *i += 1;
                item.map(|v| (v, None))
            }
            LoopItems::Obj(it, hide) => match it.find(|(_, v)| !(*hide && v.is_null())) {
                Some((k, v)) => Some((Value::Str(k), Some(from_json(v, false)?))),
                None => None,
            },
            LoopItems::Dict(d, i) => {
                let pair = d.get(*i).cloned();
                *i += 1;
                pair.map(|(k, v)| (k, Some(v)))
            }
        })
    }
}

fn is_literal(e: &Expr) -> bool {
    matches!(e, Expr::Str(_) | Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) | Expr::None)
}

/// minijinja's `Display` of a value, for `~`: only the kinds that print the same as in Python.
fn display(v: &Value<'_>, out: &mut String) -> bool {
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
