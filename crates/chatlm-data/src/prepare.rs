//! `SFTTrainer._prepare_dataset` (TRL 1.x): format detection, ChatML conversion, EOS appended to text
//! and completions, tokenization (chat template for conversational rows), labels from the completion /
//! assistant masks, truncation with fully-masked rows dropped, and packing — row for row the same
//! `input_ids` / `labels` / `seq_lengths`, in parallel, streaming.

use chatlm_template::{apply_chat_template, ApplyOptions, ChatRequest, ChatTemplate};
use chatlm_tokenizer::Tokenizer;
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::collate::IGNORE_INDEX;
use crate::completion::mask_row;
use crate::error::{DataError, Result};
use crate::features::Example;
use crate::format::{self, DataFormat};
use crate::io::Record;
use crate::pack::{pack, PackScope, Strategy};
use crate::sink::ExampleSink;

/// Which tokens are trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossMode {
    /// Every token (TRL's default for language-modeling data).
    All,
    /// Only the completion (TRL's default for prompt/completion data).
    Completion,
    /// Only assistant turns: `{% generation %}` spans, or prefix rendering when the template has none.
    Assistant,
    /// Like `DataCollatorForCompletionOnlyLM`: after each response template (until the next instruction template).
    ResponseTemplate,
}

/// How labels are masked besides the loss mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabelMode {
    /// By position (TRL 1.x): only what the masks exclude is -100; a real EOS equal to PAD stays trained.
    #[default]
    Position,
    /// By pad value (transformers `DataCollatorForLanguageModeling`): every token equal to PAD is -100.
    PadValue,
}

/// `truncation_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Truncation {
    /// Keep the first `max_length` tokens.
    #[default]
    KeepStart,
    /// Keep the last `max_length` tokens.
    KeepEnd,
    /// An over-long row is an error (reported by row number; skipped with `skip_invalid`).
    Error,
}

/// Settings of one preparation run (the CLI's flags).
#[derive(Clone, Debug)]
pub struct PrepareConfig {
    /// Dataset format; `None` detects it from the first row.
    pub format: Option<DataFormat>,
    /// A formatting template (`"### Question: {question}\n### Answer: {answer}"`) producing `text`.
    pub formatting: Option<String>,
    /// The text column (`dataset_text_field`).
    pub text_field: String,
    /// Loss mode; `None` is TRL's default (completion for prompt/completion, else all).
    pub loss: Option<LossMode>,
    /// Response template ids for [`LossMode::ResponseTemplate`].
    pub response_template: Option<Vec<i64>>,
    /// Instruction template ids for multi-turn [`LossMode::ResponseTemplate`].
    pub instruction_template: Option<Vec<i64>>,
    /// Label masking mode.
    pub labels: LabelMode,
    /// `max_length` (truncation when not packing).
    pub max_length: Option<usize>,
    /// `truncation_mode`.
    pub truncation: Truncation,
    /// Packing strategy, if packing.
    pub pack: Option<Strategy>,
    /// Packed sequence length (defaults to `max_length`).
    pub seq_length: Option<usize>,
    /// Packing scope.
    pub scope: PackScope,
    /// Skip invalid rows (reporting them) instead of stopping.
    pub skip_invalid: bool,
    /// Rows processed per parallel step.
    pub chunk_rows: usize,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            format: None,
            formatting: None,
            text_field: "text".into(),
            loss: None,
            response_template: None,
            instruction_template: None,
            labels: LabelMode::Position,
            max_length: None,
            truncation: Truncation::KeepStart,
            pack: None,
            seq_length: None,
            scope: PackScope::default(),
            skip_invalid: false,
            chunk_rows: 8000,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The detected (or given) format.
    pub format: Option<DataFormat>,
    /// Rows read (valid or not).
    pub rows_in: usize,
    /// Rows written.
    pub rows_out: usize,
    /// Tokens written.
    pub tokens: usize,
    /// Tokens with a label other than -100.
    pub trained_tokens: usize,
    /// Rows cut by `max_length` (or by BFD truncation when packing).
    pub rows_truncated: usize,
    /// Row numbers with no trained token (dropped when truncating, as TRL does; kept when packing).
    pub no_trained_rows: Vec<usize>,
    /// Skipped rows: number and reason.
    pub skipped: Vec<(usize, String)>,
    /// Warnings for the user (PAD == EOS, templates not found, prompt not a prefix, ...).
    pub warnings: Vec<String>,
    /// Padding slots a padded/packed batch would waste, as a share of all slots (`None` when unknown).
    pub padding_waste: Option<f64>,
}

