//! Model sources: hub cache layout (offline), sharded safetensors, GGUF classification.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use chatlm_model::{LoadOptions, Model, ModelError, ModelSource};
use common::{argmax, copy_model, data_dir, scratch_dir};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn last_logits(model: &Model) -> Vec<f32> {
    let mut cache = model.new_cache(1, 16).unwrap();
    model.forward_last(&[1, 17, 42, 99, 7], &mut cache).unwrap()
}

/// A cache laid out like `huggingface_hub` leaves it: blobs, symlinked snapshot files, refs.
fn fake_hub_cache(name: &str) -> std::path::PathBuf {
    let cache = scratch_dir(name);
    let repo = cache.join("models--tiny-org--tiny-llama");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    for (i, file) in ["config.json", "model.safetensors", "generation_config.json"].iter().enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(data_dir("llama3").join(file), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob{i}"), snapshot.join(file)).unwrap();
    }
    cache
}

#[test]
fn hub_cache_layout_resolves_offline_by_ref_and_by_commit() {
    let cache = fake_hub_cache("hub");
    let snapshot = cache.join("models--tiny-org--tiny-llama/snapshots").join(COMMIT);
    let by_ref = ModelSource::from_hub_cache(&cache, "tiny-org/tiny-llama", "main").unwrap();
    assert_eq!(by_ref, ModelSource::Directory(snapshot.clone()));
    let by_commit = ModelSource::from_hub_cache(&cache, "tiny-org/tiny-llama", COMMIT).unwrap();
    assert_eq!(by_commit, by_ref);
    // The repository folder itself resolves to its `main` snapshot too.
    let by_folder = ModelSource::from_path(&cache.join("models--tiny-org--tiny-llama")).unwrap();
    assert_eq!(by_folder, by_ref);

    let model = Model::from_source(&by_ref, &LoadOptions::default()).unwrap();
    let reference = Model::from_dir(&data_dir("llama3"), &LoadOptions::default()).unwrap();
    assert_eq!(last_logits(&model), last_logits(&reference));

    let missing = ModelSource::from_hub_cache(&cache, "tiny-org/other", "main").unwrap_err();
    assert!(matches!(missing, ModelError::NotFound { .. }), "{missing:?}");
    let bad_ref = ModelSource::from_hub_cache(&cache, "tiny-org/tiny-llama", "dev").unwrap_err();
    assert!(bad_ref.to_string().contains("dev"), "{bad_ref}");
}

#[test]
fn hub_id_resolves_through_hf_hub_cache_variable() {
    let cache = fake_hub_cache("hub-env");
    // Only this test reads the variable, so setting it cannot race with the others.
    unsafe { std::env::set_var("HF_HUB_CACHE", &cache) };
    let source = ModelSource::resolve("tiny-org/tiny-llama").unwrap();
    assert_eq!(source.directory().unwrap(), cache.join("models--tiny-org--tiny-llama/snapshots").join(COMMIT));
    let pinned = ModelSource::resolve(&format!("tiny-org/tiny-llama@{COMMIT}")).unwrap();
    assert_eq!(pinned, source);
}

#[test]
fn sharded_safetensors_load_like_the_single_file() {
    let dir = scratch_dir("sharded");
    copy_model("llama3", &dir);
    let single = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    std::fs::remove_file(&single).unwrap();
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (name, tensor) in tensors {
        let shard = usize::from(name.contains("layers.1") || name.starts_with("lm_head"));
        weight_map.insert(name.clone(), format!("model-0000{}-of-00002.safetensors", shard + 1).into());
        shards[shard].insert(name, tensor);
    }
    for (i, shard) in shards.iter().enumerate() {
        candle_core::safetensors::save(shard, dir.join(format!("model-0000{}-of-00002.safetensors", i + 1))).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let sharded = Model::from_dir(&dir, &LoadOptions::default()).unwrap();
    let reference = Model::from_dir(&data_dir("llama3"), &LoadOptions::default()).unwrap();
    let logits = last_logits(&sharded);
    assert_eq!(logits, last_logits(&reference));
    assert_eq!(argmax(&logits), argmax(&last_logits(&reference)));
}

#[test]
fn gguf_paths_are_classified_and_unknown_paths_rejected() {
    let dir = scratch_dir("gguf-class");
    let file = dir.join("model.Q4_1.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    assert_eq!(ModelSource::resolve(file.to_str().unwrap()).unwrap(), ModelSource::Gguf(file.clone()));
    // A directory holding exactly one GGUF file resolves to it.
    assert_eq!(ModelSource::from_path(&dir).unwrap(), ModelSource::Gguf(file));
    assert!(matches!(ModelSource::resolve("/no/such/model"), Err(ModelError::NotFound { .. })));
    let dir_copy = scratch_dir("plain-dir");
    copy_model("qwen2", &dir_copy);
    assert_eq!(ModelSource::from_path(&dir_copy).unwrap(), ModelSource::Directory(dir_copy));
}
