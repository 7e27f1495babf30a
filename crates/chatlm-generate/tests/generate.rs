//! The generation loop against deterministic fake models.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use chatlm_generate::{
    generate, generate_batch, generate_cancellable, FinishReason, GenerateError, GenerationConfig, Sampler,
};
use common::{hash_logits, HashModel, PieceDecoder, ScriptModel};

fn digits() -> PieceDecoder {
    PieceDecoder((0..64).map(|i| &*Box::leak(format!("<{i}>").into_boxed_str())).collect())
}

fn sampling(seed: u64) -> GenerationConfig {
    GenerationConfig {
        do_sample: true,
        temperature: 0.9,
        top_k: Some(20),
        top_p: 0.95,
        repetition_penalty: 1.1,
        max_new_tokens: Some(24),
        seed,
        ..Default::default()
    }
}

#[test]
fn greedy_follows_argmax_of_the_model() {
    let cfg = GenerationConfig { max_new_tokens: Some(10), ..Default::default() };
    let out = generate(&mut HashModel::new(64, 128), &digits(), &[1, 2, 3], &cfg, &[], |_| {}).unwrap();
    let mut ctx = vec![1, 2, 3];
    for &id in &out.ids {
        assert_eq!(id, Sampler::argmax(&hash_logits(&ctx, 64)).unwrap());
        ctx.push(id);
    }
    assert_eq!((out.ids.len(), out.finish_reason, out.prompt_tokens, out.completion_tokens), (10, FinishReason::Length, 3, 10));
    let expected: String = out.ids.iter().map(|i| format!("<{i}>")).collect();
    assert_eq!(out.text, expected);
}

#[test]
fn temperature_zero_is_greedy() {
    let greedy = GenerationConfig { max_new_tokens: Some(12), ..Default::default() };
    let zero = GenerationConfig { temperature: 0.0, ..sampling(7) };
    let a = generate(&mut HashModel::new(64, 128), &digits(), &[5], &greedy, &[], |_| {}).unwrap();
    let b = generate(&mut HashModel::new(64, 128), &digits(), &[5], &GenerationConfig { max_new_tokens: Some(12), repetition_penalty: 1.0, ..zero }, &[], |_| {}).unwrap();
    assert_eq!(a.ids, b.ids);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let run = |seed| generate(&mut HashModel::new(64, 128), &digits(), &[9, 8], &sampling(seed), &[], |_| {}).unwrap().ids;
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    let greedy = generate(&mut HashModel::new(64, 128), &digits(), &[9, 8], &GenerationConfig { max_new_tokens: Some(24), ..Default::default() }, &[], |_| {}).unwrap().ids;
    assert_ne!(run(42), greedy, "sampling should differ from argmax somewhere in 24 tokens");
}

#[test]
fn any_stop_id_ends_with_reason_stop() {
    let cfg = GenerationConfig { max_new_tokens: Some(10), ..Default::default() };
    let dec = PieceDecoder(vec!["a", "b", "c"]); // 3 and 4 are special
    for stop in [3u32, 4] {
        let mut m = ScriptModel::new(5, vec![vec![0, 1, stop, 2]], 2);
        let out = generate(&mut m, &dec, &[0], &cfg, &[3, 4], |_| {}).unwrap();
        assert_eq!((out.ids, out.text.as_str(), out.finish_reason), (vec![0, 1, stop], "ab", FinishReason::Stop));
    }
    let mut m = ScriptModel::new(5, vec![vec![]], 2);
    let out = generate(&mut m, &dec, &[0], &cfg, &[3, 4], |_| {}).unwrap();
    assert_eq!((out.ids.len(), out.finish_reason), (10, FinishReason::Length));
}

#[test]
fn stop_strings_are_cut_and_never_stream_partially() {
    let dec = PieceDecoder(vec!["Hello", " wor", "ld", "</", "st", "op>", "tail", "<", "/s"]);
    let cfg = GenerationConfig { max_new_tokens: Some(20), stop_strings: vec!["</stop>".into()], ..Default::default() };
    // "</" then "st" could start the stop string: held; "op>" completes it.
    let mut m = ScriptModel::new(9, vec![vec![0, 1, 2, 3, 4, 5, 6]], 6);
    let mut pieces = Vec::new();
    let out = generate(&mut m, &dec, &[0], &cfg, &[], |p| pieces.push(p.to_string())).unwrap();
    assert_eq!((out.text.as_str(), out.finish_reason), ("Hello world", FinishReason::Stop));
    assert_eq!(out.ids, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(pieces.concat(), out.text);
    assert!(pieces.iter().all(|p| !p.contains('<')), "{pieces:?}");
    // A held prefix that turns out not to be a stop string is released in order.
    let mut m = ScriptModel::new(9, vec![vec![7, 8, 6]], 0);
    let cfg = GenerationConfig { max_new_tokens: Some(3), ..cfg };
    let mut pieces = Vec::new();
    let out = generate(&mut m, &dec, &[0], &cfg, &[], |p| pieces.push(p.to_string())).unwrap();
    assert_eq!((out.text.as_str(), out.finish_reason), ("</stail", FinishReason::Length));
    assert_eq!(pieces, vec!["</stail"]);
    // A partial match at the very end is released when generation stops on length.
    let mut m = ScriptModel::new(9, vec![vec![0, 3]], 0);
    let out = generate(&mut m, &dec, &[0], &GenerationConfig { max_new_tokens: Some(2), ..cfg }, &[], |_| {}).unwrap();
    assert_eq!(out.text, "Hello</");
}

#[test]
fn batch_is_left_padded_and_each_sequence_stops_alone() {
    let prompts = vec![vec![1, 2, 3, 4, 5], vec![7], vec![3, 3, 3]];
    let cfg = GenerationConfig { max_new_tokens: Some(8), pad_token_id: Some(0), ..Default::default() };
    // Stop on whatever the second sequence produces second, so it finishes early.
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| generate(&mut HashModel::new(64, 64), &digits(), p, &cfg, &[], |_| {}).unwrap())
        .collect();
    let stop = alone[1].ids[1];
    let alone_stopped: Vec<_> = prompts
        .iter()
        .map(|p| generate(&mut HashModel::new(64, 64), &digits(), p, &cfg, &[stop], |_| {}).unwrap())
        .collect();
    let mut streamed = vec![String::new(); 3];
    let batch = generate_batch(&mut HashModel::new(64, 64), &digits(), &prompts, &cfg, &[stop], |i, p| streamed[i].push_str(p)).unwrap();
    for (i, (b, a)) in batch.iter().zip(&alone_stopped).enumerate() {
        assert_eq!((&b.ids, &b.text, b.finish_reason), (&a.ids, &a.text, a.finish_reason), "sequence {i}");
        assert_eq!(streamed[i], b.text);
    }
    assert_eq!(batch[1].finish_reason, FinishReason::Stop);
    assert_eq!(batch[1].ids.len(), 2);
}

