//! The pipeline crate on the tiny random Llama GGUF of chatlm-model's tests (128-token
//! vocabulary, no chat template) and, when `CHATLM_SMOLLM2` names it, the real default model:
//! prompt caching, the batcher's events, cancellation, errors, chat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use chatlm::{BatchOptions, Batcher, Engine, Event, FinishReason, GenerationConfig, LoadSpec, Pipeline, Prompt, Request};
use serde_json::json;

fn tiny() -> Arc<Engine> {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf_f16/model.gguf");
    Arc::new(Engine::load(&LoadSpec { model: Some(model.into()), ..Default::default() }).unwrap())
}

fn greedy(n: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens: Some(n), ..GenerationConfig::default() }
}

#[test]
fn prompt_cache_reuses_the_common_prefix() {
    let engine = tiny();
    let mut cached = Pipeline::new(Arc::clone(&engine), true);
    let mut cold = Pipeline::new(engine, false);
    let prompt: Vec<u32> = vec![1, 7, 9, 11, 13, 2, 4];
    let first = cached.generate(Prompt::Ids(prompt.clone()), &greedy(6)).unwrap();
    assert_eq!(cached.reused_tokens(), 0);
    // The same prompt again: everything is reused and the answer is the same to the bit.
    let again = cached.generate(Prompt::Ids(prompt.clone()), &greedy(6)).unwrap();
    assert_eq!(cached.reused_tokens(), prompt.len());
    assert_eq!(again.ids, first.ids);
    assert_eq!(cold.generate(Prompt::Ids(prompt.clone()), &greedy(6)).unwrap().ids, first.ids);
    // The next turn: prompt, answer and more; only the new part is computed.
    let mut next = prompt.clone();
    next.extend(&first.ids);
    next.extend([5, 6, 8]);
    let turn = cached.generate(Prompt::Ids(next.clone()), &greedy(6)).unwrap();
    assert!(cached.reused_tokens() >= prompt.len() + first.ids.len() - 1, "{}", cached.reused_tokens());
    assert_eq!(turn.prompt_tokens, next.len());
    assert_eq!(cold.reused_tokens(), 0);
    // A different prompt shares only its first id.
    cached.generate(Prompt::Ids(vec![1, 100, 101]), &greedy(2)).unwrap();
    assert_eq!(cached.reused_tokens(), 1);
}

#[test]
fn bad_prompts_are_typed_errors() {
    let mut pipe = Pipeline::new(tiny(), true);
    let err = pipe.generate(Prompt::Ids(vec![1, 500]), &greedy(2)).unwrap_err();
    assert!(err.is_invalid_request() && err.to_string().contains("outside the vocabulary"), "{err}");
    let err = pipe.generate(Prompt::Ids(vec![]), &greedy(2)).unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    let err = pipe.generate(Prompt::User("hi".into()), &greedy(2)).unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");
    let err = pipe.generate(Prompt::Ids(vec![1; 300]), &greedy(2)).unwrap_err();
    assert!(err.is_invalid_request(), "a prompt over the context window: {err}");
    let bad = GenerationConfig { top_p: 2.0, do_sample: true, ..greedy(2) };
    assert!(pipe.generate(Prompt::Ids(vec![1, 2]), &bad).unwrap_err().is_invalid_request());
    // The pipeline still works after the errors.
    assert_eq!(pipe.generate(Prompt::Ids(vec![1, 2]), &greedy(3)).unwrap().completion_tokens, 3);
}

/// Submits `prompt` and returns the receiver of its events.
fn submit(batcher: &Batcher, prompt: Vec<u32>, config: GenerationConfig, cancel: Arc<AtomicBool>) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    let request = Request {
        prompt,
        config,
        ignore_eos: true,
        logprobs: Some(2),
        cancel,
        sink: Box::new(move |e| tx.send(e).is_ok()),
        constraint: None,
    };
    batcher.submit(request).unwrap();
    rx
}

fn drain(rx: &mpsc::Receiver<Event>) -> (Vec<u32>, chatlm::GenerationOutput) {
    let mut ids = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            Event::Started { .. } => {}
            Event::Token { id, logprobs, .. } => {
                let lp = logprobs.expect("logprobs were asked for");
                assert_eq!(lp.chosen.0, id);
                assert_eq!(lp.top.len(), 2);
                ids.push(id);
            }
            Event::Done(out) => return (ids, out),
            Event::Failed(e) => panic!("failed: {e}"),
        }
    }
}

