//! Decode throughput of several sequences stepped together (`Model::forward_step_many`)
//! against the same sequences stepped one by one (`Model::forward_last`).
//!
//! `cargo run --release -p chatlm-model --example step_many -- MODEL.gguf [STEPS] [THREADS]`
//!
//! For 1, 4 and 16 sequences (prompts of different lengths, each in its own cache) it greedily
//! decodes `STEPS` tokens per sequence both ways and prints the tokens/s of all sequences
//! together. Timings only; nothing is asserted.

use std::time::Instant;

use chatlm_model::{KvCache, LoadOptions, Model, ModelSource};

/// Sequence `seq`'s prompt: ordinary ids, a different length per sequence.
fn prompt(seq: usize, vocab: usize) -> Vec<u32> {
    (0..24 + 8 * seq).map(|i| (1000 + (i * 7919 + seq * 131) % 20000).min(vocab - 1) as u32).collect()
}

fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

/// `n` prefilled caches (room for `steps` more tokens) and each one's first decode token.
fn prefilled(model: &Model, n: usize, steps: usize) -> chatlm_model::Result<(Vec<KvCache>, Vec<u32>)> {
    let vocab = model.config().vocab_size;
    let mut caches = Vec::with_capacity(n);
    let mut next = Vec::with_capacity(n);
    for seq in 0..n {
        let ids = prompt(seq, vocab);
        let mut cache = model.new_cache(1, ids.len() + steps)?;
        next.push(argmax(&model.forward_last(&ids, &mut cache)?));
        caches.push(cache);
    }
    Ok((caches, next))
}

/// Seconds for `steps` greedy steps of `n` sequences, together or one by one.
fn decode(model: &Model, n: usize, steps: usize, together: bool) -> chatlm_model::Result<f64> {
    let (mut caches, mut next) = prefilled(model, n, steps)?;
    let start = Instant::now();
    for _ in 0..steps {
        if together {
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            let logits = model.forward_step_many(&next, &mut refs)?;
            next = logits.iter().map(|l| argmax(l)).collect();
        } else {
            for (token, cache) in next.iter_mut().zip(&mut caches) {
                *token = argmax(&model.forward_last(&[*token], cache)?);
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: step_many MODEL.gguf [STEPS] [THREADS]")?;
    let steps: usize = args.get(2).map_or(Ok(32), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    // Before any thread exists: candle and our kernels size their pools from it.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let model = Model::from_source(&ModelSource::resolve(path)?, &LoadOptions::default())?;
    // Warm the thread pool and the pages of the weights.
    decode(&model, 2, 4, true)?;
    println!("{steps} steps per sequence, {threads} threads");
    println!("{:>9} {:>14} {:>16} {:>8}", "sequences", "together tok/s", "one-by-one tok/s", "speedup");
    for n in [1, 4, 16] {
        let tokens = (n * steps) as f64;
        let one_by_one = tokens / decode(&model, n, steps, false)?;
        let together = tokens / decode(&model, n, steps, true)?;
        println!("{n:>9} {together:>14.1} {one_by_one:>16.1} {:>7.2}x", together / one_by_one);
    }
    Ok(())
}
