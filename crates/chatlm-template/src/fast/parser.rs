//! Tokens → [`Program`], with minijinja's grammar and operator precedence for the subset the fast
//! renderer runs. Every unsupported construct returns `None` (the template then renders on
//! minijinja); syntax errors do too, and minijinja reports them.

use std::collections::HashSet;

use super::ast::*;
use super::lexer::Tok;
use super::Program;

/// Text pieces merged into one statement at most: a statement costs fuel once, and up to this many
/// pieces it still costs more than minijinja charges for writing them one by one.
const MAX_PIECES: usize = 4;

/// Appends text, merged into the previous statement when that is text too (fewer statements to
/// run); `pieces` counts what the last statement holds.
fn push_text(out: &mut Vec<Stmt>, pieces: &mut usize, text: &str) {
    if let (Some(Stmt::Text(prev)), 1..MAX_PIECES) = (out.last_mut(), *pieces) {
        *prev = format!("{prev}{text}").into();
        *pieces += 1;
    } else {
        out.push(Stmt::Text(text.into()));
        *pieces = 1;
    }
}

/// Deeper expression nesting than this is left to minijinja (the parser recurses).
pub(super) const MAX_DEPTH: usize = 64;

pub(super) struct Parser<'s> {
    pub(super) toks: Vec<Tok<'s>>,
    pub(super) pos: usize,
    pub(super) syms: Vec<Box<str>>,
    pub(super) macros: Vec<Macro>,
    pub(super) depth: usize,
    /// Names assigned outside macro bodies, and names read inside macro bodies that are not the
    /// macro's own: a macro may only read names nobody assigns at the top level (its closure would
    /// otherwise depend on minijinja's capture rules).
    pub(super) assigned_outside: HashSet<Sym>,
    pub(super) macro_reads: Vec<Sym>,
    pub(super) macro_locals: HashSet<Sym>,
    pub(super) in_macro: bool,
    /// Depth of `for` loops in the current macro body (or the top level).
    pub(super) loop_depth: usize,
    pub(super) var_reads: HashSet<Sym>,
    pub(super) macro_calls: Vec<Sym>,
}

pub(super) fn parse(toks: Vec<Tok<'_>>) -> Option<Program> {
    let mut p = Parser {
        toks,
        pos: 0,
        syms: Vec::new(),
        macros: Vec::new(),
        depth: 0,
        assigned_outside: HashSet::new(),
        macro_reads: Vec::new(),
        macro_locals: HashSet::new(),
        in_macro: false,
        loop_depth: 0,
        var_reads: HashSet::new(),
        macro_calls: Vec::new(),
    };
    let (body, end) = p.body(&[])?;
    if end.is_some() || p.pos != p.toks.len() {
        return None;
    }
    // Defined macros are tracked in a 64-bit set while rendering.
    if p.macros.len() > 64 {
        return None;
    }
    let mut macro_of_sym = vec![None; p.syms.len()];
    for (i, m) in p.macros.iter().enumerate() {
        // Two macros of one name, a macro named like a built-in function, a macro read as a value
        // or assigned: all left to minijinja.
        let name = &p.syms[m.name as usize];
        if macro_of_sym[m.name as usize].is_some()
            || Func::from_name(name).is_some()
            || p.var_reads.contains(&m.name)
            || p.assigned_outside.contains(&m.name)
        {
            return None;
        }
        macro_of_sym[m.name as usize] = Some(i);
    }
    if p.macro_calls.iter().any(|s| macro_of_sym[*s as usize].is_none())
        || p.macro_reads.iter().any(|s| p.assigned_outside.contains(s))
    {
        return None;
    }
    // Only names read as variables (and built-in functions, which a variable may shadow) can see
    // a request's variable: the others need no lookup per render.
    let by_name = (0..p.syms.len() as Sym)
        .filter(|s| p.var_reads.contains(s) || Func::from_name(&p.syms[*s as usize]).is_some())
        .map(|s| (p.syms[s as usize].clone(), s))
        .collect();
    Some(Program {
        body,
        syms: p.syms,
        macros: p.macros,
        macro_of_sym,
        by_name,
        is_func: Vec::new(),
        funcs: Vec::new(),
        name_filter: [0; 4],
        fixed: [None; 4],
        name_keys: Vec::new(),
        size_hint: Default::default(),
    })
}

