//! One sequence being generated: its context, token budget, sampler, streaming decoder and
//! stop-string matcher, advanced one token at a time.
//!
//! Why a type of its own: the fixed-batch loop of [`crate::generate_batch`] and a continuous
//! batcher (a server, where sequences join and leave between steps) run the same per-sequence
//! rules — processors, choice, stop ids, stop strings, UTF-8-safe streaming, length, an
//! optional output [`Constraint`] — and this is the one place those rules live.

use crate::config::GenerationConfig;
use crate::constraint::Constraint;
use crate::error::GenerateError;
use crate::generation::{FinishReason, GenerationOutput, Timings};
use crate::sampler::Sampler;
use crate::stop::StopStringMatcher;
use crate::stream::{StreamDecoder, TextDecoder};

/// The state of one sequence from its prompt to its end.
///
/// ```
/// # use chatlm_generate::{GenerationConfig, Sequence, TextDecoder};
/// # struct Letters; impl TextDecoder for Letters { type Error = std::io::Error;
/// #   fn decode_ids(&self, ids: &[u32], _: bool) -> Result<String, Self::Error> {
/// #     Ok(ids.iter().filter(|&&i| i != 2).map(|_| 'a').collect()) } }
/// let cfg = GenerationConfig { max_new_tokens: Some(4), ..Default::default() };
/// let mut seq = Sequence::new(vec![0], &cfg, 16);
/// let mut text = String::new();
/// for logits in [vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]] {
///     let mut row = logits;
///     let id = seq.choose(&mut row).unwrap();
///     seq.push(&Letters, id, &[2], &mut |p| text.push_str(p)).unwrap();
/// }
/// assert_eq!((seq.generated(), text.as_str()), (&[1, 2][..], "a"));
/// assert_eq!(seq.finish_reason(), Some(chatlm_generate::FinishReason::Stop));
/// ```
pub struct Sequence {
    config: GenerationConfig,
    sampler: Sampler,
    context: Vec<u32>,
    prompt_len: usize,
    budget: usize,
    stream: StreamDecoder,
    matcher: StopStringMatcher,
    emitted: String,
    finished: Option<FinishReason>,
    constraint: Option<Box<dyn Constraint>>,
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("context", &self.context)
            .field("prompt_len", &self.prompt_len)
            .field("budget", &self.budget)
            .field("emitted", &self.emitted)
            .field("finished", &self.finished)
            .field("constrained", &self.constraint.is_some())
            .finish_non_exhaustive()
    }
}

impl Sequence {
    /// A sequence for `prompt` with its own copy of `config` and a sampler seeded by
    /// `config.seed`; at most `room` new tokens fit in the model's cache (the budget is the
    /// smaller of that and the config's). A zero budget is finished at once ([`FinishReason::Length`]).
    pub fn new(prompt: Vec<u32>, config: &GenerationConfig, room: usize) -> Self {
        let budget = config.new_token_budget(prompt.len()).min(room);
        Self {
            sampler: Sampler::new(config.seed),
            prompt_len: prompt.len(),
            context: prompt,
            budget,
            stream: StreamDecoder::new(config.skip_special_tokens),
            matcher: StopStringMatcher::new(&config.stop_strings),
            emitted: String::new(),
            finished: (budget == 0).then_some(FinishReason::Length),
            config: config.clone(),
            constraint: None,
        }
    }

    /// Restricts the ids this sequence may produce to what `constraint` allows; once the
    /// constraint is complete the sequence ends ([`FinishReason::Stop`]) with the id that
    /// completed it, so no text follows the constrained output.
    pub fn with_constraint(mut self, constraint: Box<dyn Constraint>) -> Self {
        self.constraint = Some(constraint);
        self
    }

    /// Whether a constraint restricts this sequence.
    pub fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// The settings this sequence runs with.
    pub fn config(&self) -> &GenerationConfig {
        &self.config
    }

    /// Prompt and generated ids.
    pub fn context(&self) -> &[u32] {
        &self.context
    }

    /// Generated ids only.
    pub fn generated(&self) -> &[u32] {
        &self.context[self.prompt_len..]
    }

    /// Prompt length in tokens.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// The text released so far (without stop strings).
    pub fn text(&self) -> &str {
        &self.emitted
    }

