//! The [`Constraint`] hook of `Sequence` and `generate_constrained`, with a fake constraint
//! that allows exactly one scripted id per step (no model, no grammar engine).

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use chatlm_generate::{generate_constrained, Constraint, FinishReason, GenerateError, GenerationConfig, Sequence};
use common::{HashModel, PieceDecoder};

/// Allows `script[pos]` only; complete once the script is used up. Logs its calls.
struct Script {
    script: Vec<u32>,
    pos: usize,
    log: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn new(script: &[u32]) -> (Box<dyn Constraint>, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Box::new(Script { script: script.to_vec(), pos: 0, log: Arc::clone(&log) }), log)
    }
}

impl Constraint for Script {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), GenerateError> {
        self.log.lock().unwrap().push(format!("mask {}", logits.len()));
        let allowed = *self.script.get(self.pos).ok_or_else(|| GenerateError::Constraint("masked after the end".into()))?;
        for (i, l) in logits.iter_mut().enumerate() {
            if i as u32 != allowed {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn commit(&mut self, id: u32) -> Result<(), GenerateError> {
        self.log.lock().unwrap().push(format!("commit {id}"));
        if self.script.get(self.pos) != Some(&id) {
            return Err(GenerateError::Constraint(format!("id {id} is not allowed here")));
        }
        self.pos += 1;
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.pos == self.script.len()
    }
}

fn digits() -> PieceDecoder {
    PieceDecoder((0..64).map(|i| &*Box::leak(format!("<{i}>").into_boxed_str())).collect())
}

fn run(config: &GenerationConfig, script: &[u32]) -> (chatlm_generate::GenerationOutput, Vec<String>) {
    let (constraint, log) = Script::new(script);
    let out = generate_constrained(&mut HashModel::new(64, 128), &digits(), &[1, 2, 3], config, &[0], constraint, &AtomicBool::new(false), |_| {})
        .unwrap();
    let log = log.lock().unwrap().clone();
    (out, log)
}

#[test]
fn greedy_output_is_the_constrained_text_and_ends_when_complete() {
    let config = GenerationConfig { max_new_tokens: Some(20), ..Default::default() };
    let (out, log) = run(&config, &[5, 7, 9]);
    assert_eq!((out.ids.as_slice(), out.text.as_str()), (&[5, 7, 9][..], "<5><7><9>"));
    assert_eq!(out.finish_reason, FinishReason::Stop);
    // One mask and one commit per step, in that order; no step after completion.
    assert_eq!(log, ["mask 64", "commit 5", "mask 64", "commit 7", "mask 64", "commit 9"]);
}

#[test]
fn sampling_and_penalties_only_see_allowed_ids() {
    // Masking runs before the processors: a penalty, temperature, top-k/top-p or min-p can
    // never bring back an id the constraint removed.
    let config = GenerationConfig {
        do_sample: true,
        temperature: 1.7,
        top_k: Some(50),
        top_p: 0.99,
        min_p: Some(0.0),
        repetition_penalty: 1.3,
        max_new_tokens: Some(20),
        seed: 11,
        ..Default::default()
    };
    let (out, _) = run(&config, &[3, 3, 3, 8]);
    assert_eq!((out.ids.as_slice(), out.finish_reason), (&[3, 3, 3, 8][..], FinishReason::Stop));
}

#[test]
fn budget_shorter_than_the_constrained_text_ends_with_length() {
    let config = GenerationConfig { max_new_tokens: Some(2), ..Default::default() };
    let (out, _) = run(&config, &[5, 7, 9]);
    assert_eq!((out.ids.as_slice(), out.finish_reason), (&[5, 7][..], FinishReason::Length));
}

#[test]
fn sequence_hook_rejects_an_id_the_constraint_does_not_allow() {
    let config = GenerationConfig { max_new_tokens: Some(8), ..Default::default() };
    let (constraint, _) = Script::new(&[4, 6]);
    let mut seq = Sequence::new(vec![1], &config, 16).with_constraint(constraint);
    assert!(seq.is_constrained());
    let mut row = vec![0.0f32; 64];
    row[10] = 5.0; // the model prefers 10; only 4 may come
    let id = seq.choose(&mut row).unwrap();
    assert_eq!(id, 4);
    assert!(row.iter().enumerate().all(|(i, &l)| (i == 4) == l.is_finite()));
    assert_eq!(seq.push(&digits(), id, &[0], &mut |_| {}).unwrap(), None);
    // A caller that pushes something else (no choose) gets the constraint's error.
    let err = seq.push(&digits(), 10, &[0], &mut |_| {}).unwrap_err();
    assert!(matches!(err, GenerateError::Constraint(ref m) if m.contains("10")), "{err}");
    assert_eq!(seq.generated(), &[4]);
}

#[test]
fn a_stop_id_the_constraint_allows_ends_as_a_stop() {
    // The script allows the stop id 0 at its end: the sequence stops on it (stop id rule)
    // and the constraint is committed over it too.
    let config = GenerationConfig { max_new_tokens: Some(8), ..Default::default() };
    let (out, log) = run(&config, &[5, 0]);
    assert_eq!((out.ids.as_slice(), out.text.as_str(), out.finish_reason), (&[5, 0][..], "<5>", FinishReason::Stop));
    assert_eq!(log.last().map(String::as_str), Some("commit 0"));
}
