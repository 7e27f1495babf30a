//! Expression parsing: minijinja's precedence (conditional, `or`, `and`, `not`, one comparison,
//! `+ -`, `~`, `* / // %`, unary minus, postfix, filters and tests); `**` and chained comparisons
//! are left to minijinja.

use super::ast::*;
use super::lexer::Tok;
use super::parser::{Parser, MAX_DEPTH};

impl Parser<'_> {
    /// Runs `f` one level of recursion deeper; `None` past [`MAX_DEPTH`].
    pub(super) fn nested(&mut self, f: fn(&mut Self) -> Option<Expr>) -> Option<Expr> {
        self.depth += 1;
        let r = if self.depth > MAX_DEPTH { None } else { f(self) };
        self.depth -= 1;
        r
    }

    pub(super) fn expr(&mut self) -> Option<Expr> {
        self.nested(Self::if_expr)
    }

    fn if_expr(&mut self) -> Option<Expr> {
        let mut e = self.or()?;
        while self.skip_ident("if") {
            let cond = self.or()?;
            let other = if self.skip_ident("else") { Some(self.expr()?) } else { None };
            e = Expr::Cond(Box::new((cond, e, other)));
        }
        Some(e)
    }

    pub(super) fn or(&mut self) -> Option<Expr> {
        let mut e = self.and()?;
        while self.skip_ident("or") {
            e = Expr::Bin(BinOp::Or, Box::new(e), Box::new(self.and()?));
        }
        Some(e)
    }

    fn and(&mut self) -> Option<Expr> {
        let mut e = self.not()?;
        while self.skip_ident("and") {
            e = Expr::Bin(BinOp::And, Box::new(e), Box::new(self.not()?));
        }
        Some(e)
    }

    fn not(&mut self) -> Option<Expr> {
        if self.skip_ident("not") {
            return Some(Expr::Not(Box::new(self.nested(Self::not)?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Option<Expr> {
        let left = self.math1()?;
        let (op, negate) = match self.peek() {
            Some(Tok::Op("==")) => (BinOp::Eq, false),
            Some(Tok::Op("!=")) => (BinOp::Ne, false),
            Some(Tok::Op("<")) => (BinOp::Lt, false),
            Some(Tok::Op("<=")) => (BinOp::Le, false),
            Some(Tok::Op(">")) => (BinOp::Gt, false),
            Some(Tok::Op(">=")) => (BinOp::Ge, false),
            Some(Tok::Ident("in")) => (BinOp::In, false),
            Some(Tok::Ident("not")) => {
                self.pos += 1;
                if !self.is_ident("in") {
                    return None;
                }
                (BinOp::In, true)
            }
            _ => return Some(left),
        };
        self.pos += 1;
        let right = self.math1()?;
        let e = match (op, left, right) {
            (BinOp::Eq | BinOp::Ne, Expr::Attr(obj, key), Expr::Str(lit)) if matches!(*obj, Expr::Var(_)) => {
                let Expr::Var(s) = *obj else { return None };
                Expr::AttrEq(Box::new((s, key, lit)), op == BinOp::Eq)
            }
            (op, left, right) => Expr::Bin(op, Box::new(left), Box::new(right)),
        };
        // Chained comparisons are left to minijinja.
        if matches!(self.peek(), Some(Tok::Op("==" | "!=" | "<" | "<=" | ">" | ">=") | Tok::Ident("in" | "not"))) {
            return None;
        }
        Some(if negate { Expr::Not(Box::new(e)) } else { e })
    }

    fn math1(&mut self) -> Option<Expr> {
        let mut e = self.concat()?;
        // `a + b + ...` with a string literal among the operands: a string concatenation (see
        // `Expr::StrConcat`), as long as no `-` interrupts it.
        let mut parts: Vec<Expr> = Vec::new();
        loop {
            let op = if self.skip_op("+") {
                BinOp::Add
            } else if self.skip_op("-") {
                BinOp::Sub
            } else {
                break;
            };
            let rhs = self.concat()?;
            if op == BinOp::Add {
                if parts.is_empty() {
                    parts.push(std::mem::replace(&mut e, Expr::None));
                }
                parts.push(rhs);
            } else {
                if !parts.is_empty() {
                    e = add_chain(std::mem::take(&mut parts));
                }
                e = Expr::Bin(op, Box::new(e), Box::new(rhs));
            }
        }
        if !parts.is_empty() {
            e = add_chain(parts);
        }
        Some(e)
    }

    fn concat(&mut self) -> Option<Expr> {
        let mut e = self.math2()?;
        while self.skip_op("~") {
            e = Expr::Bin(BinOp::Concat, Box::new(e), Box::new(self.math2()?));
        }
        Some(e)
    }

    fn math2(&mut self) -> Option<Expr> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => BinOp::Mul,
                Some(Tok::Op("/")) => BinOp::Div,
                Some(Tok::Op("//")) => BinOp::FloorDiv,
                Some(Tok::Op("%")) => BinOp::Rem,
                Some(Tok::Op("**")) => return None,
                _ => return Some(e),
            };
            self.pos += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        let e = self.unary_only()?;
        let e = self.postfix(e)?;
        self.filters(e)
    }

    fn unary_only(&mut self) -> Option<Expr> {
        if !self.skip_op("-") {
            return self.primary();
        }
        let operand = self.nested(Self::unary_only)?;
        Some(Expr::Neg(Box::new(self.postfix(operand)?)))
    }

    fn postfix(&mut self, mut e: Expr) -> Option<Expr> {
        loop {
            if self.skip_op(".") {
                e = match self.next()? {
                    Tok::Ident(name) => Expr::Attr(Box::new(e), name.into()),
                    Tok::Int(i) => Expr::Item(Box::new(e), Box::new(Expr::Int(i))),
                    _ => return None,
                };
            } else if self.skip_op("[") {
                let start = if self.is_op(":") { None } else { Some(self.expr()?) };
                if self.skip_op(":") {
                    let stop = if self.is_op("]") || self.is_op(":") { None } else { Some(self.expr()?) };
                    let step = if self.skip_op(":") && !self.is_op("]") { Some(self.expr()?) } else { None };
                    self.expect_op("]")?;
                    e = Expr::Slice(Box::new([start, stop, step]), Box::new(e));
                } else {
                    self.expect_op("]")?;
                    // `x["name"]` and `x.name` look up the same way in every case the fast
                    // renderer supports (maps; anything else gives up either way).
                    e = match start? {
                        Expr::Str(name) => Expr::Attr(Box::new(e), name.into()),
                        key => Expr::Item(Box::new(e), Box::new(key)),
                    };
                }
            } else if self.is_op("(") {
                let args = self.args()?;
                e = match e {
                    Expr::Attr(obj, name) => Expr::Method(Method::from_name(&name)?, obj, args),
                    _ => return None,
                };
            } else {
                return Some(e);
            }
        }
    }

    fn filters(&mut self, mut e: Expr) -> Option<Expr> {
        loop {
            if self.skip_op("|") {
                let f = Filter::from_name(self.ident()?)?;
                if self.is_op(".") {
                    return None;
                }
                let args = if self.is_op("(") { self.args()? } else { Box::default() };
                e = Expr::Filter(f, Box::new(e), args);
            } else if self.skip_ident("is") {
                let negated = self.skip_ident("not");
                let t = Test::from_name(self.ident()?)?;
                let args = if self.is_op("(") {
                    self.args()?
                } else if matches!(
                    self.peek(),
                    Some(Tok::Ident(_) | Tok::Str(_) | Tok::Int(_) | Tok::Float(_) | Tok::Op("+" | "-" | "[" | "{"))
                ) && !matches!(self.peek(), Some(Tok::Ident("and" | "or" | "else" | "is")))
                {
                    let a = self.unary_only()?;
                    Box::new(Args { pos: vec![self.postfix(a)?], kw: Vec::new() })
                } else {
                    Box::default()
                };
                e = Expr::Test(t, Box::new(e), args);
                if negated {
                    e = Expr::Not(Box::new(e));
                }
            } else {
                return Some(e);
            }
        }
    }

    fn args(&mut self) -> Option<Box<Args>> {
        self.expect_op("(")?;
        let mut args = Args::default();
        while !self.skip_op(")") {
            if !args.pos.is_empty() || !args.kw.is_empty() {
                self.expect_op(",")?;
                if self.skip_op(")") {
                    break;
                }
            }
            if self.is_op("*") || self.is_op("**") {
                return None;
            }
            if let (Some(Tok::Ident(name)), Some(Tok::Op("="))) = (self.peek(), self.toks.get(self.pos + 1)) {
                let name: Box<str> = (*name).into();
                self.pos += 2;
                args.kw.push((name, self.expr()?));
            } else if args.kw.is_empty() {
                args.pos.push(self.expr()?);
            } else {
                return None;
            }
        }
        Some(Box::new(args))
    }

    fn primary(&mut self) -> Option<Expr> {
        Some(match self.next()? {
            Tok::Ident("true" | "True") => Expr::Bool(true),
            Tok::Ident("false" | "False") => Expr::Bool(false),
            Tok::Ident("none" | "None") => Expr::None,
            Tok::Ident("loop") => {
                // Only `loop.<known attribute>` inside a loop of the same scope.
                self.expect_op(".")?;
                if self.loop_depth == 0 {
                    return None;
                }
                Expr::LoopAttr(LoopAttr::from_name(self.ident()?)?)
            }
            Tok::Ident(name) if self.is_op("(") => {
                // A call names a built-in function or a macro, not a variable.
                let s = self.sym(name);
                let args = self.args()?;
                match Func::from_name(name) {
                    Some(f) => Expr::Call(f, args),
                    None => {
                        self.macro_calls.push(s);
                        Expr::CallMacro(s, args)
                    }
                }
            }
            Tok::Ident(name) => {
                let s = self.sym(name);
                self.read(s);
                Expr::Var(s)
            }
            Tok::Str(s) => {
                let mut s = s.into_owned();
                while let Some(Tok::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.pos += 1;
                }
                Expr::Str(s)
            }
            Tok::Int(i) => Expr::Int(i),
            Tok::Float(f) => Expr::Float(f),
            Tok::Op("(") => {
                if self.skip_op(")") {
                    return Some(Expr::Tuple(Vec::new()));
                }
                let e = self.expr()?;
                if !self.is_op(",") {
                    self.expect_op(")")?;
                    return Some(e);
                }
                let mut items = vec![e];
                while !self.skip_op(")") {
                    self.expect_op(",")?;
                    if self.skip_op(")") {
                        break;
                    }
                    items.push(self.expr()?);
                }
                Expr::Tuple(items)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.skip_op("]") {
                    if !items.is_empty() {
                        self.expect_op(",")?;
                        if self.skip_op("]") {
                            break;
                        }
                    }
                    items.push(self.expr()?);
                }
                Expr::List(items)
            }
            Tok::Op("{") => {
                let mut items = Vec::new();
                while !self.skip_op("}") {
                    if !items.is_empty() {
                        self.expect_op(",")?;
                        if self.skip_op("}") {
                            break;
                        }
                    }
                    let k = self.expr()?;
                    self.expect_op(":")?;
                    items.push((k, self.expr()?));
                }
                Expr::Dict(items)
            }
            _ => return None,
        })
    }
}

/// `a + b + c ...` (two or more operands): a [`Expr::StrConcat`] with adjacent literals merged when
/// an operand is a string literal (the sum is then a string or an error), else the binary chain.
fn add_chain(parts: Vec<Expr>) -> Expr {
    if !parts.iter().any(|p| matches!(p, Expr::Str(_))) {
        let mut it = parts.into_iter();
        let first = it.next().unwrap_or(Expr::None);
        return it.fold(first, |l, r| Expr::Bin(BinOp::Add, Box::new(l), Box::new(r)));
    }
    let mut merged: Vec<Expr> = Vec::with_capacity(parts.len());
    for p in parts {
        match (merged.last_mut(), p) {
            (Some(Expr::Str(prev)), Expr::Str(s)) => *prev = format!("{prev}{s}"),
            (_, p) => merged.push(p),
        }
    }
    Expr::StrConcat(merged)
}
