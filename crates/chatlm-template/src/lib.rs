//! Messages → prompt: chat templates rendered exactly like Hugging Face transformers'
//! `tokenizer.apply_chat_template`, on [minijinja].
//!
//! A chat template is a Jinja program shipped with a model (in `tokenizer_config.json`,
//! `chat_template.jinja` or a GGUF file). transformers renders it in a particular Jinja environment
//! (`trim_blocks`, `lstrip_blocks`, `raise_exception`, Python's `json.dumps` as `tojson`, Python
//! string methods and value printing, ...) and wraps the render in argument handling
//! (`continue_final_message`, `None` keys dropped, named templates). This crate reproduces all of it
//! byte for byte, verified against transformers' own renders of 40 real templates.
//!
//! Templates are untrusted input: rendering is bounded by [`Limits`] (fuel, output size, recursion)
//! and the environment has no loader, so a template can never read a file.
//!
//! minijinja is the reference renderer. Templates within the Jinja subset chat templates use (all
//! 40 of the corpus) also get a renderer of this crate's own, several times faster, which hands any
//! render it cannot vouch for back to minijinja; see [`ChatTemplate::uses_fast_path`].
//!
//! ```
//! use chatlm_template::{ChatRequest, ChatTemplate};
//! use serde_json::json;
//!
//! let tpl = ChatTemplate::new(
//!     "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}\
//!      {% if add_generation_prompt %}<|assistant|>{% endif %}",
//! )?;
//! let mut req = ChatRequest::new(vec![json!({"role": "user", "content": "Hi"})]);
//! req.add_generation_prompt = true;
//! req.set_special_token("eos_token", "</s>");
//! assert_eq!(tpl.render(&req)?.text, "<|user|>Hi</s><|assistant|>");
//! # Ok::<(), chatlm_template::TemplateError>(())
//! ```

mod builtin;
mod clock;
mod continuation;
mod env;
mod error;
mod escape;
mod fast;
mod forloop;
mod generation;
mod pyfmt;
mod request;
mod select;
mod tokenize;
mod value;

use std::ops::Range;
use std::path::Path;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind};
use value::{json_to_value, message_to_value, SmallMap};

pub use builtin::{chatml, chatml_with_tokens, CHATML};
pub use clock::DateTime;
pub use error::TemplateError;
pub use request::{ChatRequest, ContinueFinal};
pub use select::{recognise, select_template, template_names, TemplateText};
pub use tokenize::{apply_chat_template, special_token_variables, ApplyOptions, Applied};

/// Resource bounds of one render. Templates come from model repositories and are untrusted: a
/// template that loops forever or builds gigabytes of text is stopped with
/// [`TemplateError::LimitExceeded`] instead of hanging or exhausting memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// minijinja fuel: one unit per instruction, 1/64 per byte of data produced. It bounds both time
    /// and memory (about `fuel * 64` bytes).
    pub fuel: u64,
    /// Maximum size of the rendered prompt in bytes (while rendering, fuel already bounds memory).
    pub max_output_bytes: usize,
    /// Maximum nesting of macro calls, includes and blocks.
    pub recursion: usize,
}

impl Default for Limits {
    /// Generous for real conversations (a 10 MB message renders with room to spare; real templates
    /// use a few hundred fuel per message) while stopping runaway templates within about a second.
    fn default() -> Limits {
        Limits { fuel: 5_000_000, max_output_bytes: 256 << 20, recursion: 200 }
    }
}

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The prompt, exactly as transformers renders it.
    pub text: String,
    /// Byte ranges of `text` produced inside `{% generation %}` blocks (the assistant's own text, for
    /// `return_assistant_tokens_mask`), in the order the blocks closed. Empty when the template has no
    /// such block. With `continue_final_message` they are clipped to the cut text.
    pub generation_spans: Vec<Range<usize>>,
}

impl Rendered {
    /// The generation spans in Unicode code points (Python string indices), as transformers reports them.
    pub fn generation_char_spans(&self) -> Vec<Range<usize>> {
        let to_chars = |b: usize| self.text[..b].chars().count();
        self.generation_spans.iter().map(|r| to_chars(r.start)..to_chars(r.end)).collect()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// The field names `continue_final_message` usually looks for in the template's text.
const MENTION_NAMES: [&str; 4] = ["content", "reasoning_content", "thinking", "reasoning"];

/// A compiled chat template.
///
/// Compile once, render many times; it is `Send + Sync` and renders concurrently.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The top-level variables the template reads, sorted: the rest of a request cannot influence
    /// the output, so it is never converted into template values (tool schemas are the costly part).
    variables: Vec<String>,
    source: String,
    has_generation: bool,
    limits: Limits,
    /// Whether the source contains `content` and each reasoning field name, found once here
    /// rather than on every `continue_final_message` render.
    mentioned: [bool; 4],
    /// The template for the fast renderer, when it supports everything the template uses (see
    /// [`fast`]); minijinja renders otherwise, and whenever the fast path gives up.
    fast: Option<fast::Program>,
}

/// Which renderer [`ChatTemplate::render_with`] uses: for differential tests and benchmarks.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// The fast path when it can, minijinja otherwise (what [`ChatTemplate::render`] does).
    Auto,
    /// minijinja only: the reference.
    Minijinja,
    /// The fast path only: `Ok(None)` where it is unavailable or gives up.
    Fast,
}

