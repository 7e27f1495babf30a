//! The generation loop: prefill, then one token per step per sequence, each sequence
//! stopping on its own (stop id, stop string or length).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::config::GenerationConfig;
use crate::constraint::Constraint;
use crate::error::GenerateError;
use crate::model::LogitsModel;
use crate::sequence::Sequence;
use crate::stream::TextDecoder;

/// Why a sequence ended (OpenAI / CLI `--json` spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop id or stop string was produced.
    Stop,
    /// The token budget (or the context window) ran out.
    Length,
    /// The caller's cancel flag was raised (Ctrl-C in `chatlm chat`).
    Cancelled,
}

/// Wall-clock figures of one `generate` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Model load time (filled in by the caller that loaded it).
    pub load_s: f64,
    /// Prompt tokens per second over the prefill forward.
    pub prefill_tok_s: f64,
    /// Generated tokens per second over the decode steps.
    pub decode_tok_s: f64,
}

/// One finished sequence: what `chatlm generate --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationOutput {
    /// Generated ids only (prompt excluded), including a final stop id.
    pub ids: Vec<u32>,
    /// Decoded answer, without the prompt and without any stop string.
    pub text: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// `ids.len()`.
    pub completion_tokens: usize,
    /// Speed figures.
    pub timings: Timings,
}

fn model_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> GenerateError {
    GenerateError::Model(Box::new(e))
}

/// Generates for one prompt; `on_piece` receives the answer text as it becomes final.
///
/// ```
/// # use chatlm_generate::{generate, GenerationConfig, LogitsModel, TextDecoder};
/// # struct Echo; // always predicts token 1, then stop id 2
/// # impl LogitsModel for Echo { type Error = std::io::Error;
/// #   fn vocab_size(&self) -> usize { 3 } fn context_window(&self) -> usize { 16 }
/// #   fn reset(&mut self, _: usize, _: usize) -> Result<(), Self::Error> { Ok(()) }
/// #   fn forward(&mut self, t: &[Vec<u32>], _: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, Self::Error> {
/// #     Ok(t.iter().map(|r| if r[r.len()-1] == 1 { vec![0.,0.,1.] } else { vec![0.,1.,0.] }).collect()) } }
/// # struct Letters; impl TextDecoder for Letters { type Error = std::io::Error;
/// #   fn decode_ids(&self, ids: &[u32], _: bool) -> Result<String, Self::Error> {
/// #     Ok(ids.iter().filter(|&&i| i != 2).map(|_| 'a').collect()) } }
/// let cfg = GenerationConfig { max_new_tokens: Some(8), ..Default::default() };
/// let out = generate(&mut Echo, &Letters, &[0], &cfg, &[2], |_| {}).unwrap();
/// assert_eq!((out.ids, out.text.as_str()), (vec![1, 2], "a"));
/// ```
pub fn generate<M: LogitsModel, D: TextDecoder>(
    model: &mut M,
    decoder: &D,
    prompt: &[u32],
    config: &GenerationConfig,
    stop_ids: &[u32],
    on_piece: impl FnMut(&str),
) -> Result<GenerationOutput, GenerateError> {
    generate_cancellable(model, decoder, prompt, config, stop_ids, &AtomicBool::new(false), on_piece)
}

/// [`generate`] that ends early, with [`FinishReason::Cancelled`], once `cancel` is set
/// (checked before every decoding step; the text produced so far is returned).
pub fn generate_cancellable<M: LogitsModel, D: TextDecoder>(
    model: &mut M,
    decoder: &D,
    prompt: &[u32],
    config: &GenerationConfig,
    stop_ids: &[u32],
    cancel: &AtomicBool,
    mut on_piece: impl FnMut(&str),
) -> Result<GenerationOutput, GenerateError> {
    let mut outs =
        generate_batch_cancellable(model, decoder, &[prompt.to_vec()], config, stop_ids, cancel, |_, p| on_piece(p))?;
    outs.pop().ok_or(GenerateError::EmptyPrompt { index: 0 })
}

/// [`generate_cancellable`] with the answer restricted by `constraint` (a JSON schema, a
/// grammar): it masks every step's logits and ends the answer once complete.
#[allow(clippy::too_many_arguments)] // generate_cancellable's arguments plus the constraint
pub fn generate_constrained<M: LogitsModel, D: TextDecoder>(
    model: &mut M,
    decoder: &D,
    prompt: &[u32],
    config: &GenerationConfig,
    stop_ids: &[u32],
    constraint: Box<dyn Constraint>,
    cancel: &AtomicBool,
    mut on_piece: impl FnMut(&str),
) -> Result<GenerationOutput, GenerateError> {
    let mut outs =
        run_batch(model, decoder, &[prompt.to_vec()], vec![Some(constraint)], config, stop_ids, cancel, |_, p| on_piece(p))?;
    outs.pop().ok_or(GenerateError::EmptyPrompt { index: 0 })
}

