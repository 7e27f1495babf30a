//! [`Batcher`]: continuous batching of many requests on one model.
//!
//! A worker thread owns `slots` generation slots, each a [`ModelLm`] with its own KV cache.
//! Between decode steps it admits queued requests into free slots (prefilling each prompt,
//! after the longest prefix that slot's cache still holds), then runs ONE decode step for
//! every running sequence together ([`Model::forward_step_many`](chatlm_model::Model::forward_step_many):
//! the weights are read once for all of them). Each sequence stops on its own; a finished or
//! cancelled one frees its slot at once, keeping its cache for the next prompt that shares
//! its prefix (a client resending its growing conversation).
//!
//! Results go to a per-request callback ([`Request::sink`]) so any face can forward them — a
//! channel of an async server, an iterator of the Python package; a sink that returns `false`
//! (its receiver is gone) cancels the request at the next step.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use chatlm_generate::{Constraint, FinishReason, GenerateError, GenerationConfig, GenerationOutput, LogitsModel, Sequence, Timings};
use chatlm_model::KvCache;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lm::ModelLm;
use crate::logprobs::{token_logprobs, TokenLogprobs};
use crate::text::TokenizerDecoder;

/// What happens to a request, in order: `Token`s, then one `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    /// The prompt was prefilled: its length, and how many of its tokens came from the cache.
    Started {
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Of those, taken from the slot's cache.
        cached_tokens: usize,
    },
    /// One generated id, the text that became final with it (often empty: a character
    /// spread over several ids, or text held back as a possible stop string) and, when
    /// asked for, its log-probabilities.
    Token {
        /// The id.
        id: u32,
        /// Newly released text.
        text: String,
        /// Log-probabilities of this step, when the request asked for them.
        logprobs: Option<TokenLogprobs>,
    },
    /// The request ended; the output holds all ids, the whole text and the finish reason.
    Done(GenerationOutput),
    /// The request failed (nothing more follows).
    Failed(Error),
}

/// Where a request's events go; returning `false` says nobody listens any more (cancel).
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// One generation for the batcher.
pub struct Request {
    /// Prompt ids (rendered and checked by [`Engine::prompt_ids`]).
    pub prompt: Vec<u32>,
    /// Sampling and stopping settings (validated on submit).
    pub config: GenerationConfig,
    /// Generate past the model's stop ids.
    pub ignore_eos: bool,
    /// `Some(k)`: report each chosen token's log-probability and the `k` most likely ones.
    pub logprobs: Option<usize>,
    /// Restricts the answer (a JSON schema, a forced tool call: [`crate::constraint`]); the
    /// answer ends once the constrained text is complete.
    pub constraint: Option<Box<dyn Constraint>>,
    /// Raised by the caller to stop the request at the next step.
    pub cancel: Arc<AtomicBool>,
    /// Receives the events.
    pub sink: Sink,
}

/// How the batcher runs.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Sequences generated at once.
    pub slots: usize,
    /// Requests waiting for a slot at most; more are refused ([`Batcher::submit`]).
    pub queue: usize,
    /// Tokens (prompt + answer) per slot, at most the model's context window.
    pub context: usize,
    /// Keep each slot's cache between requests and reuse common prefixes.
    pub prompt_cache: bool,
}

/// Counters for monitoring (`/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests accepted.
    pub requests: AtomicU64,
    /// Requests that ended with an error.
    pub failed: AtomicU64,
    /// Prompt tokens of accepted requests.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens taken from slot caches instead of being computed.
    pub cached_prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Requests being generated.
    pub running: AtomicUsize,
    /// Microseconds the worker spent in prefills and decode steps.
    pub busy_us: AtomicU64,
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full.
    #[error("the server is busy: {queued} requests are waiting for a free slot; retry later")]
    QueueFull {
        /// Requests waiting.
        queued: usize,
    },
    /// The request itself is wrong (a parameter out of range, a prompt too long for a slot).
    #[error(transparent)]
    Invalid(Error),
    /// The worker is gone.
    #[error("the generation worker has stopped")]
    WorkerGone,
}

