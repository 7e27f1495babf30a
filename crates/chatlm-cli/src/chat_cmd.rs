//! `chatlm chat` — an interactive multi-turn conversation with a local model.
//!
//! Line editing and history come from rustyline; answers stream as they are generated.
//! Ctrl-C while an answer streams stops that answer (a SIGINT handler raises a flag the
//! generation loop checks before every token); at the prompt it clears the line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use chatlm::{FinishReason, GenerationConfig, Pipeline};
use clap::Args;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use crate::engine::LoadRequest;
use crate::generate_cmd::SamplingFlags;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    load: LoadRequest,
    /// System message, first in every prompt (change it with /system).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingFlags,
    /// Re-run the whole conversation every turn instead of reusing the cached prefix (for
    /// measuring what prompt caching saves).
    #[arg(long)]
    no_prompt_cache: bool,
}

/// Repetition penalty of an interactive chat when neither `--repetition-penalty` nor the model's
/// generation config sets one. Greedy decoding of small chat models (the default SmolLM2-135M)
/// loops on a phrase within a few dozen tokens; llama.cpp's interactive CLI long used 1.1 for
/// the same reason. `generate` keeps transformers' default (1.0) so its output stays comparable.
const CHAT_REPETITION_PENALTY: f32 = 1.1;

const HELP: &str = "commands: /reset forgets the conversation, /system TEXT sets the system message \
(/system alone shows it, /system - removes it), /help, /exit; Ctrl-C stops an answer, Ctrl-D quits";

pub fn run(args: ChatArgs) -> Result<()> {
    chatlm::init_threads(args.load.weights.threads)?;
    args.sampling.apply(&GenerationConfig::default())?;
    let mut pipe = Pipeline::load(&args.load.spec())?;
    pipe.set_prompt_cache(!args.no_prompt_cache);
    let engine = std::sync::Arc::clone(pipe.engine());
    let mut config = args.sampling.apply(engine.generation_defaults())?;
    if args.sampling.repetition_penalty.is_none() && engine.generation_defaults().repetition_penalty == 1.0 {
        config.repetition_penalty = CHAT_REPETITION_PENALTY;
    }
    let mut session = pipe.chat_session(config)?;
    session.set_system(args.system.clone());

    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    // Installed after loading, so Ctrl-C during a long load still ends the program.
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;

    let mut editor = DefaultEditor::new().context("starting the line editor")?;
    eprintln!("chatlm chat: {} (loaded in {:.2}s)", engine.name(), engine.load_s());
    eprintln!("{HELP}");
    let mut stdout = std::io::stdout();
    loop {
        let line = match editor.readline(">>> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue, // Ctrl-C at the prompt: drop the line
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading input"),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        // History is a convenience: failing to record a line is not worth stopping for.
        let _ = editor.add_history_entry(text);
        if let Some(command) = text.strip_prefix('/') {
            let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
            match (name, rest.trim()) {
                ("exit" | "quit", _) => break,
                ("help", _) => eprintln!("{HELP}"),
                ("reset", _) => {
                    session.reset();
                    eprintln!("[conversation cleared]");
                }
                ("system", "") => match session.system() {
                    Some(s) => eprintln!("[system: {s}]"),
                    None => eprintln!("[no system message: the template's default applies]"),
                },
                ("system", "-") => {
                    session.set_system(None);
                    eprintln!("[system message removed]");
                }
                ("system", s) => {
                    session.set_system(Some(s.to_string()));
                    eprintln!("[system message set]");
                }
                _ => eprintln!("unknown command /{name}; {HELP}"),
            }
            continue;
        }
        cancel.store(false, Ordering::Relaxed);
        let result = session.send_cancellable(text, &cancel, |piece| {
            // A closed stdout shows up at the next read; nothing useful to do here.
            let _ = stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush());
        });
        println!();
        match result {
            Ok(out) => match out.finish_reason {
                FinishReason::Cancelled => eprintln!("[stopped]"),
                FinishReason::Length => eprintln!("[cut at {} new tokens]", out.completion_tokens),
                FinishReason::Stop => {}
            },
            // The conversation goes on: a turn that failed (e.g. too long for the context
            // window) is not added to the history.
            Err(e) => eprintln!("error: {:#} (use /reset to start over)", anyhow::Error::from(e)),
        }
    }
    Ok(())
}