impl ChatTemplate {
    /// Compiles a template with the default [`Limits`].
    ///
    /// Syntax errors come back as [`TemplateError::Syntax`] with the line and column:
    ///
    /// ```
    /// let err = chatlm_template::ChatTemplate::new("ok\n{% for m in messages %}{{ m }").unwrap_err();
    /// assert!(matches!(err, chatlm_template::TemplateError::Syntax { line: 2, .. }), "{err}");
    /// ```
    pub fn new(source: impl Into<String>) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::with_limits(source, Limits::default())
    }

    /// Compiles a template with explicit resource limits.
    pub fn with_limits(source: impl Into<String>, limits: Limits) -> Result<ChatTemplate, TemplateError> {
        let source = source.into();
        let mut env = env::environment(&limits);
        let with_generation = generation::rewrite(&source);
        let has_generation = with_generation.is_some();
        let base = with_generation.unwrap_or_else(|| source.clone());
        let compiled = forloop::rewrite(&base).unwrap_or_else(|| base.clone());
        let fast = fast::compile(&compiled);
        if let Err(e) = env.add_template_owned(TEMPLATE_NAME, compiled) {
            // Report the position in the user's text: recompile without the `for` rewrite (which
            // shifts columns); the generation rewrite keeps every tag's length.
            let e = env.add_template_owned(TEMPLATE_NAME, base).err().unwrap_or(e);
            return Err(syntax_error(&e, &source));
        }
        let mut variables: Vec<String> = env
            .get_template(TEMPLATE_NAME)
            .map(|t| t.undeclared_variables(false))
            .map_err(|e| syntax_error(&e, &source))?
            .into_iter()
            .collect();
        variables.sort_unstable();
        let mentioned = MENTION_NAMES.map(|n| source.contains(n));
        Ok(ChatTemplate { env, variables, source, has_generation, limits, mentioned, fast })
    }

    /// Reads and compiles a template file (a `.jinja` file as saved by transformers, or any text
    /// file holding one template).
    pub fn from_file(path: impl AsRef<Path>) -> Result<ChatTemplate, TemplateError> {
        let path = path.as_ref();
        let source =
            std::fs::read_to_string(path).map_err(|source| TemplateError::Io { path: path.to_path_buf(), source })?;
        ChatTemplate::new(source)
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template marks assistant text with `{% generation %}` blocks.
    pub fn has_generation_blocks(&self) -> bool {
        self.has_generation
    }

    /// Whether renders take the fast path (a renderer of the Jinja subset chat templates use, with
    /// minijinja as the fallback): false when the template uses something outside that subset.
    /// Even then, a single render can still fall back to minijinja.
    pub fn uses_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// The resource limits renders run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Renders a conversation like `apply_chat_template(..., tokenize=False)`.
    ///
    /// Errors: [`TemplateError::Raised`] when the template calls `raise_exception` (its message is
    /// kept), [`TemplateError::InvalidRequest`] for transformers' own argument errors,
    /// [`TemplateError::Render`] / [`TemplateError::LimitExceeded`] when the template fails.
    pub fn render(&self, req: &ChatRequest) -> Result<Rendered, TemplateError> {
        self.render_with(req, Renderer::Auto)?.ok_or_else(|| TemplateError::InvalidRequest("no render".into()))
    }

    /// [`render`](Self::render) on a chosen renderer (see [`Renderer`]); `Ok(None)` only for
    /// [`Renderer::Fast`] when the fast path is unavailable or gives up.
    #[doc(hidden)]
    pub fn render_with(&self, req: &ChatRequest, renderer: Renderer) -> Result<Option<Rendered>, TemplateError> {
        let prepared = request::prepare(req, &|name| self.mentions(name))?;
        if self.has_generation && request::request_has_marker(req) {
            return Err(TemplateError::InvalidRequest(
                "the request contains U+FDD0/U+FDD1, reserved for {% generation %} tracking".into(),
            ));
        }
        let mut refs = request::MessageRefs::new();
        let messages = prepared.messages(&req.messages, &mut refs);
        let fast = match (&self.fast, renderer) {
            (Some(prog), Renderer::Auto | Renderer::Fast) => prog.render(req, messages, &self.limits),
            _ => None,
        };
        let (text, mut spans) = match fast {
            Some(rendered) => rendered,
            None if renderer == Renderer::Fast => return Ok(None),
            None => {
                let ctx = context(req, messages, &self.variables);
                let _clock = env::ClockGuard::set(req.now);
                let raw = self.render_raw(ctx)?;
                if self.has_generation { generation::extract_spans(&raw) } else { (raw, Vec::new()) }
            }
        };
        let text = match &prepared.continued {
            None => text,
            Some(continued) => {
                let cut = continuation::cut_at_tag(&text, continued)?;
                for s in &mut spans {
                    s.start = s.start.min(cut);
                    s.end = s.end.min(cut);
                }
                let mut text = text;
                text.truncate(cut);
                text
            }
        };
        Ok(Some(Rendered { text, generation_spans: spans }))
    }

    /// Whether the template's text contains `name`.
    fn mentions(&self, name: &str) -> bool {
        match MENTION_NAMES.iter().position(|n| *n == name) {
            Some(i) => self.mentioned[i],
            None => self.source.contains(name),
        }
    }

    fn render_raw(&self, ctx: Value) -> Result<String, TemplateError> {
        let tpl = self.env.get_template(TEMPLATE_NAME).map_err(|e| render_error(&e))?;
        // Rendering into a String is several times cheaper per call than minijinja's io::Write
        // path; while it runs, fuel bounds the memory (1/64 fuel per byte produced), and the size
        // limit is enforced on the result.
        let text = tpl.render(ctx).map_err(|e| render_error(&e))?;
        if text.len() > self.limits.max_output_bytes {
            return Err(TemplateError::LimitExceeded(format!(
                "the rendered prompt is {} bytes, over the limit of {}",
                text.len(),
                self.limits.max_output_bytes
            )));
        }
        Ok(text)
    }
}

