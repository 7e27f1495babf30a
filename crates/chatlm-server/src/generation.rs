//! Running the choices of one request on the batcher and gathering their events, for a
//! whole response or as a stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chatlm::logprobs::TokenLogprobs;
use chatlm::{Batcher, Event, FinishReason, Request, SubmitError};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::params::Sampling;

/// What one choice has produced so far.
#[derive(Debug, Default, Clone)]
pub struct Choice {
    /// Text released so far.
    pub text: String,
    /// Generated ids.
    pub ids: Vec<u32>,
    /// Per generated id, when asked for.
    pub logprobs: Vec<TokenLogprobs>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Set when the choice has ended.
    pub finish: Option<FinishReason>,
}

/// The running choices of one request; dropping it cancels what still runs (a client that
/// went away frees its slots at the next step).
pub struct Running {
    /// `(choice index, event)`.
    pub events: UnboundedReceiver<(usize, Event)>,
    cancels: Vec<Arc<AtomicBool>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &self.cancels {
            c.store(true, Ordering::Relaxed);
        }
    }
}

/// Submits `prompts × sampling.n` choices (choice `p·n + j` is prompt `p`, sample `j`,
/// seeded `seed + j`).
pub fn start(
    batcher: &Batcher,
    prompts: &[Vec<u32>],
    sampling: &Sampling,
    skip_special_tokens: bool,
    constraint: &dyn Fn() -> chatlm::Result<Option<Box<dyn chatlm::Constraint>>>,
) -> Result<Running, ApiError> {
    let (tx, rx) = unbounded_channel();
    // Built first: returning early drops it, which cancels what was already submitted.
    let mut running = Running { events: rx, cancels: Vec::new() };
    for (p, prompt) in prompts.iter().enumerate() {
        for j in 0..sampling.n {
            let index = p * sampling.n + j;
            let mut config = sampling.config.clone();
            config.seed = config.seed.wrapping_add(j as u64);
            config.skip_special_tokens = skip_special_tokens;
            let cancel = Arc::new(AtomicBool::new(false));
            running.cancels.push(Arc::clone(&cancel));
            let tx = tx.clone();
            let constraint = constraint().map_err(|e| ApiError::from_pipeline(&e))?;
            let request = Request {
                constraint,
                prompt: prompt.clone(),
                config,
                ignore_eos: false,
                logprobs: sampling.logprobs,
                cancel,
                sink: Box::new(move |event| tx.send((index, event)).is_ok()),
            };
            if let Err(e) = batcher.submit(request) {
                return Err(match e {
                    SubmitError::QueueFull { .. } => ApiError::busy(e.to_string()),
                    SubmitError::Invalid(inner) => ApiError::from_pipeline(&inner),
                    SubmitError::WorkerGone => ApiError::internal(e.to_string()),
                });
            }
        }
    }
    Ok(running)
}

impl Running {
    /// Waits for every choice to end.
    pub async fn collect(mut self, count: usize) -> Result<Vec<Choice>, ApiError> {
        let mut choices = vec![Choice::default(); count];
        let mut open = count;
        while open > 0 {
            let Some((i, event)) = self.events.recv().await else {
                return Err(ApiError::internal("the generation worker stopped before the answer was complete"));
            };
            match apply(&mut choices[i], event) {
                Ok(true) => open -= 1,
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(choices)
    }
}

/// Folds one event into its choice; `Ok(true)` when the choice has ended.
pub fn apply(choice: &mut Choice, event: Event) -> Result<bool, ApiError> {
    match event {
        Event::Started { prompt_tokens, .. } => {
            choice.prompt_tokens = prompt_tokens;
            Ok(false)
        }
        Event::Token { id, text, logprobs } => {
            choice.ids.push(id);
            choice.text.push_str(&text);
            choice.logprobs.extend(logprobs);
            Ok(false)
        }
        Event::Done(out) => {
            // The output's text is authoritative: it includes text released at the end.
            choice.text = out.text;
            choice.ids = out.ids;
            choice.prompt_tokens = out.prompt_tokens;
            choice.finish = Some(out.finish_reason);
            Ok(true)
        }
        Event::Failed(e) => Err(ApiError::from_pipeline(&e)),
    }
}
