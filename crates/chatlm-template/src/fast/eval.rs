//! The interpreter: statements and expressions over [`Value`]s, scoped like minijinja (a frame per
//! `for` loop that lives for the whole loop, a frame per macro call, none for `if` or set blocks).
//!
//! Work is bounded: every statement, expression, loop item and produced byte costs fuel, priced
//! well above what minijinja charges for the same work, so the fast path runs out first and hands
//! the render to minijinja, which reports the limit exactly as it always does.

use std::rc::Rc;

use super::ast::*;
use super::value::{Bail, OrBail, Value, R};
use super::Program;
use crate::clock::DateTime;

/// Fuel prices, in minijinja's units (64 per instruction, 1 per byte, 32 per visited item): one
/// node here is at most a few instructions there, every byte and item is priced far higher.
pub(super) const STEP: i64 = 8 * 64;
pub(super) const BYTE: i64 = 32;
pub(super) const ITEM: i64 = 64;

/// Macro nesting the fast path allows (the native stack grows with it); deeper goes to minijinja.
const MAX_MACRO_DEPTH: usize = 48;

/// The name of a macro argument while the call's arguments are being evaluated.
pub(super) const PENDING: Sym = Sym::MAX;

/// The capacity strings built while rendering (concatenations, macro output, captured blocks)
/// start with: room for a typical piece, where growing from empty reallocates several times.
pub(super) const SCRATCH: usize = 128;

/// Loop nesting the fast path allows.
pub(super) const MAX_LOOPS: usize = 8;