/// Generates for several prompts at once: prompts are left-padded to one length with an
/// attention mask, each sequence stops on its own and is fed padding once finished.
/// `on_piece(i, text)` streams sequence `i`.
pub fn generate_batch<M: LogitsModel, D: TextDecoder>(
    model: &mut M,
    decoder: &D,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    stop_ids: &[u32],
    on_piece: impl FnMut(usize, &str),
) -> Result<Vec<GenerationOutput>, GenerateError> {
    generate_batch_cancellable(model, decoder, prompts, config, stop_ids, &AtomicBool::new(false), on_piece)
}

/// [`generate_batch`] that ends every unfinished sequence with [`FinishReason::Cancelled`]
/// once `cancel` is set.
pub fn generate_batch_cancellable<M: LogitsModel, D: TextDecoder>(
    model: &mut M,
    decoder: &D,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    stop_ids: &[u32],
    cancel: &AtomicBool,
    on_piece: impl FnMut(usize, &str),
) -> Result<Vec<GenerationOutput>, GenerateError> {
    let constraints = prompts.iter().map(|_| None).collect();
    run_batch(model, decoder, prompts, constraints, config, stop_ids, cancel, on_piece)
}

/// The loop behind every entry point; `constraints[i]` restricts sequence `i`.
#[allow(clippy::too_many_arguments)]
fn run_batch<M: LogitsModel, D: TextDecoder>(
    model: &mut M,
    decoder: &D,
    prompts: &[Vec<u32>],
    constraints: Vec<Option<Box<dyn Constraint>>>,
    config: &GenerationConfig,
    stop_ids: &[u32],
    cancel: &AtomicBool,
    mut on_piece: impl FnMut(usize, &str),
) -> Result<Vec<GenerationOutput>, GenerateError> {
    config.validate()?;
    let window = model.context_window();
    let vocab = model.vocab_size();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    for (index, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(GenerateError::EmptyPrompt { index });
        }
        if p.len() >= window {
            return Err(GenerateError::PromptTooLong { index, prompt_tokens: p.len(), context_window: window });
        }
    }
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let pad = config.pad_token_id.or(stop_ids.first().copied()).unwrap_or(0);
    // Left padding shares the window: the padded length is what the cache holds.
    let room = window - longest;
    // Row i samples with seed + i: row 0 of a batch draws what a lone run draws, and equal
    // prompts in one batch still get different samples.
    let mut seqs: Vec<Sequence> = prompts
        .iter()
        .zip(constraints)
        .enumerate()
        .map(|(i, (p, constraint))| {
            let row_config = GenerationConfig { seed: config.seed.wrapping_add(i as u64), ..config.clone() };
            let seq = Sequence::new(p.clone(), &row_config, room);
            match constraint {
                Some(c) => seq.with_constraint(c),
                None => seq,
            }
        })
        .collect();

    let (tokens, mask): (Vec<Vec<u32>>, Vec<Vec<u8>>) = prompts
        .iter()
        .map(|p| {
            let n = longest - p.len();
            let mut t = vec![pad; n];
            t.extend_from_slice(p);
            let mut m = vec![0u8; n];
            m.resize(longest, 1);
            (t, m)
        })
        .unzip();

    let max_budget = seqs.iter().map(|s| config.new_token_budget(s.prompt_len()).min(room)).max().unwrap_or(0);
    // The last sampled token is never fed back, hence no +1: the cache holds at most
    // the padded prompt and `budget - 1` generated tokens; the extra slot is slack.
    model.reset(prompts.len(), (longest + max_budget).min(window)).map_err(model_err)?;
    let t0 = Instant::now();
    let mut logits = model.forward(&tokens, &mask).map_err(model_err)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut steps = 0usize;

    while seqs.iter().any(Sequence::is_running) {
        if logits.len() != seqs.len() {
            return Err(GenerateError::LogitsShape { index: logits.len(), got: 0, expected: vocab });
        }
        let mut next = Vec::with_capacity(seqs.len());
        for (i, (seq, row)) in seqs.iter_mut().zip(logits.iter_mut()).enumerate() {
            if !seq.is_running() {
                next.push(pad);
                continue;
            }
            if row.len() != vocab {
                return Err(GenerateError::LogitsShape { index: i, got: row.len(), expected: vocab });
            }
            let id = seq.choose(row)?;
            next.push(id);
            seq.push(decoder, id, stop_ids, &mut |p| on_piece(i, p))?;
        }
        if !seqs.iter().any(Sequence::is_running) {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            for (i, seq) in seqs.iter_mut().enumerate() {
                seq.stop(decoder, FinishReason::Cancelled, &mut |p| on_piece(i, p))?;
            }
            break;
        }
        let step: Vec<Vec<u32>> = next.into_iter().map(|id| vec![id]).collect();
        let ones = vec![vec![1u8]; step.len()];
        logits = model.forward(&step, &ones).map_err(model_err)?;
        steps += 1;
    }
    let decode_s = t1.elapsed().as_secs_f64();

    let timings = Timings {
        load_s: 0.0,
        prefill_tok_s: rate(tokens.len() * longest, prefill_s),
        decode_tok_s: rate(steps * prompts.len(), decode_s),
    };
    Ok(seqs.into_iter().map(|s| s.into_output(timings)).collect())
}

fn rate(tokens: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        tokens as f64 / seconds
    } else {
        0.0
    }
}
