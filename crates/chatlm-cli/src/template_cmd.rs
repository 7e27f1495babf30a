//! `chatlm template`: messages → prompt, like `tokenizer.apply_chat_template`.
//!
//! One conversation from files (`--messages FILE|-`), or a stream of JSON request lines
//! (`--jsonl`) answered line by line; a bad line gets an `{"error": ...}` line and never stops the
//! others. Tokenizers and compiled templates are cached across lines, so a stream renders at full
//! speed.

mod line;

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use chatlm_template::{
    apply_chat_template, select_template, special_token_variables, ApplyOptions, ChatRequest, ChatTemplate,
    ContinueFinal, DateTime, TemplateError,
};
use chatlm_tokenizer::{ChatTemplateSource, Tokenizer};
use clap::Args;
use serde_json::{json, Map, Value};

use line::{parse_line, LineFields, LineTemplate};

#[derive(Args)]
pub struct TemplateArgs {
    /// Tokenizer whose chat template and special tokens are used: a model directory, a
    /// tokenizer.json or a GGUF file. In `--jsonl` mode, the default for lines without "tokenizer".
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The conversation: a JSON file holding a list of messages (or `{"messages": [...]}`); `-` reads stdin.
    #[arg(long, required_unless_present = "jsonl")]
    messages: Option<String>,
    /// Append the assistant header so the model answers (`add_generation_prompt=True`).
    #[arg(long)]
    add_generation_prompt: bool,
    /// Leave the final message open for the model to continue (`continue_final_message=True`).
    #[arg(long)]
    continue_final_message: bool,
    /// Tool JSON schemas: a JSON file with a list.
    #[arg(long)]
    tools: Option<PathBuf>,
    /// RAG documents: a JSON file with a list of {"title", "text"}.
    #[arg(long)]
    documents: Option<PathBuf>,
    /// Print the token ids (as a JSON array) instead of the text; no second BOS is added.
    #[arg(long)]
    tokenize: bool,
    /// Use this Jinja template file instead of the tokenizer's template.
    #[arg(long)]
    template: Option<PathBuf>,
    /// Pick one of the tokenizer's named templates (e.g. `tool_use`).
    #[arg(long)]
    template_name: Option<String>,
    /// Extra template variable, `KEY=JSON` (e.g. `enable_thinking=false`); a value that is not JSON is a string.
    #[arg(long = "kwarg", value_name = "KEY=JSON")]
    kwargs: Vec<String>,
    /// Fix the clock `strftime_now` reads, `YYYY-MM-DDTHH:MM:SS` (default: now, UTC).
    #[arg(long)]
    now: Option<String>,
    /// Read request lines from stdin and write one JSON result line each.
    #[arg(long, conflicts_with_all = ["messages", "tools", "documents", "continue_final_message", "add_generation_prompt"])]
    jsonl: bool,
    /// Worker threads for `--jsonl` (default: all cores); output order always follows input order.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: TemplateArgs) -> Result<()> {
    if args.jsonl {
        return run_jsonl(&args);
    }
    let tokenizer = args.tokenizer.as_deref().map(load_tokenizer).transpose()?;
    let messages_arg = args.messages.as_deref().unwrap_or("-");
    let messages = match read_json(messages_arg)? {
        Value::Array(list) => list,
        Value::Object(mut o) => match o.remove("messages") {
            Some(Value::Array(list)) => list,
            _ => bail!("{messages_arg}: expected a JSON list of messages (or {{\"messages\": [...]}})"),
        },
        _ => bail!("{messages_arg}: expected a JSON list of messages (or {{\"messages\": [...]}})"),
    };
    let mut req = ChatRequest::new(messages);
    req.add_generation_prompt = args.add_generation_prompt;
    if args.continue_final_message {
        req.continue_final_message = ContinueFinal::Content;
    }
    req.tools = args.tools.as_ref().map(|p| read_json_list(p)).transpose()?;
    req.documents = args.documents.as_ref().map(|p| read_json_list(p)).transpose()?;
    for kv in &args.kwargs {
        let (k, v) = kv.split_once('=').with_context(|| format!("--kwarg {kv:?}: expected KEY=JSON"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        req.kwargs.insert(k.to_string(), value);
    }
    req.now = parse_now(args.now.as_deref())?;
    if let Some(tok) = &tokenizer {
        req.special_tokens = special_token_variables(tok);
    }
    let template = match (&args.template, &tokenizer) {
        (Some(path), _) => ChatTemplate::from_file(path)?,
        (None, Some(tok)) => {
            let source = tok.chat_template().with_context(|| {
                format!(
                    "{}: the tokenizer has no chat template; pass one with --template FILE",
                    args.tokenizer.as_deref().unwrap_or(Path::new("?")).display()
                )
            })?;
            let text = select_template(source, args.template_name.as_deref(), req.tools.is_some())?;
            ChatTemplate::new(text).context("the tokenizer's chat template does not compile")?
        }
        (None, None) => bail!("give --tokenizer PATH or --template FILE"),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.tokenize {
        let tok = tokenizer.as_ref().context("--tokenize needs --tokenizer")?;
        let applied = apply_chat_template(tok, &template, &req, ApplyOptions { tokenize: true, ..Default::default() })?;
        serde_json::to_writer(&mut out, &applied.ids.unwrap_or_default())?;
    } else {
        out.write_all(template.render(&req)?.text.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_pretrained(path).with_context(|| format!("cannot load tokenizer from {}", path.display()))
}

fn read_json(path: &str) -> Result<Value> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading messages from stdin")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{path}: not valid JSON"))
}

fn read_json_list(path: &Path) -> Result<Vec<Value>> {
    match read_json(&path.to_string_lossy())? {
        Value::Array(list) => Ok(list),
        _ => bail!("{}: expected a JSON list", path.display()),
    }
}

fn parse_now(now: Option<&str>) -> Result<Option<DateTime>> {
    now.map(|s| DateTime::parse(s).with_context(|| format!("--now {s:?}: expected YYYY-MM-DDTHH:MM:SS")))
        .transpose()
}

/// A failed line: `kind` is `raise_exception`, `invalid_request` or `render`.
struct LineError {
    kind: &'static str,
    message: String,
}

impl From<TemplateError> for LineError {
    fn from(e: TemplateError) -> LineError {
        let message = match &e {
            TemplateError::Raised { message } => message.clone(),
            other => other.to_string(),
        };
        LineError { kind: e.kind(), message }
    }
}

fn invalid(message: impl Into<String>) -> LineError {
    LineError { kind: "invalid_request", message: message.into() }
}

/// A fast non-cryptographic hasher (FxHash's word-at-a-time multiply) for the template cache:
/// template sources are up to tens of kilobytes and are looked up once per line, where SipHash would
/// cost as much as the render itself.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// What all workers of a stream share: the defaults and the loaded tokenizers.
struct Shared {
    default_tokenizer: Option<PathBuf>,
    default_template: Option<Arc<ChatTemplate>>,
    tokenizers: Mutex<HashMap<PathBuf, Arc<Tokenizer>>>,
}

impl Shared {
    fn tokenizer(&self, path: &Path) -> Result<Arc<Tokenizer>, LineError> {
        let mut cache = self.tokenizers.lock().map_err(|_| invalid("tokenizer cache poisoned"))?;
        if let Some(t) = cache.get(path) {
            return Ok(t.clone());
        }
        // Loaded under the lock: other workers wanting the same tokenizer wait instead of loading it again.
        let tok = Arc::new(
            Tokenizer::from_pretrained(path)
                .map_err(|e| invalid(format!("cannot load tokenizer from {}: {e}", path.display())))?,
        );
        cache.insert(path.to_path_buf(), tok.clone());
        Ok(tok)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// What the cache holds for one line template's raw JSON text: the compiled template of a string,
/// or of a named list the template chosen without and with tools.
#[derive(Clone, Default)]
struct Cached {
    single: Option<Arc<ChatTemplate>>,
    list: [Option<Arc<ChatTemplate>>; 2],
}

/// One worker's compiled-template caches. Untrusted streams could send endless distinct templates:
/// each cache is emptied when it reaches [`MAX_CACHED`] entries.
struct Session<'a> {
    shared: &'a Shared,
    /// By template source (the tokenizers' templates, and every compiled template).
    templates: FastMap<String, Arc<ChatTemplate>>,
    /// By the raw JSON text of lines' `"chat_template"`.
    by_json: FastMap<Arc<str>, Cached>,
    /// The last entry of `by_json` used: consecutive lines mostly share a template, and comparing
    /// with it skips hashing kilobytes of text.
    last: Option<(Arc<str>, Cached)>,
}

const MAX_CACHED: usize = 256;

impl Session<'_> {
    fn new(shared: &Shared) -> Session<'_> {
        Session { shared, templates: HashMap::default(), by_json: HashMap::default(), last: None }
    }

    /// The cache entry of a line template's raw JSON text.
    fn lookup(&mut self, raw: &str) -> Option<Cached> {
        if let Some((key, entry)) = &self.last {
            if **key == *raw {
                return Some(entry.clone());
            }
        }
        let (key, entry) = self.by_json.get_key_value(raw)?;
        self.last = Some((key.clone(), entry.clone()));
        Some(entry.clone())
    }

    /// Records what a raw JSON template compiled to.
    fn remember(&mut self, raw: &str, update: impl FnOnce(&mut Cached)) {
        if !self.by_json.contains_key(raw) && self.by_json.len() >= MAX_CACHED {
            self.by_json.clear();
        }
        let key: Arc<str> = match self.by_json.get_key_value(raw) {
            Some((k, _)) => k.clone(),
            None => Arc::from(raw),
        };
        let entry = self.by_json.entry(key.clone()).or_default();
        update(entry);
        self.last = Some((key, entry.clone()));
    }

    fn template(&mut self, source: &str) -> Result<Arc<ChatTemplate>, LineError> {
        if let Some(t) = self.templates.get(source) {
            return Ok(t.clone());
        }
        if self.templates.len() >= MAX_CACHED {
            self.templates.clear();
        }
        let t = Arc::new(ChatTemplate::new(source)?);
        self.templates.insert(source.to_string(), t.clone());
        Ok(t)
    }

    /// The template a line's `"chat_template"` names.
    fn line_template(&mut self, tpl: LineTemplate<Cached>, has_tools: bool) -> Result<Arc<ChatTemplate>, LineError> {
        let slot = usize::from(has_tools);
        let (raw, value) = match tpl {
            LineTemplate::Known(raw, entry) => {
                if let Some(t) = entry.single.or_else(|| entry.list[slot].clone()) {
                    return Ok(t);
                }
                // A known list, not yet chosen from with this `has_tools`: it decoded before.
                let value = serde_json::from_str(raw).map_err(|e| invalid(format!("\"chat_template\": {e}")))?;
                (Some(raw), value)
            }
            LineTemplate::New(raw, value) => (Some(raw), value),
            LineTemplate::Parsed(value) => (None, value),
        };
        match value {
            Value::String(source) => {
                let t = self.template(&source)?;
                if let Some(raw) = raw {
                    self.remember(raw, |c| c.single = Some(t.clone()));
                }
                Ok(t)
            }
            list @ Value::Array(_) => {
                let source = named_templates(&list)?;
                let text = select_template(&source, None, has_tools)?.to_string();
                let t = self.template(&text)?;
                if let Some(raw) = raw {
                    self.remember(raw, |c| c.list[slot] = Some(t.clone()));
                }
                Ok(t)
            }
            _ => Err(invalid("\"chat_template\" must be a string or a list of {name, template}")),
        }
    }

    fn answer(&mut self, line: &str) -> Result<Answer, LineError> {
        let mut fields = parse_line(line, |raw| self.lookup(raw))?;
        let tok_path = match fields.tokenizer.take() {
            Some(Value::String(p)) => Some(PathBuf::from(p)),
            None => self.shared.default_tokenizer.clone(),
            Some(_) => return Err(invalid("\"tokenizer\" must be a path string")),
        };
        let tokenizer = tok_path.as_deref().map(|p| self.shared.tokenizer(p)).transpose()?;
        let request = build_request(&mut fields, tokenizer.as_deref())?;
        let flag = |name: &str, v: &Option<Value>| -> Result<bool, LineError> {
            match v {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(invalid(format!("\"{name}\" must be a boolean"))),
            }
        };
        let tokenize = flag("tokenize", &fields.tokenize)?;
        let masks = flag("return_assistant_tokens_mask", &fields.return_assistant_tokens_mask)?;
        let has_tools = request.tools.is_some();
        let template = match fields.chat_template.take() {
            Some(tpl) => self.line_template(tpl, has_tools)?,
            None => match (&self.shared.default_template, &tokenizer) {
                (Some(t), _) => t.clone(),
                (None, Some(tok)) => {
                    let source = tok.chat_template().ok_or_else(|| invalid("the tokenizer has no chat template"))?;
                    let text = select_template(source, None, has_tools)?.to_string();
                    self.template(&text)?
                }
                (None, None) => return Err(invalid("no \"chat_template\", no \"tokenizer\" and no --tokenizer/--template")),
            },
        };
        if !(tokenize || masks) {
            return Ok(Answer::Text(template.render(&request)?.text));
        }
        let tok = tokenizer.ok_or_else(|| invalid("\"tokenize\" needs a \"tokenizer\" (or --tokenizer)"))?;
        let applied = apply_chat_template(
            &tok,
            &template,
            &request,
            ApplyOptions { tokenize: true, return_assistant_tokens_mask: masks },
        )?;
        let mut out = Map::new();
        out.insert("text".into(), Value::String(applied.text));
        out.insert("ids".into(), json!(applied.ids.unwrap_or_default()));
        if let Some(m) = applied.assistant_masks {
            out.insert("assistant_masks".into(), json!(m));
        }
        Ok(Answer::Json(Value::Object(out)))
    }

    /// Appends the output line for one input line (an `{"error": ...}` object when it fails).
    fn answer_line(&mut self, line: &str, out: &mut Vec<u8>) {
        let start = out.len();
        let written = match self.answer(line) {
            // The common answer is written directly: the same bytes as serialising {"text": ...}.
            Ok(Answer::Text(text)) => {
                out.extend_from_slice(b"{\"text\":");
                serde_json::to_writer(&mut *out, &text).map(|()| out.push(b'}'))
            }
            Ok(Answer::Json(v)) => serde_json::to_writer(&mut *out, &v),
            Err(e) => serde_json::to_writer(&mut *out, &json!({"error": {"kind": e.kind, "message": e.message}})),
        };
        if let Err(e) = written {
            out.truncate(start);
            out.extend_from_slice(
                format!("{{\"error\":{{\"kind\":\"render\",\"message\":\"cannot encode the answer: {e}\"}}}}").as_bytes(),
            );
        }
        out.push(b'\n');
    }
}

/// A successful line's answer.
enum Answer {
    Text(String),
    Json(Value),
}

fn named_templates(v: &Value) -> Result<ChatTemplateSource, LineError> {
    let mut list = Vec::new();
    for item in v.as_array().into_iter().flatten() {
        match (item.get("name").and_then(Value::as_str), item.get("template").and_then(Value::as_str)) {
            (Some(n), Some(t)) => list.push((n.to_string(), t.to_string())),
            _ => return Err(invalid("each named chat_template needs string \"name\" and \"template\"")),
        }
    }
    Ok(ChatTemplateSource::Named(list))
}

fn build_request(f: &mut LineFields<Cached>, tokenizer: Option<&Tokenizer>) -> Result<ChatRequest, LineError> {
    let list = |v: Option<Value>, name: &str| -> Result<Option<Vec<Value>>, LineError> {
        match v {
            None => Ok(None),
            Some(Value::Array(l)) => Ok(Some(l)),
            Some(_) => Err(invalid(format!("\"{name}\" must be a list"))),
        }
    };
    let messages = list(f.messages.take(), "messages")?.ok_or_else(|| invalid("\"messages\" (a list) is required"))?;
    let mut req = ChatRequest::new(messages);
    req.tools = list(f.tools.take(), "tools")?;
    req.documents = list(f.documents.take(), "documents")?;
    req.add_generation_prompt = match &f.add_generation_prompt {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("\"add_generation_prompt\" must be a boolean")),
    };
    req.continue_final_message = match &f.continue_final_message {
        None | Some(Value::Bool(false)) => ContinueFinal::No,
        Some(Value::Bool(true)) => ContinueFinal::Content,
        Some(Value::String(field)) => ContinueFinal::Field(field.clone()),
        Some(_) => return Err(invalid("\"continue_final_message\" must be a boolean or a field name")),
    };
    req.special_tokens = match f.special_tokens.take() {
        Some(Value::Object(m)) => m,
        None => tokenizer.map(special_token_variables).unwrap_or_default(),
        Some(_) => return Err(invalid("\"special_tokens\" must be an object")),
    };
    req.kwargs = match f.kwargs.take() {
        Some(Value::Object(m)) => m,
        None => Map::new(),
        Some(_) => return Err(invalid("\"kwargs\" must be an object")),
    };
    req.now = match &f.now {
        None => None,
        Some(Value::String(s)) => {
            Some(DateTime::parse(s).ok_or_else(|| invalid(format!("\"now\" {s:?}: expected YYYY-MM-DDTHH:MM:SS")))?)
        }
        Some(_) => return Err(invalid("\"now\" must be a string")),
    };
    Ok(req)
}