pub(super) struct Vm<'a> {
    pub prog: &'a Program,
    /// The globals (entry `s` holds name `s`'s value, under the key [`PENDING`] so that no scan
    /// matches it), then the locals. One allocation per render serves both.
    pub(super) locals: Vec<(Sym, Value<'a>)>,
    /// Start of the current frame in `locals` (where `set` stores).
    pub(super) frame: usize,
    /// Where lookups stop (a macro body does not see its caller's variables).
    pub(super) floor: usize,
    /// How many loop and macro frames are open: at 0, the template's root frame, whose variables
    /// are the globals' own slots (see [`Vm::set`]).
    pub(super) scopes: usize,
    /// (index, length) of the enclosing loops, innermost at `depth - 1` (no allocation: deeper
    /// nesting than this is left to minijinja).
    pub(super) loops: [(usize, usize); MAX_LOOPS],
    pub(super) loop_depth: usize,
    /// Bit `s % 64` is set once name `s` has been bound as a local this render (never cleared: a
    /// superset is enough). A name whose bit is clear is a global, read without scanning the
    /// locals; most lookups of the request's variables (`messages`, `bos_token`) are such.
    pub(super) bound: u64,
    /// Which macros have been defined so far (by number; templates with more are not compiled).
    pub(super) macro_defined: u64,
    /// Literal dicts already built this render, by expression address (they are immutable).
    pub(super) consts: Vec<(*const Expr, Value<'a>)>,
    /// Byte ranges of the output written inside `{% generation %}` bodies, as they close.
    pub spans: Vec<std::ops::Range<usize>>,
    /// Nesting of captures (set blocks, macro bodies), whose text may never reach the output.
    pub(super) capturing: usize,
    pub(super) fuel: i64,
    pub(super) depth: usize,
    pub(super) max_depth: usize,
    pub(super) max_out: usize,
    pub now: Option<DateTime>,
}

impl<'a> Vm<'a> {
    pub(super) fn new(
        prog: &'a Program,
        locals: Vec<(Sym, Value<'a>)>,
        fuel: u64,
        recursion: usize,
        max_out: usize,
    ) -> Vm<'a> {
        let globals = locals.len();
        Vm {
            prog,
            locals,
            frame: globals,
            floor: globals,
            scopes: 0,
            loops: [(0, 0); MAX_LOOPS],
            loop_depth: 0,
            bound: 0,
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

    /// Gives up once the output passed its limit. Checked where output can repeat (each loop
    /// item, each macro call): without them a template writes at most its own size plus the
    /// values it prints, which fuel bounds.
    #[inline]
    pub(super) fn check_output(&self, out: &str) -> R<()> {
        if out.len() > self.max_out {
            Err(Bail)
        } else {
            Ok(())
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

    pub(super) fn lookup(&self, s: Sym) -> Value<'a> {
        self.lookup_ref(s).clone()
    }

    #[inline]
    pub(super) fn lookup_ref(&self, s: Sym) -> &Value<'a> {
        if self.bound & bit(s) != 0 {
            for (k, v) in self.locals[self.floor..].iter().rev() {
                if *k == s {
                    return v;
                }
            }
        }
        &self.locals[s as usize].1
    }

    #[inline]
    pub(super) fn set(&mut self, s: Sym, v: Value<'a>) {
        // A `set` outside loops and macros assigns the root frame, which nothing leaves and no macro
        // reads (the parser keeps such names out of macros): the global slot can simply take the
        // value, and later reads of the name stay scan-free.
        if self.scopes == 0 {
            self.locals[s as usize].1 = v;
            return;
        }
        if self.bound & bit(s) != 0 {
            if let Some(slot) = self.locals[self.frame..].iter_mut().rev().find(|(k, _)| *k == s) {
                slot.1 = v;
                return;
            }
        }
        self.push_local(s, v);
    }

    /// Binds a new local in the current frame (every local binding goes through here or
    /// [`Vm::mark_bound`], so that `bound` stays a superset).
    #[inline]
    pub(super) fn push_local(&mut self, s: Sym, v: Value<'a>) {
        self.mark_bound(s);
        self.locals.push((s, v));
    }

    #[inline]
    pub(super) fn mark_bound(&mut self, s: Sym) {
        self.bound |= bit(s);
    }

    pub(super) fn exec(&mut self, stmts: &'a [Stmt], out: &mut String) -> R<()> {
        let mut stmts = stmts.iter();
        while let Some(stmt) = stmts.next() {
            self.spend(STEP)?;
            match stmt {
                Stmt::Text(t) => out.push_str(t),
                Stmt::Emit(e) => self.emit(e, out)?,
                Stmt::EmitConcat(pieces) => self.emit_concat(pieces, out)?,
                Stmt::If(branches, else_body) => {
                    let mut body = else_body;
                    for (cond, b) in branches {
                        // `message.role == 'user'`, most branches' condition, without a call (as
                        // `truthy` tests an `AttrEq`; a shared helper measured +0.3% instructions).
                        let holds = match cond {
                            Expr::AttrEq(c, eq) => {
                                self.spend(2 * STEP)?;
                                self.attr_eq(c)? == *eq
                            }
                            cond => self.truthy(cond)?,
                        };
                        if holds {
                            body = b;
                            break;
                        }
                    }
                    // An `if` ending its block (a loop body's `if`/`elif` chain, the final
                    // `add_generation_prompt` test) runs its branch in this loop: a call per
                    // branch taken costs more than a short branch.
                    if stmts.as_slice().is_empty() {
                        stmts = body.iter();
                    } else {
                        self.exec(body, out)?;
                    }
                }
                Stmt::For(f) => self.for_loop(f, out)?,
                Stmt::Set(Target::Name(s), e) => {
                    let v = self.eval(e)?;
                    self.set(*s, v);
                }
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
                    let mut buf = String::with_capacity(SCRATCH);
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

    /// Whether `e` is true, reading a plain variable in place.
    pub(super) fn truthy(&mut self, e: &'a Expr) -> R<bool> {
        match e {
            Expr::Var(s) => {
                self.spend(STEP)?;
                self.lookup_ref(*s).truthy()
            }
            // Conditions combine with `not`/`and`/`or`: only their truth matters here (the value of
            // `a and b` is `a` when `a` is false, else `b`; so is its truth).
            Expr::Not(x) => {
                self.spend(STEP)?;
                Ok(!self.truthy(x)?)
            }
            Expr::Bin(BinOp::And, l, r) => {
                self.spend(STEP)?;
                Ok(self.truthy(l)? && self.truthy(r)?)
            }
            Expr::Bin(BinOp::Or, l, r) => {
                self.spend(STEP)?;
                Ok(self.truthy(l)? || self.truthy(r)?)
            }
            // `if message.content`, `if loop.last`: no value built.
            Expr::Attr(obj, name) if matches!(**obj, Expr::Var(_)) => {
                let Expr::Var(s) = **obj else { return Err(Bail) };
                match self.lookup_ref(s).with_attr(name, Value::truthy) {
                    Some(b) => {
                        self.spend(STEP)?;
                        b
                    }
                    None => self.eval(e)?.truthy(),
                }
            }
            Expr::LoopAttr(a @ (LoopAttr::First | LoopAttr::Last)) => {
                self.spend(STEP)?;
                let (i, len) = *self.loops[..self.loop_depth].last().or_bail()?;
                Ok(if *a == LoopAttr::First { i == 0 } else { i + 1 == len })
            }
            Expr::Test(t, x, args) if args.pos.is_empty() && args.kw.is_empty() => {
                self.spend(STEP)?;
                match &**x {
                    Expr::Var(s) => super::builtins::kind_test(*t, self.lookup_ref(*s)),
                    Expr::Attr(obj, name) if matches!(**obj, Expr::Var(_)) => {
                        let Expr::Var(s) = **obj else { return Err(Bail) };
                        match self.lookup_ref(s).with_attr(name, |v| super::builtins::kind_test(*t, v)) {
                            Some(b) => b,
                            None => {
                                let v = self.eval(x)?;
                                super::builtins::kind_test(*t, &v)
                            }
                        }
                    }
                    x => {
                        let v = self.eval(x)?;
                        super::builtins::kind_test(*t, &v)
                    }
                }
            }
            Expr::AttrEq(c, eq) => {
                self.spend(2 * STEP)?;
                Ok(self.attr_eq(c)? == *eq)
            }
            // `if message.role == "user"`: the commonest condition, without a boolean value.
            Expr::Bin(op @ (BinOp::Eq | BinOp::Ne), l, r) if matches!(**r, Expr::Str(_)) => {
                self.spend(STEP)?;
                Ok(self.eq_literal(l, r)? == (*op == BinOp::Eq))
            }
            // `loop.index0 % 2 == 0`, `messages|length > 1`: integers compared without a
            // boolean value or the general operator call.
            Expr::Bin(op @ (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge), l, r) => {
                self.spend(STEP)?;
                let (l, r) = (self.eval(l)?, self.eval(r)?);
                match (&l, &r) {
                    (Value::Int(a), Value::Int(b)) => Ok(match op {
                        BinOp::Eq => a == b,
                        BinOp::Ne => a != b,
                        BinOp::Lt => a < b,
                        BinOp::Le => a <= b,
                        BinOp::Gt => a > b,
                        _ => a >= b,
                    }),
                    _ => self.binop(*op, l, r)?.truthy(),
                }
            }
            _ => self.eval(e)?.truthy(),
        }
    }

    /// `x.k == lit` of an [`Expr::AttrEq`]: in the request's JSON when `x` is an object, else as
    /// [`Vm::eq_literal`] compares the attribute's value.
    #[inline(always)]
    fn attr_eq(&mut self, c: &'a (Sym, Box<str>, String)) -> R<bool> {
        let (s, key, lit) = c;
        match self.lookup_ref(*s).attr_eq_str(key, lit) {
            Some(eq) => eq,
            None => self.attr_eq_value(c),
        }
    }

    #[cold]
    #[inline(never)]
    fn attr_eq_value(&mut self, c: &'a (Sym, Box<str>, String)) -> R<bool> {
        let (s, key, lit) = c;
        str_eq(&self.lookup_ref(*s).get_attr(key)?, lit)
    }

    /// `l == r` where `r` is a string literal.
    #[inline]
    fn eq_literal(&mut self, l: &'a Expr, r: &'a Expr) -> R<bool> {
        let Expr::Str(lit) = r else { return Err(Bail) };
        // `message.role == "user"`: compared in the request's JSON.
        if let Expr::Attr(obj, name) = l {
            if let Expr::Var(s) = **obj {
                if let Some(eq) = self.lookup_ref(s).attr_eq_str(name, lit) {
                    self.spend(STEP)?;
                    return eq;
                }
            }
        }
        str_eq(&self.eval(l)?, lit)
    }

    /// Evaluates an expression. The commonest nodes are handled here, small enough to inline into
    /// callers; the rest in [`Vm::eval_node`].
    #[inline]
    pub(super) fn eval(&mut self, e: &'a Expr) -> R<Value<'a>> {
        self.spend(STEP)?;
        match e {
            Expr::Str(s) => Ok(Value::Str(s)),
            Expr::Int(i) => Ok(Value::Int(*i)),
            Expr::Bool(b) => Ok(Value::bool(*b)),
            Expr::Var(s) => Ok(self.lookup(*s)),
            // `name.attr` (`message.role`...) reads the variable in place.
            Expr::Attr(obj, name) if matches!(**obj, Expr::Var(_)) => {
                let Expr::Var(s) = **obj else { return Err(Bail) };
                self.lookup_ref(s).get_attr(name)
            }
            Expr::Attr(..) | Expr::Item(..) => self.eval_path(e),
            _ => self.eval_node(e),
        }
    }

    /// `loop.<a>` of the innermost loop.
    #[inline]
    fn loop_attr(&self, a: LoopAttr) -> R<Value<'a>> {
        let (i, len) = *self.loops[..self.loop_depth].last().or_bail()?;
        Ok(match a {
            LoopAttr::Index => Value::Int(i as i64 + 1),
            LoopAttr::Index0 => Value::Int(i as i64),
            LoopAttr::RevIndex => Value::Int((len - i) as i64),
            LoopAttr::RevIndex0 => Value::Int((len - i - 1) as i64),
            LoopAttr::First => Value::bool(i == 0),
            LoopAttr::Last => Value::bool(i + 1 == len),
            LoopAttr::Length => Value::Int(len as i64),
        })
    }

    /// `messages[0]['role']`, `message.tool_calls[0].function`: attributes and integer indexes
    /// after a variable, each step taken on the previous one's value here rather than through
    /// [`Vm::eval_node`], whose general frame costs more than the step.
    #[inline(never)]
    fn eval_path(&mut self, e: &'a Expr) -> R<Value<'a>> {
        match e {
            Expr::Attr(obj, name) => match &**obj {
                Expr::Var(s) => self.lookup_ref(*s).get_attr(name),
                obj @ (Expr::Attr(..) | Expr::Item(..)) => {
                    self.spend(STEP)?;
                    self.eval_path(obj)?.get_attr(name)
                }
                obj => self.eval(obj)?.get_attr(name),
            },
            Expr::Item(obj, key) if matches!(**key, Expr::Int(_)) => {
                let Expr::Int(i) = **key else { return Err(Bail) };
                // `get_item` with an integer: an index of a sequence (maps bail either way).
                let at = |v: &Value<'a>| if v.is_seq() { v.index(i) } else { Err(Bail) };
                self.spend(STEP)?;
                match &**obj {
                    Expr::Var(s) => at(self.lookup_ref(*s)),
                    obj @ (Expr::Attr(..) | Expr::Item(..)) => at(&self.eval_path(obj)?),
                    obj => at(&self.eval(obj)?),
                }
            }
            // `table[x.k]` (a lookup table in a macro): the map is read in place, not copied out.
            Expr::Item(obj, key) if matches!(**obj, Expr::Var(_)) => {
                let Expr::Var(s) = **obj else { return Err(Bail) };
                let key = self.eval(key)?;
                self.spend(STEP)?;
                self.lookup_ref(s).get_item(&key)
            }
            _ => self.eval_node(e),
        }
    }

    #[inline(never)]
    pub(super) fn eval_node(&mut self, e: &'a Expr) -> R<Value<'a>> {
        Ok(match e {
            Expr::Str(s) => Value::Str(s),
            Expr::Int(i) => Value::Int(*i),
            Expr::Float(f) => Value::float(*f),
            Expr::Bool(b) => Value::bool(*b),
            Expr::None => Value::None,
            Expr::Var(s) => self.lookup(*s),
            Expr::LoopAttr(a) => self.loop_attr(*a)?,
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
                let mut s = String::with_capacity(SCRATCH);
                self.emit_str(e, &mut s)?;
                self.spend_bytes(s.len())?;
                Value::String(Rc::new(s))
            }
            Expr::Not(x) => Value::bool(!self.truthy(x)?),
            Expr::Neg(x) => match self.eval(x)? {
                Value::Int(i) => Value::Int(i.checked_neg().or_bail()?),
                Value::Float(f) => Value::float(-f.get()),
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
            Expr::AttrEq(c, eq) => {
                self.spend(STEP)?;
                Value::bool(self.attr_eq(c)? == *eq)
            }
            // `x == "literal"`, the most common comparison, without building the literal.
            Expr::Bin(op @ (BinOp::Eq | BinOp::Ne), l, r) if matches!(**r, Expr::Str(_)) => {
                Value::bool(self.eq_literal(l, r)? == (*op == BinOp::Eq))
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
                Value::bool(super::builtins::kind_test(*t, self.lookup_ref(s))?)
            }
            Expr::Test(t, x, args) => {
                let v = self.eval(x)?;
                Value::bool(self.test(*t, &v, args)?)
            }
            Expr::Method(m, x, args) => {
                let v = self.eval(x)?;
                self.method(*m, v, args)?
            }
            Expr::Call(f, args) => self.call(*f, args)?,
            Expr::CallMacro(s, args) => {
                let mut buf = String::with_capacity(SCRATCH);
                self.call_macro(*s, args, &mut buf)?;
                self.spend_bytes(buf.len())?;
                Value::String(Rc::new(buf))
            }
        })
    }
}

/// `v == lit` for a string literal: text compares, undefined is minijinja's to report (or not),
/// every other value is unequal.
fn str_eq(v: &Value<'_>, lit: &str) -> R<bool> {
    Ok(match v {
        Value::Str(s) => super::value::key_eq(s, lit),
        Value::String(s) => super::value::key_eq(s, lit),
        Value::Undefined | Value::Ns(_) | Value::Func => return Err(Bail),
        _ => false,
    })
}

/// A name's bit in [`Vm::bound`].
#[inline]
pub(super) fn bit(s: Sym) -> u64 {
    1 << (s % 64)
}

fn is_literal(e: &Expr) -> bool {
    matches!(e, Expr::Str(_) | Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) | Expr::None)
}