/// Prepares rows for one tokenizer and template.
pub struct Preparer<'a> {
    tok: &'a Tokenizer,
    template: Option<ChatTemplate>,
    cfg: PrepareConfig,
    eos: Option<String>,
    pad_id: Option<i64>,
}

type RowResult = std::result::Result<(Example, Vec<String>), String>;

fn ids64(v: Vec<u32>) -> Vec<i64> {
    v.into_iter().map(i64::from).collect()
}

impl<'a> Preparer<'a> {
    /// A preparer; `template` overrides the tokenizer's chat template.
    pub fn new(tok: &'a Tokenizer, template: Option<ChatTemplate>, cfg: PrepareConfig) -> Result<Self> {
        let template = match template {
            Some(t) => Some(t),
            None => match tok.chat_template() {
                Some(_) => Some(ChatTemplate::for_tokenizer(tok, None, false).map_err(|e| DataError::Template { row: 0, message: e.to_string() })?),
                None => None,
            },
        };
        if cfg.pack.is_some() && cfg.seq_length.or(cfg.max_length).is_none() {
            return Err(DataError::option("seq-length", "packing needs --seq-length (or --max-length)"));
        }
        // Checked here, not where they are used: `run` divides by the batch size before `pack`
        // sees it, and zero rows per chunk would end the run at once with nothing read.
        if cfg.pack.is_some() && cfg.seq_length.or(cfg.max_length) == Some(0) {
            return Err(DataError::option("seq-length", "must be at least 1"));
        }
        if cfg.pack.is_some() && cfg.scope == PackScope::Batch(0) {
            return Err(DataError::option("batch_size", "must be at least 1"));
        }
        if cfg.chunk_rows == 0 {
            return Err(DataError::option("chunk_rows", "must be at least 1"));
        }
        if cfg.loss == Some(LossMode::ResponseTemplate) && cfg.response_template.is_none() {
            return Err(DataError::option("response-template", "--loss response-template needs --response-template"));
        }
        Ok(Preparer {
            eos: tok.special_tokens().eos.clone(),
            pad_id: tok.pad_token_id().map(i64::from),
            tok,
            template,
            cfg,
        })
    }

    fn template(&self) -> std::result::Result<&ChatTemplate, String> {
        self.template.as_ref().ok_or_else(|| "conversational row but the tokenizer has no chat template (pass --template)".to_string())
    }

    fn render_ids(&self, msgs: Vec<Value>, row: &Map<String, Value>, gen_prompt: bool, mask: bool) -> std::result::Result<(Vec<i64>, Option<Vec<u8>>), String> {
        let mut req = ChatRequest::new(msgs);
        req.add_generation_prompt = gen_prompt;
        if let Some(t) = row.get("tools") {
            let t = match t {
                Value::String(s) => serde_json::from_str(s).map_err(|e| format!("`tools` is not JSON: {e}"))?,
                v => v.clone(),
            };
            if let Value::Array(a) = t {
                req.tools = Some(a);
            }
        }
        if let Some(Value::Object(kw)) = row.get("chat_template_kwargs") {
            req.kwargs = kw.clone();
        }
        let tpl = self.template()?;
        let use_mask = mask && tpl.has_generation_blocks();
        // Without a mask, render only and encode without offsets (the tokenizer's fast path): same ids.
        let opts = ApplyOptions { tokenize: use_mask, return_assistant_tokens_mask: use_mask };
        let out = apply_chat_template(self.tok, tpl, &req, opts).map_err(|e| format!("template: {e}"))?;
        let ids = match out.ids {
            Some(ids) => ids64(ids),
            None => ids64(self.tok.encode(&out.text, false).map_err(|e| e.to_string())?),
        };
        if mask && !use_mask {
            let m = self.prefix_assistant_mask(&req, &out.text)?;
            return Ok((ids, Some(m)));
        }
        Ok((ids, out.assistant_masks))
    }