/// Lines handed to the workers at a time; large enough to amortise thread start-up, small enough
/// that results stream out.
const BATCH: usize = 512;

fn run_jsonl(args: &TemplateArgs) -> Result<()> {
    let default_template = args.template.as_ref().map(ChatTemplate::from_file).transpose()?.map(Arc::new);
    let shared = Shared {
        default_tokenizer: args.tokenizer.clone(),
        default_template,
        tokenizers: Mutex::new(HashMap::new()),
    };
    if let Some(path) = &args.tokenizer {
        // Fail early and clearly on a bad default tokenizer rather than on every line.
        shared.tokenizer(path).map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut sessions: Vec<Session> = (0..threads).map(|_| Session::new(&shared)).collect();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        for line in lines.by_ref() {
            let line = line.context("reading request lines from stdin")?;
            if !line.trim().is_empty() {
                batch.push(line);
            }
            if batch.len() == BATCH {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        let chunk = batch.len().div_ceil(threads);
        // Each worker answers a contiguous chunk into one buffer; buffers are written in chunk order,
        // so the output follows the input whatever the thread count.
        let answer_all = |session: &mut Session, lines: &[String]| {
            let mut buf = Vec::with_capacity(lines.len() * 256);
            for l in lines {
                session.answer_line(l, &mut buf);
            }
            buf
        };
        let answers: Vec<Vec<u8>> = if threads == 1 || batch.len() < 2 {
            vec![answer_all(&mut sessions[0], &batch)]
        } else {
            let joined = std::thread::scope(|scope| {
                let handles: Vec<_> = sessions
                    .iter_mut()
                    .zip(batch.chunks(chunk))
                    .map(|(session, lines)| scope.spawn(move || answer_all(session, lines)))
                    .collect();
                handles.into_iter().map(|h| h.join()).collect::<Result<Vec<_>, _>>()
            });
            joined.map_err(|_| anyhow::anyhow!("a worker thread failed while answering request lines"))?
        };
        for buf in &answers {
            out.write_all(buf)?;
        }
    }
    out.flush()?;
    Ok(())
}