/// Continuous batching over one engine (see the module docs).
pub struct Batcher {
    engine: Arc<Engine>,
    options: BatchOptions,
    jobs: Option<SyncSender<Request>>,
    stats: Arc<Stats>,
    worker: Option<JoinHandle<()>>,
}

impl Batcher {
    /// Starts the worker thread.
    pub fn start(engine: Arc<Engine>, mut options: BatchOptions) -> Batcher {
        options.slots = options.slots.max(1);
        options.context = options.context.clamp(2, engine.context_window());
        let (jobs, rx) = mpsc::sync_channel(options.queue);
        let stats = Arc::new(Stats::default());
        let worker = {
            let (engine, stats) = (Arc::clone(&engine), Arc::clone(&stats));
            std::thread::Builder::new()
                .name("chatlm-batcher".into())
                .spawn(move || Worker::new(engine, options, stats, rx).run())
                .ok()
        };
        Batcher { engine, options, jobs: Some(jobs), stats, worker }
    }

    /// The engine the batcher runs.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The options in force (slots at least 1, context within the model's).
    pub fn options(&self) -> BatchOptions {
        self.options
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queues `request`; its events go to its sink. Checked here, before queueing: the
    /// settings (`GenerationConfig::validate`), an empty prompt, a prompt that leaves no room
    /// for an answer in a slot.
    pub fn submit(&self, request: Request) -> Result<(), SubmitError> {
        request.config.validate().map_err(|e| SubmitError::Invalid(generate_error(&self.engine, e)))?;
        if request.prompt.is_empty() {
            return Err(SubmitError::Invalid(Error::InvalidInput("the prompt is empty".into())));
        }
        if request.prompt.len() >= self.options.context {
            return Err(SubmitError::Invalid(Error::InvalidInput(format!(
                "the prompt has {} tokens but a slot holds {} (prompt and answer): shorten the conversation or start the server with a larger --ctx-size",
                request.prompt.len(),
                self.options.context
            ))));
        }
        let jobs = self.jobs.as_ref().ok_or(SubmitError::WorkerGone)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match jobs.try_send(request) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => Err(SubmitError::QueueFull { queued: self.options.queue }),
                    TrySendError::Disconnected(_) => Err(SubmitError::WorkerGone),
                }
            }
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Closing the channel ends the worker once its running requests are done.
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn generate_error(engine: &Engine, source: GenerateError) -> Error {
    Error::Generate { name: engine.name().to_string(), source }
}

/// A request in a slot.
struct Active {
    seq: Sequence,
    request: Request,
    stop_ids: Vec<u32>,
    started: Instant,
    prefill_s: f64,
    /// The id chosen last, to feed at the next step.
    last: u32,
}

struct Slot {
    lm: ModelLm,
    active: Option<Active>,
}

struct Worker {
    engine: Arc<Engine>,
    stats: Arc<Stats>,
    jobs: Receiver<Request>,
    slots: Vec<Slot>,
    /// Requests taken off the channel but not admitted yet (none between iterations).
    waiting: VecDeque<Request>,
    open: bool,
}

impl Worker {
    fn new(engine: Arc<Engine>, options: BatchOptions, stats: Arc<Stats>, jobs: Receiver<Request>) -> Worker {
        let slots = (0..options.slots)
            .map(|_| Slot { lm: engine.lm(options.prompt_cache).with_window(options.context), active: None })
            .collect();
        Worker { engine, stats, jobs, slots, waiting: VecDeque::new(), open: true }
    }

    fn run(mut self) {
        while self.open || self.slots.iter().any(|s| s.active.is_some()) {
            self.take_jobs();
            self.admit();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
        }
    }