/// Builds the template's variables: special tokens, then kwargs over them, then the fixed arguments
/// (only those in `used`, sorted: the others cannot change the output).
fn context(req: &ChatRequest, messages: &[&serde_json::Value], used: &[String]) -> Value {
    let is_used = |name: &str| used.binary_search_by(|v| v.as_str().cmp(name)).is_ok();
    let mut vars = SmallMap::with_capacity(req.special_tokens.len() + req.kwargs.len() + 4);
    for (k, v) in req.special_tokens.iter().chain(req.kwargs.iter()) {
        if is_used(k) {
            vars.insert(k, json_to_value(v));
        }
    }
    let list = |name: &str, l: &Option<Vec<serde_json::Value>>| match l {
        Some(items) if is_used(name) => Value::from(items.iter().map(json_to_value).collect::<Vec<_>>()),
        _ => Value::from(()),
    };
    vars.insert("messages", Value::from(messages.iter().map(|m| message_to_value(m)).collect::<Vec<_>>()));
    vars.insert("tools", list("tools", &req.tools));
    vars.insert("documents", list("documents", &req.documents));
    vars.insert("add_generation_prompt", Value::from(req.add_generation_prompt));
    vars.into_value()
}

fn syntax_error(err: &minijinja::Error, source: &str) -> TemplateError {
    let message = err.detail().map(str::to_string).unwrap_or_else(|| err.kind().to_string());
    let (line, column) = match err.range() {
        Some(r) => line_col(source, r.start),
        None => (err.line().unwrap_or(1), 1),
    };
    TemplateError::Syntax { message, line, column }
}

/// 1-based line and character column of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn render_error(err: &minijinja::Error) -> TemplateError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(raised) = e.downcast_ref::<env::Raised>() {
            return TemplateError::Raised { message: raised.0.clone() };
        }
        cause = e.source();
    }
    let detail = err.detail().map(str::to_string).unwrap_or_default();
    match err.kind() {
        ErrorKind::OutOfFuel => TemplateError::LimitExceeded("the template ran out of fuel (too much work)".into()),
        _ if detail.contains("recursion limit") => {
            TemplateError::LimitExceeded(format!("the template nests too deeply: {detail}"))
        }
        ErrorKind::SyntaxError => TemplateError::Syntax {
            message: detail,
            line: err.line().unwrap_or(1),
            column: 1,
        },
        kind => TemplateError::Render {
            message: if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") },
            line: err.line(),
        },
    }
}
