//! `chatlm generate` — one completion for one prompt, streamed or as a JSON object.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chatlm::{GenerationConfig, Pipeline, Prompt, DEFAULT_MAX_NEW_TOKENS};
use clap::{ArgGroup, Args};
use serde_json::Value;

use crate::engine::LoadRequest;

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "messages", "prompt_ids"])))]
pub struct GenerateArgs {
    #[command(flatten)]
    pub load: LoadRequest,
    /// The user's message; the chat template is applied with the generation prompt
    /// unless --raw.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Use --prompt as plain text (tokenizer BOS added if the model adds one), no template.
    #[arg(long, requires = "prompt")]
    pub raw: bool,
    /// A JSON file with the conversation: `[{"role": ..., "content": ...}, ...]` or
    /// `{"messages": [...]}`; rendered with the chat template and the generation prompt.
    #[arg(long, value_name = "FILE")]
    pub messages: Option<PathBuf>,
    /// The prompt as token ids: a JSON array inline, or a file holding one.
    #[arg(long, value_name = "JSON")]
    pub prompt_ids: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingFlags,
    /// Keep generating past the model's stop tokens (until --max-new-tokens).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Expand a GGUF's quantized blocks to f32 and compute like transformers does on the same
    /// file (slow and 4-8x the memory; for comparisons with transformers).
    #[arg(long, conflicts_with = "quantize")]
    pub dequantize: bool,
    /// Print one JSON object (ids, text, finish_reason, token counts, timings) instead of
    /// streaming the text.
    #[arg(long)]
    pub json: bool,
}

/// Sampling and stopping flags as they override a base configuration (shared by
/// `generate` and `chat`).
#[derive(Args)]
pub struct SamplingFlags {
    /// New tokens at most [default: the model's generation config, else 512].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy. Sampling is on when this is > 0 (or when the
    /// model's generation config samples) [default: greedy].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Keep the k most likely tokens when sampling (0 disables).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the smallest set of tokens with this much probability, in (0, 1].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the top token, in [0, 1].
    #[arg(long)]
    pub min_p: Option<f32>,
    /// CTRL repetition penalty over prompt and answer (> 0; 1 disables).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Seed of the sampling RNG: the same seed gives the same answer.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A string that ends the answer (cut from the text); repeatable.
    #[arg(long = "stop", value_name = "STR")]
    pub stop: Vec<String>,
}

impl SamplingFlags {
    /// `base` (the model's generation config) with the flags applied, validated.
    pub fn apply(&self, base: &GenerationConfig) -> Result<GenerationConfig> {
        let mut cfg = base.clone();
        cfg.max_new_tokens = self.max_new_tokens.or(base.max_new_tokens).or(Some(DEFAULT_MAX_NEW_TOKENS));
        if let Some(t) = self.temperature {
            cfg.temperature = t;
            cfg.do_sample = t > 0.0;
        }
        if let Some(k) = self.top_k {
            cfg.top_k = Some(k);
        }
        if let Some(p) = self.top_p {
            cfg.top_p = p;
        }
        if self.min_p.is_some() {
            cfg.min_p = self.min_p;
        }
        if let Some(r) = self.repetition_penalty {
            cfg.repetition_penalty = r;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        cfg.stop_strings.extend(self.stop.iter().cloned());
        cfg.validate().context("invalid sampling flag")?;
        Ok(cfg)
    }

    /// Whether a sampling-only flag was given while decoding stays greedy.
    pub fn ignored_when_greedy(&self, cfg: &GenerationConfig) -> bool {
        cfg.is_greedy() && (self.top_k.is_some() || self.top_p.is_some() || self.min_p.is_some() || self.seed.is_some())
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    chatlm::init_threads(args.load.weights.threads)?;
    // Bad flags fail before a model is loaded (or fetched).
    args.sampling.apply(&GenerationConfig::default())?;
    let prompt = prompt_source(&args)?;
    let spec = chatlm::LoadSpec { dequantize: args.dequantize, ..args.load.spec() };
    let mut pipe = Pipeline::load(&spec)?;
    pipe.set_ignore_eos(args.ignore_eos);
    let config = args.sampling.apply(pipe.engine().generation_defaults())?;
    if args.sampling.ignored_when_greedy(&config) {
        eprintln!("chatlm: note: decoding is greedy (no --temperature > 0): --top-k/--top-p/--min-p/--seed have no effect");
    }

    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let out = pipe.generate_stream(prompt, &config, |piece| {
        if !args.json && write_error.is_none() {
            // Flushed per piece: this is the streaming.
            if let Err(e) = stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush()) {
                write_error = Some(e);
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&out)?)?;
    } else {
        writeln!(stdout)?;
        eprintln!(
            "[{} prompt + {} generated tokens, {}; load {:.2}s, prefill {:.1} tok/s, decode {:.1} tok/s]",
            out.prompt_tokens,
            out.completion_tokens,
            serde_json::to_value(out.finish_reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            out.timings.load_s,
            out.timings.prefill_tok_s,
            out.timings.decode_tok_s
        );
    }
    Ok(())
}

/// What the flags name as the prompt (files read before the model loads).
fn prompt_source(args: &GenerateArgs) -> Result<Prompt> {
    if let Some(text) = &args.prompt {
        return Ok(if args.raw { Prompt::Raw(text.clone()) } else { Prompt::User(text.clone()) });
    }
    if let Some(path) = &args.messages {
        return Ok(Prompt::Messages(read_messages(path)?));
    }
    if let Some(spec) = &args.prompt_ids {
        return Ok(Prompt::Ids(parse_ids(spec)?));
    }
    // clap's required group makes this unreachable; keep a clear error anyway.
    bail!("one of --prompt, --messages or --prompt-ids is required")
}

fn read_messages(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading messages file {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("parsing {} as JSON", path.display()))?;
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut obj) => match obj.remove("messages") {
            Some(Value::Array(list)) => list,
            _ => bail!("{}: expected a JSON array of messages or an object with a \"messages\" array", path.display()),
        },
        _ => bail!("{}: expected a JSON array of messages or an object with a \"messages\" array", path.display()),
    };
    for (i, m) in list.iter().enumerate() {
        if !m.get("role").is_some_and(Value::is_string) {
            bail!("{}: message {i} has no string \"role\"", path.display());
        }
    }
    Ok(list)
}

/// `--prompt-ids`: an inline JSON array, or a file holding one.
fn parse_ids(spec: &str) -> Result<Vec<u32>> {
    let trimmed = spec.trim_start();
    let (text, origin) = if trimmed.starts_with('[') {
        (spec.to_string(), "--prompt-ids".to_string())
    } else {
        let text = std::fs::read_to_string(spec)
            .with_context(|| format!("--prompt-ids `{spec}` is neither a JSON array nor a readable file"))?;
        (text, spec.to_string())
    };
    serde_json::from_str::<Vec<u32>>(&text).with_context(|| format!("{origin}: expected a JSON array of token ids"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_inline_and_reject_garbage() {
        assert_eq!(parse_ids("[1, 2, 3]").unwrap(), vec![1, 2, 3]);
        assert!(parse_ids("[1, -2]").unwrap_err().to_string().contains("JSON array of token ids"));
        assert!(parse_ids("/nonexistent/ids.json").is_err());
    }
}
