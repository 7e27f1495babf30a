//! The KV cache: feeding a prompt in pieces (a chat turn after another) computes what one call
//! computes, and a cleared or truncated cache starts over.

mod common;

use chatlm_model::{LoadOptions, Model};
use common::{data_dir, max_diff};

const PROMPT: [u32; 13] = [1, 9, 9, 9, 101, 33, 60, 14, 2, 95, 11, 71, 44];

fn model(name: &str) -> Model {
    Model::from_dir(&data_dir(name), &LoadOptions::default()).unwrap()
}

#[test]
fn prompt_in_pieces_matches_one_call() {
    // Mistral's sliding window (8) makes the pieces cross the window edge.
    for name in ["llama3", "mistral", "phi3"] {
        let model = model(name);
        let mut whole = model.new_cache(1, 16).unwrap();
        let want = model.forward_last(&PROMPT, &mut whole).unwrap();
        let mut pieces = model.new_cache(1, 16).unwrap();
        model.forward(&PROMPT[..4], &mut pieces).unwrap();
        model.forward(&PROMPT[4..9], &mut pieces).unwrap();
        let got = model.forward_last(&PROMPT[9..], &mut pieces).unwrap();
        assert_eq!(pieces.len(), PROMPT.len());
        assert!(max_diff(&got, &want) < 1e-4, "{name}: {}", max_diff(&got, &want));
    }
}

#[test]
fn cleared_and_truncated_caches_start_over() {
    let model = model("qwen2");
    let mut cache = model.new_cache(1, 16).unwrap();
    let first = model.forward_last(&PROMPT[..6], &mut cache).unwrap();
    model.forward(&PROMPT[6..], &mut cache).unwrap();
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(model.forward_last(&PROMPT[..6], &mut cache).unwrap(), first);
    model.forward(&[5, 6, 7], &mut cache).unwrap();
    cache.truncate(3);
    assert_eq!(cache.len(), 3);
    let again = model.forward_last(&PROMPT[3..6], &mut cache).unwrap();
    assert!(max_diff(&again, &first) < 1e-4);
}

#[test]
fn models_and_caches_move_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
    assert_send_sync::<chatlm_model::KvCache>();
    // A clone shares the weights and computes the same thing.
    let model = model("llama_tied");
    let clone = model.clone();
    let handle = std::thread::spawn(move || {
        let mut cache = clone.new_cache(1, 16).unwrap();
        clone.forward_last(&PROMPT, &mut cache).unwrap()
    });
    let mut cache = model.new_cache(1, 16).unwrap();
    assert_eq!(handle.join().unwrap(), model.forward_last(&PROMPT, &mut cache).unwrap());
}
