//! `chatlm bench` — load time, prefill and decode speed, peak memory of one model.
//!
//! Measures what `llama-bench` measures (`pp` and `tg`): one forward pass over a prompt of
//! `--prompt-tokens` ids, then `--gen-tokens` single-token greedy steps on top of it, each
//! repeated `--runs` times on a fresh cache; the median run is reported.

use std::time::Instant;

use anyhow::{bail, Result};
use chatlm::bench::{bench_prompt, speed_run, SpeedRun};
use chatlm_model::ProcessMemory;
use clap::Args;
use serde::Serialize;

use crate::engine::ModelArgs;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    weights: ModelArgs,
    /// Prompt length of the prefill measurement.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens generated one at a time in the decode measurement.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    threads: usize,
    prompt_tokens: usize,
    gen_tokens: usize,
    load_s: f64,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    weights_mib: f64,
    rss_after_load_mib: Option<f64>,
    peak_rss_mib: Option<f64>,
    runs: Vec<SpeedRun>,
}

const MIB: f64 = 1024.0 * 1024.0;

pub fn run(args: BenchArgs) -> Result<()> {
    let threads = chatlm::init_threads(args.weights.threads)?;
    if args.prompt_tokens == 0 || args.gen_tokens == 0 || args.runs == 0 {
        bail!("--prompt-tokens, --gen-tokens and --runs must each be at least 1");
    }
    let source = chatlm::resolve(args.weights.model.as_deref())?;
    let name = chatlm::source::display_name(&source);
    let started = Instant::now();
    let model = chatlm::load_model(&source, &args.weights.spec())?;
    let load_s = started.elapsed().as_secs_f64();
    let after_load = ProcessMemory::current();
    let total = args.prompt_tokens + args.gen_tokens;
    let context = model.config().context_length();
    if total > context {
        bail!("--prompt-tokens + --gen-tokens = {total} exceeds the context window of {context} tokens");
    }
    let prompt = bench_prompt(args.prompt_tokens, model.config().vocab_size);
    let runs = (0..args.runs)
        .map(|_| speed_run(&model, &prompt, args.gen_tokens).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let peak = ProcessMemory::current();
    let report = Report {
        model: name,
        threads,
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        load_s,
        prefill_tok_s: median(runs.iter().map(|r| r.prefill_tok_s)),
        decode_tok_s: median(runs.iter().map(|r| r.decode_tok_s)),
        weights_mib: model.weight_bytes() as f64 / MIB,
        rss_after_load_mib: after_load.map(|m| m.resident_bytes as f64 / MIB),
        peak_rss_mib: peak.map(|m| m.peak_resident_bytes as f64 / MIB),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn print_table(r: &Report) {
    let mib = |m: Option<f64>| m.map_or("n/a".to_string(), |m| format!("{m:.1} MiB"));
    println!("model        {}", r.model);
    println!("threads      {}", r.threads);
    println!("load         {:.3} s", r.load_s);
    println!("weights      {:.1} MiB", r.weights_mib);
    println!("rss (loaded) {}", mib(r.rss_after_load_mib));
    println!("prefill      {:.1} tok/s  ({} tokens, median of {})", r.prefill_tok_s, r.prompt_tokens, r.runs.len());
    println!("decode       {:.1} tok/s  ({} tokens, median of {})", r.decode_tok_s, r.gen_tokens, r.runs.len());
    println!("peak rss     {}", mib(r.peak_rss_mib));
}