    /// Moves queued requests in: blocking when nothing runs, otherwise only what is there.
    fn take_jobs(&mut self) {
        let idle = self.slots.iter().all(|s| s.active.is_none());
        let free = self.slots.iter().filter(|s| s.active.is_none()).count();
        if idle && self.waiting.is_empty() {
            match self.jobs.recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(_) => {
                    self.open = false;
                    return;
                }
            }
        }
        while self.waiting.len() < free {
            match self.jobs.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.open = false;
                    break;
                }
            }
        }
    }

    /// Prefills waiting requests into free slots, each into the free slot whose cache shares
    /// the longest prefix with its prompt.
    fn admit(&mut self) {
        while let Some(request) = self.waiting.pop_front() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .max_by_key(|(i, s)| (s.lm.cached_prefix(&request.prompt), usize::MAX - i))
                .map(|(i, _)| i);
            let Some(index) = best else {
                // No free slot after all: back to the front of the line.
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                self.waiting.push_front(request);
                return;
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats.prompt_tokens.fetch_add(request.prompt.len() as u64, Ordering::Relaxed);
            if request.cancel.load(Ordering::Relaxed) {
                continue;
            }
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| prefill(&self.engine, &mut self.slots[index].lm, request)));
            self.stats.busy_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            match outcome {
                Ok(Some(mut active)) => {
                    self.stats.cached_prompt_tokens.fetch_add(self.slots[index].lm.reused_tokens() as u64, Ordering::Relaxed);
                    active.prefill_s = started.elapsed().as_secs_f64();
                    self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
                    if active.seq.is_running() {
                        self.stats.running.fetch_add(1, Ordering::Relaxed);
                        self.slots[index].active = Some(active);
                    } else {
                        finish(active);
                    }
                }
                Ok(None) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    // The request (and its sink) went down with the panic; the slot's cache is
                    // in an unknown state.
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    self.slots[index].lm.forget();
                }
            }
        }
    }

    /// One decode step of every running sequence, in one batch.
    fn step(&mut self) {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.step_inner()));
        self.stats.busy_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the model panicked during a decode step".to_string(),
        };
        // A failed step leaves no sequence in a known state: end them all.
        for slot in &mut self.slots {
            if let Some(mut active) = slot.active.take() {
                self.stats.running.fetch_sub(1, Ordering::Relaxed);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                (active.request.sink)(Event::Failed(Error::InvalidInput(format!("decode step failed: {failure}"))));
            }
            slot.lm.forget();
        }
    }

    fn step_inner(&mut self) -> Result<()> {
        let decoder = TokenizerDecoder(self.engine.tokenizer());
        // Cancelled requests leave before the step.
        for slot in &mut self.slots {
            let cancelled = slot.active.as_ref().is_some_and(|a| a.request.cancel.load(Ordering::Relaxed));
            if cancelled {
                if let Some(mut active) = slot.active.take() {
                    // Nobody reads a cancelled stream: the released tail only goes into `Done`.
                    active
                        .seq
                        .stop(&decoder, FinishReason::Cancelled, &mut |_| {})
                        .map_err(|e| generate_error(&self.engine, e))?;
                    self.stats.running.fetch_sub(1, Ordering::Relaxed);
                    finish(active);
                }
            }
        }
        let mut tokens = Vec::new();
        let mut caches: Vec<&mut KvCache> = Vec::new();
        let mut rows = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(active) = &slot.active {
                let cache = slot.lm.cache_mut().ok_or_else(|| Error::InvalidInput("a running slot has no cache".into()))?;
                tokens.push(active.last);
                caches.push(cache);
                rows.push(i);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let logits = self.engine.model().forward_step_many(&tokens, &mut caches).map_err(Error::Model)?;
        drop(caches);
        for ((&i, &token), mut row) in rows.iter().zip(&tokens).zip(logits) {
            let slot = &mut self.slots[i];
            slot.lm.note_appended(token);
            let Some(active) = slot.active.as_mut() else { continue };
            let (ok, done) = match advance(&self.engine, active, &mut row) {
                Ok(outcome) => outcome,
                Err(e) => {
                    // This request's own failure (its constraint, decoding its text): the step
                    // itself went well, so the other sequences go on.
                    if let Some(mut active) = slot.active.take() {
                        self.stats.running.fetch_sub(1, Ordering::Relaxed);
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        (active.request.sink)(Event::Failed(e));
                    }
                    continue;
                }
            };
            self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
            if !ok {
                active.request.cancel.store(true, Ordering::Relaxed);
            }
            if done {
                if let Some(active) = slot.active.take() {
                    self.stats.running.fetch_sub(1, Ordering::Relaxed);
                    finish(active);
                }
            }
        }
        Ok(())
    }
}

