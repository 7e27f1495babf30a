//! `chatlm` — the command-line face of the chatlm crates.
//!
//! Each subcommand lives in its own module and only parses arguments, calls the
//! library crates and prints; all real work happens in the libraries.

mod bench_cmd;
mod chat_cmd;
mod data_cmd;
mod engine;
mod generate_cmd;
mod inspect_cmd;
mod serve_cmd;
mod template_cmd;
mod tokenize_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chatlm", version, about = "Tokenize, template, generate and prepare data for chat LLMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Text → token ids (one JSON array), like `tokenizer.encode`.
    Tokenize(tokenize_cmd::TokenizeArgs),
    /// Token ids → text, like `tokenizer.decode`.
    Decode(tokenize_cmd::DecodeArgs),
    /// Messages → prompt, like `tokenizer.apply_chat_template`.
    Template(template_cmd::TemplateArgs),
    /// A readable summary of a tokenizer, model directory or GGUF file.
    Inspect(inspect_cmd::InspectArgs),
    /// Interactive multi-turn chat with a local model.
    Chat(chat_cmd::ChatArgs),
    /// Generate a completion for one prompt.
    Generate(generate_cmd::GenerateArgs),
    /// An OpenAI-compatible HTTP server with continuous batching.
    Serve(serve_cmd::ServeArgs),
    /// Load time, prefill and decode speed, peak memory.
    Bench(bench_cmd::BenchArgs),
    /// Fine-tuning data: prepare, collate, pack, fix tokenizers.
    Data(data_cmd::DataArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenize(args) => tokenize_cmd::run_tokenize(args),
        Command::Decode(args) => tokenize_cmd::run_decode(args),
        Command::Template(args) => template_cmd::run(args),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Chat(args) => chat_cmd::run(args),
        Command::Generate(args) => generate_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Data(args) => data_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line; never a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
