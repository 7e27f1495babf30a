//! Loops and macro calls of the fast renderer: a frame per loop (kept for the whole loop, as in
//! minijinja), `loop.*` state without allocation, `for k, v in m|items` without building pairs, and
//! macro calls in their own frame.

use std::rc::Rc;

use super::ast::*;
use super::eval::{Vm, ITEM, MAX_LOOPS, PENDING, STEP};
use super::value::{from_json, Bail, OrBail, Value, R};

impl<'a> Vm<'a> {
    /// Binds a loop or `set` target: a name, or a tuple unpacking a sequence of as many items.
    pub(super) fn bind(&mut self, t: &Target, v: Value<'a>) -> R<()> {
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

    pub(super) fn for_loop(&mut self, f: &'a ForLoop, out: &mut String) -> R<()> {
        let (mut items, len) = match (&f.filter, self.pairs_source(f)) {
            (None, Some(map)) => {
                let map = self.eval(map)?;
                let len = map.len()?;
                (LoopItems::pairs(map)?, len)
            }
            (None, None) => {
                let v = self.iterable(&f.iter)?;
                match v {
                    Value::Arr(a) => (LoopItems::Arr(a.iter()), a.len()),
                    Value::Msgs(a) => (LoopItems::Msgs(a.iter()), a.len()),
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
        self.scopes += 1;
        if self.loop_depth == MAX_LOOPS {
            return Err(Bail);
        }
        let level = self.loop_depth;
        self.loops[level] = (0, len);
        self.loop_depth += 1;
        let mut i = 0;
        // The commonest loop, `for message in messages`, binds each message to the frame's one slot
        // directly (no pair to build and take apart per item).
        if let (LoopItems::Msgs(msgs), Target::Name(s)) = (&mut items, &f.target) {
            self.push_local(*s, Value::Undefined);
            for m in msgs {
                self.spend(STEP)?;
                self.check_output(out)?;
                self.loops[level].0 = i;
                self.locals[base].1 = from_json(m, true)?;
                self.exec(&f.body, out)?;
                i += 1;
            }
        }
        while let Some((a, b)) = items.next()? {
            self.spend(STEP)?;
            self.check_output(out)?;
            self.loops[level].0 = i;
            match (b, &f.target) {
                // After the first item the variable's slot is the frame's first (see `set`).
                (None, Target::Name(_)) if i > 0 => self.locals[base].1 = a,
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
        self.scopes -= 1;
        if len == 0 {
            self.exec(&f.else_body, out)?;
        }
        Ok(())
    }

    /// A loop's iterable: `(x)|_it` (every loop's, see `crate::forloop`) checked here rather than
    /// through the general filter call, which costs more than the rest of a short loop.
    fn iterable(&mut self, e: &'a Expr) -> R<Value<'a>> {
        if let Expr::Filter(Filter::NotNone, inner, args) = e {
            if args.pos.is_empty() && args.kw.is_empty() {
                self.spend(super::eval::STEP)?;
                return match self.eval(inner)? {
                    Value::None => Err(Bail),
                    v => Ok(v),
                };
            }
        }
        self.eval(e)
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
        self.scopes += 1;
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
        self.scopes -= 1;
        Ok(kept)
    }

    pub(super) fn call_macro(&mut self, s: Sym, args: &'a Args, out: &mut String) -> R<()> {
        self.check_output(out)?;
        let id = self.prog.macro_of_sym[s as usize].or_bail()?;
        // (A local of the macro's name shadows it: minijinja's business. Only a bound name can be one.)
        let shadowed = self.bound & super::eval::bit(s) != 0 && self.locals[self.floor..].iter().any(|(k, _)| *k == s);
        if self.macro_defined & (1 << id) == 0 || shadowed {
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
            self.mark_bound(*p);
            let slot = &mut self.locals[base + i];
            slot.0 = *p;
            let given = i < args.pos.len() || args.kw.iter().any(|(k, _)| *self.prog.syms[*p as usize] == **k);
            if !given {
                // Only literal defaults: when other expressions are evaluated is minijinja's business.
                slot.1 = match default {
                    None => Value::Undefined,
                    Some(Expr::Str(s)) => Value::Str(s),
                    Some(Expr::Int(n)) => Value::Int(*n),
                    Some(Expr::Float(f)) => Value::float(*f),
                    Some(Expr::Bool(b)) => Value::bool(*b),
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
        self.scopes += 1;
        self.exec(&m.body, out)?;
        self.scopes -= 1;
        self.locals.truncate(base);
        (self.frame, self.floor) = saved;
        self.depth -= 1;
        self.capturing -= 1;
        Ok(())
    }
}

/// What a loop visits: an item, or a (key, value) pair of `items`.
enum LoopItems<'a> {
    Arr(std::slice::Iter<'a, serde_json::Value>),
    Msgs(std::slice::Iter<'a, &'a serde_json::Value>),
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
            LoopItems::Arr(it) => match it.next() {
                Some(j) => Some((from_json(j, false)?, None)),
                None => None,
            },
            LoopItems::Msgs(it) => match it.next() {
                Some(j) => Some((from_json(j, true)?, None)),
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
