//! Prefill and decode speed of a model on the CPU, for `scripts/bench/model.py`.
//!
//! `cargo run --release -p chatlm-model --example model_bench -- MODEL [PROMPT_TOKENS] [GEN_TOKENS] [THREADS]`
//!
//! Prints one JSON line: load seconds, prefill and decode tokens/s, peak RSS. The prompt is a
//! fixed sequence of ids (the same formula as the Python side) so both engines do equal work.

use std::time::Instant;

use chatlm_model::{LoadOptions, Model, ModelSource, ProcessMemory};

/// The benchmark prompt: `count` ordinary token ids, reproducible from the formula alone.
fn prompt(count: usize, vocab: usize) -> Vec<u32> {
    (0..count).map(|i| (1000 + (i * 7919) % 20000).min(vocab - 1) as u32).collect()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: model_bench MODEL [PROMPT_TOKENS] [GEN_TOKENS] [THREADS]")?;
    let prompt_tokens: usize = args.get(2).map_or(Ok(512), |s| s.parse())?;
    let gen_tokens: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let threads: usize = args.get(4).map_or(Ok(2), |s| s.parse())?;
    // Before any thread exists: candle and our kernels size their pools from it.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());

    let start = Instant::now();
    let model = Model::from_source(&ModelSource::resolve(path)?, &LoadOptions::default())?;
    let load_s = start.elapsed().as_secs_f64();
    let ids = prompt(prompt_tokens, model.config().vocab_size);
    let mut cache = model.new_cache(1, prompt_tokens + gen_tokens)?;

    let start = Instant::now();
    let mut next = argmax(&model.forward_last(&ids, &mut cache)?);
    let prefill_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    for _ in 0..gen_tokens {
        next = argmax(&model.forward_last(&[next], &mut cache)?);
    }
    let decode_s = start.elapsed().as_secs_f64();
    let peak = ProcessMemory::current().map_or(0, |m| m.peak_resident_bytes);
    println!(
        "{{\"load_s\": {load_s:.3}, \"prefill_tok_s\": {:.2}, \"decode_tok_s\": {:.2}, \"peak_rss_mib\": {:.1}, \"last_token\": {next}}}",
        prompt_tokens as f64 / prefill_s,
        gen_tokens as f64 / decode_s,
        peak as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