    /// Assistant mask for templates without `{% generation %}`: each assistant turn is the text between the
    /// rendering of the conversation before it (with the generation prompt) and the rendering through it.
    fn prefix_assistant_mask(&self, req: &ChatRequest, full: &str) -> std::result::Result<Vec<u8>, String> {
        let tpl = self.template()?;
        let mut spans = Vec::new();
        for (i, m) in req.messages.iter().enumerate() {
            if m.get("role").and_then(Value::as_str) != Some("assistant") {
                continue;
            }
            let mut before = req.clone();
            before.messages.truncate(i);
            before.add_generation_prompt = true;
            let mut through = req.clone();
            through.messages.truncate(i + 1);
            through.add_generation_prompt = false;
            let opts = ApplyOptions::default();
            let a = apply_chat_template(self.tok, tpl, &before, opts).map_err(|e| format!("template: {e}"))?.text;
            let b = apply_chat_template(self.tok, tpl, &through, opts).map_err(|e| format!("template: {e}"))?.text;
            if !b.starts_with(&a) || !full.starts_with(&b) {
                return Err("the chat template renders a conversation's prefix differently, so assistant turns cannot be located; use a template with {% generation %}".into());
            }
            spans.push(a.len()..b.len());
        }
        let enc = self.tok.encode_with_offsets(full, false).map_err(|e| e.to_string())?;
        Ok(enc
            .offsets
            .iter()
            .map(|&(s, e)| u8::from(e > s && spans.iter().any(|sp| s < sp.end && e > sp.start)))
            .collect())
    }

    fn encode_text(&self, text: &str) -> std::result::Result<Vec<i64>, String> {
        self.tok.encode(text, true).map(ids64).map_err(|e| e.to_string())
    }

    fn with_eos(&self, s: &str) -> String {
        match &self.eos {
            Some(e) if !s.ends_with(e.as_str()) => format!("{s}{e}"),
            _ => s.to_string(),
        }
    }

