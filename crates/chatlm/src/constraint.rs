//! Structured output: [`Constraint`]s built with llguidance for OpenAI's `response_format`
//! (`json_object`, `json_schema`) and for forced tool calls (`tool_choice: "required"` or a
//! named function), in the Hermes format the chat templates of Qwen2.5, SmolLM2 and others
//! parse back:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! llguidance needs every token as bytes (a token trie) and slices of the vocabulary it
//! precomputes; both depend only on the tokenizer, so they are built once per [`Engine`] on
//! first use ([`ConstraintEnv`]) and each request only compiles its schema or grammar.

use std::panic::{catch_unwind, AssertUnwindSafe};

use chatlm_generate::{Constraint, GenerateError};
use chatlm_tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie, INVALID_TOKEN};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Whitespace the JSON grammars allow between two JSON tokens: one space or tab, or a line
/// break and an indentation of at most 20. Why not llguidance's default (any run of
/// whitespace): a small model can then emit newlines until its token budget runs out and the
/// object is never closed; a bounded run forces progress while still allowing pretty-printed
/// output.
const WHITESPACE: &str = r"[\x20\x09]|\x0D?\x0A[\x20\x09]{0,20}";

/// What llguidance needs of one engine's tokenizer, built once ([`Engine::constraint_env`]).
pub(crate) struct ConstraintEnv {
    factory: ParserFactory,
    vocab_size: usize,
}

