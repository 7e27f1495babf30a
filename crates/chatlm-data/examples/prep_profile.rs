//! Time the stages of preparing conversational rows: chat-template rendering and tokenization.
//! `cargo run --release -p chatlm-data --example prep_profile -- ROWS.jsonl TOKENIZER_DIR`

use std::time::Instant;

use chatlm_template::{apply_chat_template, ApplyOptions, ChatRequest, ChatTemplate};
use chatlm_tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (input, tok) = (args.get(1).ok_or("input")?, args.get(2).ok_or("tokenizer")?);
    let tok = Tokenizer::from_pretrained(tok)?;
    let tpl = ChatTemplate::for_tokenizer(&tok, None, false)?;
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(input)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let t = Instant::now();
    let mut texts = Vec::new();
    for r in &rows {
        let req = ChatRequest::new(r["messages"].as_array().cloned().unwrap_or_default());
        texts.push(apply_chat_template(&tok, &tpl, &req, ApplyOptions::default())?.text);
    }
    let render = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0;
    for s in &texts {
        n += tok.encode(s, false)?.len();
    }
    let enc = t.elapsed().as_secs_f64();
    println!("rows {} tokens {n}: render {render:.3}s, encode {enc:.3}s (single thread)", rows.len());
    Ok(())
}
