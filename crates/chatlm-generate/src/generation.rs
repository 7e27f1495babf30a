//! The generation loop: prefill, then one token per step per sequence, each sequence
//! stopping on its own (stop id, stop string or length).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::config::GenerationConfig;
use crate::error::GenerateError;
use crate::model::LogitsModel;
use crate::sampler::Sampler;
use crate::stop::StopStringMatcher;
use crate::stream::{StreamDecoder, TextDecoder};

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

/// Per-sequence state of the loop.
struct Sequence {
    context: Vec<u32>,
    prompt_len: usize,
    budget: usize,
    stream: StreamDecoder,
    matcher: StopStringMatcher,
    emitted: String,
    finished: Option<FinishReason>,
}

fn model_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> GenerateError {
    GenerateError::Model(Box::new(e))
}

fn decode_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> GenerateError {
    GenerateError::Decode(Box::new(e))
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
    let mut seqs: Vec<Sequence> = prompts
        .iter()
        .map(|p| Sequence {
            context: p.clone(),
            prompt_len: p.len(),
            budget: config.new_token_budget(p.len()).min(room),
            stream: StreamDecoder::new(config.skip_special_tokens),
            matcher: StopStringMatcher::new(&config.stop_strings),
            emitted: String::new(),
            finished: None,
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

    let mut sampler = Sampler::new(config.seed);
    let max_budget = seqs.iter().map(|s| s.budget).max().unwrap_or(0);
    // The last sampled token is never fed back, hence no +1: the cache holds at most
    // the padded prompt and `budget - 1` generated tokens; the extra slot is slack.
    model.reset(prompts.len(), (longest + max_budget).min(window)).map_err(model_err)?;
    let t0 = Instant::now();
    let mut logits = model.forward(&tokens, &mask).map_err(model_err)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut steps = 0usize;

    for seq in seqs.iter_mut().filter(|s| s.budget == 0) {
        seq.finished = Some(FinishReason::Length);
    }
    while seqs.iter().any(|s| s.finished.is_none()) {
        if logits.len() != seqs.len() {
            return Err(GenerateError::LogitsShape { index: logits.len(), got: 0, expected: vocab });
        }
        let mut next = Vec::with_capacity(seqs.len());
        for (i, (seq, row)) in seqs.iter_mut().zip(logits.iter_mut()).enumerate() {
            if seq.finished.is_some() {
                next.push(pad);
                continue;
            }
            if row.len() != vocab {
                return Err(GenerateError::LogitsShape { index: i, got: row.len(), expected: vocab });
            }
            config.process(row, &seq.context)?;
            let id = if config.is_greedy() { Sampler::argmax(row)? } else { sampler.sample(row)? };
            seq.context.push(id);
            next.push(id);
            advance(seq, decoder, id, stop_ids, &mut |p| on_piece(i, p))?;
        }
        if seqs.iter().all(|s| s.finished.is_some()) {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            for (i, seq) in seqs.iter_mut().enumerate().filter(|(_, s)| s.finished.is_none()) {
                seq.finished = Some(FinishReason::Cancelled);
                flush(seq, decoder, &mut |p| on_piece(i, p))?;
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
    seqs.into_iter()
        .map(|s| {
            let ids = s.context[s.prompt_len..].to_vec();
            Ok(GenerationOutput {
                completion_tokens: ids.len(),
                ids,
                text: s.emitted,
                finish_reason: s.finished.unwrap_or(FinishReason::Length),
                prompt_tokens: s.prompt_len,
                timings,
            })
        })
        .collect()
}

fn rate(tokens: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        tokens as f64 / seconds
    } else {
        0.0
    }
}

/// Feeds one new id of a sequence through decoding, stop ids and stop strings.
fn advance<D: TextDecoder>(
    seq: &mut Sequence,
    decoder: &D,
    id: u32,
    stop_ids: &[u32],
    on_piece: &mut dyn FnMut(&str),
) -> Result<(), GenerateError> {
    let generated = seq.context.len() - seq.prompt_len;
    if stop_ids.contains(&id) {
        seq.finished = Some(FinishReason::Stop);
    } else if let Some(piece) = seq.stream.step(decoder, id).map_err(decode_err)? {
        let released = seq.matcher.push(&piece);
        emit(seq, &released.text, on_piece);
        if released.stopped {
            seq.finished = Some(FinishReason::Stop);
            return Ok(());
        }
    }
    if seq.finished.is_none() && generated >= seq.budget {
        seq.finished = Some(FinishReason::Length);
    }
    if seq.finished.is_some() {
        flush(seq, decoder, on_piece)?;
    }
    Ok(())
}

fn emit(seq: &mut Sequence, text: &str, on_piece: &mut dyn FnMut(&str)) {
    if !text.is_empty() {
        seq.emitted.push_str(text);
        on_piece(text);
    }
}

/// Releases what a finished sequence still holds: a trailing incomplete character in the
/// incremental decoder, or a partial stop-string match that is now known not to complete.
fn flush<D: TextDecoder>(seq: &mut Sequence, decoder: &D, on_piece: &mut dyn FnMut(&str)) -> Result<(), GenerateError> {
    let full = decoder.decode_ids(seq.stream.ids(), seq.stream_skip()).map_err(decode_err)?;
    let sent_to_matcher = seq.emitted.len() + seq.matcher.held_len();
    let rest = full.get(sent_to_matcher..).unwrap_or("").to_string();
    let released = seq.matcher.push(&rest);
    emit(seq, &released.text, on_piece);
    if !released.stopped {
        let tail = seq.matcher.finish();
        emit(seq, &tail, on_piece);
    }
    Ok(())
}

impl Sequence {
    fn stream_skip(&self) -> bool {
        self.stream.skip_special_tokens()
    }
}
