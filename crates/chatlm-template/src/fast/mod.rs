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
mod emit;
mod eval;
mod expr;
mod flow;
mod json;
mod lexer;
mod ops;
mod parser;
mod value;

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// The names a request's variable can be seen under (see the parser), with their slots.
    by_name: Vec<(Box<str>, Sym)>,
    /// [`name_key`] of each name of `by_name`, in the same order: a request variable is matched
    /// by scanning these words, the text compared only on a hit.
    name_keys: Vec<u64>,
    /// Bit [`filter_bit`] of each key of `name_keys`: most of a request's variables (`pad_token`,
    /// `unk_token`, ...) are not the template's, and one bit test rules them out.
    name_filter: [u64; 4],
    /// The names of built-in functions (defined even when not called: `strftime_now is defined`).
    is_func: Vec<bool>,
    /// The names with `is_func` set (few): their slots start as [`Value::Func`], the others as
    /// undefined, written in one uniform pass.
    funcs: Vec<Sym>,
    /// `messages`, `tools`, `documents`, `add_generation_prompt`, where the template reads them.
    fixed: [Option<Sym>; 4],
    /// About the size of the recent outputs, to allocate the next one at once.
    size_hint: AtomicUsize,
}

/// Compiles the template source minijinja compiles (after the crate's rewrites); `None` when it
/// uses something the fast renderer does not support.
pub(crate) fn compile(source: &str) -> Option<Program> {
    // Generation spans are recorded as bodies close; text that already holds the markers the
    // reference path looks for is left to it.
    if source.contains([crate::generation::GEN_START, crate::generation::GEN_END]) {
        return None;
    }
    let mut prog = parser::parse(lexer::lex(source)?)?;
    prog.name_keys = prog.by_name.iter().map(|(n, _)| name_key(n)).collect();
    for &k in &prog.name_keys {
        let bit = filter_bit(k);
        prog.name_filter[bit / 64] |= 1 << (bit % 64);
    }
    prog.is_func = prog.syms.iter().map(|s| Func::from_name(s).is_some()).collect();
    prog.funcs = (0..prog.syms.len() as Sym).filter(|&s| prog.is_func[s as usize]).collect();
    prog.fixed = ["messages", "tools", "documents", "add_generation_prompt"].map(|n| prog.sym(n));
    Some(prog)
}

impl Program {
    /// Renders like minijinja would, or `None` to have minijinja do it: the text and the byte
    /// spans of `{% generation %}` bodies in the order they closed. `messages` are the request's
    /// (or their prepared copies); their `null` keys are invisible, as in minijinja.
    pub(crate) fn render(
        &self,
        req: &ChatRequest,
        messages: &[&Json],
        limits: &Limits,
    ) -> Option<(String, Vec<Range<usize>>)> {
        // The globals, with room for the locals after them (see `Vm::locals`).
        let mut globals: Vec<(Sym, Value)> = Vec::with_capacity(self.is_func.len() + 16);
        globals.resize_with(self.is_func.len(), || (eval::PENDING, Value::Undefined));
        for &s in &self.funcs {
            put(&mut globals[s as usize].1, Value::Func);
        }
        // Special tokens, then kwargs over them, then the fixed arguments (see `crate::context`).
        for (k, v) in req.special_tokens.iter().chain(req.kwargs.iter()) {
            if let Some(s) = self.find_name(k) {
                let s = s as usize;
                if self.is_func[s] {
                    // A variable shadowing a built-in function: minijinja's business.
                    return None;
                }
                put(&mut globals[s].1, from_json(v, false).ok()?);
            }
        }
        // Each written in place (an array of the four, looped over, is moved around twice), and
        // built only where the template reads it.
        let [msgs, tools, docs, agp] = self.fixed;
        if let Some(s) = msgs {
            put(&mut globals[s as usize].1, Value::Msgs(&messages));
        }
        if let Some(s) = tools {
            put(&mut globals[s as usize].1, req.tools.as_ref().map_or(Value::None, Value::Arr));
        }
        if let Some(s) = docs {
            put(&mut globals[s as usize].1, req.documents.as_ref().map_or(Value::None, Value::Arr));
        }
        if let Some(s) = agp {
            put(&mut globals[s as usize].1, Value::bool(req.add_generation_prompt));
        }
        let mut vm = eval::Vm::new(self, globals, limits.fuel, limits.recursion, limits.max_output_bytes);
        vm.now = req.now;
        let hint = self.size_hint.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint.clamp(256, 1 << 20));
        vm.exec(&self.body, &mut out).ok()?;
        vm.spend_bytes(out.len()).ok()?;
        // Grown at once, shrunk slowly: outputs of one template vary with the conversation, and
        // growing the buffer while rendering copies what was written so far.
        self.size_hint.store((out.len() + out.len() / 8).max(hint - hint / 8), Ordering::Relaxed);
        (out.len() <= limits.max_output_bytes).then_some((out, vm.spans))
    }

    /// The slot a request variable named `name` goes to, if the template can see it.
    #[inline]
    fn find_name(&self, name: &str) -> Option<Sym> {
        let key = name_key(name);
        let bit = filter_bit(key);
        if self.name_filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return None;
        }
        let mut at = 0;
        while let Some(i) = self.name_keys[at..].iter().position(|&k| k == key) {
            let (n, s) = &self.by_name[at + i];
            if **n == *name {
                return Some(*s);
            }
            at += i + 1;
        }
        None
    }

    fn sym(&self, name: &str) -> Option<Sym> {
        self.syms.iter().position(|s| &**s == name).map(|i| i as Sym)
    }
}