#[test]
fn batcher_runs_requests_together_each_to_its_own_end() {
    let engine = tiny();
    let batcher = Batcher::start(Arc::clone(&engine), BatchOptions { slots: 2, queue: 8, context: 64, prompt_cache: true });
    let prompts = [vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9], vec![10, 11, 12]];
    let budgets = [5, 9, 3, 5];
    let receivers: Vec<_> = prompts
        .iter()
        .zip(budgets)
        .map(|(p, n)| submit(&batcher, p.clone(), greedy(n), Arc::new(AtomicBool::new(false))))
        .collect();
    for (rx, n) in receivers.iter().zip(budgets) {
        let (ids, out) = drain(rx);
        assert_eq!((out.ids.len(), out.finish_reason), (n, FinishReason::Length));
        assert_eq!(ids, out.ids, "the streamed ids are the output's");
    }
    assert_eq!(batcher.stats().running.load(Ordering::Relaxed), 0);
    assert_eq!(batcher.stats().requests.load(Ordering::Relaxed), 4);
    // A prompt repeated: the slot whose cache holds it serves it, computing nothing.
    let before = batcher.stats().cached_prompt_tokens.load(Ordering::Relaxed);
    drain(&submit(&batcher, vec![10, 11, 12], greedy(2), Arc::new(AtomicBool::new(false))));
    assert_eq!(batcher.stats().cached_prompt_tokens.load(Ordering::Relaxed) - before, 3);
}

#[test]
fn a_cancelled_or_abandoned_request_frees_its_slot() {
    let batcher = Batcher::start(tiny(), BatchOptions { slots: 1, queue: 4, context: 128, prompt_cache: false });
    let cancel = Arc::new(AtomicBool::new(false));
    let rx = submit(&batcher, vec![1, 2, 3], greedy(100), Arc::clone(&cancel));
    let mut seen = 0;
    let out = loop {
        match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
            Event::Token { .. } => {
                seen += 1;
                if seen == 3 {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            Event::Done(out) => break out,
            Event::Started { .. } => {}
            Event::Failed(e) => panic!("{e}"),
        }
    };
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert!(out.ids.len() < 100);
    // A receiver that is dropped cancels too; the next request still runs.
    drop(submit(&batcher, vec![1, 2, 3], greedy(100), Arc::new(AtomicBool::new(false))));
    let (_, out) = drain(&submit(&batcher, vec![4, 5], greedy(4), Arc::new(AtomicBool::new(false))));
    assert_eq!(out.ids.len(), 4);
}

#[test]
fn submit_rejects_what_cannot_run() {
    let batcher = Batcher::start(tiny(), BatchOptions { slots: 1, queue: 1, context: 16, prompt_cache: true });
    let request = |prompt: Vec<u32>, config: GenerationConfig| Request {
        prompt,
        config,
        ignore_eos: false,
        logprobs: None,
        cancel: Arc::new(AtomicBool::new(false)),
        sink: Box::new(|_| true),
        constraint: None,
    };
    let too_long = batcher.submit(request(vec![1; 16], greedy(2))).unwrap_err();
    assert!(too_long.to_string().contains("a slot holds 16"), "{too_long}");
    let bad = batcher.submit(request(vec![1], GenerationConfig { temperature: -1.0, ..greedy(2) })).unwrap_err();
    let chain = std::iter::successors(Some(&bad as &dyn std::error::Error), |e| e.source()).map(|e| e.to_string()).collect::<Vec<_>>();
    assert!(chain.iter().any(|m| m.contains("temperature")), "{chain:?}");
    assert!(matches!(batcher.submit(request(vec![], greedy(2))), Err(chatlm::SubmitError::Invalid(_))));
}

#[test]
fn chat_returns_the_conversation_with_the_answer() {
    let Ok(path) = std::env::var("CHATLM_SMOLLM2") else {
        println!("skipped: fixtures not found (CHATLM_SMOLLM2)");
        return;
    };
    let mut pipe = Pipeline::load(&LoadSpec { model: Some(path), ..Default::default() }).unwrap();
    let stops = pipe.engine().stop_ids().to_vec();
    let im_end = pipe.engine().tokenizer().token_to_id("<|im_end|>").unwrap();
    assert!(stops.contains(&im_end), "{stops:?}");
    let config = GenerationConfig { max_new_tokens: Some(12), ..pipe.default_config() };
    let messages = vec![json!({"role": "user", "content": "What is 2 + 2?"})];
    let chat = pipe.chat(messages.clone(), &config).unwrap();
    assert_eq!(chat.len(), 2);
    assert_eq!(chat[0], messages[0]);
    assert_eq!(chat[1]["role"], "assistant");
    let answer = pipe.generate(Prompt::Messages(messages), &config).unwrap();
    assert_eq!(chat[1]["content"], answer.text.as_str());
}