    /// Why the sequence ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finished
    }

    /// Whether the sequence still wants tokens.
    pub fn is_running(&self) -> bool {
        self.finished.is_none()
    }

    /// Masks `logits` with the constraint (when there is one), applies the processors (in
    /// place) and picks the next id: argmax when the config is greedy, otherwise a draw from
    /// this sequence's sampler.
    pub fn choose(&mut self, logits: &mut [f32]) -> Result<u32, GenerateError> {
        // Masking first: a temperature or top-p sees only the ids that may follow, so the
        // probability mass is shared among them.
        if let Some(constraint) = &mut self.constraint {
            constraint.mask(logits)?;
        }
        self.config.process(logits, &self.context, self.prompt_len)?;
        if self.config.is_greedy() {
            Sampler::argmax(logits)
        } else {
            self.sampler.sample(logits)
        }
    }

    /// Appends `id` (advancing the constraint over it): ends the sequence on a stop id, a stop
    /// string, a complete constraint or the budget, and hands the text that became final to
    /// `on_piece` (a stop string, even partly, never is).
    pub fn push<D: TextDecoder>(
        &mut self,
        decoder: &D,
        id: u32,
        stop_ids: &[u32],
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<Option<FinishReason>, GenerateError> {
        if self.finished.is_some() {
            return Ok(self.finished);
        }
        if let Some(constraint) = &mut self.constraint {
            constraint.commit(id)?;
        }
        self.context.push(id);
        let generated = self.context.len() - self.prompt_len;
        if stop_ids.contains(&id) {
            self.finished = Some(FinishReason::Stop);
        } else if let Some(piece) = self.stream.step(decoder, id).map_err(decode_err)? {
            let released = self.matcher.push(&piece);
            self.emit(&released.text, on_piece);
            if released.stopped {
                self.finished = Some(FinishReason::Stop);
                return Ok(self.finished);
            }
        }
        if self.finished.is_none() && self.constraint.as_ref().is_some_and(|c| c.is_complete()) {
            self.finished = Some(FinishReason::Stop);
        }
        if self.finished.is_none() && generated >= self.budget {
            self.finished = Some(FinishReason::Length);
        }
        if self.finished.is_some() {
            self.flush(decoder, on_piece)?;
        }
        Ok(self.finished)
    }

    /// Ends a running sequence with `reason` (a cancel, a closed connection), releasing the
    /// text it still holds back.
    pub fn stop<D: TextDecoder>(&mut self, decoder: &D, reason: FinishReason, on_piece: &mut dyn FnMut(&str)) -> Result<(), GenerateError> {
        if self.finished.is_none() {
            self.finished = Some(reason);
            self.flush(decoder, on_piece)?;
        }
        Ok(())
    }

    /// The finished sequence as an output (a running one reports [`FinishReason::Length`]).
    pub fn into_output(self, timings: Timings) -> GenerationOutput {
        let ids = self.context[self.prompt_len..].to_vec();
        GenerationOutput {
            completion_tokens: ids.len(),
            ids,
            text: self.emitted,
            finish_reason: self.finished.unwrap_or(FinishReason::Length),
            prompt_tokens: self.prompt_len,
            timings,
        }
    }

    fn emit(&mut self, text: &str, on_piece: &mut dyn FnMut(&str)) {
        if !text.is_empty() {
            self.emitted.push_str(text);
            on_piece(text);
        }
    }

    /// Releases what a finished sequence still holds: a trailing incomplete character in the
    /// incremental decoder, or a partial stop-string match that is now known not to complete.
    fn flush<D: TextDecoder>(&mut self, decoder: &D, on_piece: &mut dyn FnMut(&str)) -> Result<(), GenerateError> {
        let full = decoder.decode_ids(self.stream.ids(), self.stream.skip_special_tokens()).map_err(decode_err)?;
        let sent_to_matcher = self.emitted.len() + self.matcher.held_len();
        let rest = full.get(sent_to_matcher..).unwrap_or("").to_string();
        let released = self.matcher.push(&rest);
        self.emit(&released.text, on_piece);
        if !released.stopped {
            let tail = self.matcher.finish();
            self.emit(&tail, on_piece);
        }
        Ok(())
    }
}

fn decode_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> GenerateError {
    GenerateError::Decode(Box::new(e))
}
