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
    /// The text to tokenize.
    #[arg(required_unless_present = "jsonl")]
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
