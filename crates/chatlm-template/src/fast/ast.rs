//! The program the fast renderer runs: statements and expressions with every name resolved at
//! compile time (variables to slots, filters/tests/methods/functions to enums), so rendering never
//! looks anything up by string.

/// A variable name, an index into the program's symbol table.
pub(super) type Sym = u32;

#[derive(Debug)]
pub(super) enum Stmt {
    Text(Box<str>),
    Emit(Expr),
    /// `{{ '<|im_start|>' + message.role + '\n' + message.content|trim }}`: a string concatenation
    /// as the pieces it writes, in one loop (see [`Piece`]).
    EmitConcat(Box<[Piece]>),
    If(Vec<(Expr, Vec<Stmt>)>, Vec<Stmt>),
    For(Box<ForLoop>),
    Set(Target, Expr),
    /// `{% set ns.attr = value %}`.
    SetAttr(Sym, Box<str>, Expr),
    /// `{% set x %}…{% endset %}`.
    SetBlock(Sym, Vec<Stmt>),
    /// Defines macro number `.0` (in [`super::Program::macros`]) under its name.
    Macro(usize),
    /// The body of a `{% generation %}` block, wrapped in the span markers.
    Generation(Vec<Stmt>),
}

/// A piece of an [`Stmt::EmitConcat`]. The commonest shapes are read in place; each keeps the
/// expression it came from, which runs through the general path whenever the shortcut does not
/// apply (a variable that is not a JSON object, a value that is not a string).
#[derive(Debug)]
pub(super) enum Piece {
    Text(Box<str>),
    /// `x.k` (or `x['k']`) of a variable.
    Attr(Sym, Box<str>, Expr),
    /// `x.k|trim` or `x.k.strip()`.
    AttrTrim(Sym, Box<str>, Expr),
    Expr(Expr),
}

impl Piece {
    pub(super) fn of(e: Expr) -> Piece {
        let attr = |e: &Expr| match e {
            Expr::Attr(obj, k) => match **obj {
                Expr::Var(s) => Some((s, k.clone())),
                _ => None,
            },
            _ => None,
        };
        match &e {
            Expr::Str(s) => Piece::Text(s.as_str().into()),
            Expr::Attr(..) => match attr(&e) {
                Some((s, k)) => Piece::Attr(s, k, e),
                None => Piece::Expr(e),
            },
            Expr::Filter(Filter::Trim, x, args) | Expr::Method(Method::Strip, x, args)
                if args.pos.is_empty() && args.kw.is_empty() =>
            {
                match attr(x) {
                    Some((s, k)) => Piece::AttrTrim(s, k, e),
                    None => Piece::Expr(e),
                }
            }
            _ => Piece::Expr(e),
        }
    }
}

#[derive(Debug)]
pub(super) struct ForLoop {
    pub target: Target,
    pub iter: Expr,
    pub filter: Option<Expr>,
    pub body: Vec<Stmt>,
    pub else_body: Vec<Stmt>,
}

#[derive(Debug, Clone)]
pub(super) enum Target {
    Name(Sym),
    Tuple(Vec<Sym>),
}

#[derive(Debug)]
pub(super) struct Macro {
    pub name: Sym,
    pub params: Vec<(Sym, Option<Expr>)>,
    pub body: Vec<Stmt>,
}

#[derive(Debug)]
pub(super) enum Expr {
    /// (A `String`, which a [`super::value::Value::Str`] refers to.)
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    Var(Sym),
    /// `loop.<attr>` of the innermost loop.
    LoopAttr(LoopAttr),
    Attr(Box<Expr>, Box<str>),
    Item(Box<Expr>, Box<Expr>),
    Slice(Box<[Option<Expr>; 3]>, Box<Expr>),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `x.k == 'lit'` (`.3`: true) or `x.k != 'lit'` for a variable `x`, the commonest condition of
    /// chat templates (`message.role == 'user'`), compared in the request's JSON in place.
    AttrEq(Box<(Sym, Box<str>, String)>, bool),
    /// `a + b + ...` where some operand is a string literal: every operand must be a string (the
    /// sum fails otherwise, so the fast path gives up), adjacent literals merged at compile time.
    StrConcat(Vec<Expr>),
    /// `a if cond else b`: (cond, a, b).
    Cond(Box<(Expr, Expr, Option<Expr>)>),
    // Arguments are boxed: they would double the size of every node (denser trees cache better).
    Filter(Filter, Box<Expr>, Box<Args>),
    Test(Test, Box<Expr>, Box<Args>),
    Method(Method, Box<Expr>, Box<Args>),
    Call(Func, Box<Args>),
    /// A call of a macro the template defines, by the variable holding it.
    CallMacro(Sym, Box<Args>),
}

#[derive(Debug, Default)]
pub(super) struct Args {
    pub pos: Vec<Expr>,
    pub kw: Vec<(Box<str>, Expr)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Rem,
    Concat,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoopAttr {
    Index,
    Index0,
    RevIndex,
    RevIndex0,
    First,
    Last,
    Length,
}

impl LoopAttr {
    pub(super) fn from_name(name: &str) -> Option<LoopAttr> {
        Some(match name {
            "index" => LoopAttr::Index,
            "index0" => LoopAttr::Index0,
            "revindex" => LoopAttr::RevIndex,
            "revindex0" => LoopAttr::RevIndex0,
            "first" => LoopAttr::First,
            "last" => LoopAttr::Last,
            "length" => LoopAttr::Length,
            _ => return None,
        })
    }
}

macro_rules! named_enum {
    ($name:ident { $($variant:ident = $($s:literal)|+),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum $name { $($variant),* }
        impl $name {
            pub(super) fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($($s)|+ => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

named_enum!(Filter {
    Trim = "trim",
    ToJson = "tojson",
    Length = "length" | "count",
    Items = "items",
    Str = "string",
    Indent = "indent",
    Join = "join",
    Select = "select",
    Reject = "reject",
    SelectAttr = "selectattr",
    RejectAttr = "rejectattr",
    List = "list",
    Default = "default" | "d",
    First = "first",
    Last = "last",
    Upper = "upper",
    Lower = "lower",
    Title = "title",
    Replace = "replace",
    MapAttr = "map",
    Safe = "safe",
    // The internal filters of the crate's rewrites (see forloop.rs and generation.rs).
    NotNone = "_it",
});

named_enum!(Test {
    Defined = "defined",
    Undefined = "undefined",
    None = "none",
    Str = "string",
    Number = "number",
    Integer = "integer",
    Float = "float",
    Boolean = "boolean",
    True = "true",
    False = "false",
    Mapping = "mapping",
    Iterable = "iterable",
    Sequence = "sequence",
    Eq = "equalto" | "eq" | "==",
    Ne = "ne" | "!=",
    In = "in",
    Odd = "odd",
    Even = "even",
});

named_enum!(Method {
    Strip = "strip",
    LStrip = "lstrip",
    RStrip = "rstrip",
    Split = "split",
    StartsWith = "startswith",
    EndsWith = "endswith",
    Upper = "upper",
    Lower = "lower",
    Title = "title",
    Replace = "replace",
    Items = "items",
    Keys = "keys",
    Values = "values",
    Get = "get",
});

named_enum!(Func {
    RaiseException = "raise_exception",
    StrftimeNow = "strftime_now",
    Namespace = "namespace",
});