impl ConstraintEnv {
    /// The token trie of `tokenizer` over the model's `vocab_size` rows (ids past the
    /// tokenizer's are never allowed), ending on `stop_ids` (allowed once the output is
    /// complete). Errors are messages: the engine keeps the first one for every later call.
    pub(crate) fn build(tokenizer: &Tokenizer, vocab_size: usize, stop_ids: &[u32]) -> std::result::Result<Self, String> {
        let table = tokenizer.token_bytes().map_err(|e| e.to_string())?;
        let words: Vec<Vec<u8>> = (0..vocab_size)
            .map(|id| match table.get(id) {
                Some(Some(token)) if token.special => {
                    // llguidance's spelling of a special token: a 0xFF byte (never in UTF-8
                    // text) before its name, so grammars over text never produce it.
                    let mut bytes = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    bytes.extend_from_slice(&token.bytes);
                    bytes
                }
                Some(Some(token)) => token.bytes.clone(),
                _ => Vec::new(),
            })
            .collect();
        let stops: Vec<u32> = stop_ids.iter().copied().filter(|&id| (id as usize) < vocab_size).collect();
        let info = TokRxInfo::new(vocab_size as u32, stops.first().copied().unwrap_or(INVALID_TOKEN));
        // toktrie asserts on inconsistent input (a vocabulary over u32, a bad EOS id): a
        // panic here becomes this engine's error, not a crash of the caller.
        let built = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<ParserFactory, String> {
            let mut trie = TokTrie::from(&info, &words);
            if !stops.is_empty() {
                trie = trie.with_eos_tokens(&stops);
            }
            // Exact tokenization (`tokenize_bytes`) only serves llguidance's forced-token
            // fast path, which a non-canonical environment turns off: the trie's greedy
            // tokenization is enough and needs no copy of the tokenizer.
            let env: TokEnv = std::sync::Arc::new(ApproximateTokEnv::new(trie));
            let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
            // Grammar warnings go to the caller as errors, not to the server's stderr.
            factory.quiet();
            Ok(factory)
        }));
        let factory = built.map_err(|_| "building the token trie panicked".to_string())??;
        Ok(ConstraintEnv { factory, vocab_size })
    }

    fn constraint(&self, grammar: TopLevelGrammar, what: &str) -> Result<Box<dyn Constraint>> {
        let parser = catch_unwind(AssertUnwindSafe(|| self.factory.create_parser(grammar)))
            .map_err(|_| Error::InvalidInput(format!("{what}: compiling it panicked")))?
            .map_err(|e| Error::InvalidInput(format!("{what}: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::InvalidInput(format!("{what}: {e}")));
        }
        Ok(Box::new(LlgConstraint { matcher, vocab_size: self.vocab_size }))
    }
}

/// A compiled grammar driving one sequence.
struct LlgConstraint {
    matcher: Matcher,
    vocab_size: usize,
}

impl Constraint for LlgConstraint {
    fn mask(&mut self, logits: &mut [f32]) -> std::result::Result<(), GenerateError> {
        if logits.len() != self.vocab_size {
            return Err(GenerateError::Constraint(format!(
                "{} logits, the constraint was built for {} ids",
                logits.len(),
                self.vocab_size
            )));
        }
        // Once complete only the stop ids may follow (the sequence normally ends first).
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| GenerateError::Constraint(e.to_string()))?;
        allowed.iter_unset_entries(|id| {
            if let Some(l) = logits.get_mut(id) {
                *l = f32::NEG_INFINITY;
            }
        });
        // The mask may be shorter than the vocabulary: ids past it are not allowed either.
        for l in logits.iter_mut().skip(allowed.len()) {
            *l = f32::NEG_INFINITY;
        }
        Ok(())
    }

    fn commit(&mut self, id: u32) -> std::result::Result<(), GenerateError> {
        self.matcher.consume_token(id).map_err(|e| GenerateError::Constraint(e.to_string()))
    }

    fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// A constraint for OpenAI's `response_format`: `None` is `json_object` (any JSON object),
/// `Some(schema)` is `json_schema` (that schema; one llguidance rejects is
/// [`Error::InvalidInput`] with its message).
///
/// ```no_run
/// # fn main() -> chatlm::Result<()> {
/// use chatlm::{json_constraint, LoadSpec, Pipeline, Prompt};
/// let mut pipe = Pipeline::load(&LoadSpec::default())?;
/// let schema = serde_json::json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
/// let constraint = json_constraint(pipe.engine(), Some(&schema))?;
/// let out = pipe.generate_constrained(Prompt::from("Name a city as JSON."), &pipe.default_config(), constraint, &Default::default(), |_| {})?;
/// let city: serde_json::Value = serde_json::from_str(&out.text).expect("JSON");
/// # Ok(()) }
/// ```
pub fn json_constraint(engine: &Engine, schema: Option<&Value>) -> Result<Box<dyn Constraint>> {
    let schema = match schema {
        None => json!({"type": "object"}),
        Some(Value::Bool(true)) => json!({}),
        Some(s @ Value::Object(_)) => s.clone(),
        Some(other) => {
            return Err(Error::InvalidInput(format!("invalid JSON schema: expected an object, got {}", kind(other))));
        }
    };
    let grammar = TopLevelGrammar::from_json_schema(with_whitespace(schema));
    engine.constraint_env()?.constraint(grammar, "invalid JSON schema")
}

/// A constraint for a forced tool call: the output is one Hermes `<tool_call>` block whose
/// `name` is one of `tools` (OpenAI's `[{"type": "function", "function": {"name", "parameters"}}]`;
/// a bare `{"name", "parameters"}` is accepted too) and whose `arguments` follow that tool's
/// `parameters` schema (no parameters: `{}`). `only` restricts it to the function of that
/// name (`tool_choice: {"type": "function", "function": {"name": ...}}`).
///
/// A `parameters` object schema that does not say otherwise gets `"additionalProperties":
/// false` (what OpenAI's strict mode requires anyway): a function takes the arguments it
/// declares, and a small model left free to add keys can repeat invented ones until its
/// token budget runs out.
pub fn tool_call_constraint(engine: &Engine, tools: &[Value], only: Option<&str>) -> Result<Box<dyn Constraint>> {
    let grammar = tool_call_grammar(tools, only)?;
    engine.constraint_env()?.constraint(TopLevelGrammar::from_lark(grammar), "invalid tool definitions")
}

/// A constraint from a grammar in llguidance's Lark syntax (`%json {schema}` embeds a JSON
/// schema); one it rejects is [`Error::InvalidInput`] with its message.
pub fn lark_constraint(engine: &Engine, grammar: &str) -> Result<Box<dyn Constraint>> {
    engine.constraint_env()?.constraint(TopLevelGrammar::from_lark(grammar.to_string()), "invalid grammar")
}

/// The Lark grammar of one Hermes tool call over `tools` (see [`tool_call_constraint`]).
fn tool_call_grammar(tools: &[Value], only: Option<&str>) -> Result<String> {
    let mut calls = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let function = tool.get("function").unwrap_or(tool);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::InvalidInput(format!("tools[{i}] has no function name")))?;
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}, "additionalProperties": false}),
            Some(p @ Value::Object(_)) => closed(p.clone()),
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "tools[{i}] ({name}): parameters must be a JSON schema object, got {}",
                    kind(other)
                )))
            }
        };
        let call = json!({
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": false,
        });
        calls.push(serde_json::to_string(&with_whitespace(call)).map_err(|e| Error::InvalidInput(e.to_string()))?);
    }
    if calls.is_empty() {
        return Err(Error::InvalidInput(match only {
            Some(name) => format!("tool_choice names function {name:?}, which is not among the tools"),
            None => "a tool call is required but no tools were given".to_string(),
        }));
    }
    let mut grammar = String::from("start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\n");
    grammar.push_str(&format!(
        "call: {}\n",
        (0..calls.len()).map(|i| format!("call_{i}")).collect::<Vec<_>>().join(" | ")
    ));
    for (i, schema) in calls.iter().enumerate() {
        grammar.push_str(&format!("call_{i}: %json {schema}\n"));
    }
    Ok(grammar)
}