impl<'s> Parser<'s> {
    pub(super) fn peek(&self) -> Option<&Tok<'s>> {
        self.toks.get(self.pos)
    }

    pub(super) fn next(&mut self) -> Option<Tok<'s>> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += usize::from(t.is_some());
        t
    }

    pub(super) fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    pub(super) fn is_ident(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(i)) if *i == name)
    }

    pub(super) fn skip_op(&mut self, op: &str) -> bool {
        let hit = self.is_op(op);
        self.pos += usize::from(hit);
        hit
    }

    pub(super) fn skip_ident(&mut self, name: &str) -> bool {
        let hit = self.is_ident(name);
        self.pos += usize::from(hit);
        hit
    }

    pub(super) fn expect_op(&mut self, op: &str) -> Option<()> {
        self.skip_op(op).then_some(())
    }

    pub(super) fn expect(&mut self, tok: Tok<'static>) -> Option<()> {
        (self.next()? == tok).then_some(())
    }

    pub(super) fn ident(&mut self) -> Option<&'s str> {
        match self.next()? {
            Tok::Ident(name) => Some(name),
            _ => None,
        }
    }

    pub(super) fn sym(&mut self, name: &str) -> Sym {
        match self.syms.iter().position(|s| &**s == name) {
            Some(i) => i as Sym,
            None => {
                self.syms.push(name.into());
                (self.syms.len() - 1) as Sym
            }
        }
    }

    fn assign(&mut self, s: Sym) {
        if self.in_macro {
            self.macro_locals.insert(s);
        } else {
            self.assigned_outside.insert(s);
        }
    }

    /// Statements up to one of the `ends` keywords (consumed, returned) or the end of input.
    fn body(&mut self, ends: &[&'static str]) -> Option<(Vec<Stmt>, Option<&'static str>)> {
        self.depth += 1;
        let r = if self.depth > MAX_DEPTH { None } else { self.body_inner(ends) };
        self.depth -= 1;
        r
    }

    fn body_inner(&mut self, ends: &[&'static str]) -> Option<(Vec<Stmt>, Option<&'static str>)> {
        let mut out = Vec::new();
        // How many pieces of text the last statement holds (see `push_text`).
        let mut pieces = 0;
        while let Some(tok) = self.next() {
            match tok {
                Tok::Text(t) => push_text(&mut out, &mut pieces, t),
                Tok::VarStart => {
                    match self.expr()? {
                        // `{{- 'literal' }}` is text: written without evaluating anything.
                        Expr::Str(s) => push_text(&mut out, &mut pieces, &s),
                        Expr::StrConcat(parts) => {
                            out.push(Stmt::EmitConcat(parts.into_iter().map(Piece::of).collect()));
                            pieces = 0;
                        }
                        e => {
                            out.push(Stmt::Emit(e));
                            pieces = 0;
                        }
                    }
                    self.expect(Tok::VarEnd)?;
                }
                Tok::BlockStart => {
                    let kw = self.ident()?;
                    if let Some(end) = ends.iter().find(|e| **e == kw) {
                        return Some((out, Some(end)));
                    }
                    out.push(self.stmt(kw)?);
                    pieces = 0;
                }
                _ => return None,
            }
        }
        Some((out, None))
    }

    fn block_end(&mut self) -> Option<()> {
        self.expect(Tok::BlockEnd)
    }

    fn stmt(&mut self, kw: &str) -> Option<Stmt> {
        match kw {
            "if" => {
                let mut branches = Vec::new();
                let mut cond = self.expr()?;
                loop {
                    self.block_end()?;
                    let (body, end) = self.body(&["elif", "else", "endif"])?;
                    branches.push((cond, body));
                    match end? {
                        "elif" => cond = self.expr()?,
                        "else" => {
                            self.block_end()?;
                            let (else_body, end) = self.body(&["endif"])?;
                            end?;
                            self.block_end()?;
                            return Some(Stmt::If(branches, else_body));
                        }
                        _ => {
                            self.block_end()?;
                            return Some(Stmt::If(branches, Vec::new()));
                        }
                    }
                }
            }
            "for" => {
                let target = self.target()?;
                if !self.skip_ident("in") {
                    return None;
                }
                let iter = self.or()?;
                let filter = if self.skip_ident("if") { Some(self.no_loop(Self::expr)?) } else { None };
                self.block_end()?;
                match &target {
                    Target::Name(s) => self.assign(*s),
                    Target::Tuple(names) => names.clone().into_iter().for_each(|s| self.assign(s)),
                }
                self.loop_depth += 1;
                let (body, end) = self.body(&["else", "endfor"])?;
                self.loop_depth -= 1;
                let else_body = if end? == "else" {
                    self.block_end()?;
                    let (b, end) = self.body(&["endfor"])?;
                    end?;
                    b
                } else {
                    Vec::new()
                };
                self.block_end()?;
                Some(Stmt::For(Box::new(ForLoop { target, iter, filter, body, else_body })))
            }
            "set" => {
                if matches!(self.toks.get(self.pos + 1), Some(Tok::Op("."))) {
                    let name = self.ident()?;
                    let ns = self.sym(name);
                    self.read(ns);
                    self.expect_op(".")?;
                    let attr = self.ident()?;
                    self.expect_op("=")?;
                    let value = self.expr()?;
                    self.block_end()?;
                    return Some(Stmt::SetAttr(ns, attr.into(), value));
                }
                let target = self.target()?;
                if self.skip_op("=") {
                    let value = self.expr()?;
                    self.block_end()?;
                    match &target {
                        Target::Name(s) => self.assign(*s),
                        Target::Tuple(names) => names.clone().into_iter().for_each(|s| self.assign(s)),
                    }
                    return Some(Stmt::Set(target, value));
                }
                let Target::Name(name) = target else {
                    return None;
                };
                self.block_end()?;
                let (body, end) = self.body(&["endset"])?;
                end?;
                self.block_end()?;
                self.assign(name);
                Some(Stmt::SetBlock(name, body))
            }
            "macro" => {
                if self.in_macro {
                    return None;
                }
                let name = self.ident()?;
                let name = self.sym(name);
                self.expect_op("(")?;
                let mut params = Vec::new();
                while !self.skip_op(")") {
                    if !params.is_empty() {
                        self.expect_op(",")?;
                    }
                    let p = self.ident()?;
                    let p = self.sym(p);
                    let default = if self.skip_op("=") { Some(self.expr()?) } else { None };
                    params.push((p, default));
                }
                self.block_end()?;
                self.in_macro = true;
                let outer_loops = std::mem::replace(&mut self.loop_depth, 0);
                self.macro_locals = params.iter().map(|p| p.0).collect();
                let reads_before = self.macro_reads.len();
                let (body, end) = self.body(&["endmacro"])?;
                end?;
                self.block_end()?;
                self.in_macro = false;
                self.loop_depth = outer_loops;
                // The macro's own names (parameters, its local sets) are not closure reads.
                let locals = std::mem::take(&mut self.macro_locals);
                let mut kept = self.macro_reads.split_off(reads_before);
                kept.retain(|s| !locals.contains(s));
                self.macro_reads.extend(kept);
                self.macros.push(Macro { name, params, body });
                Some(Stmt::Macro(self.macros.len() - 1))
            }
            "filter" => {
                // Only the `{% generation %}` rewrite's filter block.
                if self.ident()? != crate::generation::GEN_FILTER {
                    return None;
                }
                self.block_end()?;
                let (body, end) = self.body(&["endfilter"])?;
                end?;
                self.block_end()?;
                Some(Stmt::Generation(body))
            }
            _ => None,
        }
    }

    /// Parses with `loop` unavailable (a `for` filter runs outside the loop's own frame).
    fn no_loop(&mut self, f: fn(&mut Self) -> Option<Expr>) -> Option<Expr> {
        let saved = std::mem::replace(&mut self.loop_depth, 0);
        let r = f(self);
        self.loop_depth = saved;
        r
    }

    fn target(&mut self) -> Option<Target> {
        let paren = self.skip_op("(");
        let first = self.ident()?;
        let first = self.sym(first);
        let mut names = vec![first];
        while self.skip_op(",") {
            let n = self.ident()?;
            names.push(self.sym(n));
        }
        if paren {
            self.expect_op(")")?;
        }
        Some(if names.len() == 1 && !paren { Target::Name(first) } else { Target::Tuple(names) })
    }

    pub(super) fn read(&mut self, s: Sym) {
        self.var_reads.insert(s);
        if self.in_macro {
            self.macro_reads.push(s);
        }
    }
}