#[test]
fn prompt_longer_than_window_is_a_typed_error() {
    let cfg = GenerationConfig { max_new_tokens: Some(4), ..Default::default() };
    let err = generate(&mut HashModel::new(64, 8), &digits(), &[1; 8], &cfg, &[], |_| {}).unwrap_err();
    assert!(matches!(err, GenerateError::PromptTooLong { prompt_tokens: 8, context_window: 8, .. }), "{err}");
    let err = generate(&mut HashModel::new(64, 8), &digits(), &[], &cfg, &[], |_| {}).unwrap_err();
    assert!(matches!(err, GenerateError::EmptyPrompt { index: 0 }), "{err}");
    // Room for fewer tokens than asked: stops on length at the window.
    let out = generate(&mut HashModel::new(64, 8), &digits(), &[1; 6], &cfg, &[], |_| {}).unwrap();
    assert_eq!((out.ids.len(), out.finish_reason), (2, FinishReason::Length));
}

#[test]
fn invalid_config_fails_before_generation() {
    let cfg = GenerationConfig { top_p: 1.5, do_sample: true, ..Default::default() };
    let mut m = HashModel::new(64, 8);
    let err = generate(&mut m, &digits(), &[1], &cfg, &[], |_| {}).unwrap_err();
    assert!(err.to_string().contains("`top_p` = 1.5"), "{err}");
    assert_eq!(m.forwards, 0);
}

#[test]
fn generation_config_json_defaults_and_precedence() {
    let dir = std::env::temp_dir().join(format!("chatlm-generate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("list.json");
    std::fs::write(&list, r#"{"do_sample": true, "temperature": 0.6, "top_p": 0.9, "eos_token_id": [128001, 128009], "bos_token_id": 128000, "max_length": 4096, "transformers_version": "4.45"}"#).unwrap();
    let cfg = GenerationConfig::from_file(&list).unwrap();
    assert!(cfg.do_sample && cfg.temperature == 0.6 && cfg.top_p == 0.9 && cfg.top_k == Some(50));
    assert_eq!((cfg.eos_token_id.clone(), cfg.bos_token_id), (vec![128001, 128009], Some(128000)));
    assert_eq!(cfg.new_token_budget(96), 4000);
    assert_eq!(GenerationConfig { max_new_tokens: Some(5), ..cfg.clone() }.new_token_budget(96), 5);
    let int = dir.join("int.json");
    std::fs::write(&int, r#"{"eos_token_id": 2, "pad_token_id": 0}"#).unwrap();
    let cfg = GenerationConfig::from_file(&int).unwrap();
    assert_eq!((cfg.eos_token_id, cfg.pad_token_id, cfg.max_length), (vec![2], Some(0), 20));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"eos_token_id": "x"}"#).unwrap();
    let err = GenerationConfig::from_file(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cache_is_sized_to_the_padded_prompt_and_budget() {
    let cfg = GenerationConfig { max_new_tokens: Some(5), ..Default::default() };
    let mut m = HashModel::new(64, 128);
    let prompts = vec![vec![1, 2, 3], vec![4]];
    let out = generate_batch(&mut m, &digits(), &prompts, &cfg, &[], |_, _| {}).unwrap();
    assert_eq!(m.max_len, 3 + 5);
    assert!(out.iter().all(|o| o.ids.len() == 5));
    // Capped at the window when the budget would overflow it.
    let mut m = HashModel::new(64, 8);
    generate(&mut m, &digits(), &[1; 6], &cfg, &[], |_| {}).unwrap();
    assert_eq!(m.max_len, 8);
}

#[test]
fn cancel_flag_ends_generation_with_the_text_so_far() {
    let cfg = GenerationConfig { max_new_tokens: Some(50), ..Default::default() };
    let cancel = AtomicBool::new(false);
    let mut m = HashModel::new(64, 128);
    let mut pieces = Vec::new();
    let out = generate_cancellable(&mut m, &digits(), &[1, 2], &cfg, &[], &cancel, |p| {
        pieces.push(p.to_string());
        if pieces.len() == 3 {
            cancel.store(true, Ordering::Relaxed);
        }
    })
    .unwrap();
    assert_eq!((out.ids.len(), out.finish_reason), (3, FinishReason::Cancelled));
    assert_eq!(pieces.concat(), out.text);
    assert_eq!(m.forwards, 3, "no forward pass after the flag was seen");
    assert_eq!(serde_json::to_string(&out.finish_reason).unwrap(), "\"cancelled\"");
}