    fn text_of<'r>(row: &'r Map<String, Value>, k: &str) -> std::result::Result<&'r str, String> {
        match row.get(k) {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(format!("`{k}` must be a string, found {}", kind(v))),
            None => Err(format!("row has no `{k}`")),
        }
    }

    /// Prepare one row: `input_ids` and `labels`, plus warnings.
    pub fn prepare_row(&self, fmt: DataFormat, mut row: Map<String, Value>) -> RowResult {
        let mut warnings = Vec::new();
        let loss = self.cfg.loss.unwrap_or(match fmt {
            DataFormat::PromptCompletion | DataFormat::ConversationalPromptCompletion => LossMode::Completion,
            _ => LossMode::All,
        });
        let assistant = loss == LossMode::Assistant;
        let (ids, mask): (Vec<i64>, Option<Vec<u8>>) = if let Some(f) = &self.cfg.formatting {
            let text = format::apply_formatting(f, &row)?;
            (self.encode_text(&self.with_eos(&text))?, None)
        } else {
            match fmt {
                DataFormat::Messages => {
                    format::convert_to_chatml(&mut row);
                    let msgs = format::validate_messages(row.get("messages").ok_or("row has no `messages`")?, "messages")?;
                    if loss == LossMode::Completion {
                        return Err("--loss completion needs prompt/completion rows; use --loss assistant for messages".into());
                    }
                    self.render_ids(msgs, &row, false, assistant)?
                }
                DataFormat::ConversationalPromptCompletion => {
                    format::convert_to_chatml(&mut row);
                    let p = format::validate_messages(row.get("prompt").ok_or("row has no `prompt`")?, "prompt")?;
                    let c = row.get("completion").ok_or("row has no `completion`")?;
                    let c = format::validate_messages(c, "completion")?;
                    let (pids, _) = self.render_ids(p.clone(), &row, true, false)?;
                    let (ids, amask) = self.render_ids([p, c].concat(), &row, false, assistant)?;
                    let n = common_prefix(&pids, &ids);
                    if n < pids.len() {
                        warnings.push("the tokenized prompt is not a prefix of the tokenized prompt+completion; the completion starts where they diverge".into());
                    }
                    let cm: Vec<u8> = (0..ids.len()).map(|i| u8::from(i >= n)).collect();
                    let m = combine(loss == LossMode::Completion, cm, amask);
                    (ids, m)
                }
                DataFormat::PromptCompletion => {
                    let p = Self::text_of(&row, "prompt")?;
                    let c = self.with_eos(Self::text_of(&row, "completion")?);
                    let pids = self.encode_text(p)?;
                    let ids = self.encode_text(&format!("{p}{c}"))?;
                    let n = common_prefix(&pids, &ids);
                    if n < pids.len() {
                        warnings.push("the tokenized prompt is not a prefix of the tokenized prompt+completion; the completion starts where they diverge".into());
                    }
                    let cm: Vec<u8> = (0..ids.len()).map(|i| u8::from(i >= n)).collect();
                    (ids, (loss == LossMode::Completion).then_some(cm))
                }
                DataFormat::Text => {
                    let t = Self::text_of(&row, &self.cfg.text_field)?;
                    (self.encode_text(&self.with_eos(t))?, None)
                }
                DataFormat::Tokenized => return self.tokenized_row(&row, loss).map(|e| (e, warnings)),
            }
        };
        let mut labels: Vec<i64> = match &mask {
            Some(m) => ids.iter().zip(m.iter().chain(std::iter::repeat(&1))).map(|(&t, &b)| if b != 0 { t } else { IGNORE_INDEX }).collect(),
            None => ids.clone(),
        };
        self.finish_labels(&ids, &mut labels, loss, &mut warnings);
        Ok((Example::from_ids(ids).with("labels", labels), warnings))
    }

    fn finish_labels(&self, ids: &[i64], labels: &mut [i64], loss: LossMode, warnings: &mut Vec<String>) {
        if self.cfg.labels == LabelMode::PadValue {
            if let Some(p) = self.pad_id {
                for (l, &t) in labels.iter_mut().zip(ids) {
                    if t == p {
                        *l = IGNORE_INDEX;
                    }
                }
            }
        }
        if loss == LossMode::ResponseTemplate {
            if let Some(resp) = &self.cfg.response_template {
                for k in mask_row(labels, resp, self.cfg.instruction_template.as_deref(), IGNORE_INDEX) {
                    warnings.push(format!("{k} template not found; the row has no trained tokens"));
                }
            }
        }
    }

    fn tokenized_row(&self, row: &Map<String, Value>, loss: LossMode) -> std::result::Result<Example, String> {
        let list = |k: &str| -> std::result::Result<Option<Vec<i64>>, String> {
            match row.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_i64().ok_or_else(|| format!("`{k}` holds a non-integer {x}")))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(Some),
                Some(v) => Err(format!("`{k}` must be a list of integers, found {}", kind(v))),
            }
        };
        let ids = list("input_ids")?.ok_or("row has no `input_ids`")?;
        let mut labels = match list("labels")? {
            Some(l) if l.len() == ids.len() => l,
            Some(l) => return Err(format!("`labels` has {} values, `input_ids` {}", l.len(), ids.len())),
            None => {
                let mut masks = Vec::new();
                if loss == LossMode::Completion {
                    masks.extend(list("completion_mask")?);
                }
                masks.extend(list("assistant_masks")?);
                ids.iter().enumerate().map(|(i, &t)| if masks.iter().all(|m| m.get(i).is_none_or(|&b| b != 0)) { t } else { IGNORE_INDEX }).collect()
            }
        };
        let mut w = Vec::new();
        self.finish_labels(&ids, &mut labels, loss, &mut w);
        Ok(Example::from_ids(ids).with("labels", labels))
    }

    /// Run over `records`, writing to `sink`; `progress` is called with the rows done so far.
    pub fn run(
        &self,
        input: &std::path::Path,
        records: impl Iterator<Item = Result<Record>>,
        sink: &mut ExampleSink,
        progress: &dyn Fn(usize),
    ) -> Result<Summary> {
        let mut sum = Summary::default();
        let mut fmt = self.cfg.format;
        let mut pending: Vec<Example> = Vec::new();
        let mut records = records.peekable();
        let seq_length = self.cfg.seq_length.or(self.cfg.max_length).unwrap_or(usize::MAX);
        let mut warned = std::collections::BTreeMap::<String, usize>::new();
        loop {
            let mut chunk: Vec<Record> = Vec::with_capacity(self.cfg.chunk_rows);
            let mut read_err: Option<DataError> = None;
            while chunk.len() < self.cfg.chunk_rows {
                match records.next() {
                    None => break,
                    Some(Ok(r)) => chunk.push(r),
                    Some(Err(DataError::Row { path, row, message })) => {
                        sum.rows_in += 1;
                        if !self.cfg.skip_invalid {
                            // Rows before it may hold an earlier error: process them first.
                            read_err = Some(DataError::Row { path, row, message });
                            break;
                        }
                        sum.skipped.push((row, message));
                    }
                    Some(Err(e)) => {
                        read_err = Some(e);
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                match read_err {
                    Some(e) => return Err(e),
                    None => break,
                }
            }
            sum.rows_in += chunk.len();
            let f = match fmt {
                // `--format prompt-completion` covers both plain and conversational prompt/completion rows.
                Some(DataFormat::PromptCompletion) if format::is_conversational(&chunk[0].1) => {
                    fmt = Some(DataFormat::ConversationalPromptCompletion);
                    DataFormat::ConversationalPromptCompletion
                }
                Some(f) => f,
                None => {
                    let mut first = chunk[0].1.clone();
                    if format::is_conversational_from_value(&first) {
                        format::convert_to_chatml(&mut first);
                    }
                    let d = if self.cfg.formatting.is_some() { DataFormat::Text } else { format::detect(&first, &self.cfg.text_field)? };
                    fmt = Some(d);
                    d
                }
            };
            let done: Vec<(usize, RowResult)> = chunk.into_par_iter().map(|(n, row)| (n, self.prepare_row(f, row))).collect();
            let mut out = Vec::with_capacity(done.len());
            for (n, r) in done {
                match r {
                    Ok((mut ex, w)) => {
                        for w in w {
                            *warned.entry(w).or_default() += 1;
                        }
                        let limit = if self.cfg.pack.is_some() { seq_length } else { self.cfg.max_length.unwrap_or(usize::MAX) };
                        if self.cfg.truncation == Truncation::Error && ex.columns[0].1.len() > limit {
                            let message = format!("{} tokens, over the limit of {limit}", ex.columns[0].1.len());
                            if !self.cfg.skip_invalid {
                                return Err(DataError::Row { path: input.to_path_buf(), row: n, message });
                            }
                            sum.skipped.push((n, message));
                            continue;
                        }
                        if self.cfg.pack.is_none() {
                            if let Some(m) = self.cfg.max_length {
                                if truncate(&mut ex, m, self.cfg.truncation) {
                                    sum.rows_truncated += 1;
                                }
                            }
                        } else if ex.columns[0].1.len() > seq_length {
                            sum.rows_truncated += 1;
                        }
                        let trained = ex.get("labels").is_some_and(|l| l.iter().any(|&x| x != IGNORE_INDEX));
                        if !trained {
                            sum.no_trained_rows.push(n);
                            // TRL drops fully masked rows after truncation (not when packing).
                            if self.cfg.pack.is_none() && self.cfg.max_length.is_some() {
                                continue;
                            }
                        }
                        out.push(ex);
                    }
                    Err(message) => {
                        if !self.cfg.skip_invalid {
                            return Err(DataError::Row { path: input.to_path_buf(), row: n, message });
                        }
                        sum.skipped.push((n, message));
                    }
                }
            }
            match (self.cfg.pack, self.cfg.scope) {
                (None, _) => self.emit(out, sink, &mut sum)?,
                (Some(_), PackScope::Global) => pending.extend(out),
                (Some(s), PackScope::Batch(b)) => {
                    pending.extend(out);
                    let full = pending.len() / b * b;
                    if full > 0 {
                        let rest = pending.split_off(full);
                        let packed = pack(&pending, seq_length, s, self.cfg.scope)?;
                        pending = rest;
                        self.emit(packed, sink, &mut sum)?;
                    }
                }
            }
            progress(sum.rows_in);
            if let Some(e) = read_err {
                return Err(e);
            }
        }
        if let Some(s) = self.cfg.pack {
            if !pending.is_empty() {
                let packed = pack(&pending, seq_length, s, self.cfg.scope)?;
                self.emit(packed, sink, &mut sum)?;
            }
            if sum.rows_out > 0 && seq_length != usize::MAX {
                sum.padding_waste = Some(1.0 - sum.tokens as f64 / (sum.rows_out as f64 * seq_length as f64));
            }
        }
        sum.format = fmt;
        sum.skipped.sort_by_key(|s| s.0);
        if self.pad_id.is_some() && self.pad_id == self.tok.eos_token_id().map(i64::from) {
            let m = if self.cfg.labels == LabelMode::PadValue {
                "PAD == EOS and --labels pad-value: every EOS label is -100, the model will not learn to stop"
            } else {
                "PAD == EOS in this tokenizer: labels here mask by position (EOS kept), but transformers' DataCollatorForLanguageModeling would mask every EOS; set a distinct pad token (`chatlm data tokenizer --pad-token`)"
            };
            sum.warnings.push(m.into());
        }
        for (w, n) in warned {
            sum.warnings.push(format!("{w} ({n} rows)"));
        }
        Ok(sum)
    }

    fn emit(&self, rows: Vec<Example>, sink: &mut ExampleSink, sum: &mut Summary) -> Result<()> {
        for r in &rows {
            sum.tokens += r.columns[0].1.len();
            sum.trained_tokens += r.get("labels").map_or(0, |l| l.iter().filter(|&&x| x != IGNORE_INDEX).count());
        }
        sum.rows_out += rows.len();
        sink.write(rows)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// TRL's `common_prefix_length`.
pub fn common_prefix(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn combine(use_completion: bool, cm: Vec<u8>, am: Option<Vec<u8>>) -> Option<Vec<u8>> {
    match (use_completion, am) {
        (true, Some(a)) => Some(cm.iter().zip(a.iter().chain(std::iter::repeat(&1))).map(|(&x, &y)| x & y).collect()),
        (true, None) => Some(cm),
        (false, a) => a,
    }
}

/// Truncate every column to `max` tokens; returns whether anything was cut.
pub fn truncate(ex: &mut Example, max: usize, mode: Truncation) -> bool {
    let mut cut = false;
    for (_, v) in ex.columns.iter_mut() {
        if v.len() > max {
            cut = true;
            match mode {
                Truncation::KeepStart => v.truncate(max),
                Truncation::KeepEnd => {
                    v.drain(..v.len() - max);
                }
                Truncation::Error => {}
            }
        }
    }
    cut
}
