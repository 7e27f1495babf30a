//! Time to first token of each turn of a scripted chat, with and without prompt caching.
//!
//! `cargo run --release -p chatlm --example prompt_cache -- [MODEL] [--threads N]`
//! (MODEL defaults to the default model). Each turn's answer is capped at 48 tokens and
//! decoding is greedy, so both runs see the same conversation.

use std::time::Instant;

use chatlm::{GenerationConfig, LoadSpec, Pipeline};

const TURNS: [&str; 6] = [
    "Hi! Can you tell me about the city of Paris?",
    "What are three museums I should visit there?",
    "Which of them is best for a rainy afternoon?",
    "How do I get there from the Eiffel Tower by metro?",
    "What should I eat nearby afterwards?",
    "Thanks! Can you summarise the whole plan in a few lines?",
];

fn run(pipe: &mut Pipeline, cache: bool) -> chatlm::Result<Vec<(usize, f64)>> {
    pipe.set_prompt_cache(cache);
    let config = GenerationConfig { max_new_tokens: Some(48), repetition_penalty: 1.1, ..pipe.default_config() };
    let mut session = pipe.chat_session(config)?;
    session.set_system(Some("You are a helpful travel assistant.".into()));
    let mut rows = Vec::new();
    for turn in TURNS {
        let start = Instant::now();
        let mut first = None;
        let out = session
            .send(turn, |_| {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64());
            })
            .map_err(|e| chatlm::Error::Generate { name: "prompt_cache".into(), source: e })?;
        rows.push((out.prompt_tokens, first.unwrap_or_else(|| start.elapsed().as_secs_f64())));
    }
    Ok(rows)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let mut threads = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().and_then(|n| n.parse().ok()),
            _ => model = Some(a),
        }
    }
    chatlm::init_threads(threads)?;
    let mut pipe = Pipeline::load(&LoadSpec { model, ..Default::default() })?;
    // Warm-up: page the weights in.
    run(&mut pipe, false)?;
    let without = run(&mut pipe, false)?;
    let with = run(&mut pipe, true)?;
    println!("turn  prompt tokens  TTFT no cache  TTFT cache  ratio");
    for (i, ((n, a), (_, b))) in without.iter().zip(&with).enumerate() {
        println!("{:>4}  {:>13}  {:>12.1}ms  {:>8.1}ms  {:>5.1}x", i + 1, n, a * 1e3, b * 1e3, a / b);
    }
    Ok(())
}