/// A name's length and its first, middle and last bytes in one word: distinct for almost all pairs
/// of names, so finding one among the template's names is a scan of words. (Three loads: copying
/// a prefix of the name into a word costs a call to `memcpy`.)
fn name_key(name: &str) -> u64 {
    let b = name.as_bytes();
    let byte = |i: usize| b.get(i).map_or(0, |&c| u64::from(c));
    b.len() as u64 | byte(0) << 40 | byte(b.len() / 2) << 48 | byte(b.len().wrapping_sub(1)) << 56
}

/// Sets a global before the render starts. Until then no slot holds a value that owns anything
/// (they start undefined, and [`from_json`] only borrows the request), so the old value is
/// forgotten rather than dropped: a drop is a call per slot written.
#[inline]
fn put<'a>(slot: &mut Value<'a>, v: Value<'a>) {
    std::mem::forget(std::mem::replace(slot, v));
}

/// A name key's bit in `Program::name_filter` (of 256: a few false hits with the dozens of names a
/// template reads, each costing only the scan it would have cost anyway).
fn filter_bit(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, messages: Json) -> Option<String> {
        let prog = compile(src).expect("compiles");
        let req = ChatRequest::new(messages.as_array().unwrap().clone());
        let messages: Vec<&Json> = req.messages.iter().collect();
        prog.render(&req, &messages, &Limits::default()).map(|r| r.0)
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
    fn request_variables_reach_their_names_when_keys_collide() {
        // `abcxe` and `abcye` have the same key (length, first, middle and last bytes).
        assert_eq!(name_key("abcxe"), name_key("abcye"));
        let prog = compile("{{ abcxe }}{{ abcye }}{{ x }}{{ bos_token }}").unwrap();
        let mut req = ChatRequest::new(vec![]);
        for (k, v) in [("abcye", "2"), ("", "e"), ("abcxe", "1"), ("x", "3"), ("abcze", "z"), ("pad_token", "p")] {
            req.kwargs.insert(k.to_string(), Json::String(v.to_string()));
        }
        req.set_special_token("bos_token", "<s>");
        assert_eq!(prog.render(&req, &[], &Limits::default()).unwrap().0, "123<s>");
    }

    #[test]
    fn literal_emits_become_text() {
        // "a", 'b', "c", "d" merge (four pieces at most), then "e", the variable, "f".
        let prog = compile("a{{ 'b' }}{{ \"c\" }}d{{ 'e' }}{{ m }}{{ 'f' }}").unwrap();
        assert_eq!(prog.body.len(), 4);
        let src = "a{{ 'b' }}{{ \"c\" }}d{{ 'e' }}{% for m in messages %}{{ m.role }}{% endfor %}{{- ' f' }}";
        assert_eq!(render(src, json!([{"role": "u"}])).unwrap(), "abcdeu f");
    }

    #[test]
    fn attribute_comparisons_read_the_json_in_place() {
        let src = "{% for m in messages %}{% if m.x == 'a' %}y{% elif m.x != 'b' %}n{% endif %}{% endfor %}";
        let msgs = json!([{"x": "a"}, {"x": "b"}, {"x": 5}, {"x": [1]}, {"x": {"a": 1}}, {"x": false}]);
        assert_eq!(render(src, msgs).unwrap(), "ynnnn");
        // Missing, or null in a message (hidden): undefined is minijinja's to compare.
        assert_eq!(render(src, json!([{"role": "user"}])), None);
        assert_eq!(render(src, json!([{"x": null}])), None);
        // A number no template value can hold gives up too.
        assert_eq!(render(src, json!([{"x": u64::MAX}])), None);
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
