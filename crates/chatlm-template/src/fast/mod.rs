//! A fast renderer for the Jinja subset chat templates use, with minijinja as the reference and
//! the fallback.
//!
//! Why a second renderer: minijinja is the well-kept, general Jinja implementation and stays the
//! authority here, but a render through its VM (instruction dispatch, `Value` calls, allocation
//! of every intermediate value, converting the request into `Value`s first) costs ~10 µs for a
//! typical conversation, and the goal is 50× transformers' rate (~1.5 µs). No tuning around
//! minijinja gets there. This renderer compiles the template into a tree with names resolved, reads
//! the request's JSON in place, and writes string concatenations straight to the output.
//!
//! It is only ever an optimisation, never a second source of truth:
//! - at compile time, a template using anything outside the subset (see the parser) simply has no
//!   fast program and always renders on minijinja;
//! - at render time, anything the fast path cannot vouch for (an unusual value type or operand
//!   mix, any error, `raise_exception`, running out of its fuel or output budget) makes it discard
//!   its output and the render runs on minijinja, which produces the exact text or the exact error;
//! - it is differential-tested against minijinja on the golden corpus and on randomized requests
//!   (`tests/fast_path.rs`).

mod ast;
mod builtins;
mod eval;
mod expr;
mod lexer;
mod parser;
mod value;

use serde_json::Value as Json;

use crate::{ChatRequest, Limits};
use ast::{Func, Macro, Stmt, Sym};
use value::{from_json, Value};

/// A compiled template for the fast renderer.
#[derive(Debug)]
pub(crate) struct Program {
    body: Vec<Stmt>,
    /// Variable names, indexed by [`Sym`].
    syms: Vec<Box<str>>,
    macros: Vec<Macro>,
    /// The macro each name denotes, if any.
    macro_of_sym: Vec<Option<usize>>,
}

/// Compiles the template source minijinja compiles (after the crate's rewrites); `None` when it
/// uses something the fast renderer does not support.
pub(crate) fn compile(source: &str) -> Option<Program> {
    parser::parse(lexer::lex(source)?)
}

impl Program {
    /// Renders like minijinja would, or `None` to have minijinja do it. `messages` are the
    /// request's (or their prepared copies); their `null` keys are invisible, as in minijinja.
    pub(crate) fn render(&self, req: &ChatRequest, messages: &[Json], limits: &Limits) -> Option<String> {
        let mut globals: Vec<Value> = self
            .syms
            .iter()
            .map(|s| if Func::from_name(s).is_some() { Value::Func } else { Value::Undefined })
            .collect();
        // Special tokens, then kwargs over them, then the fixed arguments (see `crate::context`).
        for (k, v) in req.special_tokens.iter().chain(req.kwargs.iter()) {
            if let Some(s) = self.sym(k) {
                if Func::from_name(k).is_some() {
                    // A variable shadowing a built-in function: minijinja's business.
                    return None;
                }
                globals[s as usize] = from_json(v, false).ok()?;
            }
        }
        if let Some(s) = self.sym("messages") {
            globals[s as usize] = Value::Arr(messages, true);
        }
        if let Some(s) = self.sym("tools") {
            globals[s as usize] = req.tools.as_deref().map_or(Value::None, |t| Value::Arr(t, false));
        }
        if let Some(s) = self.sym("documents") {
            globals[s as usize] = req.documents.as_deref().map_or(Value::None, |d| Value::Arr(d, false));
        }
        if let Some(s) = self.sym("add_generation_prompt") {
            globals[s as usize] = Value::Bool(req.add_generation_prompt);
        }
        let mut vm = eval::Vm::new(self, globals, limits.fuel, limits.recursion, limits.max_output_bytes);
        vm.now = req.now;
        let mut out = String::with_capacity(256 + messages.len() * 128);
        vm.exec(&self.body, &mut out).ok()?;
        vm.spend_bytes(out.len()).ok()?;
        (out.len() <= limits.max_output_bytes).then_some(out)
    }

    fn sym(&self, name: &str) -> Option<Sym> {
        self.syms.iter().position(|s| &**s == name).map(|i| i as Sym)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, messages: Json) -> Option<String> {
        let prog = compile(src).expect("compiles");
        let req = ChatRequest::new(messages.as_array().unwrap().clone());
        prog.render(&req, &req.messages, &Limits::default())
    }

    #[test]
    fn renders_the_basics() {
        let msgs = json!([{"role": "user", "content": " hi ", "x": null}, {"role": "assistant", "content": "yo"}]);
        assert_eq!(
            render("{% for m in messages %}<{{ m.role }}>{{ m['content']|trim + '|' }}{% endfor %}", msgs.clone())
                .unwrap(),
            "<user>hi|<assistant>yo|"
        );
        assert_eq!(render("{{ messages[0] }}", msgs.clone()).unwrap(), "{'role': 'user', 'content': ' hi '}");
        assert_eq!(
            render("{{ messages[1:]|length }}{{ messages[::-1][0].role }}", msgs.clone()).unwrap(),
            "1assistant"
        );
        assert_eq!(render("{{ messages[0]|tojson }}", msgs.clone()).unwrap(), r#"{"role": "user", "content": " hi "}"#);
        assert_eq!(render("{{ 'x' in messages[0] }}{{ 'role' in messages[0] }}", msgs.clone()).unwrap(), "FalseTrue");
    }

    #[test]
    fn unsupported_constructs_are_left_to_minijinja() {
        assert!(compile("{% raw %}x{% endraw %}").is_none());
        assert!(compile("{{ x|wordcount }}").is_none());
        assert!(compile("{% for x in y %}{% break %}{% endfor %}").is_none());
        assert!(compile("{{ 1 < 2 < 3 }}").is_none());
        // A macro reading a variable the template assigns: closure rules are minijinja's.
        assert!(compile("{% set a = 1 %}{% macro m() %}{{ a }}{% endmacro %}{{ m() }}").is_none());
        // Runtime: raise_exception and type mixes bail.
        assert_eq!(render("{{ raise_exception('no') }}", json!([])), None);
        assert_eq!(render("{{ 'a' + 1 }}", json!([])), None);
    }
}