/// Prefills `request` into `lm` and takes its first token; `None` when it failed (the
/// sink has been told).
fn prefill(engine: &Engine, lm: &mut ModelLm, mut request: Request) -> Option<Active> {
    let window = lm.context_window();
    let room = window - request.prompt.len().min(window);
    let mut seq = Sequence::new(request.prompt.clone(), &request.config, room);
    if let Some(constraint) = request.constraint.take() {
        seq = seq.with_constraint(constraint);
    }
    let budget = room.min(request.config.new_token_budget(request.prompt.len()));
    let stop_ids = if request.ignore_eos { Vec::new() } else { engine.stop_ids().to_vec() };
    let result = lm
        .reset(1, (request.prompt.len() + budget).min(window))
        .and_then(|()| lm.forward(std::slice::from_ref(&request.prompt), &[vec![1u8; request.prompt.len()]]));
    let mut logits = match result {
        Ok(mut rows) if rows.len() == 1 => rows.pop().unwrap_or_default(),
        Ok(_) => {
            (request.sink)(Event::Failed(Error::InvalidInput("the model returned no logits for the prompt".into())));
            return None;
        }
        Err(e) => {
            lm.forget();
            (request.sink)(Event::Failed(Error::Model(e)));
            return None;
        }
    };
    let ok = (request.sink)(Event::Started { prompt_tokens: request.prompt.len(), cached_tokens: lm.reused_tokens() });
    let mut active = Active { seq, request, stop_ids, started: Instant::now(), prefill_s: 0.0, last: 0 };
    if !ok {
        active.request.cancel.store(true, Ordering::Relaxed);
    }
    match advance(engine, &mut active, &mut logits) {
        Ok((true, _)) => Some(active),
        Ok((false, _)) => {
            active.request.cancel.store(true, Ordering::Relaxed);
            Some(active)
        }
        Err(e) => {
            (active.request.sink)(Event::Failed(e));
            None
        }
    }
}

/// Chooses and pushes the next token of `active` from `logits`; sends its event. Returns
/// (whether the sink still listens, whether the sequence has ended).
fn advance(engine: &Engine, active: &mut Active, logits: &mut [f32]) -> Result<(bool, bool)> {
    let decoder = TokenizerDecoder(engine.tokenizer());
    let logprobs = active.request.logprobs.map(|top| token_logprobs(logits, top));
    let id = active.seq.choose(logits).map_err(|e| generate_error(engine, e))?;
    let logprobs = logprobs.map(|lp| lp.with_chosen(id));
    let mut text = String::new();
    let finished = active
        .seq
        .push(&decoder, id, &active.stop_ids, &mut |p| text.push_str(p))
        .map_err(|e| generate_error(engine, e))?;
    active.last = id;
    let ok = (active.request.sink)(Event::Token { id, text, logprobs });
    Ok((ok, finished.is_some()))
}

/// Sends the output of an ended request.
fn finish(active: Active) {
    let Active { seq, mut request, started, prefill_s, .. } = active;
    let steps = seq.generated().len().saturating_sub(1);
    let decode_s = started.elapsed().as_secs_f64();
    let timings = Timings {
        load_s: 0.0,
        prefill_tok_s: if prefill_s > 0.0 { seq.prompt_len() as f64 / prefill_s } else { 0.0 },
        decode_tok_s: if decode_s > 0.0 { steps as f64 / decode_s } else { 0.0 },
    };
    (request.sink)(Event::Done(seq.into_output(timings)));
}
