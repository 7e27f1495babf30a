//! `chatlm data` — fine-tuning data preparation: `prepare`, `collate`, `pack`, `tokenizer`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chatlm_data::{
    build_collator, check_not_input, fix_tokenizer, pack, DataFormat, Example, ExampleSink, HygieneOptions, LabelMode,
    LossMode, OutputKind, PackScope, PaddingSide, PrepareConfig, Preparer, RecordReader, Strategy, TokenizerInfo,
    Truncation,
};
use chatlm_template::ChatTemplate;
use chatlm_tokenizer::Tokenizer;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Format, tokenize, mask and (optionally) pack a dataset like TRL's SFTTrainer, into Parquet or JSONL.
    Prepare(Box<PrepareArgs>),
    /// Collate JSONL rows from stdin into one batch, printed as JSON (transformers / TRL collators).
    Collate(CollateArgs),
    /// Pack JSONL rows from stdin like `trl.pack_dataset`; packed rows go to stdout as JSONL.
    Pack(PackArgs),
    /// Fix a tokenizer for fine-tuning (PAD != EOS, special tokens, chat template) and save it.
    Tokenizer(TokenizerArgs),
}

#[derive(Args)]
struct PrepareArgs {
    /// Input dataset: .jsonl, .json, .csv or .parquet.
    input: PathBuf,
    /// Tokenizer: a model directory, a tokenizer.json or a GGUF file.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output file (.parquet, or JSONL with --jsonl / a .jsonl name). Written atomically; never the input.
    #[arg(long)]
    output: PathBuf,
    /// Dataset format: auto, messages, prompt-completion, text, tokenized.
    #[arg(long, default_value = "auto")]
    format: String,
    /// A chat template file (Jinja) instead of the tokenizer's.
    #[arg(long)]
    template: Option<PathBuf>,
    /// A formatting template for custom formats, e.g. "### Question: {question}\n### Answer: {answer}".
    #[arg(long)]
    formatting: Option<String>,
    /// The text column for plain-text data.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Trained tokens: all, completion, assistant, response-template (default: TRL's choice by format).
    #[arg(long)]
    loss: Option<String>,
    /// Response template: a string, or token ids as a JSON list ("[2277, 29937]").
    #[arg(long)]
    response_template: Option<String>,
    /// Instruction template (multi-turn), a string or a JSON list of ids.
    #[arg(long)]
    instruction_template: Option<String>,
    /// Label masking: position (TRL 1.x) or pad-value (transformers, masks EOS when PAD == EOS).
    #[arg(long, default_value = "position")]
    labels: String,
    /// Truncate rows to this many tokens (not when packing).
    #[arg(long)]
    max_length: Option<usize>,
    /// keep-start, keep-end, or error (an over-long row is reported by number; skipped with --skip-invalid).
    #[arg(long, default_value = "keep-start")]
    truncation: String,
    /// Packing: none, wrapped, bfd, bfd-split.
    #[arg(long, default_value = "none")]
    pack: String,
    /// Packed sequence length (defaults to --max-length).
    #[arg(long)]
    seq_length: Option<usize>,
    /// Packing scope: batch (TRL's 1000-row map batches) or global (better fill).
    #[arg(long, default_value = "batch")]
    pack_scope: String,
    /// Write JSONL instead of Parquet.
    #[arg(long)]
    jsonl: bool,
    /// Skip invalid rows (reported by number) instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Args)]
struct CollateArgs {
    /// padding, lm, completion-only, flatten, trl-lm.
    #[arg(long)]
    collator: String,
    /// Tokenizer (pad/eos ids, padding side, template encoding).
    #[arg(long)]
    tokenizer: PathBuf,
    /// The Python constructor's keyword arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    options: String,
}

#[derive(Args)]
struct PackArgs {
    /// wrapped, bfd, bfd-split.
    #[arg(long)]
    strategy: String,
    /// Target sequence length.
    #[arg(long)]
    seq_length: usize,
    /// batch (per --batch-size rows, like datasets.map) or global.
    #[arg(long, default_value = "batch")]
    pack_scope: String,
    /// Rows per map batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

#[derive(Args)]
struct TokenizerArgs {
    /// Tokenizer to fix.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output directory.
    #[arg(long)]
    output: PathBuf,
    /// PAD token: "unk", or a token (added when missing). Default: fix only when missing or equal to EOS.
    #[arg(long)]
    pad_token: Option<String>,
    /// Add a special token (repeatable).
    #[arg(long = "add-special-token")]
    add_special_token: Vec<String>,
    /// Replace the chat template with ChatML built from bos/eos.
    #[arg(long)]
    chatml: bool,
    /// Round the embedding size to a multiple of this.
    #[arg(long, default_value_t = 64)]
    pad_to_multiple_of: usize,
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.cmd {
        DataCmd::Prepare(a) => prepare(*a),
        DataCmd::Collate(a) => collate(a),
        DataCmd::Pack(a) => pack_cmd(a),
        DataCmd::Tokenizer(a) => tokenizer_cmd(a),
    }
}

fn load_tokenizer(p: &PathBuf) -> Result<Tokenizer> {
    Tokenizer::from_pretrained(p).with_context(|| format!("loading tokenizer {}", p.display()))
}

fn template_ids(tok: &Tokenizer, s: &str, what: &str) -> Result<Vec<i64>> {
    let t = s.trim();
    if t.starts_with('[') {
        let ids: Vec<i64> = serde_json::from_str(t).with_context(|| format!("--{what}: not a JSON list of ids: {s}"))?;
        return Ok(ids);
    }
    let ids = tok.encode(s, false).with_context(|| format!("--{what}: encoding {s:?}"))?;
    Ok(ids.into_iter().map(i64::from).collect())
}

fn scope(s: &str, batch: usize) -> Result<PackScope> {
    match s {
        "batch" => Ok(PackScope::Batch(batch)),
        "global" => Ok(PackScope::Global),
        _ => bail!("--pack-scope: expected batch or global, got {s:?}"),
    }
}

fn prepare(a: PrepareArgs) -> Result<()> {
    check_not_input(&a.output, &[&a.input])?;
    let tok = load_tokenizer(&a.tokenizer)?;
    let template = match &a.template {
        Some(p) => Some(ChatTemplate::from_file(p).with_context(|| format!("reading template {}", p.display()))?),
        None => None,
    };
    let loss = match a.loss.as_deref() {
        None => None,
        Some("all") => Some(LossMode::All),
        Some("completion") => Some(LossMode::Completion),
        Some("assistant") => Some(LossMode::Assistant),
        Some("response-template") => Some(LossMode::ResponseTemplate),
        Some(o) => bail!("--loss: expected all, completion, assistant or response-template, got {o:?}"),
    };
    let response_template = a.response_template.as_deref().map(|s| template_ids(&tok, s, "response-template")).transpose()?;
    let loss = match (loss, &response_template) {
        (None, Some(_)) => Some(LossMode::ResponseTemplate),
        (l, _) => l,
    };
    let cfg = PrepareConfig {
        format: DataFormat::parse(&a.format)?,
        formatting: a.formatting.clone(),
        text_field: a.text_field.clone(),
        loss,
        response_template,
        instruction_template: a
            .instruction_template
            .as_deref()
            .map(|s| template_ids(&tok, s, "instruction-template"))
            .transpose()?,
        labels: match a.labels.as_str() {
            "position" => LabelMode::Position,
            "pad-value" => LabelMode::PadValue,
            o => bail!("--labels: expected position or pad-value, got {o:?}"),
        },
        max_length: a.max_length,
        truncation: match a.truncation.as_str() {
            "keep-start" => Truncation::KeepStart,
            "keep-end" => Truncation::KeepEnd,
            "error" => Truncation::Error,
            o => bail!("--truncation: expected keep-start, keep-end or error, got {o:?}"),
        },
        pack: match a.pack.as_str() {
            "none" => None,
            s => Some(Strategy::parse(s)?),
        },
        seq_length: a.seq_length,
        scope: scope(&a.pack_scope, 1000)?,
        skip_invalid: a.skip_invalid,
        ..PrepareConfig::default()
    };
    let preparer = Preparer::new(&tok, template, cfg)?;
    let reader = RecordReader::open(&a.input)?;
    if let Some(schema) = reader.schema() {
        chatlm_data::io::check_schema(&a.input, schema, &a.text_field)?;
    }
    let jsonl = a.jsonl || a.output.extension().is_some_and(|e| e == "jsonl");
    let mut sink = ExampleSink::create(&a.output, if jsonl { OutputKind::Jsonl } else { OutputKind::Parquet })?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} rows {per_sec} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let t0 = std::time::Instant::now();
    let sum = preparer
        .run(&a.input, reader, &mut sink, &|n| bar.set_position(n as u64))
        .with_context(|| format!("preparing {}", a.input.display()))?;
    bar.finish_and_clear();
    let out = sink.finish()?;
    let secs = t0.elapsed().as_secs_f64();
    let mut e = std::io::stderr().lock();
    writeln!(e, "wrote {} ({} rows)", out.display(), sum.rows_out)?;
    writeln!(
        e,
        "format: {:?}; rows in {} / out {}; {:.0} rows/s",
        sum.format.map_or("?".into(), |f| format!("{f:?}")),
        sum.rows_in,
        sum.rows_out,
        sum.rows_in as f64 / secs.max(1e-9)
    )?;
    let share = if sum.tokens > 0 { 100.0 * sum.trained_tokens as f64 / sum.tokens as f64 } else { 0.0 };
    writeln!(e, "tokens {}; trained {} ({share:.1}%); rows truncated {}", sum.tokens, sum.trained_tokens, sum.rows_truncated)?;
    if let Some(w) = sum.padding_waste {
        writeln!(e, "padding waste in packed rows: {:.2}%", 100.0 * w)?;
    }
    if !sum.no_trained_rows.is_empty() {
        writeln!(e, "rows with no trained tokens ({}): {}", sum.no_trained_rows.len(), list(&sum.no_trained_rows))?;
    }
    if !sum.skipped.is_empty() {
        writeln!(e, "skipped rows ({}):", sum.skipped.len())?;
        for (n, m) in sum.skipped.iter().take(20) {
            writeln!(e, "  row {n}: {m}")?;
        }
    }
    for w in &sum.warnings {
        writeln!(e, "warning: {w}")?;
    }
    Ok(())
}

fn list(rows: &[usize]) -> String {
    let mut s: Vec<String> = rows.iter().take(20).map(|r| r.to_string()).collect();
    if rows.len() > 20 {
        s.push(format!("... ({} more)", rows.len() - 20));
    }
    s.join(", ")
}

fn read_stdin_examples() -> Result<Vec<Example>> {
    let reader = RecordReader::jsonl_from(Box::new(std::io::stdin()), "<stdin>");
    let mut out = Vec::new();
    for r in reader {
        let (n, row) = r?;
        out.push(Example::from_json(&row).with_context(|| format!("<stdin>: row {n}"))?);
    }
    Ok(out)
}

fn collate(a: CollateArgs) -> Result<()> {
    let tok = load_tokenizer(&a.tokenizer)?;
    let opts: serde_json::Value = serde_json::from_str(&a.options).context("--options is not JSON")?;
    let opts = opts.as_object().cloned().context("--options must be a JSON object")?;
    let info = TokenizerInfo {
        pad_token_id: tok.pad_token_id().map(i64::from),
        eos_token_id: tok.eos_token_id().map(i64::from),
        padding_side: match tok.padding_side() {
            chatlm_tokenizer::PaddingSide::Left => PaddingSide::Left,
            chatlm_tokenizer::PaddingSide::Right => PaddingSide::Right,
        },
    };
    let encode = |s: &str| -> chatlm_data::Result<Vec<i64>> {
        tok.encode(s, false).map(|v| v.into_iter().map(i64::from).collect()).map_err(|e| chatlm_data::DataError::Tokenizer(e.to_string()))
    };
    let c = build_collator(&a.collator, &opts, &info, &encode)?;
    let mut effective = info.clone();
    if let Some(p) = opts.get("pad_token_id").and_then(|v| v.as_i64()) {
        effective.pad_token_id = Some(p);
    }
    for w in c.setup_warnings(&effective) {
        eprintln!("warning: {w}");
    }
    let rows = read_stdin_examples()?;
    if rows.is_empty() {
        bail!("no rows on stdin");
    }
    let (batch, warnings) = c.collate(&rows)?;
    for w in warnings {
        let text = rows[w.row].get("input_ids").map(|ids| {
            let ids: Vec<u32> = ids.iter().filter_map(|&x| u32::try_from(x).ok()).collect();
            tok.decode(&ids, false).unwrap_or_default()
        });
        eprintln!("warning: {} Row text: {:?}", w.message, text.unwrap_or_default());
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &batch.to_json())?;
    writeln!(out)?;
    Ok(())
}

fn pack_cmd(a: PackArgs) -> Result<()> {
    let strategy = Strategy::parse(&a.strategy)?;
    let rows = read_stdin_examples()?;
    let packed = pack(&rows, a.seq_length, strategy, scope(&a.pack_scope, a.batch_size)?)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for r in &packed {
        serde_json::to_writer(&mut out, &r.to_json())?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn tokenizer_cmd(a: TokenizerArgs) -> Result<()> {
    if std::fs::canonicalize(&a.output).ok() == std::fs::canonicalize(&a.tokenizer).ok() && a.output.exists() {
        bail!("--output {} is the input tokenizer; refusing to overwrite it", a.output.display());
    }
    let mut tok = load_tokenizer(&a.tokenizer)?;
    let opts = HygieneOptions {
        pad_token: a.pad_token,
        add_special_tokens: a.add_special_token,
        chatml: a.chatml,
        pad_to_multiple_of: a.pad_to_multiple_of,
    };
    let rep = fix_tokenizer(&mut tok, &opts)?;
    tok.save_pretrained(&a.output).with_context(|| format!("saving tokenizer to {}", a.output.display()))?;
    let mut e = std::io::stderr().lock();
    writeln!(e, "saved {}", a.output.display())?;
    writeln!(e, "pad: {:?} -> {:?}{}", rep.pad_before, rep.pad_after, if rep.pad_was_eos { " (was EOS)" } else { "" })?;
    writeln!(e, "len(tokenizer) = {}; embedding rows padded to a multiple of {}: {}", rep.len, a.pad_to_multiple_of, rep.embedding_rows)?;
    for n in rep.notes {
        writeln!(e, "{n}")?;
    }
    Ok(())
}