/// An object schema with `properties` and no word on other keys, closed to other keys.
fn closed(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        if object.contains_key("properties") && !object.contains_key("additionalProperties") {
            object.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    schema
}

/// `schema` with this module's [`WHITESPACE`], unless it sets llguidance options itself.
fn with_whitespace(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert_with(|| json!({"whitespace_pattern": WHITESPACE}));
    }
    schema
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    #[test]
    fn tool_grammar_has_one_alternative_per_tool() {
        let grammar = tool_call_grammar(&[weather(), json!({"name": "now"})], None).unwrap();
        assert!(grammar.starts_with("start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: call_0 | call_1\n"), "{grammar}");
        assert!(grammar.contains(r#""name":{"const":"get_weather"}"#), "{grammar}");
        assert!(grammar.contains(r#""required":["city"],"additionalProperties":false}"#), "{grammar}");
        assert!(grammar.contains(r#""name":{"const":"now"},"arguments":{"type":"object","properties":{},"additionalProperties":false}"#), "{grammar}");
        let only = tool_call_grammar(&[weather(), json!({"name": "now"})], Some("now")).unwrap();
        assert!(only.contains("call: call_0\n") && !only.contains("get_weather"), "{only}");
    }

    #[test]
    fn bad_tools_are_invalid_input() {
        let err = tool_call_grammar(&[weather()], Some("nope")).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("nope")), "{err}");
        assert!(matches!(tool_call_grammar(&[], None), Err(Error::InvalidInput(_))));
        assert!(matches!(tool_call_grammar(&[json!({"type": "function"})], None), Err(Error::InvalidInput(ref m)) if m.contains("tools[0]")));
        let bad = json!({"name": "f", "parameters": "x"});
        assert!(matches!(tool_call_grammar(&[bad], None), Err(Error::InvalidInput(ref m)) if m.contains("parameters")));
    }

    #[test]
    fn own_llguidance_options_are_kept() {
        let schema = json!({"type": "object", "x-guidance": {"whitespace_flexible": false}});
        assert_eq!(with_whitespace(schema.clone()), schema);
        assert_eq!(with_whitespace(json!({}))["x-guidance"]["whitespace_pattern"], WHITESPACE);
    }
}
