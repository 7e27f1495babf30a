//! `chatlm tokenize` and `chatlm decode`.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use chatlm_tokenizer::Tokenizer;
use clap::Args;
use serde::Deserialize;

#[derive(Args)]
pub struct TokenizeArgs {
    /// Tokenizer: a model directory, a tokenizer.json or a GGUF file.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Do not add the tokenizer's special tokens (BOS/EOS), like `add_special_tokens=False`.
    #[arg(long)]
    no_special_tokens: bool,
    /// Print `[id, token]` pairs instead of bare ids.
    #[arg(long)]
    tokens: bool,
    /// Read `{"text", "add_special_tokens"?}` lines from stdin, write `{"ids": [...]}` lines.
    #[arg(long, conflicts_with = "text")]
    jsonl: bool,
    /// Tokenize every line of a text file (in parallel batches), writing `{"ids": [...]}` lines.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["text", "jsonl"])]
    lines: Option<PathBuf>,
    /// With --lines: print only the totals, not the ids.
    #[arg(long, requires = "lines")]
    count: bool,
    /// With --lines: print timing (encode only, excluding file reading) to stderr as JSON.
    #[arg(long, requires = "lines")]
    stats: bool,
    /// The text to tokenize.
    #[arg(required_unless_present_any = ["jsonl", "lines"])]
    text: Option<String>,
}

#[derive(Args)]
pub struct DecodeArgs {
    /// Tokenizer: a model directory, a tokenizer.json or a GGUF file.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Drop special tokens from the text, like `skip_special_tokens=True`.
    #[arg(long)]
    skip_special_tokens: bool,
    /// Token ids.
    #[arg(required = true, num_args = 1..)]
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct TokenizeRequest {
    text: String,
    add_special_tokens: Option<bool>,
}

pub fn load_tokenizer(path: &std::path::Path) -> Result<Tokenizer> {
    Tokenizer::from_pretrained(path).with_context(|| format!("cannot load tokenizer from {}", path.display()))
}

pub fn run_tokenize(args: TokenizeArgs) -> Result<()> {
    let tokenizer = load_tokenizer(&args.tokenizer)?;
    let add_special = !args.no_special_tokens;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if let Some(path) = &args.lines {
        return tokenize_lines(&tokenizer, path, add_special, args.count, args.stats, &mut out);
    }
    if args.jsonl {
        for (index, line) in std::io::stdin().lock().lines().enumerate() {
            let line_no = index + 1;
            let line = line.with_context(|| format!("stdin line {line_no}: cannot read"))?;
            if line.trim().is_empty() {
                continue;
            }
            let request: TokenizeRequest = serde_json::from_str(&line)
                .with_context(|| format!("stdin line {line_no}: expected {{\"text\": …, \"add_special_tokens\"?: bool}}"))?;
            let ids = tokenizer
                .encode(&request.text, request.add_special_tokens.unwrap_or(add_special))
                .with_context(|| format!("stdin line {line_no}"))?;
            serde_json::to_writer(&mut out, &serde_json::json!({ "ids": ids }))?;
            out.write_all(b"\n")?;
        }
    } else {
        let text = args.text.unwrap_or_default();
        let ids = tokenizer.encode(&text, add_special)?;
        if args.tokens {
            let pairs: Vec<(u32, String)> = ids
                .iter()
                .map(|&id| (id, tokenizer.id_to_token(id).unwrap_or_default()))
                .collect();
            serde_json::to_writer(&mut out, &pairs)?;
        } else {
            serde_json::to_writer(&mut out, &ids)?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Lines per parallel batch: large enough to keep both cores busy, small enough to stream.
const LINES_PER_BATCH: usize = 8192;

fn tokenize_lines(
    tokenizer: &Tokenizer,
    path: &std::path::Path,
    add_special: bool,
    count_only: bool,
    stats: bool,
    out: &mut impl Write,
) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let started = std::time::Instant::now();
    let mut encode_time = std::time::Duration::ZERO;
    let mut tokens = 0usize;
    for batch in lines.chunks(LINES_PER_BATCH) {
        let t = std::time::Instant::now();
        let ids = tokenizer.encode_batch(batch, add_special).with_context(|| format!("tokenizing {}", path.display()))?;
        encode_time += t.elapsed();
        tokens += ids.iter().map(Vec::len).sum::<usize>();
        if !count_only {
            for row in ids {
                serde_json::to_writer(&mut *out, &serde_json::json!({ "ids": row }))?;
                out.write_all(b"\n")?;
            }
        }
    }
    if count_only {
        writeln!(out, "{}", serde_json::json!({ "lines": lines.len(), "tokens": tokens }))?;
    }
    out.flush()?;
    if stats {
        let secs = encode_time.as_secs_f64();
        eprintln!(
            "{}",
            serde_json::json!({
                "lines": lines.len(), "bytes": text.len(), "tokens": tokens,
                "encode_s": secs, "total_s": started.elapsed().as_secs_f64(),
                "mb_per_s": text.len() as f64 / 1e6 / secs, "threads": rayon::current_num_threads(),
            })
        );
    }
    Ok(())
}

pub fn run_decode(args: DecodeArgs) -> Result<()> {
    let tokenizer = load_tokenizer(&args.tokenizer)?;
    if let Some(bad) = args.ids.iter().find(|&&id| tokenizer.id_to_token(id).is_none()) {
        anyhow::bail!("token id {bad} is out of range (the tokenizer has {} tokens)", tokenizer.len());
    }
    let text = tokenizer.decode(&args.ids, args.skip_special_tokens)?;
    print!("{text}");
    std::io::stdout().flush()?;
    Ok(())
}
